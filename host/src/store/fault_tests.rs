//! Write failures on a real, small filesystem (a tmpfs mounted by the test; skipped where
//! mounting is not allowed): the store says it refuses writes, loses nothing it
//! acknowledged, and takes writes again by itself once there is space.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use logistis_api::{Event, EventId, Operation, ResourceRef, UserInfo};
use serde_json::json;

use super::*;
use crate::admission::NewEvent;

/// A tmpfs of a given size, unmounted on drop.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().to_owned();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(Tmpfs { _dir: dir, path })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// An event whose objects do not compress (so they fill the disk).
fn big_event(n: u64) -> NewEvent {
    let mut state = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let noise: String = (0..40_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    NewEvent {
        event: Event {
            id: EventId(0),
            cluster: String::new(),
            uid: format!("fill-{n}"),
            time: Utc::now(),
            operation: Operation::Create,
            user: UserInfo {
                username: "alice".into(),
                ..UserInfo::default()
            },
            resource: ResourceRef {
                group: String::new(),
                version: "v1".into(),
                kind: "ConfigMap".into(),
                resource: "configmaps".into(),
                subresource: String::new(),
                namespace: "shop".into(),
                name: format!("cm-{n}"),
            },
            object_uid: None,
            field_manager: None,
            dry_run: false,
            patch: json!([]),
            options: None,
            object: Some(
                json!({"kind": "ConfigMap", "metadata": {"name": format!("cm-{n}")}, "data": {"blob": noise}}),
            ),
            old_object: None,
            status: None,
            confirmation: None,
            observed_by: None,
            denied: None,
        },
        dedupe_key: None,
    }
}

fn fill(path: &Path, bytes: usize) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5au8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        if file.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n;
    }
    let _ = file.sync_all();
}

#[test]
fn a_full_disk_refuses_writes_then_recovers_by_itself() {
    let Some(tmpfs) = Tmpfs::mount("48m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let dir = tmpfs.path.join("store");
    let store = Store::open(
        &dir,
        StoreSettings {
            memory_budget_bytes: 8 << 20,
            retention_interval: Duration::from_millis(50),
            ..StoreSettings::default()
        },
    )
    .unwrap();
    assert!(store.health().accepts_writes());
    // Leave the store a few MB.
    let free = store.volume_free_bytes().unwrap();
    let filler = tmpfs.path.join("filler");
    fill(
        &filler,
        usize::try_from(free).unwrap().saturating_sub(6 << 20),
    );

    let mut acknowledged = Vec::new();
    let mut failed = None;
    for n in 0..2_000 {
        match store.append_blocking(big_event(n)) {
            Ok(Appended::Recorded(id)) => acknowledged.push(id),
            Ok(other) => panic!("{other:?}"),
            Err(error) => {
                failed = Some(error);
                break;
            }
        }
    }
    let failed = failed.expect("the disk never filled");
    assert!(!acknowledged.is_empty(), "nothing fit: {failed}");
    assert!(!store.health().accepts_writes(), "{failed}");
    assert!(store.health().reason().is_some());
    // Later writes fail fast and say why; reads still answer.
    let refused = store.append_blocking(big_event(9_999)).unwrap_err();
    assert!(matches!(refused, Error::NotWriting(_)), "{refused}");
    for id in &acknowledged {
        assert!(
            store.get_event(*id).unwrap().is_some(),
            "{id} readable while full"
        );
    }
    assert_eq!(
        store
            .health()
            .transitions
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // Space comes back: the store takes writes again without a restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        match store.append_blocking(big_event(10_000)) {
            Ok(Appended::Recorded(id)) => break id,
            Ok(other) => panic!("{other:?}"),
            Err(error) => {
                assert!(Instant::now() < deadline, "never recovered: {error}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    acknowledged.push(id);
    assert!(store.health().accepts_writes());
    assert_eq!(
        store
            .health()
            .transitions
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    for id in &acknowledged {
        assert!(
            store.get_event(*id).unwrap().is_some(),
            "{id} after recovery"
        );
    }
    assert!(store.shutdown(), "the store is flushed");

    let store = Store::open(&dir, StoreSettings::default()).unwrap();
    for id in &acknowledged {
        assert!(
            store.get_event(*id).unwrap().is_some(),
            "{id} after reopening"
        );
    }
    store.close();
}

#[test]
fn the_size_on_disk_is_allocated_blocks() {
    let (dir, store) = {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreSettings::default()).unwrap();
        (dir, store)
    };
    let before = store.disk_space();
    for n in 0..20 {
        store.append_blocking(big_event(n)).unwrap();
    }
    let after = store.disk_space();
    // The journal is a preallocated sparse file: its apparent size says nothing.
    assert!(after > before, "{before} → {after}");
    assert!(after < 64 << 20, "{after} bytes for 20 events of 40 KB");
    assert!(store.volume_free_bytes().unwrap() > 0);
    store.close();
    drop(dir);
}
