//! The comparison, pure: what the watch shows of one object against the newest recorded
//! events of that object, and what follows — which pending events are confirmed, which are
//! phantoms, and which changes nobody reviewed (observed).
//!
//! The rules (README, "Truth of the record"):
//! - a pending event is **confirmed** when the object as seen (noise stripped, Secrets
//!   redacted) equals the state that event produced; a pending DELETE when the object is
//!   gone or terminating (`deletionTimestamp` set). Older pending events that the object
//!   went past without reaching are phantoms;
//! - a pending UPDATE or DELETE is a **phantom** when the watch shows another state at a
//!   resourceVersion above the one it was based on (its `oldObject`'s): it could only have
//!   landed there, and it did not. A pending CREATE has no such base; it waits for its
//!   deadline (see [`super::deadline`]);
//! - what the watch shows that differs from the newest known state (confirmed, observed, or
//!   recorded without confirmation) is **observed**: a change no review explains.

use chrono::{DateTime, Utc};
use logistis_api::{Confirmation, Event, ObjectRef, Operation, Status};
use serde_json::Value;

use crate::admission::noise;
use crate::history::{Timeline, Version};
use crate::store::{StatusRecord, StatusUpdate};

/// What the watch (or a list) shows of one object.
#[derive(Debug, Clone)]
pub enum Seen {
    /// The object exists in this state (redacted, as served otherwise).
    Present { object: Value },
    /// The object is gone (a DELETED watch event, or absent from a relist). `last` is the
    /// final state when the watch said it (DELETED carries it).
    Gone { last: Option<Value> },
}

/// A change the watch saw that no review explains, to be recorded as `observed`.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub operation: Operation,
    /// The object after the change (CREATE, UPDATE), redacted, managedFields kept for the
    /// hint (the caller drops them before storing).
    pub object: Option<Value>,
    /// The newest known state before it (UPDATE, DELETE), noise stripped.
    pub old_object: Option<Value>,
}

/// What to do after one comparison.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub updates: Vec<StatusUpdate>,
    /// In order: a re-created object is an observed DELETE, then an observed CREATE.
    pub observed: Vec<Observed>,
}

impl Decision {
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty() && self.observed.is_empty()
    }
}

/// A resourceVersion as a number: etcd's revision. Kubernetes calls them opaque, and every
/// API server backed by etcd serves integers; anything else compares as unknown.
pub fn revision(resource_version: Option<&str>) -> Option<u64> {
    resource_version?.parse().ok()
}

fn resource_version_of(object: Option<&Value>) -> Option<&str> {
    object?.pointer("/metadata/resourceVersion")?.as_str()
}

fn uid_of(object: &Value) -> Option<&str> {
    object.pointer("/metadata/uid")?.as_str()
}

