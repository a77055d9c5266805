//! The version layout on a real fjall directory: deltas and snapshots rebuild every stored
//! object exactly, through restarts and retention; stores of the first format still answer;
//! a damaged record is an error naming its event.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use logistis_api::{Event, EventId, Operation, ResourceRef, UserInfo};
use serde_json::{Value, json};

use super::record::{self, Objects, StoredPatch};
use super::*;
use crate::admission::NewEvent;

fn shop_web() -> ObjectKey {
    ObjectKey {
        group: "apps".into(),
        kind: "Deployment".into(),
        namespace: "shop".into(),
        name: "web".into(),
    }
}

fn deployment(step: usize, uid: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "shop", "uid": uid,
            "resourceVersion": (1000 + 3 * step).to_string(), "generation": step + 1,
            "labels": {"app": "web", "release": format!("r{}", step / 10)},
            "annotations": {"note": format!("change {step}"), "team": "checkout"}
        },
        "spec": {
            "replicas": 1 + step % 5,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [
                {"name": "web", "image": format!("registry.example.com/shop/web:1.{step}"),
                 "env": [{"name": "MODE", "value": "prod"}], "ports": [{"containerPort": 8080}]},
                {"name": "log", "image": "fluent/fluent-bit:3.1", "args": ["--flush=5"]}
            ]}}
        },
        "status": {"replicas": 1 + step % 5, "observedGeneration": step}
    })
}

fn scale(replicas: usize) -> Value {
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
           "metadata": {"name": "web", "namespace": "shop"}, "spec": {"replicas": replicas}})
}

fn new_event(
    operation: Operation,
    subresource: &str,
    object: Option<Value>,
    old_object: Option<Value>,
) -> NewEvent {
    let patch = match (&operation, &object) {
        (Operation::Create, Some(object)) => {
            json!([{"op": "add", "path": "", "value": crate::admission::noise::strip(object)}])
        }
        _ => json!([{"op": "replace", "path": "/spec/replicas", "value": 2}]),
    };
    NewEvent {
        event: Event {
            id: EventId(0),
            cluster: String::new(),
            uid: String::new(),
            time: Utc::now(),
            operation,
            user: UserInfo {
                username: "alice".into(),
                groups: vec!["system:authenticated".into()],
                ..UserInfo::default()
            },
            resource: ResourceRef {
                group: "apps".into(),
                version: "v1".into(),
                kind: "Deployment".into(),
                resource: "deployments".into(),
                subresource: subresource.into(),
                namespace: "shop".into(),
                name: "web".into(),
            },
            object_uid: None,
            field_manager: None,
            dry_run: false,
            patch,
            options: None,
            object,
            old_object,
            status: None,
            confirmation: None,
            observed_by: None,
            denied: None,
        },
        dedupe_key: None,
    }
}

/// An event's objects as posted: the object and the old object.
type PostedObjects = (Option<Value>, Option<Value>);
/// What was posted for each event: its objects.
type Posted = BTreeMap<EventId, PostedObjects>;

/// A long, realistic life of one Deployment: updates (some after unrecorded status writes,
/// so the old object is not the previous stored version), scales through the subresource, a
/// deletion and a re-creation. Appends each event and remembers what was posted.
struct Life {
    current: Value,
    step: usize,
    uid: String,
    posted: Posted,
    /// While bulk loading: the events not yet handed over, with their objects.
    queued: Option<Vec<(NewEvent, PostedObjects)>>,
}

impl Life {
    fn new(store: &Store) -> Life {
        let mut life = Life {
            current: deployment(0, "uid-1"),
            step: 0,
            uid: "uid-1".into(),
            posted: Posted::new(),
            queued: None,
        };
        let object = life.current.clone();
        life.append(store, Operation::Create, "", Some(object), None);
        life
    }

    fn append(
        &mut self,
        store: &Store,
        operation: Operation,
        subresource: &str,
        object: Option<Value>,
        old: Option<Value>,
    ) -> EventId {
        let event = new_event(operation, subresource, object.clone(), old.clone());
        if let Some(queued) = &mut self.queued {
            queued.push((event, (object, old)));
            return EventId(0);
        }
        let id = match store.append_blocking(event).unwrap() {
            Appended::Recorded(id) => id,
            Appended::Duplicate(id) => panic!("duplicate {id}"),
        };
        self.posted.insert(id, (object, old));
        id
    }

