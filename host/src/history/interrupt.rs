//! Stopping a history answer that is no longer wanted: the client went away, or the query
//! ran past its time budget. The HTTP layer enters a [`Scope`] on the thread that does the
//! work; long loops here ask [`stopped`] now and then and give up with
//! [`super::Error::Stopped`], so a 100 000-line blame does not keep a core busy for a
//! client that left a minute ago.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

thread_local! {
    static CURRENT: RefCell<Option<(Instant, Arc<AtomicBool>)>> = const { RefCell::new(None) };
}

/// While alive, [`stopped`] on this thread says whether `cancelled` was set or `deadline`
/// passed.
#[derive(Debug)]
pub struct Scope(());

impl Scope {
    pub fn enter(deadline: Instant, cancelled: Arc<AtomicBool>) -> Scope {
        CURRENT.with(|current| *current.borrow_mut() = Some((deadline, cancelled)));
        Scope(())
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        CURRENT.with(|current| *current.borrow_mut() = None);
    }
}

/// Whether the work on this thread should stop (never, outside a [`Scope`]).
pub fn stopped() -> bool {
    CURRENT.with(|current| {
        current
            .borrow()
            .as_ref()
            .is_some_and(|(deadline, cancelled)| {
                cancelled.load(Ordering::Relaxed) || Instant::now() >= *deadline
            })
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn stops_when_cancelled_or_late_and_only_in_scope() {
        assert!(!stopped());
        let cancelled = Arc::new(AtomicBool::new(false));
        {
            let _scope = Scope::enter(Instant::now() + Duration::from_secs(60), cancelled.clone());
            assert!(!stopped());
            cancelled.store(true, Ordering::Relaxed);
            assert!(stopped());
        }
        assert!(!stopped());
        let _scope = Scope::enter(Instant::now(), Arc::new(AtomicBool::new(false)));
        assert!(stopped());
    }
}
