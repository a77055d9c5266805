//! The local durable outbox: events acknowledged while the database is away (or too slow to
//! answer in time) wait here, in a small fjall keyspace on the pod's volume, until they drain
//! to the database in the order they arrived. Bounded by size: when full, new events are not
//! acknowledged as recorded (the webhook still answers `allowed: true`; the error is counted).
//!
//! Only the PostgreSQL writer task touches it; the figures are atomics for `/metrics` and
//! the store status.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use logistis_api::{Event, EventId};
use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// One acknowledged event not yet in the database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    /// The id it was acknowledged under (kept unless another replica took it meanwhile).
    pub id: EventId,
    pub dedupe: Option<[u8; 32]>,
    /// With its objects.
    pub event: Event,
}

/// Depth, size and age, readable from any thread.
#[derive(Debug, Default)]
pub struct OutboxFigures {
    pub events: AtomicU64,
    pub bytes: AtomicU64,
    /// Receive time (µs since the epoch) of the oldest waiting event; 0 when empty.
    pub oldest_micros: AtomicU64,
}

pub struct Outbox {
    db: Database,
    ks: Keyspace,
    next_key: u64,
    max_bytes: u64,
    figures: Arc<OutboxFigures>,
}

impl Outbox {
    /// Open (or create) the outbox in `dir`; what a previous run left is still there.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Outbox> {
        let open_error = |source| Error::Open {
            path: dir.to_owned(),
            source,
        };
        let db = Database::builder(dir).open().map_err(open_error)?;
        let ks = db
            .keyspace("outbox", KeyspaceCreateOptions::default)
            .map_err(open_error)?;
        let figures = Arc::new(OutboxFigures::default());
        let mut next_key = 0;
        let mut oldest = None;
        for guard in ks.iter() {
            let (key, value) = guard.into_inner()?;
            next_key = key_number(&key).map_or(next_key, |k| k + 1);
            if oldest.is_none() {
                oldest = serde_json::from_slice::<Pending>(&value)
                    .ok()
                    .map(|p| p.id.0);
            }
            figures.events.fetch_add(1, Ordering::Relaxed);
            figures
                .bytes
                .fetch_add(value.len() as u64, Ordering::Relaxed);
        }
        figures
            .oldest_micros
            .store(oldest.unwrap_or(0), Ordering::Relaxed);
        Ok(Outbox {
            db,
            ks,
            next_key,
            max_bytes,
            figures,
        })
    }

    pub fn figures(&self) -> Arc<OutboxFigures> {
        self.figures.clone()
    }

    pub fn is_empty(&self) -> bool {
        self.figures.events.load(Ordering::Relaxed) == 0
    }

    /// Add events at the end, durably (one fsync), or none of them if they do not fit.
    pub fn push(&mut self, items: &[Pending]) -> Result<()> {
        let values: Vec<Vec<u8>> = items
            .iter()
            .map(|p| serde_json::to_vec(p).expect("an event always serialises"))
            .collect();
        let size: u64 = values.iter().map(|v| v.len() as u64).sum();
        let held = self.figures.bytes.load(Ordering::Relaxed);
        if held + size > self.max_bytes {
            return Err(Error::OutboxFull { bytes: held });
        }
        let mut batch = self.db.batch();
        for value in values {
            batch.insert(&self.ks, self.next_key.to_be_bytes().to_vec(), value);
            self.next_key += 1;
        }
        batch.commit()?;
        self.db.persist(PersistMode::SyncAll)?;
        if self.is_empty()
            && let Some(first) = items.first()
        {
            self.figures
                .oldest_micros
                .store(first.id.0, Ordering::Relaxed);
        }
        self.figures
            .events
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        self.figures.bytes.fetch_add(size, Ordering::Relaxed);
        Ok(())
    }

    /// The oldest `limit` events, with their keys, in order.
    pub fn peek(&self, limit: usize) -> Result<Vec<(u64, Pending)>> {
        let mut items = Vec::new();
        for guard in self.ks.iter().take(limit) {
            let (key, value) = guard.into_inner()?;
            let Some(number) = key_number(&key) else {
                continue;
            };
            match serde_json::from_slice::<Pending>(&value) {
                Ok(pending) => items.push((number, pending)),
                Err(error) => {
                    // Unreadable (a torn write cannot happen with one fsync per batch, so this
                    // is damage): reported, then dropped so it cannot block the rest.
                    tracing::error!(key = number, %error, "outbox entry cannot be decoded: dropped");
                    self.ks.remove(key.to_vec())?;
                }
            }
        }
        Ok(items)
    }

    /// Remove drained events (durably, so a restart does not send them again — it would be
    /// harmless: the database deduplicates).
    pub fn remove(&mut self, keys: &[u64]) -> Result<()> {
        let mut batch = self.db.batch();
        let mut freed = 0u64;
        for key in keys {
            let key = key.to_be_bytes();
            if let Some(size) = self.ks.size_of(key)? {
                freed += u64::from(size);
            }
            batch.remove(&self.ks, key.to_vec());
        }
        batch.commit()?;
        self.db.persist(PersistMode::SyncAll)?;
        let events = self.figures.events.load(Ordering::Relaxed);
        let left = events.saturating_sub(keys.len() as u64);
        self.figures.events.store(left, Ordering::Relaxed);
        let bytes = self.figures.bytes.load(Ordering::Relaxed);
        self.figures
            .bytes
            .store(bytes.saturating_sub(freed), Ordering::Relaxed);
        let oldest = if left == 0 {
            0
        } else {
            self.peek(1)?.first().map_or(0, |(_, p)| p.id.0)
        };
        self.figures.oldest_micros.store(oldest, Ordering::Relaxed);
        Ok(())
    }
}

