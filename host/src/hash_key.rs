//! The per-installation key for Secret hashes: 32 random bytes in `DATA_DIR/secret-hash.key`
//! (hex, mode 0600), created on first start. It lives beside the store on purpose: hashes are
//! only comparable within one installation, and backing up the data dir keeps them usable.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rand::RngCore as _;

pub const FILE_NAME: &str = "secret-hash.key";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the Secret hashing key {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the Secret hashing key {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the Secret hashing key {path} is not 64 hex digits")]
    Malformed { path: PathBuf },
}

/// Load the key from `data_dir`, creating it on first start.
pub fn load_or_create(data_dir: &Path) -> Result<[u8; 32], Error> {
    let path = data_dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(text.trim()).ok_or(Error::Malformed { path }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => create(&path),
        Err(source) => Err(Error::Read { path, source }),
    }
}

fn parse(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(key)
}

fn create(path: &Path) -> Result<[u8; 32], Error> {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let create_error = |source| Error::Create {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(create_error)?;
    file.write_all(hex.as_bytes()).map_err(create_error)?;
    file.sync_all().map_err(create_error)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        assert_eq!(first, load_or_create(dir.path()).unwrap());
        std::fs::write(dir.path().join(FILE_NAME), "zz").unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(Error::Malformed { .. })
        ));
    }
}