    fn step(&mut self, store: &Store) {
        self.step += 1;
        let step = self.step;
        let old = self.current.clone();
        if step.is_multiple_of(37) {
            self.append(store, Operation::Delete, "", None, Some(old));
            self.uid = format!("uid-{step}");
            self.current = deployment(step, &self.uid);
            let object = self.current.clone();
            self.append(store, Operation::Create, "", Some(object), None);
            return;
        }
        if step.is_multiple_of(7) {
            self.append(
                store,
                Operation::Update,
                "scale",
                Some(scale(step % 4)),
                Some(scale(1)),
            );
            return;
        }
        // Every third update follows a status write the store never saw.
        let old = if step.is_multiple_of(3) {
            let mut moved = old;
            moved["status"]["observedGeneration"] = json!(step * 10);
            moved["metadata"]["resourceVersion"] = json!(format!("{}", 5000 + step));
            moved
        } else {
            old
        };
        self.current = deployment(step, &self.uid);
        let object = self.current.clone();
        self.append(store, Operation::Update, "", Some(object), Some(old));
    }

    /// Hand the queued events to the store as one bulk load, and remember their ids.
    fn load_queued(&mut self, store: &Store) {
        let queued = self.queued.replace(Vec::new()).unwrap_or_default();
        let (events, objects): (Vec<_>, Vec<_>) = queued.into_iter().unzip();
        let outcomes = store.append_bulk(events).blocking_recv().unwrap().unwrap();
        assert_eq!(outcomes.len(), objects.len());
        for (outcome, objects) in outcomes.into_iter().zip(objects) {
            match outcome.unwrap() {
                Appended::Recorded(id) => self.posted.insert(id, objects),
                Appended::Duplicate(id) => panic!("duplicate {id}"),
            };
        }
    }

    /// Every stored event of the object reads back exactly as posted, by every read path.
    fn check(&self, store: &Store, context: &str) -> usize {
        let (events, _) = store.object_events(&shop_web()).unwrap();
        assert!(!events.is_empty(), "{context}: nothing stored");
        for event in &events {
            let (object, old) = &self.posted[&event.id];
            assert_eq!(&event.object, object, "{context}: object of {}", event.id);
            if object.is_none() || event.operation == Operation::Delete {
                assert_eq!(
                    &event.old_object, old,
                    "{context}: old object of {}",
                    event.id
                );
            }
            let full = store.get_event(event.id).unwrap().unwrap();
            assert_eq!(
                (&full.object, &full.old_object),
                (object, old),
                "{context}: get_event {}",
                event.id
            );
        }
        let log = store.read_log(None, 100_000).unwrap();
        for event in &log {
            if let Some((object, old)) = self.posted.get(&event.id) {
                assert_eq!(
                    (&event.object, &event.old_object),
                    (object, old),
                    "{context}: read_log {}",
                    event.id
                );
            }
        }
        events.len()
    }
}

fn open(dir: &std::path::Path, keep: u32) -> Store {
    Store::open(
        dir,
        StoreSettings {
            max_versions_per_object: keep,
            // No expiry by age: the first format's events are written with ids of a fixed
            // date, which the default 30 days would expire while they are being read.
            retention: None,
            retention_interval: Duration::from_millis(20),
            ..StoreSettings::default()
        },
    )
    .unwrap()
}

/// Wait (bounded) until retention has left at most `keep` events of the object, and has
/// settled: the count stayed the same for ten retention intervals, so the reads that follow
/// do not race with a pass still deleting.
fn wait_for_trim(store: &Store, keep: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let count = || store.object_events(&shop_web()).unwrap().0.len();
    let mut last = count();
    let mut stable_since = std::time::Instant::now();
    while last > keep || stable_since.elapsed() < Duration::from_millis(200) {
        assert!(std::time::Instant::now() < deadline, "never trimmed");
        std::thread::sleep(Duration::from_millis(10));
        let now = count();
        if now != last {
            last = now;
            stable_since = std::time::Instant::now();
        }
    }
}

