//! Retention, enforced continuously and never by a full scan:
//! - versions per object: the writer reports each object it appended to; this thread keeps a
//!   count per object (counted once by a forward scan, then incremented) and, when an object
//!   passes its limit by a slack of 10 %, removes its oldest versions down to the limit — so
//!   the cost per append is a hash lookup, and deletions come in small groups;
//! - age: the log is keyed by time, so expired events are a prefix of it;
//! - total size: when the store is over its limit, the oldest events are removed until their
//!   stored size covers the excess (the files shrink as compaction catches up).
//!
//! Deletions go through the writer thread, which owns every mutation.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use logistis_api::EventId;

use super::writer::Command;
use super::{Error, Result, Shared, keys};

/// Events removed per delete command, so retention never holds the writer for long.
const DELETE_CHUNK: usize = 1_000;
/// Chunks per sweep, so a huge backlog is worked off over several sweeps.
const MAX_CHUNKS_PER_SWEEP: usize = 50;
/// Objects whose version count is remembered; past this the memory is cleared and counts
/// are rebuilt by scanning as objects are touched again.
const MAX_COUNTED_OBJECTS: usize = 200_000;

/// Per object prefix: how many versions it holds, and the first id that may still be live.
/// Trimmed versions stay in the memtable as tombstones until the next flush; starting scans
/// past them keeps a trim from walking every version ever removed.
#[derive(Default)]
struct VersionCounts {
    counts: HashMap<Vec<u8>, (usize, EventId)>,
}

pub(crate) fn start(
    shared: Arc<Shared>,
    writer: Sender<Command>,
    touched: Receiver<Vec<u8>>,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("logistis-store-retention".into())
        .spawn(move || run(&shared, &writer, &touched))
        .map_err(|e| Error::Io(fjall::Error::Io(e)))
}

fn run(shared: &Shared, writer: &Sender<Command>, touched: &Receiver<Vec<u8>>) {
    let interval = shared.settings.retention_interval;
    let mut last_sweep = Instant::now();
    // Deleted events free their space only when compaction rewrites the tables: after a size
    // sweep, wait a few intervals before measuring again instead of deleting twice.
    let mut size_cooldown_until = Instant::now();
    let mut counts = VersionCounts::default();
    loop {
        match touched.recv_timeout(interval) {
            Ok(first) => {
                // Count appends per object in this round (an object may appear many times).
                let mut appended: HashMap<Vec<u8>, usize> = HashMap::from([(first, 1)]);
                for prefix in touched.try_iter().take(10_000) {
                    *appended.entry(prefix).or_default() += 1;
                }
                let objects: HashSet<Vec<u8>> = appended
                    .into_iter()
                    .filter(|(prefix, added)| counts.add(shared, prefix, *added))
                    .map(|(prefix, _)| prefix)
                    .collect();
                for prefix in objects {
                    match trim_object(shared, writer, &prefix, &mut counts) {
                        Ok(()) => {}
                        // The writer stopped (shutdown): nothing more can be removed.
                        Err(Error::Closed) => return,
                        Err(error) => {
                            tracing::warn!(error = %error, "trimming an object's versions failed")
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_sweep.elapsed() >= interval {
            if let Err(error) = sweep_age(shared, writer) {
                tracing::warn!(error = %error, "removing expired events failed");
            }
            if Instant::now() >= size_cooldown_until {
                match sweep_size(shared, writer) {
                    Ok(true) => size_cooldown_until = Instant::now() + interval * 6,
                    Ok(false) => {}
                    Err(error) => {
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
    /// Note `added` new versions of an object; true when it should be trimmed now.
    fn add(&mut self, shared: &Shared, prefix: &[u8], added: usize) -> bool {
        let keep = shared.settings.max_versions_per_object as usize;
        if keep == 0 {
            return false;
        }
        let count = match self.counts.get_mut(prefix) {
            Some((count, _)) => {
                *count += added;
                *count
            }
            None => {
                if self.counts.len() >= MAX_COUNTED_OBJECTS {
                    self.counts.clear();
                }
                // Forward iteration: the memtable's skiplist walks forward in O(1) a step
                // (backwards, every step is a new search).
                let count = shared.ks.by_object.prefix(prefix).count();
                self.counts.insert(prefix.to_vec(), (count, EventId(0)));
                count
            }
        };
        count > keep + slack(keep)
    }
}

/// How far past its limit an object may go before it is trimmed back to the limit.
fn slack(keep: usize) -> usize {
    (keep / 10).max(1) - 1
}

fn trim_object(
    shared: &Shared,
    writer: &Sender<Command>,
    prefix: &[u8],
    counts: &mut VersionCounts,
) -> Result<()> {
    let keep = shared.settings.max_versions_per_object as usize;
    let Some(&(_, low)) = counts.counts.get(prefix) else {
        return Ok(());
    };
    // The cached count only says when to look: it can run ahead of the index (an append
    // counted by the first scan is reported again by the writer). What is deleted is decided
    // on the live entries, read from the low-water mark on (past the tombstones).
    let mut end = prefix.to_vec();
    end.extend_from_slice(&[0xff; 9]);
    let mut live = Vec::new();
    for guard in shared.ks.by_object.range(keys::with_id(prefix, low)..end) {
        if let Some(id) = keys::id_suffix(&guard.key()?) {
            live.push(id);
        }
    }
    let excess = live.len().saturating_sub(keep);
    let next_low = live[..excess].last().map_or(low, |id| EventId(id.0 + 1));
    let remaining = live.len() - excess;
    live.truncate(excess);
    delete(writer, live)?;
    counts.counts.insert(prefix.to_vec(), (remaining, next_low));
    Ok(())
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn sweep_age(shared: &Shared, writer: &Sender<Command>) -> Result<()> {
    let Some(retention) = shared.settings.retention else {
        return Ok(());
    };
    let cutoff =
        now_micros().saturating_sub(u64::try_from(retention.as_micros()).unwrap_or(u64::MAX));
    for _ in 0..MAX_CHUNKS_PER_SWEEP {
        let mut expired = Vec::new();
        for guard in shared
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
        delete(writer, expired)?;
        if !full {
            break;
        }
    }
    Ok(())
}

/// Returns whether anything was removed.
fn sweep_size(shared: &Shared, writer: &Sender<Command>) -> Result<bool> {
    let Some(max) = shared.settings.max_size_bytes else {
        return Ok(false);
    };
    let size = shared.db.disk_space()?;
    if size <= max {
        return Ok(false);
    }
    let excess = size - max;
    let mut freed = 0u64;
    let mut oldest = Vec::new();
    for guard in shared
        .ks
        .events
        .iter()
        .take(DELETE_CHUNK * MAX_CHUNKS_PER_SWEEP)
    {
        let (key, value) = guard.into_inner()?;
        let Some(id) = keys::id_suffix(&key) else {
            continue;
        };
        let objects = shared.ks.objects.size_of(id.to_be_bytes())?.unwrap_or(0);
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
