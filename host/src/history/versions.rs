//! Versions: one object's stored events, oldest first, become its versions — each the full
//! object after that event, noise stripped — grouped into generations by object uid.
//!
//! Events are not all full objects: a `scale` subresource event carries an
//! `autoscaling/v1 Scale`, so its version is the previous one with `spec.replicas` replaced;
//! a DELETE's version is the object as deleted (its `oldObject`); an UPDATE that lost its
//! object is rebuilt by applying its patch to the previous version. Events that are not a
//! state of the object (CONNECT, stored dry-runs, subresources carrying another kind such as
//! `pods/eviction`) keep their number but make no version.

use logistis_api::{Event, GenerationSummary, ObjectRef, Operation, VersionList, VersionSummary};
use serde_json::Value;

use super::Error;
use super::path::{FieldPath, Segment};
use crate::admission::noise;

/// At most this many changed paths are listed per version: a version that rewrote a whole
/// object would otherwise make the version list as large as the object.
pub(super) const MAX_CHANGED_PATHS: usize = 50;
/// Paths named in the one-line summary before "and N more".
const SUMMARY_PATHS: usize = 3;

/// One version: what produced it and the object it produced.
#[derive(Debug, Clone)]
pub struct Version {
    pub summary: VersionSummary,
    /// The object after the event, noise stripped (for a DELETE: as it was deleted).
    pub object: Value,
}

/// Every stored version of one object, oldest first.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub object: ObjectRef,
    /// Older events of this object that retention removed.
    pub trimmed_events: u64,
    pub versions: Vec<Version>,
}

impl Timeline {
    /// Build the versions from `events` (oldest first, as the store returns them), of which
    /// `trimmed_events` older ones were removed by retention. `object` names the object as
    /// addressed; its kind is replaced by the kind as recorded, when there is one.
    ///
    /// Phantoms (changes the cluster never made) keep their number but are not versions:
    /// see [`Timeline::build_with_phantoms`] to show them.
    pub fn build(object: ObjectRef, events: Vec<Event>, trimmed_events: u64) -> Timeline {
        Timeline::build_with_phantoms(object, events, trimmed_events, false)
    }

    /// [`Timeline::build`], with phantoms as versions when `include_phantoms` (each then
    /// applied as if it had happened: what the record claimed).
    pub fn build_with_phantoms(
        mut object: ObjectRef,
        events: Vec<Event>,
        trimmed_events: u64,
        include_phantoms: bool,
    ) -> Timeline {
        if let Some(event) = events.first() {
            object.kind = event.resource.kind.clone();
        }
        let mut versions: Vec<Version> = Vec::with_capacity(events.len());
        let mut generation = 0;
        for (position, mut event) in (1..).zip(events) {
            let number = trimmed_events + position;
            // A dry run, or an attempt a lock denied, never changed the object.
            if (!include_phantoms && event.status == Some(logistis_api::Status::Phantom))
                || event.dry_run
                || event.denied.is_some()
                || !matches!(
                    event.operation,
                    Operation::Create | Operation::Update | Operation::Delete
                )
            {
                continue;
            }
            let previous = versions.last();
            let Some((state, deleted)) = rebuild(&mut event, previous.map(|v| &v.object)) else {
                continue;
            };
            let starts_generation = previous.is_none_or(|previous| {
                previous.summary.deleted
                    || (event.operation == Operation::Create && event.resource.subresource.is_empty())
                    || matches!((&previous.summary.object_uid, &event.object_uid), (Some(a), Some(b)) if a != b)
            });
            if starts_generation {
                generation += 1;
            }
            let base = previous.filter(|_| !starts_generation);
            let object_uid = event
                .object_uid
                .clone()
                .or_else(|| base.and_then(|b| b.summary.object_uid.clone()));
            let changed_paths = base.map_or_else(Vec::new, |b| changed_paths(&b.object, &state));
            let summary = summarize(
                &event.operation,
                deleted,
                base.is_some(),
                number == 1,
                &changed_paths,
            );
            versions.push(Version {
                summary: VersionSummary {
                    version: number,
                    generation,
                    object_uid,
                    event_id: event.id,
                    time: event.time,
                    user: event.user,
                    operation: event.operation,
                    subresource: event.resource.subresource,
                    field_manager: event.field_manager,
                    deleted,
                    changed_paths,
                    summary,
                    status: event.status,
                },
                object: state,
            });
        }
        Timeline {
            object,
            trimmed_events,
            versions,
        }
    }