fn key_number(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(id: u64) -> Pending {
        let event: Event = serde_json::from_value(serde_json::json!({
            "id": "0000000000000000", "uid": format!("u{id}"), "time": "2026-01-01T00:00:00Z",
            "operation": "UPDATE", "user": {"username": "alice"},
            "resource": {"kind": "ConfigMap", "namespace": "ns", "name": "cm"},
            "patch": [], "object": {"data": {"k": id.to_string()}}
        }))
        .unwrap();
        Pending {
            id: EventId(id),
            dedupe: Some([id as u8; 32]),
            event,
        }
    }

    #[test]
    fn events_wait_in_order_survive_reopen_and_respect_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path(), 1 << 20).unwrap();
        assert!(outbox.is_empty());
        outbox.push(&[pending(1), pending(2)]).unwrap();
        outbox.push(&[pending(3)]).unwrap();
        let figures = outbox.figures();
        assert_eq!(figures.events.load(Ordering::Relaxed), 3);
        assert_eq!(figures.oldest_micros.load(Ordering::Relaxed), 1);
        drop(outbox);

        let mut outbox = Outbox::open(dir.path(), 1 << 20).unwrap();
        let items = outbox.peek(10).unwrap();
        let ids: Vec<u64> = items.iter().map(|(_, p)| p.id.0).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(items[0].1.event.object, pending(1).event.object);
        outbox.remove(&[items[0].0, items[1].0]).unwrap();
        assert_eq!(outbox.figures().oldest_micros.load(Ordering::Relaxed), 3);
        outbox.push(&[pending(4)]).unwrap();
        let ids: Vec<u64> = outbox
            .peek(10)
            .unwrap()
            .iter()
            .map(|(_, p)| p.id.0)
            .collect();
        assert_eq!(ids, vec![3, 4], "new events go after the waiting ones");

        let small = tempfile::tempdir().unwrap();
        let full = Outbox::open(small.path(), 100).unwrap().push(&[pending(5)]);
        assert!(matches!(full, Err(Error::OutboxFull { .. })), "{full:?}");
    }
}
