//! Backups of a running store: every keyspace read from one fjall snapshot (a consistent
//! view across keyspaces; the writer keeps committing meanwhile), written as a stream of
//! records that [`restore`] turns into a new store directory. The stream copies the
//! keyspaces as they are, whatever their layout, so a backup restores into the same version
//! of Logistis that took it; a newer version upgrades the restored store as it would any
//! store it opens.
//!
//! Format: the line `LOGISTIS-BACKUP 1`, then records — `K` name (a keyspace starts), `E`
//! key value (an entry of the current keyspace), `F` name bytes (a file of the data dir, such
//! as the Secret hashing key, added by `logistis store backup`, never by the server) — each
//! field a big-endian u32 length and its bytes, and last `Z` with the number of entries and
//! the SHA-256 of everything before it, so that a truncated or damaged copy is refused.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use fjall::{Database, KeyspaceCreateOptions, Readable};
use sha2::{Digest, Sha256};

use super::Fjall;

pub const MAGIC: &[u8] = b"LOGISTIS-BACKUP 1\n";
/// Entries per write batch when restoring.
const RESTORE_BATCH: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot read the store")]
    Store(#[from] fjall::Error),
    #[error("the store is reopening after a failed write: try again in a moment")]
    Reopening,
    #[error(
        "the events are in a database: back it up with its own tools (pg_dump, a managed service's snapshots)"
    )]
    Database,
    #[error("cannot write the backup")]
    Write(#[source] io::Error),
    #[error("cannot read the backup")]
    Read(#[source] io::Error),
    #[error("not a Logistis backup (it does not start with `LOGISTIS-BACKUP 1`)")]
    NotABackup,
    #[error("the backup is damaged or incomplete: {0}")]
    Corrupt(&'static str),
    #[error("{path} already holds a store: restore into an empty or new directory")]
    NotEmpty { path: PathBuf },
    #[error("cannot create the store in {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: fjall::Error,
    },
    #[error("cannot write {path}")]
    WriteFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What a backup or restore copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub keyspaces: usize,
    pub entries: u64,
    /// Files of the data dir (name, size).
    pub files: Vec<(String, usize)>,
}

/// Writes records and keeps the running checksum.
pub struct BackupWriter<W: Write> {
    out: W,
    hash: Sha256,
    entries: u64,
}

impl<W: Write> BackupWriter<W> {
    pub fn new(mut out: W) -> Result<Self, BackupError> {
        out.write_all(MAGIC).map_err(BackupError::Write)?;
        let mut hash = Sha256::new();
        hash.update(MAGIC);
        Ok(BackupWriter {
            out,
            hash,
            entries: 0,
        })
    }

    fn bytes(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        self.hash.update(bytes);
        self.out.write_all(bytes).map_err(BackupError::Write)
    }

    fn field(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| BackupError::Write(io::Error::other("a record field over 4 GiB")))?;
        self.bytes(&len.to_be_bytes())?;
        self.bytes(bytes)
    }

    pub fn keyspace(&mut self, name: &str) -> Result<(), BackupError> {
        self.bytes(b"K")?;
        self.field(name.as_bytes())
    }

    pub fn entry(&mut self, key: &[u8], value: &[u8]) -> Result<(), BackupError> {
        self.entries += 1;
        self.bytes(b"E")?;
        self.field(key)?;
        self.field(value)
    }

    pub fn file(&mut self, name: &str, bytes: &[u8]) -> Result<(), BackupError> {
        self.bytes(b"F")?;
        self.field(name.as_bytes())?;
        self.field(bytes)
    }

    /// The end record; the stream is complete once it is written.
    pub fn finish(mut self) -> Result<W, BackupError> {
        self.bytes(b"Z")?;
        let entries = self.entries.to_be_bytes();
        self.bytes(&entries)?;
        let digest = self.hash.finalize_reset();
        self.out.write_all(&digest).map_err(BackupError::Write)?;
        self.out.flush().map_err(BackupError::Write)?;
        Ok(self.out)
    }
}

/// One record read back.
#[derive(Debug, PartialEq, Eq)]
pub enum Record {
    Keyspace(String),
    Entry(Vec<u8>, Vec<u8>),
    File(String, Vec<u8>),
}

/// Reads records, checking the checksum at the end.
pub struct BackupReader<R: Read> {
    input: R,
    hash: Sha256,
    entries: u64,
    done: bool,
}

