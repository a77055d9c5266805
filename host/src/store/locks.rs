//! The `locks` keyspace: (namespace, name) → the lock as the locks module serialised it.
//!
//! The store keeps locks as opaque bytes — what a lock means belongs to `crate::locks` — and
//! writes them through the writer thread like everything else, fsynced before the call
//! returns whatever the durability mode: a lock acknowledged to its creator must survive a
//! crash, and locks change rarely enough that one fsync each costs nothing.

use super::{Error, Fjall, Result, keys, writer};

/// The key of one lock (a cluster-scope lock has the namespace `""`).
fn lock_key(namespace: &str, name: &str) -> Vec<u8> {
    keys::prefix(&[namespace, name])
}

impl Fjall {
    /// Every stored lock, in (namespace, name) order.
    pub fn locks(&self) -> Result<Vec<Vec<u8>>> {
        let mut values = Vec::new();
        for guard in self.shared().engine()?.ks.locks.iter() {
            let (_, value) = guard.into_inner()?;
            values.push(value.to_vec());
        }
        Ok(values)
    }

    /// Durably store (or replace) one lock.
    pub fn put_lock(&self, namespace: &str, name: &str, value: Vec<u8>) -> Result<()> {
        self.lock_command(lock_key(namespace, name), Some(value))
    }

    /// Durably remove one lock (nothing happens when there is none).
    pub fn delete_lock(&self, namespace: &str, name: &str) -> Result<()> {
        self.lock_command(lock_key(namespace, name), None)
    }

    fn lock_command(&self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<()> {
        let (reply, receiver) = crossbeam_channel::bounded(1);
        self.writer_sender()
            .send(writer::Command::Lock(key, value, reply))
            .map_err(|_| Error::Closed)?;
        receiver.recv().map_err(|_| Error::Closed)?
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Store, StoreSettings};

    #[test]
    fn locks_are_kept_across_a_reopen_and_removed_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreSettings::default()).unwrap();
        assert!(
            store
                .insert_lock("shop", "freeze", b"one".to_vec())
                .unwrap()
        );
        assert!(store.insert_lock("", "nodes", b"two".to_vec()).unwrap());
        assert!(
            store
                .insert_lock("shop", "freeze", b"three".to_vec())
                .unwrap()
        );
        store.close();

        let store = Store::open(dir.path(), StoreSettings::default()).unwrap();
        assert_eq!(
            store.locks().unwrap(),
            vec![b"two".to_vec(), b"three".to_vec()]
        );
        store.delete_lock("shop", "freeze").unwrap();
        store.delete_lock("shop", "absent").unwrap();
        store.close();

        let store = Store::open(dir.path(), StoreSettings::default()).unwrap();
        assert_eq!(store.locks().unwrap(), vec![b"two".to_vec()]);
        store.close();
    }
}
