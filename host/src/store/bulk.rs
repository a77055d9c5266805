//! Bulk loading: a chunk of events written as sorted tables instead of through the journal.
//!
//! [`Store::append_bulk`](super::Store::append_bulk) hands the writer a whole chunk. The
//! writer encodes every event exactly as it does for an append (the same ids, deltas,
//! dictionaries and index entries: [`Puts`] is all the encoding sees of where they go), but
//! collects the entries per keyspace in [`Runs`] instead of a write batch. It then sorts each
//! keyspace's entries and hands them to fjall's ingestion, which writes tables directly and
//! registers them as one new level-0 run: no journal, no memtable, no flush. The writer
//! commits the dictionaries made on the way first (an ingested object may name one) and
//! ingests `events` after every other keyspace, so a failure midway leaves at most index
//! entries and objects that no event names, which every read skips.

use fjall::{Keyspace, OwnedWriteBatch};

/// Where the writer puts an event's entries: a write batch, or the runs of a bulk load.
pub(crate) trait Puts {
    fn put(&mut self, keyspace: &Keyspace, key: Vec<u8>, value: Vec<u8>);
}

impl Puts for OwnedWriteBatch {
    fn put(&mut self, keyspace: &Keyspace, key: Vec<u8>, value: Vec<u8>) {
        self.insert(keyspace, key, value);
    }
}

/// One key and its value.
type Entry = (Vec<u8>, Vec<u8>);

/// A bulk load's entries, per keyspace, in the order they were put.
#[derive(Default)]
pub(crate) struct Runs {
    runs: Vec<(Keyspace, Vec<Entry>)>,
}

impl Puts for Runs {
    fn put(&mut self, keyspace: &Keyspace, key: Vec<u8>, value: Vec<u8>) {
        match self
            .runs
            .iter_mut()
            .find(|(k, _)| k.name() == keyspace.name())
        {
            Some((_, entries)) => entries.push((key, value)),
            None => self.runs.push((keyspace.clone(), vec![(key, value)])),
        }
    }
}

impl Runs {
    /// Entries put so far, over every keyspace.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.runs.iter().map(|(_, entries)| entries.len()).sum()
    }

    /// Sort every keyspace's entries and ingest them, `last` (the keyspace that makes the
    /// others visible) after all the others. Of two entries with one key, the later put wins,
    /// as it would in a write batch.
    pub fn ingest(self, last: &Keyspace) -> Result<(), fjall::Error> {
        let mut runs = self.runs;
        runs.sort_by_key(|(keyspace, _)| keyspace.name() == last.name());
        for (keyspace, mut entries) in runs {
            sort_keeping_last(&mut entries);
            let mut ingestion = keyspace.start_ingestion()?;
            for (key, value) in entries {
                ingestion.write(key, value)?;
            }
            ingestion.finish()?;
        }
        Ok(())
    }
}

/// Sort by key and keep, of equal keys, the value put last.
fn sort_keeping_last(entries: &mut Vec<Entry>) {
    // Stable: equal keys stay in the order they were put.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    // `later` is removed when it repeats `kept`'s key; its value moves into `kept` first.
    entries.dedup_by(|later, kept| {
        let repeated = later.0 == kept.0;
        if repeated {
            std::mem::swap(&mut later.1, &mut kept.1);
        }
        repeated
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
        (key.as_bytes().to_vec(), value.as_bytes().to_vec())
    }

    #[test]
    fn sorting_keeps_the_value_put_last_of_a_repeated_key() {
        let mut entries = vec![
            entry("b", "1"),
            entry("a", "1"),
            entry("b", "2"),
            entry("c", "1"),
            entry("b", "3"),
        ];
        sort_keeping_last(&mut entries);
        assert_eq!(
            entries,
            vec![entry("a", "1"), entry("b", "3"), entry("c", "1")]
        );
    }

    #[test]
    fn runs_are_ingested_into_their_keyspaces_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let first = db
            .keyspace("first", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let second = db
            .keyspace("second", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        // Something already there: an ingested run lands above it.
        first.insert("k2", "old").unwrap();
        let mut runs = Runs::default();
        for n in (0..1000).rev() {
            runs.put(&first, format!("k{n:04}").into_bytes(), b"v".to_vec());
        }
        runs.put(&second, b"z".to_vec(), b"1".to_vec());
        runs.put(&first, b"k2".to_vec(), b"new".to_vec());
        assert_eq!(runs.len(), 1002);
        runs.ingest(&second).unwrap();
        assert_eq!(first.len().unwrap(), 1001);
        assert_eq!(&*first.get("k2").unwrap().unwrap(), b"new");
        assert_eq!(&*first.get("k0999").unwrap().unwrap(), b"v");
        assert_eq!(&*second.get("z").unwrap().unwrap(), b"1");
        let keys: Vec<_> = first
            .iter()
            .take(3)
            .map(|guard| guard.key().unwrap().to_vec())
            .collect();
        assert_eq!(
            keys,
            vec![b"k0000".to_vec(), b"k0001".to_vec(), b"k0002".to_vec()]
        );
    }
}
