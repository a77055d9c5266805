//! The mutable part of an event: its confirmation status. It lives in its own two small
//! keyspaces so that the immutable summary is never rewritten:
//! - `status`: id → `{"status": …, "confirmation": {…}}` (JSON, tens of bytes);
//! - `pending`: id → empty, one entry per event still waiting for the watch — what the
//!   confirmer sweeps for deadlines, so it never scans the log.
//!
//! Both are written by the writer thread only: an event's first status in the batch that
//! appends it, later changes as [`StatusUpdate`]s, group-committed (one batch and, in sync
//! mode, one fsync for every update queued together). Reads merge the record into the
//! [`Event`] (`status`, `confirmation`).

use logistis_api::{Confirmation, Event, EventId, Status};
use serde::{Deserialize, Serialize};

use super::{Error, Fjall, Result, keys};

/// One event's status as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRecord {
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<Confirmation>,
}

impl StatusRecord {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a status always serialises")
    }

    pub fn decode(id: EventId, value: &[u8]) -> Result<StatusRecord> {
        serde_json::from_slice(value).map_err(|source| Error::Decode { id, source })
    }

    /// Copy the record into the event it belongs to.
    pub fn apply_to(self, event: &mut Event) {
        event.status = Some(self.status);
        event.confirmation = self.confirmation;
    }
}

/// A change of one event's status (from the confirmer). `record: None` removes the status:
/// the event turned out not to be confirmable (its resource is not watched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    pub id: EventId,
    pub record: Option<StatusRecord>,
}

impl Fjall {
    /// Queue status changes; the receiver resolves once they are committed (and, in sync
    /// mode, on disk). Updates for events that retention removed meanwhile are dropped.
    pub fn set_statuses(
        &self,
        updates: Vec<StatusUpdate>,
    ) -> tokio::sync::oneshot::Receiver<Result<()>> {
        let (reply, receiver) = tokio::sync::oneshot::channel();
        if let Err(crossbeam_channel::SendError(super::writer::Command::SetStatus(_, reply))) = self
            .writer
            .send(super::writer::Command::SetStatus(updates, reply))
        {
            let _ = reply.send(Err(Error::Closed));
        }
        receiver
    }

    /// The stored status of one event, if it has one.
    pub fn status(&self, id: EventId) -> Result<Option<StatusRecord>> {
        self.shared()
            .engine()?
            .ks
            .status
            .get(id.to_be_bytes())?
            .map(|value| StatusRecord::decode(id, &value))
            .transpose()
    }

    /// Merge the stored status (if any) into `event`.
    pub(crate) fn merge_status(&self, event: &mut Event) -> Result<()> {
        if let Some(record) = self.status(event.id)? {
            record.apply_to(event);
        }
        Ok(())
    }

