//! Retention, enforced continuously and never by a full scan:
//! - versions per object: the writer reports each committed append (object and id); this
//!   thread keeps an exact count per object (counted once by a forward scan, then kept up to
//!   date) and, when an object passes its limit by a slack of 10 %, removes its oldest
//!   versions down to the limit, reading only those — so the cost per append is a hash
//!   lookup, and deletions come in small groups;
//! - age: the log is keyed by time, so expired events are a prefix of it;
//! - total size: when the store is over its limit, the oldest events are removed until their
//!   stored size covers the excess (the files shrink as compaction catches up).
//!
//! Deletions go through the writer thread, which owns every mutation.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use logistis_api::EventId;

use super::writer::{Command, Touched};
use super::{Error, Result, Shared, keys};

/// Events removed per delete command, so retention never holds the writer for long.
const DELETE_CHUNK: usize = 1_000;
/// Chunks per sweep, so a huge backlog is worked off over several sweeps.
const MAX_CHUNKS_PER_SWEEP: usize = 50;
/// After the first report of a round, wait this long for more: under load, retention then
/// wakes a few times a second instead of once per group commit (each wake-up costs more than
/// counting the appends it brings), and objects are trimmed at most this much later.
const ROUND_WINDOW: Duration = Duration::from_millis(50);
/// Objects whose version count is remembered; past this the memory is cleared and counts
/// are rebuilt by scanning as objects are touched again.
const MAX_COUNTED_OBJECTS: usize = 200_000;

/// What retention knows of one object.
#[derive(Debug, Clone, Copy)]
struct Versions {
    /// Live versions, exactly.
    live: usize,
    /// The first id that may still be live. Trimmed versions stay in the memtable as
    /// tombstones until the next flush; reading from here skips them.
    low: EventId,
    /// The newest id the counting scan saw: a report of an append up to this id is already
    /// counted (the writer reports after committing, so a scan can see an append before its
    /// report arrives).
    scanned_through: EventId,
}

/// Exact version counts per object prefix. Exact, because a trim deletes the oldest
/// `live - keep` versions without reading the others: a count that ran ahead would delete
/// versions that must stay. Other deletions (the age and size sweeps) clear the counts, and
/// the next append to an object counts it afresh.
#[derive(Default)]
struct VersionCounts {
    counts: HashMap<Vec<u8>, Versions>,
}

pub(crate) fn start(
    shared: Arc<Shared>,
    writer: Sender<Command>,
    touched: Receiver<Touched>,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("logistis-store-retention".into())
        .spawn(move || run(&shared, &writer, &touched))
        .map_err(|e| Error::Io(fjall::Error::Io(e)))
}