fn terminating(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// Compare `seen` (at `resource_version`) with `tail`: the object's newest events, oldest
/// first, back to the newest one that holds a full state (see [`super::tail`]).
pub fn compare(
    tail: Vec<Event>,
    seen: &Seen,
    resource_version: Option<&str>,
    now: DateTime<Utc>,
) -> Decision {
    // The base resourceVersion of every pending event, before the timeline takes the events.
    let bases: Vec<(logistis_api::EventId, Option<u64>)> = tail
        .iter()
        .filter(|e| e.status == Some(Status::Pending))
        .map(|e| {
            let base = match e.operation {
                Operation::Create => None,
                _ => revision(resource_version_of(e.old_object.as_ref())),
            };
            (e.id, base)
        })
        .collect();
    let timeline = Timeline::build(ObjectRef::default(), tail, 0);
    let seen_revision = revision(resource_version);
    let seen_state = match seen {
        Seen::Present { object } => Some(noise::strip(object)),
        Seen::Gone { .. } => None,
    };
    let matches = |version: &Version| match (seen, &seen_state) {
        (Seen::Present { object }, Some(state)) => {
            if version.summary.deleted {
                // A DELETE of an object with finalizers or a grace period: it stays,
                // terminating, before it goes.
                terminating(object)
                    && version.summary.object_uid.as_deref() == uid_of(object)
                    && version.summary.object_uid.is_some()
            } else {
                version.object == *state
            }
        }
        (Seen::Gone { .. }, _) => version.summary.deleted,
        _ => false,
    };
    let confirmation = |reason: &str| Confirmation {
        resource_version: resource_version.map(str::to_owned),
        time: now,
        reason: Some(reason.to_owned()),
    };
    let mut decision = Decision::default();
    let pending: Vec<&Version> = timeline
        .versions
        .iter()
        .filter(|v| v.summary.status == Some(Status::Pending))
        .collect();
    if let Some(position) = pending.iter().position(|v| matches(v)) {
        for skipped in &pending[..position] {
            decision.updates.push(StatusUpdate {
                id: skipped.summary.event_id,
                record: Some(StatusRecord {
                    status: Status::Phantom,
                    confirmation: Some(confirmation(
                        "the object reached a later recorded state without this one",
                    )),
                }),
            });
        }
        decision.updates.push(StatusUpdate {
            id: pending[position].summary.event_id,
            record: Some(StatusRecord {
                status: Status::Confirmed,
                confirmation: Some(confirmation("seen by the watch")),
            }),
        });
        return decision;
    }
    // No pending event explains what is seen: those that could only have landed here did not.
    for version in &pending {
        let base = bases
            .iter()
            .find(|(id, _)| *id == version.summary.event_id)
            .and_then(|(_, base)| *base);
        if let (Some(base), Some(seen)) = (base, seen_revision)
            && seen > base
        {
            decision.updates.push(StatusUpdate {
                id: version.summary.event_id,
                record: Some(StatusRecord {
                    status: Status::Phantom,
                    confirmation: Some(confirmation(
                        "the object reached another state at a later resourceVersion",
                    )),
                }),
            });
        }
    }
    // The newest state the record knows happened: not pending, not phantom.
    let known = timeline
        .versions
        .iter()
        .rev()
        .find(|v| v.summary.status != Some(Status::Pending));
    let known_alive = known.filter(|k| !k.summary.deleted);
    match (seen, &seen_state) {
        (Seen::Present { object }, Some(state)) => match known_alive {
            Some(known) if known.object == *state => {}
            Some(known)
                if known.summary.object_uid.is_some()
                    && uid_of(object).is_some()
                    && known.summary.object_uid.as_deref() != uid_of(object) =>
            {
                // Deleted and created again while nobody was looking.
                decision.observed.push(Observed {
                    operation: Operation::Delete,
                    object: None,
                    old_object: Some(known.object.clone()),
                });
                decision.observed.push(Observed {
                    operation: Operation::Create,
                    object: Some(object.clone()),
                    old_object: None,
                });
            }
            Some(known) => decision.observed.push(Observed {
                operation: Operation::Update,
                object: Some(object.clone()),
                old_object: Some(known.object.clone()),
            }),
            None => {
                let still_terminating = known.is_some_and(|k| {
                    k.summary.deleted
                        && terminating(object)
                        && k.summary.object_uid.as_deref() == uid_of(object)
                });
                if !still_terminating {
                    decision.observed.push(Observed {
                        operation: Operation::Create,
                        object: Some(object.clone()),
                        old_object: None,
                    });
                }
            }
        },
        (Seen::Gone { last }, _) => {
            if let Some(known) = known_alive {
                decision.observed.push(Observed {
                    operation: Operation::Delete,
                    object: None,
                    old_object: Some(last.clone().unwrap_or_else(|| known.object.clone())),
                });
            }
        }
        _ => {}
    }
    decision
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::history::testing::event;

    fn deployment(uid: &str, rv: &str, replicas: u64) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": uid, "resourceVersion": rv},
            "spec": {"replicas": replicas}, "status": {"readyReplicas": 1}
        })
    }

    fn with_status(mut event: Event, status: Option<Status>) -> Event {
        event.status = status;
        event
    }

    fn statuses(decision: &Decision) -> Vec<(logistis_api::EventId, Status)> {
        decision
            .updates
            .iter()
            .map(|u| (u.id, u.record.as_ref().unwrap().status))
            .collect()
    }

    fn present(object: Value) -> Seen {
        Seen::Present { object }
    }

    #[test]
    fn a_pending_update_is_confirmed_by_its_state_whatever_the_noise() {
        let create = with_status(
            event(
                Operation::Create,
                Some(deployment("u1", "10", 1)),
                None,
                "a",
            ),
            Some(Status::Confirmed),
        );
        let update = with_status(
            event(
                Operation::Update,
                Some(deployment("u1", "10", 3)),
                Some(deployment("u1", "10", 1)),
                "b",
            ),
            Some(Status::Pending),
        );
        let id = update.id;
        let mut seen = deployment("u1", "11", 3);
        seen["status"] = json!({"readyReplicas": 3});
        let decision = compare(vec![create, update], &present(seen), Some("11"), Utc::now());
        assert_eq!(statuses(&decision), [(id, Status::Confirmed)]);
        assert!(decision.observed.is_empty());
        let confirmation = decision.updates[0].record.clone().unwrap().confirmation;
        assert_eq!(
            confirmation.unwrap().resource_version.as_deref(),
            Some("11")
        );
    }

    #[test]
    fn another_state_past_the_base_makes_a_phantom_and_an_observed_change() {
        let create = with_status(
            event(
                Operation::Create,
                Some(deployment("u1", "10", 1)),
                None,
                "a",
            ),
            Some(Status::Confirmed),
        );
        let denied = with_status(
            event(
                Operation::Update,
                Some(deployment("u1", "10", 5)),
                Some(deployment("u1", "10", 1)),
                "mallory",
            ),
            Some(Status::Pending),
        );
        let id = denied.id;
        let decision = compare(
            vec![create, denied],
            &present(deployment("u1", "12", 2)),
            Some("12"),
            Utc::now(),
        );
        assert_eq!(statuses(&decision), [(id, Status::Phantom)]);
        assert_eq!(decision.observed.len(), 1);
        assert_eq!(decision.observed[0].operation, Operation::Update);
        assert_eq!(
            decision.observed[0].old_object.as_ref().unwrap()["spec"]["replicas"],
            1,
            "the diff starts from the last known state, not from the phantom"
        );
    }

    #[test]
    fn an_older_state_does_not_refute_a_change_based_on_a_newer_one() {
        let create = with_status(
            event(
                Operation::Create,
                Some(deployment("u1", "10", 1)),
                None,
                "a",
            ),
            Some(Status::Confirmed),
        );
        let update = with_status(
            event(
                Operation::Update,
                Some(deployment("u1", "12", 4)),
                Some(deployment("u1", "12", 2)),
                "b",
            ),
            Some(Status::Pending),
        );
        // The watch is still delivering rv 12 (the state the update was based on).
        let decision = compare(
            vec![create, update],
            &present(deployment("u1", "12", 2)),
            Some("12"),
            Utc::now(),
        );
        assert!(statuses(&decision).is_empty());
        assert_eq!(decision.observed.len(), 1, "rv 12 itself was not reviewed");
    }

    #[test]
    fn nothing_new_is_nothing_to_do() {
        let create = with_status(
            event(
                Operation::Create,
                Some(deployment("u1", "10", 1)),
                None,
                "a",
            ),
            Some(Status::Confirmed),
        );
        let decision = compare(
            vec![create],
            &present(deployment("u1", "15", 1)),
            Some("15"),
            Utc::now(),
        );
        assert!(decision.is_empty());
    }

    #[test]
    fn deletes_are_confirmed_by_absence_or_termination_and_absence_is_observed() {
        let create = with_status(
            event(
                Operation::Create,
                Some(deployment("u1", "10", 1)),
                None,
                "a",
            ),
            None,
        );
        let delete = with_status(
            event(
                Operation::Delete,
                None,
                Some(deployment("u1", "10", 1)),
                "b",
            ),
            Some(Status::Pending),
        );
        let id = delete.id;
        let gone = Seen::Gone { last: None };
        let decision = compare(
            vec![create.clone(), delete.clone()],
            &gone,
            None,
            Utc::now(),
        );
        assert_eq!(statuses(&decision), [(id, Status::Confirmed)]);
        let mut terminating = deployment("u1", "11", 1);
        terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let decision = compare(
            vec![create.clone(), delete],
            &present(terminating),
            Some("11"),
            Utc::now(),
        );
        assert_eq!(statuses(&decision), [(id, Status::Confirmed)]);
        let decision = compare(vec![create], &gone, None, Utc::now());
        assert_eq!(decision.observed[0].operation, Operation::Delete);
    }

    #[test]
    fn unknown_objects_and_recreations_are_observed() {
        let decision = compare(
            Vec::new(),
            &present(deployment("u1", "3", 1)),
            Some("3"),
            Utc::now(),
        );
        assert_eq!(decision.observed[0].operation, Operation::Create);
        let create = with_status(
            event(
                Operation::Create,
                Some(deployment("u1", "10", 1)),
                None,
                "a",
            ),
            Some(Status::Confirmed),
        );
        let decision = compare(
            vec![create],
            &present(deployment("u2", "20", 1)),
            Some("20"),
            Utc::now(),
        );
        let operations: Vec<_> = decision.observed.iter().map(|o| &o.operation).collect();
        assert_eq!(operations, [&Operation::Delete, &Operation::Create]);
    }

    #[test]
    fn a_pending_create_waits_for_its_deadline() {
        let create = with_status(
            event(Operation::Create, Some(deployment("u9", "", 1)), None, "a"),
            Some(Status::Pending),
        );
        let decision = compare(
            vec![create],
            &present(deployment("u1", "30", 2)),
            Some("30"),
            Utc::now(),
        );
        assert!(statuses(&decision).is_empty());
    }
}