    /// Events still `pending`, oldest first, strictly after `after`, at most `limit`.
    pub fn pending(&self, after: Option<EventId>, limit: usize) -> Result<Vec<EventId>> {
        let start = after.map_or(0, |id| id.0.saturating_add(1));
        let mut ids = Vec::new();
        let engine = self.shared().engine()?;
        for guard in engine.ks.pending.range(start.to_be_bytes()..) {
            if ids.len() >= limit {
                break;
            }
            if let Some(id) = keys::id_suffix(&guard.key()?) {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use logistis_api::{Operation, ResourceRef, UserInfo};
    use serde_json::json;

    use super::*;
    use crate::admission::NewEvent;
    use crate::store::{Appended, EventFilter, ObjectKey, Scan, Store, StoreSettings};

    fn new_event(name: &str, status: Option<Status>) -> NewEvent {
        NewEvent {
            event: Event {
                id: EventId(0),
                cluster: String::new(),
                uid: format!("uid-{name}"),
                time: Utc::now(),
                operation: Operation::Update,
                user: UserInfo::default(),
                resource: ResourceRef {
                    group: "apps".into(),
                    version: "v1".into(),
                    kind: "Deployment".into(),
                    resource: "deployments".into(),
                    subresource: String::new(),
                    namespace: "shop".into(),
                    name: name.into(),
                },
                object_uid: None,
                field_manager: None,
                dry_run: false,
                patch: json!([]),
                options: None,
                object: Some(json!({"metadata": {"name": name}})),
                old_object: None,
                status,
                confirmation: None,
                observed_by: None,
                denied: None,
            },
            dedupe_key: None,
        }
    }

    fn append(store: &Store, event: NewEvent) -> EventId {
        match store.append_blocking(event).unwrap() {
            Appended::Recorded(id) => id,
            Appended::Duplicate(id) => panic!("duplicate {id}"),
        }
    }

    fn statuses(store: &Store, filter: EventFilter) -> Vec<(EventId, Option<Status>)> {
        let page = store
            .list_events(
                &filter,
                Scan {
                    limit: 100,
                    before: None,
                    budget: Scan::DEFAULT_BUDGET,
                },
            )
            .unwrap();
        page.items.iter().map(|e| (e.id, e.status)).collect()
    }

    #[test]
    fn statuses_are_written_with_the_event_changed_after_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreSettings::default()).unwrap();
        let pending = append(&store, new_event("web", Some(Status::Pending)));
        let plain = append(&store, new_event("api", None));
        let observed = append(&store, new_event("db", Some(Status::Observed)));
        assert_eq!(store.pending(None, 10).unwrap(), [pending]);
        // The summary never carries the status: it comes from its own keyspace.
        assert_eq!(
            store.summary(pending).unwrap().unwrap().status,
            Some(Status::Pending)
        );
        assert_eq!(store.get_event(plain).unwrap().unwrap().status, None);

        let confirmation = Confirmation {
            resource_version: Some("42".into()),
            time: Utc::now(),
            reason: None,
        };
        store
            .set_statuses(vec![StatusUpdate {
                id: pending,
                record: Some(StatusRecord {
                    status: Status::Confirmed,
                    confirmation: Some(confirmation.clone()),
                }),
            }])
            .blocking_recv()
            .unwrap()
            .unwrap();
        assert!(store.pending(None, 10).unwrap().is_empty());
        let event = store.get_event(pending).unwrap().unwrap();
        assert_eq!(event.status, Some(Status::Confirmed));
        assert_eq!(event.confirmation, Some(confirmation));
        store.close();

        let store = Store::open(dir.path(), StoreSettings::default()).unwrap();
        let (events, _) = store
            .object_events(&ObjectKey {
                group: "apps".into(),
                kind: "deployment".into(),
                namespace: "shop".into(),
                name: "web".into(),
            })
            .unwrap();
        assert_eq!(events[0].status, Some(Status::Confirmed));
        let only = |statuses: Vec<Status>| EventFilter {
            status: Some(statuses),
            ..EventFilter::default()
        };
        assert_eq!(
            statuses(&store, only(vec![Status::Confirmed, Status::Observed])),
            [
                (observed, Some(Status::Observed)),
                (pending, Some(Status::Confirmed))
            ]
        );
        assert!(statuses(&store, only(vec![Status::Phantom])).is_empty());
        // Removing a status (not confirmable) and updating a removed event are harmless.
        store
            .set_statuses(vec![
                StatusUpdate {
                    id: observed,
                    record: None,
                },
                StatusUpdate {
                    id: EventId(7),
                    record: None,
                },
            ])
            .blocking_recv()
            .unwrap()
            .unwrap();
        assert_eq!(store.status(observed).unwrap(), None);
        assert_eq!(store.status(EventId(7)).unwrap(), None);
    }

    #[test]
    fn an_event_removed_takes_its_status_and_pending_mark_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreSettings::default()).unwrap();
        let ids = vec![
            append(&store, new_event("web", Some(Status::Pending))),
            append(&store, new_event("api", None)),
            append(&store, new_event("db", Some(Status::Observed))),
        ];
        let kept = append(&store, new_event("cache", Some(Status::Pending)));
        let (reply, receiver) = crossbeam_channel::bounded(1);
        store
            .fjall()
            .writer
            .send(super::super::writer::Command::Delete(ids, reply))
            .unwrap();
        assert_eq!(receiver.recv().unwrap().unwrap(), 3);
        let engine = store.shared().engine().unwrap();
        let keys = |keyspace: &fjall::Keyspace| -> Vec<EventId> {
            keyspace
                .iter()
                .map(|guard| {
                    EventId(u64::from_be_bytes(
                        guard.key().unwrap()[..8].try_into().unwrap(),
                    ))
                })
                .collect()
        };
        assert_eq!(keys(&engine.ks.status), [kept]);
        assert_eq!(keys(&engine.ks.pending), [kept]);
        assert_eq!(store.pending(None, 10).unwrap(), [kept]);
        drop(engine);
        store.close();
    }

    #[test]
    fn object_names_walk_each_object_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreSettings::default()).unwrap();
        for name in ["web", "web", "api", "web-2", "api"] {
            append(&store, new_event(name, None));
        }
        let names = store.object_names("apps", "Deployment", None, 10).unwrap();
        let names: Vec<&str> = names.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["api", "web", "web-2"]);
        let page = store
            .object_names("apps", "deployment", Some(("shop", "api")), 1)
            .unwrap();
        assert_eq!(page, [("shop".to_owned(), "web".to_owned())]);
        assert!(
            store
                .object_names("", "ConfigMap", None, 10)
                .unwrap()
                .is_empty()
        );
    }
}
