//! The deadline sweep: twice a second, every pending event (the store's small `pending`
//! keyspace, oldest first) is checked. A pending event becomes `phantom` when its
//! resource's watch has been healthy since before it (or since it relisted after it) and
//! has caught up `--confirm-deadline` past that point without any watch event matching it:
//! a forged review, or a change denied after admission that no later change refuted. An
//! event whose resource turns out not to be watched loses its status (it cannot be
//! confirmed, so it is not pending).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use logistis_api::{Confirmation, EventId, Status};
use tokio_util::sync::CancellationToken;

use super::watch::Context;
use crate::store::{StatusRecord, StatusUpdate};

const INTERVAL: Duration = Duration::from_millis(500);
/// Pending ids read per store call.
const PAGE: usize = 256;

pub async fn run(context: Arc<Context>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(INTERVAL) => {}
        }
        if let Err(error) = sweep(&context).await {
            tracing::error!(error = %crate::telemetry::chain(&error), "confirmation: deadline sweep failed");
        }
    }
}

/// One pass over every pending event.
async fn sweep(context: &Arc<Context>) -> crate::store::Result<()> {
    let deadline = chrono::Duration::from_std(context.confirmer.settings().deadline)
        .unwrap_or(chrono::Duration::MAX);
    let mut after: Option<EventId> = None;
    loop {
        let store = context.store.clone();
        let ids = tokio::task::spawn_blocking(move || store.pending(after, PAGE))
            .await
            .map_err(|_| crate::store::Error::Closed)??;
        let Some(last) = ids.last().copied() else {
            return Ok(());
        };
        for id in ids {
            check(context, id, deadline).await?;
        }
        after = Some(last);
    }
}

/// What to do with one pending event now.
pub fn verdict(
    time: DateTime<Utc>,
    caught_up: Option<(DateTime<Utc>, DateTime<Utc>)>,
    deadline: chrono::Duration,
) -> bool {
    let Some((healthy_since, caught_up_to)) = caught_up else {
        return false;
    };
    let from = time.max(healthy_since);
    caught_up_to - from >= deadline
}

async fn check(
    context: &Arc<Context>,
    id: EventId,
    deadline: chrono::Duration,
) -> crate::store::Result<()> {
    let store = context.store.clone();
    let Some(event) = tokio::task::spawn_blocking(move || store.summary(id))
        .await
        .map_err(|_| crate::store::Error::Closed)??
    else {
        return Ok(());
    };
    let r = &event.resource;
    let key = (r.group.clone(), r.resource.clone());
    let update = match context
        .confirmer
        .is_watched(&r.group, &r.resource, &r.namespace)
    {
        None => return Ok(()),
        Some(false) => StatusUpdate { id, record: None },
        Some(true) => {
            let Some(state) = context.confirmer.resource(&key) else {
                return Ok(());
            };
            let now = Utc::now();
            if !verdict(event.time, state.caught_up(now), deadline) {
                return Ok(());
            }
            // Decide under the resource's lock, on the status as it is now: the watch may
            // have confirmed it meanwhile.
            let _guard = state.lock.lock().await;
            let store = context.store.clone();
            let current = tokio::task::spawn_blocking(move || store.status(id))
                .await
                .map_err(|_| crate::store::Error::Closed)??;
            if current.map(|r| r.status) != Some(Status::Pending) {
                return Ok(());
            }
            let update = StatusUpdate {
                id,
                record: Some(StatusRecord {
                    status: Status::Phantom,
                    confirmation: Some(Confirmation {
                        resource_version: None,
                        time: now,
                        reason: Some(format!(
                            "no watch event matched within the deadline ({}s)",
                            deadline.num_milliseconds() as f64 / 1000.0
                        )),
                    }),
                }),
            };
            context.confirmer.metrics.count(Status::Phantom);
            tracing::debug!(%id, "confirmation: deadline passed, phantom");
            context
                .store
                .set_statuses(vec![update])
                .await
                .map_err(|_| crate::store::Error::Closed)??;
            return Ok(());
        }
    };
    context
        .store
        .set_statuses(vec![update])
        .await
        .map_err(|_| crate::store::Error::Closed)??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn the_deadline_counts_from_when_the_watch_could_have_seen_it() {
        let five = chrono::Duration::seconds(5);
        // Healthy all along, caught up 6 s past the event: phantom.
        assert!(verdict(at(10), Some((at(0), at(16))), five));
        // Only 4 s past: wait.
        assert!(!verdict(at(10), Some((at(0), at(14))), five));
        // The watch relisted after the event: count from then.
        assert!(!verdict(at(10), Some((at(13), at(16))), five));
        // Not watching right now: never.
        assert!(!verdict(at(10), None, five));
    }
}
