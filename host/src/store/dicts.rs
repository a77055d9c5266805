//! Compression dictionaries per kind: what a CREATE costs.
//!
//! A version of an object is stored as a delta on its previous version (see `objects`), but
//! the first version of an object — a CREATE, the first sight of one, a snapshot — has no
//! earlier version to lean on, and an object compressed alone pays for every key and every
//! repeated value of its kind again. So the writer keeps, per kind (group, kind,
//! subresource), a dictionary made of the first objects of that kind it stored whole: their
//! texts concatenated, used as zstd's raw-content dictionary. Another Deployment then costs
//! what distinguishes it from the Deployments before it.
//!
//! Dictionaries are immutable once written, stored in the `dicts` keyspace (id → kind and
//! content) in the same batch as the first event that uses none of them yet, and published
//! to compressors only after that batch committed: every record that names a dictionary can
//! read it. They are never deleted (retention removes events, not dictionaries); their
//! number and size are capped, so they cost at most [`MAX_DICTS`] × [`MAX_DICT_BYTES`] on disk
//! and in memory. Their content is object text as stored, so Secrets in it are redacted.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use logistis_api::Event;

/// Dictionaries at most (kinds with one): bounds disk and memory.
pub const MAX_DICTS: usize = 256;
/// Objects of a kind sampled into its dictionary.
pub const SAMPLES: usize = 4;
/// Bytes of one dictionary at most (zstd looks this far back cheaply at level 3).
pub const MAX_DICT_BYTES: usize = 16 * 1024;

/// One dictionary.
#[derive(Debug, Clone)]
pub struct Dict {
    pub id: u32,
    pub content: Arc<[u8]>,
}

/// The dictionaries of one database, by kind (for compressing) and by id (for reading).
#[derive(Debug, Default)]
pub struct Dictionaries {
    inner: RwLock<Maps>,
}

#[derive(Debug, Default)]
struct Maps {
    by_kind: HashMap<Vec<u8>, Dict>,
    by_id: HashMap<u32, Arc<[u8]>>,
}

/// The dictionary key of an event's objects: group, kind (lower-cased) and subresource — a
/// `deployments/scale` event carries a `Scale`, not a Deployment.
pub fn kind_key(event: &Event) -> Vec<u8> {
    super::keys::prefix(&[
        &event.resource.group,
        &event.resource.kind.to_ascii_lowercase(),
        &event.resource.subresource,
    ])
}

/// The `dicts` value: `[kind key length: u16 LE][kind key][content]`.
pub fn encode(kind: &[u8], content: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(2 + kind.len() + content.len());
    let len = u16::try_from(kind.len()).unwrap_or(u16::MAX);
    value.extend_from_slice(&len.to_le_bytes());
    value.extend_from_slice(&kind[..usize::from(len)]);
    value.extend_from_slice(content);
    value
}

fn decode(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = usize::from(u16::from_le_bytes(value.get(..2)?.try_into().ok()?));
    let kind = value.get(2..2 + len)?;
    Some((kind, &value[2 + len..]))
}

impl Dictionaries {
    /// Every dictionary of the `dicts` keyspace.
    pub fn load(keyspace: &fjall::Keyspace) -> Result<Dictionaries, fjall::Error> {
        let mut maps = Maps::default();
        for guard in keyspace.iter() {
            let (key, value) = guard.into_inner()?;
            let Some(id) = key.as_ref().try_into().ok().map(u32::from_be_bytes) else {
                continue;
            };
            let Some((kind, content)) = decode(&value) else {
                // Unreadable: records that name it report themselves as corrupt.
                continue;
            };
            let content: Arc<[u8]> = content.into();
            maps.by_id.insert(id, content.clone());
            maps.by_kind.insert(kind.to_vec(), Dict { id, content });
        }
        Ok(Dictionaries {
            inner: RwLock::new(maps),
        })
    }

    /// The dictionary to compress objects of this kind with, if it has one.
    pub fn for_kind(&self, kind: &[u8]) -> Option<Dict> {
        self.read().by_kind.get(kind).cloned()
    }