    /// The number of the oldest stored version (or of the next one, when there is none).
    pub fn first_version(&self) -> u64 {
        self.versions
            .first()
            .map_or(self.trimmed_events + 1, |v| v.summary.version)
    }

    /// Version `number`, or an error naming the versions that exist.
    pub fn get(&self, number: u64) -> Result<&Version, Error> {
        self.position(number).map(|index| &self.versions[index])
    }

    /// The index of version `number` in [`Timeline::versions`].
    pub fn position(&self, number: u64) -> Result<usize, Error> {
        self.versions
            .binary_search_by_key(&number, |v| v.summary.version)
            .map_err(|_| Error::NoSuchVersion {
                version: number,
                range: self.range_text(),
            })
    }

    /// The newest version.
    pub fn newest(&self) -> Result<&Version, Error> {
        self.versions.last().ok_or(Error::NoVersions)
    }

    /// The versions of one generation, oldest first.
    pub fn generation(&self, generation: u32) -> &[Version] {
        let start = self
            .versions
            .partition_point(|v| v.summary.generation < generation);
        let end = self
            .versions
            .partition_point(|v| v.summary.generation <= generation);
        &self.versions[start..end]
    }

    /// `GET …/versions`.
    pub fn list(&self) -> VersionList {
        VersionList {
            object: self.object.clone(),
            first_version: self.first_version(),
            trimmed_events: self.trimmed_events,
            generations: self.generations(),
            items: self.versions.iter().map(|v| v.summary.clone()).collect(),
        }
    }

    fn generations(&self) -> Vec<GenerationSummary> {
        let mut generations: Vec<GenerationSummary> = Vec::new();
        for version in &self.versions {
            let summary = &version.summary;
            match generations.last_mut() {
                Some(current) if current.generation == summary.generation => {
                    current.last_version = summary.version;
                    current.deleted = summary.deleted;
                    if current.object_uid.is_none() {
                        current.object_uid.clone_from(&summary.object_uid);
                    }
                }
                _ => generations.push(GenerationSummary {
                    generation: summary.generation,
                    object_uid: summary.object_uid.clone(),
                    first_version: summary.version,
                    last_version: summary.version,
                    deleted: summary.deleted,
                }),
            }
        }
        generations
    }

    fn range_text(&self) -> String {
        match (self.versions.first(), self.versions.last()) {
            (Some(first), Some(last)) => {
                format!("{}..{}", first.summary.version, last.summary.version)
            }
            _ => "none".to_owned(),
        }
    }
}

/// The object after `event`, noise stripped, and whether the event deleted it; `None` when
/// the event is not a state of the object or cannot be rebuilt (a scale with no version
/// before it, an UPDATE with neither object nor previous version).
fn rebuild(event: &mut Event, previous: Option<&Value>) -> Option<(Value, bool)> {
    // The objects are moved out of the event, not cloned: a history answer rebuilds every
    // version of the object on each request.
    let stripped = |object: Value| {
        let mut object = object;
        noise::strip_in_place(&mut object);
        object
    };
    if event.operation == Operation::Delete {
        let state = event
            .old_object
            .take()
            .map(stripped)
            .or_else(|| previous.cloned())?;
        return Some((state, true));
    }
    if event.resource.subresource == "scale" {
        // A Scale's `spec.replicas` is omitted when zero (omitempty in autoscaling/v1).
        let replicas = event
            .object
            .as_ref()?
            .pointer("/spec/replicas")
            .cloned()
            .unwrap_or(Value::from(0));
        let mut state = previous?.clone();
        state
            .as_object_mut()?
            .entry("spec")
            .or_insert_with(|| Value::Object(Default::default()))
            .as_object_mut()?
            .insert("replicas".to_owned(), replicas);
        return Some((state, false));
    }
    match event.object.take() {
        Some(object) if is_state_of(&object, &event.resource.kind) => {
            Some((stripped(object), false))
        }
        Some(_) => None,
        None => {
            let mut state = previous?.clone();
            let patch: json_patch::Patch = serde_json::from_value(event.patch.take()).ok()?;
            json_patch::patch(&mut state, &patch).ok()?;
            Some((state, false))
        }
    }
}

/// Whether `object` is the object itself rather than another kind sent through a
/// subresource (a `Binding`, an `Eviction`, a `TokenRequest`). Objects without `kind` are
/// taken as the object: the API server sometimes omits type meta.
fn is_state_of(object: &Value, kind: &str) -> bool {
    object
        .get("kind")
        .and_then(Value::as_str)
        .is_none_or(|k| k.eq_ignore_ascii_case(kind))
}

