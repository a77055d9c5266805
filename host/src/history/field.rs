//! One field through time: every version in which it changed ("who set replicas to 0?"),
//! and bisect — the first version at which it took a given value ("which change introduced
//! this image?").
//!
//! Each generation is followed on its own: a re-created object's first version changes the
//! field from nothing, and a DELETE removes it. The first stored version counts as setting
//! the field when it has it, since nothing older is known.

use logistis_api::{BisectAnswer, FieldChange, FieldHistory};
use serde_json::Value;

use super::Error;
use super::path::FieldPath;
use super::versions::{Timeline, Version};

/// The field's value at `version`, as history sees it: a deleted object has no fields.
fn value_at(path: &FieldPath, version: &Version) -> Option<Value> {
    if version.summary.deleted {
        return None;
    }
    path.lookup(&version.object).cloned()
}

/// Every version paired with the field's value before it (within its generation) and at it.
fn transitions<'a>(
    timeline: &'a Timeline,
    path: &'a FieldPath,
) -> impl Iterator<Item = (&'a Version, Option<Value>, Option<Value>)> + 'a {
    let mut previous: Option<(u32, Option<Value>)> = None;
    timeline.versions.iter().map(move |version| {
        let generation = version.summary.generation;
        let before = match previous.take() {
            Some((g, value)) if g == generation => value,
            _ => None,
        };
        let now = value_at(path, version);
        previous = Some((generation, now.clone()));
        (version, before, now)
    })
}

/// `GET …/history?path=`.
pub fn history(timeline: &Timeline, path: &FieldPath) -> FieldHistory {
    let items = transitions(timeline, path)
        .filter(|(_, before, now)| before != now)
        .map(|(version, old, new)| {
            let summary = &version.summary;
            FieldChange {
                version: summary.version,
                generation: summary.generation,
                event_id: summary.event_id,
                time: summary.time,
                user: summary.user.clone(),
                operation: summary.operation.clone(),
                old,
                new,
            }
        })
        .collect();
    FieldHistory {
        object: timeline.object.clone(),
        path: path.to_string(),
        first_version: timeline.first_version(),
        trimmed_events: timeline.trimmed_events,
        items,
    }
}

/// Whether a field's value is the one asked for. The query gives text: it matches a JSON
/// value it parses to (`3`, `true`, `{"a":1}`) and a string equal to it, so `value=3` finds
/// both `replicas: 3` and an annotation `"3"`.
fn matches(value: &Value, wanted_text: &str, wanted: &Value) -> bool {
    value == wanted || value.as_str() == Some(wanted_text)
}

/// `GET …/bisect?path=&value=`: the oldest version at which the field has the value.
pub fn bisect(
    timeline: &Timeline,
    path: &FieldPath,
    wanted_text: &str,
) -> Result<BisectAnswer, Error> {
    let wanted: Value =
        serde_json::from_str(wanted_text).unwrap_or_else(|_| Value::String(wanted_text.to_owned()));
    transitions(timeline, path)
        .find(|(_, _, now)| {
            now.as_ref()
                .is_some_and(|v| matches(v, wanted_text, &wanted))
        })
        .map(|(version, previous, _)| BisectAnswer {
            object: timeline.object.clone(),
            path: path.to_string(),
            value: wanted.clone(),
            version: version.summary.clone(),
            previous,
        })
        .ok_or_else(|| Error::NeverMatched {
            path: path.to_string(),
            value: wanted_text.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use logistis_api::{ObjectRef, Operation};
    use serde_json::json;

    use super::*;
    use crate::history::testing::{event, scale_event};

    fn deployment(uid: &str, replicas: u64, annotation: Option<&str>) -> Value {
        let mut object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "uid": uid},
            "spec": {"replicas": replicas}
        });
        if let Some(text) = annotation {
            object["metadata"]["annotations"] = json!({"note": text});
        }
        object
    }

    fn timeline() -> Timeline {
        let events = vec![
            event(
                Operation::Create,
                Some(deployment("u1", 1, None)),
                None,
                "alice",
            ),
            event(
                Operation::Update,
                Some(deployment("u1", 1, Some("3"))),
                None,
                "bob",
            ),
            scale_event(3, "hpa"),
            scale_event(0, "mallory"),
            event(
                Operation::Delete,
                None,
                Some(deployment("u1", 0, Some("3"))),
                "carol",
            ),
            event(
                Operation::Create,
                Some(deployment("u2", 2, None)),
                None,
                "dave",
            ),
        ];
        Timeline::build(ObjectRef::default(), events, 0)
    }

    #[test]
    fn history_lists_every_change_with_old_and_new() {
        let path = FieldPath::parse("spec.replicas").unwrap();
        let answer = history(&timeline(), &path);
        let changes: Vec<(u64, &str, Option<Value>, Option<Value>)> = answer
            .items
            .iter()
            .map(|c| {
                (
                    c.version,
                    c.user.username.as_str(),
                    c.old.clone(),
                    c.new.clone(),
                )
            })
            .collect();
        assert_eq!(
            changes,
            [
                (1, "alice", None, Some(json!(1))),
                (3, "hpa", Some(json!(1)), Some(json!(3))),
                (4, "mallory", Some(json!(3)), Some(json!(0))),
                (5, "carol", Some(json!(0)), None),
                (6, "dave", None, Some(json!(2))),
            ]
        );
        assert_eq!(answer.items[4].generation, 2);
        assert_eq!(answer.path, "spec.replicas");
    }

    #[test]
    fn bisect_finds_who_first_set_a_value() {
        let timeline = timeline();
        let replicas = FieldPath::parse("/spec/replicas").unwrap();
        let zero = bisect(&timeline, &replicas, "0").unwrap();
        assert_eq!(zero.version.version, 4);
        assert_eq!(zero.version.user.username, "mallory");
        assert_eq!(zero.previous, Some(json!(3)));
        // A number in the query also finds the same text in a string field.
        let note = FieldPath::parse("metadata.annotations.note").unwrap();
        assert_eq!(bisect(&timeline, &note, "3").unwrap().version.version, 2);
        assert!(matches!(
            bisect(&timeline, &replicas, "42"),
            Err(Error::NeverMatched { value, .. }) if value == "42"
        ));
    }
}