impl<R: Read> BackupReader<R> {
    pub fn new(mut input: R) -> Result<Self, BackupError> {
        let mut magic = vec![0; MAGIC.len()];
        match input.read_exact(&mut magic) {
            Ok(()) if magic == MAGIC => {}
            Ok(()) => return Err(BackupError::NotABackup),
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(BackupError::NotABackup);
            }
            Err(error) => return Err(BackupError::Read(error)),
        }
        let mut hash = Sha256::new();
        hash.update(MAGIC);
        Ok(BackupReader {
            input,
            hash,
            entries: 0,
            done: false,
        })
    }

    fn exact(&mut self, len: usize, hashed: bool) -> Result<Vec<u8>, BackupError> {
        let mut buffer = vec![0; len];
        self.input.read_exact(&mut buffer).map_err(|error| {
            if error.kind() == io::ErrorKind::UnexpectedEof {
                BackupError::Corrupt("it ends before its end record")
            } else {
                BackupError::Read(error)
            }
        })?;
        if hashed {
            self.hash.update(&buffer);
        }
        Ok(buffer)
    }

    fn field(&mut self) -> Result<Vec<u8>, BackupError> {
        let len = self.exact(4, true)?;
        let len = u32::from_be_bytes(len.try_into().expect("four bytes")) as usize;
        self.exact(len, true)
    }

    fn text(&mut self) -> Result<String, BackupError> {
        String::from_utf8(self.field()?).map_err(|_| BackupError::Corrupt("a name is not UTF-8"))
    }

    /// The next record; `None` after a valid end record.
    pub fn next_record(&mut self) -> Result<Option<Record>, BackupError> {
        if self.done {
            return Ok(None);
        }
        let tag = self.exact(1, true)?;
        match tag[0] {
            b'K' => Ok(Some(Record::Keyspace(self.text()?))),
            b'E' => {
                self.entries += 1;
                let key = self.field()?;
                let value = self.field()?;
                Ok(Some(Record::Entry(key, value)))
            }
            b'F' => {
                let name = self.text()?;
                Ok(Some(Record::File(name, self.field()?)))
            }
            b'Z' => {
                let count = self.exact(8, true)?;
                let expected = self.hash.clone().finalize();
                let digest = self.exact(32, false)?;
                if digest[..] != expected[..] {
                    return Err(BackupError::Corrupt("its checksum does not match"));
                }
                if u64::from_be_bytes(count.try_into().expect("eight bytes")) != self.entries {
                    return Err(BackupError::Corrupt("it holds fewer entries than it says"));
                }
                self.done = true;
                Ok(None)
            }
            _ => Err(BackupError::Corrupt("an unknown record")),
        }
    }
}

impl Fjall {
    /// Writes every keyspace, from one snapshot, as backup records (without the end record:
    /// the caller may add files first).
    pub fn backup_into<W: Write>(
        &self,
        writer: &mut BackupWriter<W>,
    ) -> Result<Summary, BackupError> {
        let engine = self.shared().engine().map_err(|_| BackupError::Reopening)?;
        let db = &engine.db;
        let snapshot = db.snapshot();
        let mut names: Vec<String> = db
            .list_keyspace_names()
            .iter()
            .map(|name| name.to_string())
            .collect();
        names.sort();
        let mut summary = Summary::default();
        for name in names {
            let keyspace = db.keyspace(&name, KeyspaceCreateOptions::default)?;
            writer.keyspace(&name)?;
            summary.keyspaces += 1;
            for guard in snapshot.iter(&keyspace) {
                let (key, value) = guard.into_inner()?;
                writer.entry(&key, &value)?;
                summary.entries += 1;
            }
        }
        Ok(summary)
    }
}

/// Whether `dir` exists with something in it.
fn holds_something(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// Creates the store in `dir` (which must not hold one) from a backup; files of the data
/// dir (the Secret hashing key) go to `data_dir`.
pub fn restore<R: Read>(
    input: R,
    store_dir: &Path,
    data_dir: &Path,
) -> Result<Summary, BackupError> {
    if holds_something(store_dir) {
        return Err(BackupError::NotEmpty {
            path: store_dir.to_owned(),
        });
    }
    let mut reader = BackupReader::new(input)?;
    // Written into a directory beside the target and moved into place once complete, so
    // that a damaged backup never leaves half a store where the server would open it.
    let parent = store_dir.parent().unwrap_or(Path::new("."));
    let staging = parent.join(format!(".restore-{}", std::process::id()));
    let result = restore_into(&mut reader, &staging);
    let (summary, files) = match result {
        Ok(done) => done,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(error);
        }
    };
    if store_dir.exists() {
        std::fs::remove_dir(store_dir).map_err(|source| BackupError::WriteFile {
            path: store_dir.to_owned(),
            source,
        })?;
    }
    std::fs::rename(&staging, store_dir).map_err(|source| BackupError::WriteFile {
        path: store_dir.to_owned(),
        source,
    })?;
    for (name, bytes) in files {
        let path = data_dir.join(&name);
        write_private(&path, &bytes).map_err(|source| BackupError::WriteFile { path, source })?;
    }
    Ok(summary)
}

type Files = Vec<(String, Vec<u8>)>;