/// Dotted paths of the fields that differ between two versions (list elements by index),
/// at most `MAX_CHANGED_PATHS`. Walks both trees without building a patch: this runs for
/// every version of every history answer.
pub fn changed_paths(before: &Value, after: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_changes(before, after, &mut FieldPath::default(), &mut out);
    out
}

fn walk_changes(before: &Value, after: &Value, at: &mut FieldPath, out: &mut Vec<String>) {
    let changed = |at: &mut FieldPath, segment: Segment, out: &mut Vec<String>| {
        if out.len() < MAX_CHANGED_PATHS {
            at.segments.push(segment);
            out.push(at.to_string());
            at.segments.pop();
        }
    };
    match (before, after) {
        (Value::Object(old), Value::Object(new)) => {
            for (key, new_value) in new {
                match old.get(key) {
                    // Most of an object is the same from one version to the next: comparing
                    // costs no allocation, descending clones every key on the way.
                    Some(old_value) if old_value == new_value => {}
                    Some(old_value) => {
                        at.segments.push(Segment::Key(key.clone()));
                        walk_changes(old_value, new_value, at, out);
                        at.segments.pop();
                    }
                    None => changed(at, Segment::Key(key.clone()), out),
                }
            }
            for key in old.keys().filter(|key| !new.contains_key(*key)) {
                changed(at, Segment::Key(key.clone()), out);
            }
        }
        (Value::Array(old), Value::Array(new)) => {
            for index in 0..old.len().max(new.len()) {
                match (old.get(index), new.get(index)) {
                    (Some(old_value), Some(new_value)) if old_value == new_value => {}
                    (Some(old_value), Some(new_value)) => {
                        at.segments.push(Segment::Index(index));
                        walk_changes(old_value, new_value, at, out);
                        at.segments.pop();
                    }
                    _ => changed(at, Segment::Index(index), out),
                }
            }
        }
        _ if before == after => {}
        _ => {
            if out.len() < MAX_CHANGED_PATHS {
                out.push(at.to_string());
            }
        }
    }
}

