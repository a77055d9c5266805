//! What all plugin instances together may use: one memory budget shared by every instance
//! of every plugin.
//!
//! `memory-mb` caps one instance; without a total, 64 concurrent reviews each growing an
//! instance to its cap take the pod far past its limit (512 MB × concurrency). Every
//! linear-memory growth is charged here before it happens and given back when the instance
//! is dropped, so a growth — or a new instance — past the budget is refused (the call fails
//! with reason `memory_budget` and its on-error verdict applies) instead of the pod being
//! OOM-killed. The default is half of the container's memory limit (cgroup v2 or v1) when
//! there is one, else [`DEFAULT_BUDGET_BYTES`].

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The budget when the container has no memory limit.
pub const DEFAULT_BUDGET_BYTES: u64 = 512 << 20;

/// Bytes of linear memory all live plugin instances may hold together.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
}

impl MemoryBudget {
    pub fn new(limit: u64) -> MemoryBudget {
        MemoryBudget {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// No total (`logistis plugin run|bench`: one plugin, one instance at a time).
    pub fn unlimited() -> MemoryBudget {
        MemoryBudget::new(u64::MAX)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Take `bytes` from the budget; false (and nothing taken) when they do not fit.
    pub fn try_charge(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    pub fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

/// The default budget: half the container's memory limit, else [`DEFAULT_BUDGET_BYTES`].
pub fn default_budget_bytes() -> u64 {
    container_memory_limit(Path::new("/sys/fs/cgroup")).map_or(DEFAULT_BUDGET_BYTES, |l| l / 2)
}

/// The memory limit of the cgroup this process runs in (v2 `memory.max`, or v1
/// `memory/memory.limit_in_bytes`), `None` when unlimited or unknown.
pub fn container_memory_limit(cgroup_root: &Path) -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(cgroup_root.join(path)).ok();
    let parse = |text: String| text.trim().parse::<u64>().ok();
    let limit = match read("memory.max") {
        // cgroup v2; "max" = no limit.
        Some(text) => parse(text)?,
        None => read("memory/memory.limit_in_bytes").and_then(parse)?,
    };
    // cgroup v1 says "unlimited" with a huge page-aligned number.
    (limit < 1 << 60).then_some(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_fit_the_budget_or_take_nothing() {
        let budget = MemoryBudget::new(100);
        assert!(budget.try_charge(60));
        assert!(!budget.try_charge(41));
        assert_eq!(budget.used(), 60);
        assert!(budget.try_charge(40));
        budget.release(70);
        assert_eq!(budget.used(), 30);
        budget.release(1000);
        assert_eq!(budget.used(), 0);
        assert!(MemoryBudget::unlimited().try_charge(u64::MAX));
    }

    #[test]
    fn reads_the_cgroup_limit_in_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(container_memory_limit(dir.path()), None);
        std::fs::create_dir(dir.path().join("memory")).unwrap();
        std::fs::write(
            dir.path().join("memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        assert_eq!(container_memory_limit(dir.path()), None);
        std::fs::write(
            dir.path().join("memory/memory.limit_in_bytes"),
            "536870912\n",
        )
        .unwrap();
        assert_eq!(container_memory_limit(dir.path()), Some(512 << 20));
        std::fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(container_memory_limit(dir.path()), None);
        std::fs::write(dir.path().join("memory.max"), "1073741824\n").unwrap();
        assert_eq!(container_memory_limit(dir.path()), Some(1 << 30));
    }
}
