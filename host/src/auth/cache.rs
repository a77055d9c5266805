//! A small bounded cache with a time to live per entry, for authentication and authorization
//! decisions — as kube-apiserver's delegated authenticator and authorizer cache theirs
//! (10 s by default): a burst of requests from one user costs one review, a revoked grant
//! stops working within the TTL, and a flood of distinct callers cannot grow memory past
//! the capacity.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The value, if present and not expired at `now`.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .map(|(value, _)| value.clone())
    }

    /// Keep `value` until `now + ttl`. When full, expired entries go first, then the entry
    /// closest to expiry.
    pub fn insert(&self, key: K, value: V, ttl: Duration, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (_, expires)| *expires > now);
            if entries.len() >= self.capacity
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (value, now + ttl));
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_cache_stays_bounded() {
        let cache = TtlCache::new(2);
        let now = Instant::now();
        let ttl = Duration::from_secs(10);
        cache.insert("a", 1, ttl, now);
        assert_eq!(cache.get(&"a", now + Duration::from_secs(9)), Some(1));
        assert_eq!(cache.get(&"a", now + ttl), None, "expired");
        cache.insert("b", 2, ttl, now + Duration::from_secs(1));
        cache.insert("c", 3, ttl, now + Duration::from_secs(2));
        assert_eq!(cache.len(), 2, "bounded");
        assert_eq!(
            cache.get(&"a", now + Duration::from_secs(2)),
            None,
            "oldest evicted"
        );
        assert_eq!(cache.get(&"c", now + Duration::from_secs(2)), Some(3));
    }
}