    /// The content of dictionary `id`, for reading a record that names it.
    pub fn content(&self, id: u32) -> Option<Arc<[u8]>> {
        self.read().by_id.get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// The id the next dictionary gets.
    pub fn next_id(&self) -> u32 {
        self.read().by_id.keys().max().map_or(1, |id| id + 1)
    }

    /// Make a committed dictionary available to compressors and readers.
    pub fn publish(&self, kind: Vec<u8>, dict: Dict) {
        let mut maps = self.inner.write().unwrap_or_else(|e| e.into_inner());
        maps.by_id.insert(dict.id, dict.content.clone());
        maps.by_kind.entry(kind).or_insert(dict);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// The writer's samples for kinds that have no dictionary yet (bounded: at most
/// [`MAX_DICTS`] kinds, [`MAX_DICT_BYTES`] each).
#[derive(Debug, Default)]
pub struct Sampler {
    pending: HashMap<Vec<u8>, (usize, Vec<u8>)>,
}

impl Sampler {
    /// Take `text`, a whole object of `kind` just stored without any base; returns the
    /// dictionary content once the kind has enough samples.
    pub fn sample(&mut self, dicts: &Dictionaries, kind: &[u8], text: &[u8]) -> Option<Vec<u8>> {
        if dicts.len() >= MAX_DICTS || dicts.for_kind(kind).is_some() {
            self.pending.remove(kind);
            return None;
        }
        if !self.pending.contains_key(kind) && self.pending.len() + dicts.len() >= MAX_DICTS {
            return None;
        }
        let (count, content) = self.pending.entry(kind.to_vec()).or_default();
        // The newest sample last: zstd reaches recent bytes with the cheapest offsets.
        content.extend_from_slice(text);
        if content.len() > MAX_DICT_BYTES {
            let cut = content.len() - MAX_DICT_BYTES;
            content.drain(..cut);
        }
        *count += 1;
        if *count < SAMPLES {
            return None;
        }
        self.pending.remove(kind).map(|(_, content)| content)
    }

    /// Forget everything sampled (the database was reopened).
    pub fn clear(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let value = encode(b"apps\0\0deployment\0\0", b"{\"kind\":\"Deployment\"}");
        assert_eq!(
            decode(&value),
            Some((
                b"apps\0\0deployment\0\0".as_slice(),
                b"{\"kind\":\"Deployment\"}".as_slice()
            ))
        );
        assert_eq!(decode(&[5]), None);
        assert_eq!(decode(&[9, 0, 1]), None);
    }

    #[test]
    fn a_kind_gets_its_dictionary_after_enough_samples_and_only_once() {
        let dicts = Dictionaries::default();
        let mut sampler = Sampler::default();
        for n in 1..SAMPLES {
            assert!(
                sampler
                    .sample(&dicts, b"k", format!("{n}").as_bytes())
                    .is_none()
            );
        }
        let content = sampler
            .sample(&dicts, b"k", b"last")
            .expect("enough samples");
        assert!(content.ends_with(b"last"));
        dicts.publish(
            b"k".to_vec(),
            Dict {
                id: dicts.next_id(),
                content: content.into(),
            },
        );
        assert_eq!(dicts.for_kind(b"k").map(|d| d.id), Some(1));
        assert!(dicts.content(1).is_some());
        for _ in 0..SAMPLES {
            assert!(sampler.sample(&dicts, b"k", b"more").is_none());
        }
        assert_eq!(dicts.next_id(), 2);
    }

    #[test]
    fn dictionaries_are_bounded() {
        let dicts = Dictionaries::default();
        let mut sampler = Sampler::default();
        let big = vec![b'x'; MAX_DICT_BYTES];
        for kind in 0..MAX_DICTS + 10 {
            let kind = format!("kind-{kind}").into_bytes();
            for _ in 0..SAMPLES {
                if let Some(content) = sampler.sample(&dicts, &kind, &big) {
                    assert!(content.len() <= MAX_DICT_BYTES);
                    let id = dicts.next_id();
                    dicts.publish(
                        kind.clone(),
                        Dict {
                            id,
                            content: content.into(),
                        },
                    );
                }
            }
        }
        assert_eq!(dicts.len(), MAX_DICTS);
        assert!(sampler.pending.is_empty());
    }
}