fn summarize(
    operation: &Operation,
    deleted: bool,
    has_base: bool,
    is_first_ever: bool,
    changed_paths: &[String],
) -> String {
    if deleted {
        return "deleted".to_owned();
    }
    if !has_base {
        return if *operation == Operation::Create {
            "created".to_owned()
        } else if is_first_ever {
            "first recorded version (created before recording began)".to_owned()
        } else {
            "first stored version (older versions removed by retention)".to_owned()
        };
    }
    if changed_paths.is_empty() {
        return "no change (noise only)".to_owned();
    }
    let shown = changed_paths
        .iter()
        .take(SUMMARY_PATHS)
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if changed_paths.len() > SUMMARY_PATHS {
        let more = changed_paths.len() - SUMMARY_PATHS;
        let plus = if changed_paths.len() == MAX_CHANGED_PATHS {
            "+"
        } else {
            ""
        };
        format!("{shown} and {more}{plus} more")
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::history::testing::{event, scale_event};

    fn deployment(uid: &str, replicas: u64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": uid, "resourceVersion": "9", "generation": 4},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web", "image": image}]}}},
            "status": {"readyReplicas": 1}
        })
    }

    #[test]
    fn numbers_versions_from_the_trimmed_count_and_skips_connects() {
        let events = vec![
            event(
                Operation::Update,
                Some(deployment("u1", 1, "nginx:1")),
                None,
                "alice",
            ),
            event(Operation::Connect, None, None, "bob"),
            event(
                Operation::Update,
                Some(deployment("u1", 2, "nginx:1")),
                None,
                "carol",
            ),
        ];
        let timeline = Timeline::build(ObjectRef::default(), events, 4);
        let numbers: Vec<u64> = timeline
            .versions
            .iter()
            .map(|v| v.summary.version)
            .collect();
        assert_eq!(numbers, [5, 7]);
        assert_eq!(timeline.first_version(), 5);
        assert_eq!(timeline.versions[0].object.get("status"), None);
        assert_eq!(
            timeline.versions[0]
                .object
                .pointer("/metadata/resourceVersion"),
            None
        );
        assert!(timeline.versions[0].summary.summary.contains("retention"));
        assert_eq!(
            timeline.versions[1].summary.changed_paths,
            ["spec.replicas"]
        );
        assert!(matches!(
            timeline.get(6),
            Err(Error::NoSuchVersion { version: 6, .. })
        ));
    }

    #[test]
    fn scale_events_change_replicas_of_the_previous_version() {
        let events = vec![
            event(
                Operation::Create,
                Some(deployment("u1", 1, "nginx:1")),
                None,
                "alice",
            ),
            scale_event(3, "hpa"),
            scale_event(0, "bob"),
        ];
        let timeline = Timeline::build(ObjectRef::default(), events, 0);
        let replicas: Vec<&Value> = timeline
            .versions
            .iter()
            .map(|v| v.object.pointer("/spec/replicas").unwrap())
            .collect();
        assert_eq!(replicas, [&json!(1), &json!(3), &json!(0)]);
        assert_eq!(timeline.versions[2].summary.subresource, "scale");
        assert_eq!(timeline.versions[2].summary.user.username, "bob");
    }

    #[test]
    fn a_scale_without_a_previous_version_is_not_a_version() {
        let timeline = Timeline::build(ObjectRef::default(), vec![scale_event(3, "hpa")], 0);
        assert!(timeline.versions.is_empty());
        assert!(matches!(timeline.newest(), Err(Error::NoVersions)));
    }

    #[test]
    fn recreation_starts_a_new_generation() {
        let old = deployment("u1", 1, "nginx:1");
        let events = vec![
            event(Operation::Create, Some(old.clone()), None, "alice"),
            event(Operation::Delete, None, Some(old), "bob"),
            event(
                Operation::Create,
                Some(deployment("u2", 5, "nginx:2")),
                None,
                "carol",
            ),
            event(
                Operation::Update,
                Some(deployment("u2", 6, "nginx:2")),
                None,
                "dave",
            ),
        ];
        let timeline = Timeline::build(ObjectRef::default(), events, 0);
        let list = timeline.list();
        assert_eq!(list.generations.len(), 2);
        assert_eq!(list.generations[0].object_uid.as_deref(), Some("u1"));
        assert!(list.generations[0].deleted);
        assert_eq!(
            (
                list.generations[0].first_version,
                list.generations[0].last_version
            ),
            (1, 2)
        );
        assert_eq!(list.generations[1].object_uid.as_deref(), Some("u2"));
        assert_eq!(
            (
                list.generations[1].first_version,
                list.generations[1].last_version
            ),
            (3, 4)
        );
        assert_eq!(list.items[1].summary, "deleted");
        assert_eq!(list.items[2].summary, "created");
        assert_eq!(list.items[2].changed_paths, Vec::<String>::new());
        assert_eq!(timeline.generation(2).len(), 2);
        // The deleted version is the object as it was deleted.
        assert_eq!(timeline.versions[1].object, timeline.versions[0].object);
    }

    #[test]
    fn an_update_without_object_is_rebuilt_from_its_patch() {
        let mut lost = event(Operation::Update, None, None, "bob");
        lost.patch = json!([{"op": "replace", "path": "/spec/replicas", "value": 7}]);
        let events = vec![
            event(
                Operation::Create,
                Some(deployment("u1", 1, "nginx:1")),
                None,
                "alice",
            ),
            lost,
        ];
        let timeline = Timeline::build(ObjectRef::default(), events, 0);
        assert_eq!(
            timeline.versions[1].object.pointer("/spec/replicas"),
            Some(&json!(7))
        );
    }

    #[test]
    fn other_kinds_through_subresources_are_not_versions() {
        let mut eviction = event(
            Operation::Create,
            Some(json!({"kind": "Eviction", "metadata": {"name": "web"}})),
            None,
            "bob",
        );
        eviction.resource.subresource = "eviction".into();
        let events = vec![
            event(
                Operation::Create,
                Some(deployment("u1", 1, "nginx:1")),
                None,
                "alice",
            ),
            eviction,
        ];
        let timeline = Timeline::build(ObjectRef::default(), events, 0);
        assert_eq!(timeline.versions.len(), 1);
        assert_eq!(timeline.list().generations.len(), 1);
    }

    #[test]
    fn summary_names_a_few_paths_then_counts() {
        let paths: Vec<String> = (0..5).map(|i| format!("p{i}")).collect();
        assert_eq!(
            summarize(&Operation::Update, false, true, false, &paths),
            "p0, p1, p2 and 2 more"
        );
        assert_eq!(
            summarize(&Operation::Update, false, true, false, &[]),
            "no change (noise only)"
        );
    }
}