#[test]
fn a_long_history_trimmed_through_snapshots_rebuilds_every_version_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0);
    let mut life = Life::new(&store);
    for _ in 0..150 {
        life.step(&store);
    }
    assert_eq!(life.check(&store, "unlimited"), life.posted.len());
    // Deltas: the objects of 150 versions take far less than 150 compressed objects.
    let objects: u64 = life
        .posted
        .keys()
        .map(|id| {
            u64::from(
                store
                    .shared()
                    .engine()
                    .unwrap()
                    .ks
                    .objects
                    .size_of(id.to_be_bytes())
                    .unwrap()
                    .unwrap(),
            )
        })
        .sum();
    let alone = objects::compress(&serde_json::to_vec(&deployment(5, "u")).unwrap(), None).len();
    let per_event = objects / life.posted.len() as u64;
    assert!(
        per_event * 3 < alone as u64,
        "{per_event} bytes per event's objects, {alone} for one object compressed alone"
    );
    store.close();

    // After a restart the writer finds each object's newest version in the store.
    let store = open(dir.path(), 40);
    for _ in 0..150 {
        life.step(&store);
    }
    wait_for_trim(&store, 44);
    let left = life.check(&store, "trimmed to 40 through several snapshots");
    assert!((40..=44).contains(&left), "{left} left");
    for _ in 0..60 {
        life.step(&store);
    }
    wait_for_trim(&store, 44);
    life.check(&store, "trimmed again");
    store.close();
    let store = open(dir.path(), 40);
    life.check(&store, "after reopening");
    store.close();
}

#[test]
fn a_bulk_load_stores_what_appends_store_and_appends_continue_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0);
    let mut life = Life::new(&store);
    life.queued = Some(Vec::new());
    // Chunks of different sizes: deltas on versions of the same chunk and of the last one.
    for chunk in [1, 30, 120, 7] {
        for _ in 0..chunk {
            life.step(&store);
        }
        life.load_queued(&store);
    }
    life.queued = None;
    // Its re-creations made the kind's dictionary during a load: the objects that name it
    // must read back, here and after the reopen below.
    let engine = store.shared().engine().unwrap();
    assert!(
        !engine.ks.dicts.is_empty().unwrap(),
        "no dictionary was made"
    );
    drop(engine);
    assert_eq!(life.check(&store, "bulk loaded"), life.posted.len());
    // Deltas, not whole objects: the same life costs what it costs through appends.
    let stored: usize = store
        .shared()
        .engine()
        .unwrap()
        .ks
        .objects
        .iter()
        .map(|guard| guard.into_inner().unwrap().1.len())
        .sum();
    let whole: usize = life
        .posted
        .values()
        .map(|(object, old)| {
            [object, old]
                .into_iter()
                .flatten()
                .map(|v| serde_json::to_vec(v).unwrap().len())
                .sum::<usize>()
        })
        .sum();
    assert!(
        stored * 10 < whole,
        "the bulk load stored {stored} bytes of objects for {whole} bytes of JSON"
    );
    for _ in 0..40 {
        life.step(&store);
    }
    life.check(&store, "appended after the bulk load");
    let namespaces = store.namespaces().unwrap();
    let shop = namespaces.iter().find(|n| n.namespace == "shop").unwrap();
    assert_eq!(shop.events, life.posted.len() as u64);
    store.close();
    let store = open(dir.path(), 0);
    life.check(&store, "after reopening");
    for _ in 0..5 {
        life.step(&store);
    }
    life.check(&store, "appended after reopening");
}

