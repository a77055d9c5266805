//! Line blame: the newest version as YAML, each line attributed to the version that last
//! changed what the line shows.
//!
//! The YAML is emitted here rather than by `serde_yaml` alone because every line must know
//! the field it shows; scalars are still rendered by `serde_yaml` (quoting, block strings),
//! and a test checks the text is the same as `serde_yaml::to_string` of the whole object.
//!
//! A line belongs to the deepest field it shows: `replicas: 3` to `spec.replicas` (blamed on
//! the last change of its value), `template:` to the key alone (blamed on when the key
//! appeared, so a change deep inside does not repaint every parent line), `- name: web` to
//! that container's `name`. List elements are followed by identity rather than by index —
//! maps by a key field (`name`, `containerPort`, ...), scalars by value — so removing the
//! first container does not blame every line of the second one on the removal.

use std::collections::HashMap;

use logistis_api::{Blame, BlameLine};
use serde_json::{Map, Value};

use super::Error;
use super::path::{FieldPath, Segment, scalar_text, step_into};
use super::versions::{MAX_CHANGED_PATHS, Timeline, Version};

/// Fields that identify an element of a list of maps, in the order they are tried: the
/// Kubernetes strategic-merge keys of the common lists (containers, volumes, ports, env,
/// volumeMounts, volumeDevices, hostAliases, tolerations...).
const ELEMENT_KEYS: [&str; 8] = [
    "name",
    "containerPort",
    "mountPath",
    "devicePath",
    "ip",
    "port",
    "topologyKey",
    "key",
];

/// What decides whether an older version agrees with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Track {
    /// The line shows a value (`replicas: 3`, `- nginx`, `labels: {}`): it changes when the
    /// value does.
    Value,
    /// The line only opens a nested block (`spec:`): it changes when the key appears.
    Presence,
}

/// One YAML line and the field it shows.
#[derive(Debug, Clone)]
struct Line {
    text: String,
    /// Path with list elements by identity: followed through older versions.
    identity: FieldPath,
    /// Path with list indices: where the field is in the newest version.
    concrete: FieldPath,
    track: Track,
}