fn restore_into<R: Read>(
    reader: &mut BackupReader<R>,
    dir: &Path,
) -> Result<(Summary, Files), BackupError> {
    let create = |source| BackupError::Create {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|source| BackupError::WriteFile {
        path: dir.to_owned(),
        source,
    })?;
    let mut files = Vec::new();
    // The store's keyspaces first, with the store's options (compression, memtable sizes):
    // fjall keeps a keyspace's options from its creation, and the entries below would
    // otherwise create them with fjall's defaults.
    drop(super::Engine::open(dir, &super::StoreSettings::default()).map_err(create)?);
    let db = Database::builder(dir).open().map_err(create)?;
    let mut current = None;
    let mut batch = db.batch();
    let mut pending = 0;
    let mut summary = Summary::default();
    while let Some(record) = reader.next_record()? {
        match record {
            Record::Keyspace(name) => {
                if name.is_empty() || name.len() > 255 {
                    return Err(BackupError::Corrupt(
                        "a keyspace name fjall does not accept",
                    ));
                }
                current = Some(
                    db.keyspace(&name, KeyspaceCreateOptions::default)
                        .map_err(create)?,
                );
                summary.keyspaces += 1;
            }
            Record::Entry(key, value) => {
                let keyspace = current
                    .as_ref()
                    .ok_or(BackupError::Corrupt("an entry before any keyspace"))?;
                batch.insert(keyspace, key, value);
                pending += 1;
                summary.entries += 1;
                if pending == RESTORE_BATCH {
                    batch.commit().map_err(create)?;
                    batch = db.batch();
                    pending = 0;
                }
            }
            Record::File(name, bytes) => {
                if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                    return Err(BackupError::Corrupt("a file name with a path"));
                }
                summary.files.push((name.clone(), bytes.len()));
                files.push((name, bytes));
            }
        }
    }
    batch.commit().map_err(create)?;
    db.persist(fjall::PersistMode::SyncAll).map_err(create)?;
    Ok((summary, files))
}

/// Written readable by the owner only: the Secret hashing key.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn stream(records: impl FnOnce(&mut BackupWriter<Vec<u8>>)) -> Vec<u8> {
        let mut writer = BackupWriter::new(Vec::new()).unwrap();
        records(&mut writer);
        writer.finish().unwrap()
    }

    #[test]
    fn records_read_back_and_damage_is_refused() {
        let bytes = stream(|w| {
            w.keyspace("events").unwrap();
            w.entry(b"k1", b"v1").unwrap();
            w.file("secret-hash.key", b"key").unwrap();
        });
        let mut reader = BackupReader::new(&bytes[..]).unwrap();
        assert_eq!(
            reader.next_record().unwrap(),
            Some(Record::Keyspace("events".into()))
        );
        assert_eq!(
            reader.next_record().unwrap(),
            Some(Record::Entry(b"k1".to_vec(), b"v1".to_vec()))
        );
        assert!(matches!(
            reader.next_record().unwrap(),
            Some(Record::File(..))
        ));
        assert_eq!(reader.next_record().unwrap(), None);

        let read_all = |bytes: &[u8]| -> Result<(), BackupError> {
            let mut reader = BackupReader::new(bytes)?;
            while reader.next_record()?.is_some() {}
            Ok(())
        };
        let truncated = &bytes[..bytes.len() - 10];
        assert!(matches!(read_all(truncated), Err(BackupError::Corrupt(_))));
        let mut flipped = bytes.clone();
        let at = MAGIC.len() + 8;
        flipped[at] ^= 1;
        assert!(read_all(&flipped).is_err());
        assert!(matches!(
            read_all(b"PK\x03\x04 a zip"),
            Err(BackupError::NotABackup)
        ));
    }

    #[test]
    fn a_backup_of_a_store_restores_every_keyspace() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), Default::default()).unwrap();
        store
            .save_cursor("sink:audit", logistis_api::EventId(42))
            .unwrap();
        let mut writer = BackupWriter::new(Vec::new()).unwrap();
        let taken = store.backup_into(&mut writer).unwrap();
        writer.file("secret-hash.key", b"0123").unwrap();
        let bytes = writer.finish().unwrap();
        assert!(taken.keyspaces >= 5 && taken.entries >= 1, "{taken:?}");

        let target = dir.path().join("restored");
        let restored = restore(&bytes[..], &target.join("store"), &target).unwrap();
        assert_eq!(
            (restored.keyspaces, restored.entries),
            (taken.keyspaces, taken.entries)
        );
        assert_eq!(
            std::fs::read(target.join("secret-hash.key")).unwrap(),
            b"0123"
        );
        let reopened = Store::open(&target.join("store"), Default::default()).unwrap();
        assert_eq!(
            reopened.cursor("sink:audit").unwrap(),
            Some(logistis_api::EventId(42))
        );

        // Never over an existing store.
        let again = restore(&bytes[..], &target.join("store"), &target);
        assert!(
            matches!(again, Err(BackupError::NotEmpty { .. })),
            "{again:?}"
        );
    }
}