#[test]
fn deleting_the_oldest_versions_rebases_the_survivors() {
    // As the age and size sweeps do: the oldest events go, whatever the object.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0);
    let mut life = Life::new(&store);
    for _ in 0..12 {
        life.step(&store);
    }
    let ids: Vec<EventId> = life.posted.keys().copied().collect();
    for cut in [3, 5, 9] {
        let oldest: Vec<EventId> = life
            .posted
            .keys()
            .copied()
            .take_while(|id| *id < ids[cut])
            .collect();
        let (reply, receiver) = crossbeam_channel::bounded(1);
        store
            .fjall()
            .writer
            .send(writer::Command::Delete(oldest.clone(), reply))
            .unwrap();
        assert_eq!(receiver.recv().unwrap().unwrap(), oldest.len() as u64);
        for id in &oldest {
            life.posted.remove(id);
        }
        life.check(&store, &format!("oldest {cut} deleted"));
        life.step(&store);
    }
    // No sweep deletes from the middle of a history, but nothing may be left depending on a
    // deleted version if one did: two versions apart, each with a survivor based on it.
    let remaining: Vec<EventId> = life.posted.keys().copied().collect();
    let middle = vec![remaining[1], remaining[3]];
    let (reply, receiver) = crossbeam_channel::bounded(1);
    store
        .fjall()
        .writer
        .send(writer::Command::Delete(middle.clone(), reply))
        .unwrap();
    assert_eq!(receiver.recv().unwrap().unwrap(), 2);
    for id in &middle {
        life.posted.remove(id);
    }
    life.check(&store, "two versions from the middle deleted");
    store.close();
}

/// Write one event exactly as the first format did (summary format 1, objects as JSON,
/// the same index keys and counters), straight into the keyspaces.
fn write_first_format(store: &Store, id: EventId, new_event: NewEvent, ns_count: u64) {
    let engine = store.shared().engine().unwrap();
    let ks = &engine.ks;
    let NewEvent {
        mut event,
        dedupe_key,
    } = new_event;
    let objects = Objects {
        object: event.object.take(),
        old_object: event.old_object.take(),
    };
    let patch = if record::patch_is_whole_object(&event.patch, objects.object.as_ref()) {
        event.patch = Value::Null;
        StoredPatch::WholeObject
    } else {
        StoredPatch::Inline
    };
    let mut batch = engine.db.batch();
    batch.insert(
        &ks.events,
        id.to_be_bytes().to_vec(),
        record::encode_summary(&event, dedupe_key.as_ref(), patch),
    );
    if !objects.is_empty() {
        batch.insert(
            &ks.objects,
            id.to_be_bytes().to_vec(),
            record::encode_objects(&objects),
        );
    }
    for (keyspace, key) in writer::index_keys(ks, &event.resource, &event.user.username, id) {
        batch.insert(keyspace, key, Vec::<u8>::new());
    }
    batch.insert(
        &ks.ns_stats,
        writer::ns_key(&event.resource.namespace),
        ns_count.to_le_bytes().to_vec(),
    );
    batch.commit().unwrap();
}

#[test]
fn a_store_of_the_first_format_answers_and_takes_new_versions() {
    let dir = tempfile::tempdir().unwrap();
    let mut posted = Posted::new();
    {
        // The keyspaces of the first format are the same: write its records and close.
        let store = open(dir.path(), 0);
        let base = 1_750_000_000_000_000;
        let mut previous = None;
        for step in 0..10 {
            let object = deployment(step, "uid-1");
            let (operation, old) = match previous.take() {
                None => (Operation::Create, None),
                Some(old) => (Operation::Update, Some(old)),
            };
            let id = EventId(base + step as u64);
            let event = new_event(operation, "", Some(object.clone()), old.clone());
            write_first_format(&store, id, event, step as u64 + 1);
            posted.insert(id, (Some(object.clone()), old));
            previous = Some(object);
        }
        store.close();
    }
    let store = open(dir.path(), 12);
    let mut life = Life {
        current: posted.values().last().unwrap().0.clone().unwrap(),
        queued: None,
        step: 9,
        uid: "uid-1".into(),
        posted,
    };
    assert_eq!(life.check(&store, "first format"), 10);
    let first = *life.posted.keys().next().unwrap();
    let created = store.summary(first).unwrap().unwrap();
    assert_eq!(
        created.patch[0]["op"], "add",
        "a created object's patch is rebuilt"
    );
    let namespaces = store.namespaces().unwrap();
    assert_eq!(namespaces[0].events, 10);
    // New versions are deltas on the old records; retention then removes the old records
    // and rebases the new ones on the way.
    for _ in 0..20 {
        life.step(&store);
    }
    wait_for_trim(&store, 13);
    life.check(&store, "first format trimmed away");
    assert!(store.get_event(first).unwrap().is_none());
    store.close();
}