/// `GET …/blame`: the newest version of the newest generation.
pub fn blame(timeline: &Timeline) -> Result<Blame, Error> {
    let newest = timeline.newest()?;
    let generation = timeline.generation(newest.summary.generation);
    let mut lines = Vec::new();
    emit(&newest.object, &mut Emitter::root(), &mut lines).map_err(|source| Error::Yaml {
        version: newest.summary.version,
        source,
    })?;
    let mut parents = ParentCache::default();
    let lines = lines
        .into_iter()
        .enumerate()
        .map(|(n, line)| {
            if n % 1024 == 1023 && super::interrupt::stopped() {
                return Err(Error::Stopped);
            }
            let stable = stable_prefix(&line.concrete);
            let owner = owner_index(generation, &line, Some(&stable), &mut parents);
            let owner = &generation[owner].summary;
            Ok(BlameLine {
                line: line.text,
                version: owner.version,
                event_id: owner.event_id,
                time: owner.time,
                user: owner.user.clone(),
                operation: owner.operation.clone(),
                path: line.concrete.to_string(),
                status: owner.status,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(Blame {
        object: timeline.object.clone(),
        version: newest.summary.version,
        generation: newest.summary.generation,
        object_uid: newest.summary.object_uid.clone(),
        deleted: newest.summary.deleted,
        first_version: timeline.first_version(),
        trimmed_events: timeline.trimmed_events,
        lines,
    })
}

/// The parent node of the current line in each version, looked up once per run of sibling
/// lines: lines come in document order, so most lines share the previous line's parent and
/// cost one step per version instead of a walk from the root. List elements found by
/// identity (`[name=web]`, a scalar's value) go through a per-list index, so blame stays
/// linear in the size of the manifest (a 100 000-element list: one hash lookup per element
/// and version, not a scan).
#[derive(Default)]
struct ParentCache<'a> {
    parent: Option<FieldPath>,
    /// Per version of the generation: not looked up yet, or the lookup's result.
    nodes: Vec<Option<Option<&'a Value>>>,
    index: ListIndex<'a>,
}

/// For each list (by address) and selector field (`""` for scalar values): the position of
/// the first element with each key.
#[derive(Default)]
struct ListIndex<'a> {
    lists: HashMap<(usize, String), HashMap<String, usize>>,
    _values: std::marker::PhantomData<&'a Value>,
}

/// Lists shorter than this are scanned: building an index costs more.
const INDEX_FROM: usize = 32;

impl<'a> ListIndex<'a> {
    fn step(&mut self, value: &'a Value, segment: &Segment) -> Option<&'a Value> {
        let Value::Array(items) = value else {
            return step_into(value, segment);
        };
        let (field, wanted) = match segment {
            Segment::Match { field, value } => (field.as_str(), value.clone()),
            Segment::Item(item) if !matches!(item, Value::Object(_) | Value::Array(_)) => {
                ("", item.to_string())
            }
            _ => return step_into(value, segment),
        };
        if items.len() < INDEX_FROM {
            return step_into(value, segment);
        }
        let key = (std::ptr::from_ref(value) as usize, field.to_owned());
        let positions = self.lists.entry(key).or_insert_with(|| {
            let mut positions = HashMap::with_capacity(items.len());
            for (position, item) in items.iter().enumerate() {
                let text = if field.is_empty() {
                    (!matches!(item, Value::Object(_) | Value::Array(_))).then(|| item.to_string())
                } else {
                    item.get(field).and_then(scalar_text)
                };
                if let Some(text) = text {
                    positions.entry(text).or_insert(position);
                }
            }
            positions
        });
        positions
            .get(&wanted)
            .and_then(|position| items.get(*position))
    }

    fn lookup(&mut self, object: &'a Value, path: &FieldPath) -> Option<&'a Value> {
        path.segments
            .iter()
            .try_fold(object, |value, segment| self.step(value, segment))
    }
}

impl<'a> ParentCache<'a> {
    /// The value of `line`'s field in `version` (index `index` of the generation).
    fn value(&mut self, generation: &'a [Version], index: usize, line: &Line) -> Option<&'a Value> {
        let Some((last, parent)) = line.identity.segments.split_last() else {
            return Some(&generation[index].object);
        };
        if self.parent.as_ref().is_none_or(|p| p.segments != parent) {
            self.parent = Some(FieldPath {
                segments: parent.to_vec(),
            });
            self.nodes = vec![None; generation.len()];
        }
        let node = match self.nodes[index] {
            Some(node) => node,
            None => {
                let path = self.parent.as_ref().expect("set above");
                let node = self.index.lookup(&generation[index].object, path);
                self.nodes[index] = Some(node);
                node
            }
        };
        node.and_then(|node| self.index.step(node, last))
    }
}

/// The oldest version of the run, ending at the newest, in which the line looks as it does
/// now: the one that last set it.
///
/// A version whose changed paths leave the line's `stable` prefix alone is passed without
/// looking the line up in the version before it: the whole subtree there is the same, so
/// the line is too. Most lines of a long history sit in fields that rarely change, and the
/// lookups were most of blame's time. `None` looks up every version (the tests compare).
fn owner_index<'a>(
    generation: &'a [Version],
    line: &Line,
    stable: Option<&str>,
    parents: &mut ParentCache<'a>,
) -> usize {
    let newest = generation.len() - 1;
    let mut shown_now = None;
    let mut owner = newest;
    while owner > 0 {
        if stable.is_some_and(|prefix| leaves_alone(&generation[owner], prefix)) {
            owner -= 1;
            continue;
        }
        let shown = *shown_now.get_or_insert_with(|| parents.value(generation, newest, line));
        let before = parents.value(generation, owner - 1, line);
        let same = match line.track {
            Track::Value => before == shown,
            Track::Presence => before.is_some(),
        };
        if !same {
            break;
        }
        owner -= 1;
    }
    owner
}

/// The part of a line's path that is the same field in every version: its keys up to the
/// first list index (an element's index can differ from one version to the next).
fn stable_prefix(concrete: &FieldPath) -> String {
    let keys = concrete
        .segments
        .iter()
        .take_while(|segment| matches!(segment, Segment::Key(_)))
        .cloned()
        .collect();
    FieldPath { segments: keys }.to_string()
}

/// Whether `version` certainly changed nothing at `prefix` against the version before it:
/// none of its changed paths is `prefix`, inside it, or above it. A list of changed paths
/// cut at its maximum proves nothing.
fn leaves_alone(version: &Version, prefix: &str) -> bool {
    let paths = &version.summary.changed_paths;
    paths.len() < MAX_CHANGED_PATHS
        && !paths
            .iter()
            .any(|path| within(path, prefix) || within(prefix, path))
}

/// Whether path `inner` is `outer` or a field inside it, both spelled as [`FieldPath`]
/// writes them: each segment after the first starts with `.` or `[`, so a path's prefix
/// ends where the longer path's next segment starts.
fn within(inner: &str, outer: &str) -> bool {
    outer.is_empty()
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// Where the emitter is: indentation, the `- ` that starts the next line when it opens a
/// list element, and the paths so far.
#[derive(Debug, Clone)]
struct Emitter {
    indent: usize,
    first_prefix: Option<String>,
    identity: FieldPath,
    concrete: FieldPath,
}

impl Emitter {
    fn root() -> Emitter {
        Emitter {
            indent: 0,
            first_prefix: None,
            identity: FieldPath::default(),
            concrete: FieldPath::default(),
        }
    }

    /// The start of the next line: the pending `- ` or the indentation.
    fn lead(&mut self) -> String {
        self.first_prefix
            .take()
            .unwrap_or_else(|| " ".repeat(self.indent))
    }
}

fn emit(value: &Value, at: &mut Emitter, out: &mut Vec<Line>) -> Result<(), serde_yaml::Error> {
    match value {
        Value::Object(map) if !map.is_empty() => emit_map(map, at, out),
        Value::Array(items) if !items.is_empty() => emit_list(items, at, out),
        scalar => {
            // A block string that is a list element is indented from the `- `, not past it.
            let base = if at.first_prefix.is_some() {
                at.indent.saturating_sub(2)
            } else {
                at.indent
            };
            let lead = at.lead();
            emit_scalar(lead, scalar, base, &at.identity, &at.concrete, out)
        }
    }
}

fn emit_map(
    map: &Map<String, Value>,
    at: &mut Emitter,
    out: &mut Vec<Line>,
) -> Result<(), serde_yaml::Error> {
    for (key, value) in map {
        let lead = at.lead();
        let key_text = scalar_yaml(&Value::String(key.clone()))?;
        let identity = at.identity.child(Segment::Key(key.clone()));
        let concrete = at.concrete.child(Segment::Key(key.clone()));
        let nested_indent = match value {
            Value::Object(m) if !m.is_empty() => at.indent + 2,
            // serde_yaml writes a list under a key at the key's own indentation.
            Value::Array(a) if !a.is_empty() => at.indent,
            scalar => {
                emit_scalar(
                    format!("{lead}{key_text}: "),
                    scalar,
                    at.indent,
                    &identity,
                    &concrete,
                    out,
                )?;
                continue;
            }
        };
        out.push(Line {
            text: format!("{lead}{key_text}:"),
            identity: identity.clone(),
            concrete: concrete.clone(),
            track: Track::Presence,
        });
        let mut child = Emitter {
            indent: nested_indent,
            first_prefix: None,
            identity,
            concrete,
        };
        emit(value, &mut child, out)?;
    }
    Ok(())
}

fn emit_list(
    items: &[Value],
    at: &mut Emitter,
    out: &mut Vec<Line>,
) -> Result<(), serde_yaml::Error> {
    let element_key = element_key(items);
    // The first position of each scalar value, found once for the whole list.
    let mut first_of: HashMap<String, usize> = HashMap::new();
    for (index, item) in items.iter().enumerate() {
        if !matches!(item, Value::Object(_) | Value::Array(_)) {
            first_of.entry(item.to_string()).or_insert(index);
        }
    }
    for (index, item) in items.iter().enumerate() {
        let lead = at.lead();
        let identity = at
            .identity
            .child(element_identity(items, index, element_key, &first_of));
        let concrete = at.concrete.child(Segment::Index(index));
        let mut child = Emitter {
            indent: at.indent + 2,
            first_prefix: Some(format!("{lead}- ")),
            identity,
            concrete,
        };
        emit(item, &mut child, out)?;
    }
    Ok(())
}

/// A scalar (or empty map/list) after `prefix`; block strings continue on the next lines.
fn emit_scalar(
    prefix: String,
    value: &Value,
    indent: usize,
    identity: &FieldPath,
    concrete: &FieldPath,
    out: &mut Vec<Line>,
) -> Result<(), serde_yaml::Error> {
    let text = scalar_yaml(value)?;
    let mut parts = text.split('\n');
    let first = parts.next().unwrap_or_default();
    let line = |text: String| Line {
        text,
        identity: identity.clone(),
        concrete: concrete.clone(),
        track: Track::Value,
    };
    out.push(line(format!("{prefix}{first}")));
    // serde_yaml indents a block string's body two spaces past its own start; here that
    // start is `indent`. Empty body lines stay empty, as serde_yaml writes them.
    for rest in parts {
        let text = if rest.is_empty() {
            String::new()
        } else {
            format!("{}{rest}", " ".repeat(indent))
        };
        out.push(line(text));
    }
    Ok(())
}

/// One value as serde_yaml writes it, without the final newline.
fn scalar_yaml(value: &Value) -> Result<String, serde_yaml::Error> {
    let mut text = serde_yaml::to_string(value)?;
    if text.ends_with('\n') {
        text.pop();
    }
    Ok(text)
}

/// The field that identifies the elements of a list of maps: present as a scalar in every
/// element, with no two elements sharing a value.
fn element_key(items: &[Value]) -> Option<&'static str> {
    ELEMENT_KEYS.into_iter().find(|key| {
        let mut seen = std::collections::HashSet::new();
        items.iter().all(|item| {
            item.get(key)
                .and_then(scalar_text)
                .is_some_and(|text| seen.insert(text))
        })
    })
}

/// How older versions find element `index`: by its key field, by its value (the first
/// occurrence of a scalar), or by its index when it has no identity.
fn element_identity(
    items: &[Value],
    index: usize,
    element_key: Option<&'static str>,
    first_of: &HashMap<String, usize>,
) -> Segment {
    let item = &items[index];
    if let Some(key) = element_key
        && let Some(value) = item.get(key).and_then(scalar_text)
    {
        return Segment::Match {
            field: key.to_owned(),
            value,
        };
    }
    let is_scalar = !matches!(item, Value::Object(_) | Value::Array(_));
    if is_scalar && first_of.get(&item.to_string()) == Some(&index) {
        return Segment::Item(item.clone());
    }
    Segment::Index(index)
}

#[cfg(test)]
mod tests {
    use logistis_api::{ObjectRef, Operation};
    use rstest::rstest;
    use serde_json::json;

    use super::*;
    use crate::history::testing::{event, scale_event};

    fn yaml_lines(value: &Value) -> String {
        let mut lines = Vec::new();
        emit(value, &mut Emitter::root(), &mut lines).unwrap();
        lines.iter().map(|l| format!("{}\n", l.text)).collect()
    }

    #[rstest]
    #[case(json!({"a": {"b": 1, "c": [1, 2, {"x": 1, "y": [3]}, [4, 5], {}, []], "d": {}, "e": []}}))]
    #[case(json!({"f": "l1\nl2\n", "g": null, "h": "yes", "i": "123", "j": "a: b", "k": "", "l.m/n": "x"}))]
    #[case(json!({"m": "trailing \n", "n": "  lead\nx", "o": [[[]]], "p": [{"q": {"r": 1}}]}))]
    #[case(json!({"q": "line1\n\nline3", "r": ["multi\nline", {"s": "a\nb"}], "t": "keep\n\n"}))]
    #[case(json!({"deep": [{"list": [{"block": "x\ny"}]}], "nested": [["a\nb", ["c\nd"]]]}))]
    fn text_is_what_serde_yaml_writes(#[case] value: Value) {
        assert_eq!(yaml_lines(&value), serde_yaml::to_string(&value).unwrap());
    }

    fn deployment(replicas: u64, containers: Value, labels: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "uid": "u1", "labels": labels},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": containers}}}
        })
    }

    fn owners(blame: &Blame) -> Vec<(String, &str)> {
        blame
            .lines
            .iter()
            .map(|l| (l.line.trim().to_owned(), l.user.username.as_str()))
            .collect()
    }

    #[test]
    fn each_line_belongs_to_the_last_change_of_its_field() {
        let two = json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1", "args": ["-x", "-y"]}]);
        let events = vec![
            event(
                Operation::Create,
                Some(deployment(1, two, json!({"app": "web"}))),
                None,
                "alice",
            ),
            scale_event(4, "hpa"),
            // bob removes container a and the first arg of b; b's other lines stay alice's.
            event(
                Operation::Update,
                Some(deployment(
                    4,
                    json!([{"name": "b", "image": "b:1", "args": ["-y"]}]),
                    json!({"app": "web"}),
                )),
                None,
                "bob",
            ),
            event(
                Operation::Update,
                Some(deployment(
                    4,
                    json!([{"name": "b", "image": "b:2", "args": ["-y"]}]),
                    json!({"app": "web", "tier": "front"}),
                )),
                None,
                "carol",
            ),
        ];
        let timeline = Timeline::build(ObjectRef::default(), events, 0);
        let answer = blame(&timeline).unwrap();
        let text: String = answer
            .lines
            .iter()
            .map(|l| format!("{}\n", l.line))
            .collect();
        assert_eq!(
            text,
            serde_yaml::to_string(&timeline.versions[3].object).unwrap()
        );
        assert_eq!(
            owners(&answer),
            [
                ("apiVersion: apps/v1".to_owned(), "alice"),
                ("kind: Deployment".to_owned(), "alice"),
                ("metadata:".to_owned(), "alice"),
                ("labels:".to_owned(), "alice"),
                ("app: web".to_owned(), "alice"),
                ("tier: front".to_owned(), "carol"),
                ("name: web".to_owned(), "alice"),
                ("uid: u1".to_owned(), "alice"),
                ("spec:".to_owned(), "alice"),
                ("replicas: 4".to_owned(), "hpa"),
                ("template:".to_owned(), "alice"),
                ("spec:".to_owned(), "alice"),
                ("containers:".to_owned(), "alice"),
                ("- args:".to_owned(), "alice"),
                ("- -y".to_owned(), "alice"),
                ("image: b:2".to_owned(), "carol"),
                ("name: b".to_owned(), "alice"),
            ]
        );
        let image = answer
            .lines
            .iter()
            .find(|l| l.line.contains("image"))
            .unwrap();
        assert_eq!(image.path, "spec.template.spec.containers[0].image");
        assert_eq!(image.version, 4);
    }

    #[test]
    fn blame_covers_only_the_newest_generation() {
        let first = deployment(1, json!([{"name": "a", "image": "a:1"}]), json!({}));
        let mut second = first.clone();
        second["metadata"]["uid"] = json!("u2");
        let events = vec![
            event(Operation::Create, Some(first.clone()), None, "alice"),
            event(Operation::Delete, None, Some(first), "bob"),
            event(Operation::Create, Some(second), None, "carol"),
        ];
        let answer = blame(&Timeline::build(ObjectRef::default(), events, 0)).unwrap();
        assert_eq!(answer.generation, 2);
        assert_eq!(answer.object_uid.as_deref(), Some("u2"));
        assert!(answer.lines.iter().all(|l| l.user.username == "carol"));
    }

    #[test]
    fn blame_of_long_lists_follows_elements_by_identity() {
        // Long lists go through the index: removing the first element does not re-blame the
        // others, for maps (by name) and scalars (by value) alike. Large enough to be
        // quadratic-slow if any step scanned the list (100 000 elements is in the bench).
        let n = 5_000;
        let containers = |skip: usize| -> Value {
            (skip..n)
                .map(|i| json!({"name": format!("c{i}"), "image": "nginx"}))
                .collect()
        };
        let args = |skip: usize| -> Value { (skip..n).map(|i| json!(format!("a{i}"))).collect() };
        let object = |skip: usize| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"containers": containers(skip), "args": args(skip)}})
        };
        let events = vec![
            event(Operation::Create, Some(object(0)), None, "alice"),
            event(Operation::Update, Some(object(1)), Some(object(0)), "bob"),
        ];
        let answer = blame(&Timeline::build(ObjectRef::default(), events, 0)).unwrap();
        let bob = answer
            .lines
            .iter()
            .filter(|l| l.user.username == "bob")
            .count();
        assert_eq!(bob, 0, "nothing the update left is bob's");
        assert_eq!(answer.lines.len(), 8 + 3 * (n - 1));
    }

    /// A small deterministic generator (xorshift), so a failure names its seed.
    struct Dice(u64);

    impl Dice {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// One random edit of the kinds a history sees: scalars, keys appearing and going,
    /// list elements added, removed, moved and renamed, types changing, keys that spell like
    /// nested paths, and edits too large for the changed-path list.
    fn edit(object: &mut Value, dice: &mut Dice) {
        let names = ["a", "b", "c", "a.b"];
        match dice.below(13) {
            0 => object["spec"]["replicas"] = json!(dice.below(4)),
            1 | 2 => {
                if let Some(list) = object
                    .pointer_mut("/spec/template/spec/containers")
                    .and_then(Value::as_array_mut)
                    && !list.is_empty()
                {
                    let at = dice.below(list.len());
                    let element = list[at].is_object();
                    match dice.below(5) {
                        0 if element => list[at]["image"] = json!(format!("img:{}", dice.below(3))),
                        1 if element => list[at]["name"] = json!(names[dice.below(3)]),
                        2 => drop(list.remove(at)),
                        3 => {
                            let other = dice.below(list.len());
                            list.swap(at, other);
                        }
                        _ => list[at] = json!(dice.below(2)),
                    }
                }
            }
            3 => {
                if let Some(list) = object
                    .pointer_mut("/spec/template/spec/containers")
                    .and_then(Value::as_array_mut)
                {
                    let name = names[dice.below(3)];
                    list.insert(
                        dice.below(list.len() + 1),
                        json!({"name": name, "image": "img:0", "args": ["-v"]}),
                    );
                }
            }
            4 => {
                let labels = &mut object["metadata"]["labels"];
                if !labels.is_object() {
                    *labels = json!({});
                }
                let key = names[dice.below(names.len())];
                if dice.below(3) == 0 {
                    labels.as_object_mut().unwrap().remove(key);
                } else {
                    labels[key] = json!(dice.below(3).to_string());
                }
            }
            5 => {
                let spec = &mut object["spec"];
                let nested = json!({"b": dice.below(2)});
                spec["a"] = if dice.below(2) == 0 { nested } else { json!(1) };
            }
            6 => {
                let args = &mut object["spec"]["args"];
                if !args.is_array() {
                    *args = json!([]);
                }
                let list = args.as_array_mut().unwrap();
                match dice.below(3) {
                    0 => list.insert(
                        dice.below(list.len() + 1),
                        json!(format!("-{}", dice.below(3))),
                    ),
                    1 if !list.is_empty() => drop(list.remove(dice.below(list.len()))),
                    _ if !list.is_empty() => {
                        let at = dice.below(list.len());
                        list[at] = json!(format!("-{}", dice.below(3)));
                    }
                    _ => {}
                }
            }
            7 => {
                let many: serde_json::Map<String, Value> = (0..MAX_CHANGED_PATHS + 5)
                    .map(|n| (format!("k{n}"), json!(dice.below(1 << 30))))
                    .collect();
                object["metadata"]["annotations"] = Value::Object(many);
            }
            8 => object["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("labels")
                .map_or((), drop),
            9 => {
                let template = &mut object["spec"]["template"];
                *template = if template.is_string() {
                    json!({"spec": {"containers": [{"name": "a", "image": "img:0"}]}})
                } else {
                    json!("flat")
                };
            }
            10 => object["status"] = json!({"ready": dice.below(2) == 0}),
            11 => object["spec"]["replicasMax"] = json!(dice.below(3)),
            _ => {
                let args = json!(["-v", format!("-{}", dice.below(2))]);
                if let Some(first) = object
                    .pointer_mut("/spec/template/spec/containers/0")
                    .and_then(Value::as_object_mut)
                {
                    first.insert("args".into(), args);
                }
            }
        }
    }

    #[test]
    fn skipping_versions_by_changed_paths_blames_what_looking_up_every_version_does() {
        for seed in 1..=300_u64 {
            let mut dice = Dice(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut object = deployment(
                1,
                json!([{"name": "a", "image": "img:0", "args": ["-v", "-x"]},
                       {"name": "b", "image": "img:1"}]),
                json!({"app": "web", "a.b": "1"}),
            );
            let mut events = vec![event(Operation::Create, Some(object.clone()), None, "u0")];
            for step in 1..=(5 + dice.below(40)) {
                for _ in 0..1 + dice.below(3) {
                    edit(&mut object, &mut dice);
                }
                let user = format!("u{step}");
                events.push(event(Operation::Update, Some(object.clone()), None, &user));
            }
            let timeline = Timeline::build(ObjectRef::default(), events, 0);
            let newest = timeline.newest().unwrap();
            let generation = timeline.generation(newest.summary.generation);
            let mut lines = Vec::new();
            emit(&newest.object, &mut Emitter::root(), &mut lines).unwrap();
            let (mut fast, mut slow) = (ParentCache::default(), ParentCache::default());
            for line in &lines {
                let stable = stable_prefix(&line.concrete);
                assert_eq!(
                    owner_index(generation, line, Some(&stable), &mut fast),
                    owner_index(generation, line, None, &mut slow),
                    "seed {seed}, line {:?} ({})",
                    line.text,
                    line.concrete
                );
            }
        }
    }

    #[rstest]
    #[case("spec.replicas", "spec", true)]
    #[case("spec", "spec", true)]
    #[case("spec[0]", "spec", true)]
    #[case("specs", "spec", false)]
    #[case("spec", "spec.replicas", false)]
    #[case("metadata[\"a.b\"]", "metadata", true)]
    #[case("anything", "", true)]
    fn within_follows_segment_boundaries(
        #[case] inner: &str,
        #[case] outer: &str,
        #[case] expected: bool,
    ) {
        assert_eq!(within(inner, outer), expected);
    }

    #[test]
    fn an_empty_history_has_no_blame() {
        let timeline = Timeline::build(ObjectRef::default(), Vec::new(), 3);
        assert!(matches!(blame(&timeline), Err(Error::NoVersions)));
    }
}