fn run(shared: &Shared, writer: &Sender<Command>, touched: &Receiver<Touched>) {
    let interval = shared.settings.retention_interval;
    let mut last_sweep = Instant::now();
    // Deleted events free their space only when compaction rewrites the tables: after a size
    // sweep, wait a few intervals before measuring again instead of deleting twice.
    let mut size_cooldown_until = Instant::now();
    let mut counts = VersionCounts::default();
    loop {
        match touched.recv_timeout(interval) {
            Ok(first) => {
                std::thread::sleep(ROUND_WINDOW.min(interval));
                // The appends of this round per object, in id order (an object may appear
                // many times).
                let mut appended: HashMap<Vec<u8>, Vec<EventId>> = HashMap::new();
                for (prefix, id) in std::iter::once(first).chain(touched.try_iter().take(100_000)) {
                    appended.entry(prefix).or_default().push(id);
                }
                let mut objects = Vec::new();
                for (prefix, ids) in appended {
                    match counts.add(shared, &prefix, &ids) {
                        Ok(true) => objects.push(prefix),
                        Ok(false) => {}
                        Err(error) => {
                            tracing::warn!(error = %error, "counting an object's versions failed")
                        }
                    }
                }
                for prefix in objects {
                    match trim_object(shared, writer, &prefix, &mut counts) {
                        Ok(()) => {}
                        // The writer stopped (shutdown): nothing more can be removed.
                        Err(Error::Closed) => return,
                        Err(error) => {
                            // Some versions may be gone: count this object afresh next time.
                            counts.counts.remove(&prefix);
                            tracing::warn!(error = %error, "trimming an object's versions failed")
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_sweep.elapsed() >= interval {
            match sweep_age(shared, writer) {
                Ok(0) => {}
                Ok(_) => counts.clear(),
                Err(error) => {
                    // Some may have gone before the error: the counts are no longer exact.
                    counts.clear();
                    tracing::warn!(error = %error, "removing expired events failed");
                }
            }
            if Instant::now() >= size_cooldown_until {
                match sweep_size(shared, writer) {
                    Ok(true) => {
                        counts.clear();
                        size_cooldown_until = Instant::now() + interval * 6;
                    }
                    Ok(false) => {}
                    Err(error) => {
                        counts.clear();
                        tracing::warn!(error = %error, "enforcing the store size limit failed");
                    }
                }
            }
            last_sweep = Instant::now();
        }
    }
}

fn delete(writer: &Sender<Command>, ids: Vec<EventId>) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let (reply, receiver) = crossbeam_channel::bounded(1);
    writer
        .send(Command::Delete(ids, reply))
        .map_err(|_| Error::Closed)?;
    receiver.recv().map_err(|_| Error::Closed)?
}

impl VersionCounts {
    fn clear(&mut self) {
        self.counts.clear();
    }

    /// Note committed appends to an object (`ids` in increasing order); true when it
    /// should be trimmed now.
    fn add(&mut self, shared: &Shared, prefix: &[u8], ids: &[EventId]) -> Result<bool> {
        let keep = shared.settings.max_versions_per_object as usize;
        if keep == 0 {
            return Ok(false);
        }
        let versions = match self.counts.get_mut(prefix) {
            Some(versions) => versions,
            None => {
                if self.counts.len() >= MAX_COUNTED_OBJECTS {
                    self.counts.clear();
                }
                // Forward iteration: the memtable's skiplist walks forward in O(1) a step
                // (backwards, every step is a new search).
                let mut live = 0;
                let mut scanned_through = EventId(0);
                for guard in shared.engine()?.ks.by_object.prefix(prefix) {
                    if let Some(id) = keys::id_suffix(&guard.key()?) {
                        live += 1;
                        scanned_through = id;
                    }
                }
                self.counts.entry(prefix.to_vec()).or_insert(Versions {
                    live,
                    low: EventId(0),
                    scanned_through,
                })
            }
        };
        versions.live += ids
            .iter()
            .filter(|id| **id > versions.scanned_through)
            .count();
        Ok(versions.live > keep + slack(keep))
    }
}

/// How far past its limit an object may go before it is trimmed back to the limit.
fn slack(keep: usize) -> usize {
    (keep / 10).max(1) - 1
}

/// Remove an object's oldest versions down to the limit, reading only those.
fn trim_object(
    shared: &Shared,
    writer: &Sender<Command>,
    prefix: &[u8],
    counts: &mut VersionCounts,
) -> Result<()> {
    let keep = shared.settings.max_versions_per_object as usize;
    let Some(&versions) = counts.counts.get(prefix) else {
        return Ok(());
    };
    let excess = versions.live.saturating_sub(keep);
    let mut end = prefix.to_vec();
    end.extend_from_slice(&[0xff; 9]);
    let mut oldest = Vec::with_capacity(excess);
    for guard in shared
        .engine()?
        .ks
        .by_object
        .range(keys::with_id(prefix, versions.low)..end)
        .take(excess)
    {
        if let Some(id) = keys::id_suffix(&guard.key()?) {
            oldest.push(id);
        }
    }
    let low = oldest.last().map_or(versions.low, |id| EventId(id.0 + 1));
    let removed = delete(writer, oldest)?;
    counts.counts.insert(
        prefix.to_vec(),
        Versions {
            live: versions
                .live
                .saturating_sub(usize::try_from(removed).unwrap_or(usize::MAX)),
            low,
            ..versions
        },
    );
    Ok(())
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Returns how many events were removed.
fn sweep_age(shared: &Shared, writer: &Sender<Command>) -> Result<u64> {
    let Some(retention) = shared.settings.retention else {
        return Ok(0);
    };
    let mut removed = 0;
    let cutoff =
        now_micros().saturating_sub(u64::try_from(retention.as_micros()).unwrap_or(u64::MAX));
    for _ in 0..MAX_CHUNKS_PER_SWEEP {
        let mut expired = Vec::new();
        for guard in shared
            .engine()?
            .ks
            .events
            .range(..cutoff.to_be_bytes())
            .take(DELETE_CHUNK)
        {
            if let Some(id) = keys::id_suffix(&guard.key()?) {
                expired.push(id);
            }
        }
        let full = expired.len() == DELETE_CHUNK;
        removed += delete(writer, expired)?;
        if !full {
            break;
        }
    }
    Ok(removed)
}

/// Returns whether anything was removed.
fn sweep_size(shared: &Shared, writer: &Sender<Command>) -> Result<bool> {
    let Some(max) = shared.settings.max_size_bytes else {
        return Ok(false);
    };
    let size = super::engine::allocated_bytes(&shared.dir);
    if size <= max {
        return Ok(false);
    }
    let excess = size - max;
    let mut freed = 0u64;
    let mut oldest = Vec::new();
    let engine = shared.engine()?;
    for guard in engine
        .ks
        .events
        .iter()
        .take(DELETE_CHUNK * MAX_CHUNKS_PER_SWEEP)
    {
        let (key, value) = guard.into_inner()?;
        let Some(id) = keys::id_suffix(&key) else {
            continue;
        };
        let objects = engine.ks.objects.size_of(id.to_be_bytes())?.unwrap_or(0);
        freed += value.len() as u64 + u64::from(objects);
        oldest.push(id);
        if freed >= excess {
            break;
        }
    }
    tracing::info!(
        size,
        max,
        events = oldest.len(),
        "store over its size limit: removing the oldest events"
    );
    for chunk in oldest.chunks(DELETE_CHUNK) {
        delete(writer, chunk.to_vec())?;
    }
    Ok(!oldest.is_empty())
}