#[test]
fn a_damaged_record_is_an_error_naming_its_event_and_the_rest_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0);
    let mut life = Life::new(&store);
    for _ in 0..4 {
        life.step(&store);
    }
    let ids: Vec<EventId> = life.posted.keys().copied().collect();
    let engine = store.shared().engine().unwrap();
    let ks = &engine.ks;
    let value = ks.objects.get(ids[2].to_be_bytes()).unwrap().unwrap();
    // Truncated: the event itself (and every delta on it) is reported, naming it.
    ks.objects
        .insert(ids[2].to_be_bytes(), value[..value.len() / 2].to_vec())
        .unwrap();
    let error = store.get_event(ids[2]).unwrap_err();
    assert!(error.to_string().contains(&ids[2].to_string()), "{error}");
    assert!(store.get_event(ids[3]).is_err());
    assert!(store.object_events(&shop_web()).is_err());
    // Events before it still answer, and so do lists.
    assert_eq!(
        store.get_event(ids[1]).unwrap().unwrap().object,
        life.posted[&ids[1]].0
    );
    ks.events
        .insert(ids[1].to_be_bytes(), b"\x01\x00{\"not".to_vec())
        .unwrap();
    let error = store.summary(ids[1]).unwrap_err();
    assert!(error.to_string().contains(&ids[1].to_string()), "{error}");
    store.close();
}

#[test]
fn first_versions_lean_on_their_kinds_dictionary_through_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 0);
    let object = |n: usize| {
        let mut object = deployment(n, &format!("uid-{n}"));
        object["metadata"]["name"] = json!(format!("web-{n}"));
        object
    };
    let create = |store: &Store, n: usize| {
        let mut event = new_event(Operation::Create, "", Some(object(n)), None);
        event.event.resource.name = format!("web-{n}");
        match store.append_blocking(event).unwrap() {
            Appended::Recorded(id) => id,
            Appended::Duplicate(id) => panic!("duplicate {id}"),
        }
    };
    let size = |store: &Store, id: EventId| {
        let engine = store.shared().engine().unwrap();
        engine
            .ks
            .objects
            .size_of(id.to_be_bytes())
            .unwrap()
            .unwrap()
    };
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(create(&store, n));
    }
    let alone = objects::compress(&serde_json::to_vec(&object(0)).unwrap(), None).len() as u32;
    // The first ones fill the kind's dictionary; the later ones cost what distinguishes them.
    assert!(size(&store, ids[0]) >= alone, "the first is stored alone");
    for id in &ids[super::dicts::SAMPLES + 1..] {
        let bytes = size(&store, *id);
        assert!(
            bytes * 2 < alone,
            "{bytes} bytes with the dictionary, {alone} alone"
        );
    }
    let check = |store: &Store, ids: &[EventId], context: &str| {
        for (n, id) in ids.iter().enumerate() {
            let event = store.get_event(*id).unwrap().unwrap();
            assert_eq!(event.object, Some(object(n)), "{context}: event {n}");
        }
        let log = store.read_log(None, 1000).unwrap();
        assert_eq!(log.len(), ids.len(), "{context}");
        for (n, event) in log.iter().enumerate() {
            assert_eq!(event.object, Some(object(n)), "{context}: log {n}");
        }
    };
    check(&store, &ids, "written");
    store.close();
    // The dictionary is read from disk, and new first versions still use it.
    let store = open(dir.path(), 0);
    check(&store, &ids, "reopened");
    ids.push(create(&store, 20));
    assert!(size(&store, ids[20]) * 2 < alone);
    check(&store, &ids, "after a new create");
    // A consistent backup carries the dictionaries with the events.
    let mut writer = backup::BackupWriter::new(Vec::new()).unwrap();
    store.backup_into(&mut writer).unwrap();
    let bytes = writer.finish().unwrap();
    store.close();
    let restored = tempfile::tempdir().unwrap();
    let store_dir = restored.path().join("store");
    backup::restore(bytes.as_slice(), &store_dir, restored.path()).unwrap();
    let store = open(&store_dir, 0);
    check(&store, &ids, "restored");
    store.close();
}
