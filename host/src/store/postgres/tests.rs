//! The PostgreSQL backend against a real server: `scripts/test.sh` starts a throwaway one and
//! exports `LOGISTIS_TEST_POSTGRES` (an admin URL); each test creates its own database.
//! Without it the tests say they are skipped — and fail under CI, which must run them.
//! Outages are made with a TCP relay between the store and the server that the test cuts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use logistis_api::{Event, EventId};
use serde_json::json;

use super::super::{
    Appended, BackendSettings, EventFilter, ObjectKey, PostgresSettings, Scan, Store,
    StoreSettings, TlsMode,
};
use crate::admission::NewEvent;

/// A fresh, empty database on the test server, or `None` (skipped) when there is none.
pub(crate) fn test_database(test: &str) -> Option<String> {
    let Ok(admin) = std::env::var("LOGISTIS_TEST_POSTGRES") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: LOGISTIS_TEST_POSTGRES is not set under CI: run the tests with ./scripts/test.sh"
        );
        eprintln!(
            "SKIPPED {test}: no PostgreSQL (LOGISTIS_TEST_POSTGRES is not set; ./scripts/test.sh starts one)"
        );
        return None;
    };
    let mut name = test.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    name.truncate(40);
    let name = format!("logistis_{name}_{:08x}", rand::random::<u32>());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{test}: cannot reach {admin}: {e}"));
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
    });
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    Some(format!("{base}/{name}"))
}

pub(crate) fn postgres_settings(url: &str) -> PostgresSettings {
    PostgresSettings {
        url: url.to_owned(),
        password: None,
        tls: TlsMode::Disable,
        ca_file: None,
        pool_size: 4,
        commit_timeout: Duration::from_secs(2),
        outbox_max_bytes: 64 << 20,
        lease_ttl: Duration::from_secs(2),
    }
}

fn settings(url: &str, cluster: &str) -> StoreSettings {
    StoreSettings {
        retention_interval: Duration::from_millis(50),
        backend: BackendSettings::Postgres(postgres_settings(url)),
        cluster: cluster.to_owned(),
        ..StoreSettings::default()
    }
}

fn open(dir: &tempfile::TempDir, url: &str, cluster: &str) -> Store {
    Store::open(dir.path(), settings(url, cluster)).unwrap()
}

/// An UPDATE of `apps/Deployment ns/name` by `user`, deduplicated on `uid`.
fn event(ns: &str, name: &str, user: &str, uid: &str, replicas: u64) -> NewEvent {
    let event: Event = serde_json::from_value(json!({
        "id": "0000000000000000",
        "uid": uid,
        "time": chrono::Utc::now(),
        "operation": "UPDATE",
        "user": {"username": user, "groups": ["dev"]},
        "resource": {"group": "apps", "version": "v1", "kind": "Deployment",
                     "resource": "deployments", "namespace": ns, "name": name},
        "patch": [{"op": "replace", "path": "/spec/replicas", "value": replicas}],
        "object": {"metadata": {"name": name, "namespace": ns}, "spec": {"replicas": replicas}},
        "oldObject": {"metadata": {"name": name, "namespace": ns}, "spec": {"replicas": 1}},
    }))
    .unwrap();
    use sha2::Digest as _;
    NewEvent {
        event,
        dedupe_key: Some(sha2::Sha256::digest(uid.as_bytes()).into()),
    }
}

fn key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        group: "apps".into(),
        kind: "deployment".into(),
        namespace: ns.into(),
        name: name.into(),
    }
}

fn recorded(appended: Appended) -> EventId {
    match appended {
        Appended::Recorded(id) => id,
        Appended::Duplicate(id) => panic!("unexpected duplicate of {id}"),
    }
}

fn scan(limit: usize) -> Scan {
    Scan {
        limit,
        before: None,
        budget: Scan::DEFAULT_BUDGET,
    }
}

/// Poll `check` until it holds (bounded).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn appends_are_read_back_by_every_query() {
    let Some(url) = test_database("appends_are_read_back_by_every_query") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, &url, "prod");
    let a = recorded(
        store
            .append_blocking(event("shop", "web", "alice", "u1", 2))
            .unwrap(),
    );
    let b = recorded(
        store
            .append_blocking(event("shop", "api", "bob", "u2", 3))
            .unwrap(),
    );
    let c = recorded(
        store
            .append_blocking(event("ops", "web", "alice", "u3", 4))
            .unwrap(),
    );
    assert!(a < b && b < c);

    let all = store
        .list_events(&EventFilter::default(), scan(10))
        .unwrap();
    assert_eq!(
        all.items.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![c, b, a]
    );
    assert!(
        all.items
            .iter()
            .all(|e| e.cluster == "prod" && e.object.is_none())
    );
    let alice = EventFilter {
        user: Some("alice".into()),
        ..EventFilter::default()
    };
    assert_eq!(store.list_events(&alice, scan(10)).unwrap().items.len(), 2);
    let shop = EventFilter {
        namespace: Some("shop".into()),
        kind: Some("DEPLOYMENT".into()),
        ..EventFilter::default()
    };
    let page = store.list_events(&shop, scan(1)).unwrap();
    assert_eq!((page.items[0].id, page.next), (b, Some(b)));
    let rest = store
        .list_events(
            &shop,
            Scan {
                before: page.next,
                ..scan(1)
            },
        )
        .unwrap();
    assert_eq!((rest.items[0].id, rest.next), (a, None));

    let full = store.get_event(b).unwrap().unwrap();
    assert_eq!(full.object.unwrap()["spec"]["replicas"], 3);
    assert_eq!(full.old_object.unwrap()["spec"]["replicas"], 1);
    assert!(store.summary(b).unwrap().unwrap().object.is_none());
    assert!(store.get_event(EventId(1)).unwrap().is_none());

    let namespaces = store.namespaces().unwrap();
    let counts: Vec<(&str, u64)> = namespaces
        .iter()
        .map(|n| (n.namespace.as_str(), n.events))
        .collect();
    assert_eq!(counts, vec![("ops", 1), ("shop", 2)]);
    assert_eq!(namespaces[1].latest.as_ref().unwrap().id, b);

    let (history, trimmed) = store.object_events(&key("shop", "web")).unwrap();
    assert_eq!((history.len(), trimmed), (1, 0));
    assert_eq!(history[0].object.as_ref().unwrap()["spec"]["replicas"], 2);

    let log = store.read_log(None, 10).unwrap();
    assert_eq!(log.iter().map(|e| e.id).collect::<Vec<_>>(), vec![a, b, c]);
    assert_eq!(store.read_log(Some(a), 10).unwrap().len(), 2);
    assert_eq!(store.last_id(), Some(c));
    assert_eq!(store.cursor("sink:log").unwrap(), None);
    store.save_cursor("sink:log", b).unwrap();
    assert_eq!(store.cursor("sink:log").unwrap(), Some(b));
    store.close();

    // Reopened: everything is still there, and the id clock goes on after it.
    let store = open(&dir, &url, "prod");
    let d = recorded(
        store
            .append_blocking(event("shop", "web", "alice", "u4", 5))
            .unwrap(),
    );
    assert!(d > c);
    assert_eq!(store.cursor("sink:log").unwrap(), Some(b));
    assert_eq!(store.object_events(&key("shop", "web")).unwrap().0.len(), 2);
    store.close();
}

#[test]
fn two_replicas_store_a_resent_review_once() {
    let Some(url) = test_database("two_replicas_store_a_resent_review_once") else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // No version limit: a trimmed event takes its request key with it (as on fjall), and a
    // copy arriving after that would be new.
    let keep_all = |url: &str| StoreSettings {
        max_versions_per_object: 0,
        ..settings(url, "")
    };
    let a = Store::open(dir_a.path(), keep_all(&url)).unwrap();
    let b = Store::open(dir_b.path(), keep_all(&url)).unwrap();
    let first = recorded(
        a.append_blocking(event("shop", "web", "alice", "same", 2))
            .unwrap(),
    );
    assert_eq!(
        b.append_blocking(event("shop", "web", "alice", "same", 2))
            .unwrap(),
        Appended::Duplicate(first)
    );
    // Concurrently, many reviews each sent to both replicas: every one stored once.
    let receivers: Vec<_> = (0..200)
        .flat_map(|i| {
            let uid = format!("r{i}");
            [
                a.append(Box::new(event("shop", "web", "alice", &uid, i))),
                b.append(Box::new(event("shop", "web", "alice", &uid, i))),
            ]
        })
        .collect();
    let outcomes: Vec<Appended> = receivers
        .into_iter()
        .map(|r| r.blocking_recv().unwrap().unwrap())
        .collect();
    let recorded = outcomes
        .iter()
        .filter(|o| matches!(o, Appended::Recorded(_)))
        .count();
    assert_eq!(recorded, 200, "each review recorded by exactly one replica");
    let (history, _) = a.object_events(&key("shop", "web")).unwrap();
    assert_eq!(history.len(), 201);
    a.close();
    b.close();
}

#[test]
fn migrations_run_from_empty_from_the_previous_version_and_concurrently() {
    let Some(url) = test_database("migrations") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pool = {
        let _entered = runtime.enter();
        super::connect::pool(&postgres_settings(&url)).unwrap()
    };
    // Version 1 only, with an event in it, as the previous release left it.
    let version = runtime
        .block_on(super::schema::migrate(&pool, "old", 1))
        .unwrap();
    assert_eq!(version, 1);
    runtime.block_on(async {
        let client = pool.get().await.unwrap();
        client
            .execute(
                "INSERT INTO logistis_events (id, seq, cluster, grp, kind, namespace, name, username, operation, time_us, summary, bytes)
                 VALUES (5, 1, '', 'apps', 'deployment', 'shop', 'web', 'alice', 'CREATE', 5, $1, 10)",
                &[&serde_json::to_vec(&json!({
                    "id": "0000000000000005", "uid": "old", "time": "1970-01-01T00:00:00.000005Z",
                    "operation": "CREATE", "user": {"username": "alice"},
                    "resource": {"group": "apps", "kind": "Deployment", "namespace": "shop", "name": "web"},
                    "patch": []
                }))
                .unwrap()],
            )
            .await
            .unwrap();
    });
    // Two replicas start at once: both wait for the lock, one migrates, both see the newest.
    let both = runtime.block_on(async {
        let (x, y) = tokio::join!(
            super::schema::migrate(&pool, "a", super::schema::VERSION),
            super::schema::migrate(&pool, "b", super::schema::VERSION)
        );
        (x.unwrap(), y.unwrap())
    });
    assert_eq!(both, (super::schema::VERSION, super::schema::VERSION));
    drop(pool);
    drop(runtime);
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, &url, "");
    assert_eq!(store.get_event(EventId(5)).unwrap().unwrap().uid, "old");
    assert!(
        store.lease("sink:x", "me").unwrap(),
        "the version 2 table is there"
    );
    store.close();

    // From an empty database straight to the newest version.
    let Some(empty) = test_database("migrations_empty") else {
        return;
    };
    let empty_dir = tempfile::tempdir().unwrap();
    let store = open(&empty_dir, &empty, "");
    assert!(
        store
            .list_events(&EventFilter::default(), scan(5))
            .unwrap()
            .items
            .is_empty()
    );
    store.close();
}

#[test]
fn clusters_share_a_database_and_stay_apart() {
    let Some(url) = test_database("clusters") else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(&dir_a, &url, "a");
    let b = open(&dir_b, &url, "b");
    let in_a = recorded(
        a.append_blocking(event("shop", "web", "alice", "a1", 2))
            .unwrap(),
    );
    let in_b = recorded(
        b.append_blocking(event("shop", "web", "bob", "b1", 7))
            .unwrap(),
    );
    let only = |cluster: &str| EventFilter {
        cluster: Some(cluster.into()),
        ..EventFilter::default()
    };
    let ids = |filter| {
        a.list_events(&filter, scan(10))
            .unwrap()
            .items
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(only("a")), vec![in_a]);
    assert_eq!(ids(only("b")), vec![in_b]);
    assert_eq!(ids(EventFilter::default()), vec![in_b, in_a]);
    let overview: Vec<(String, String)> = a
        .namespaces()
        .unwrap()
        .into_iter()
        .map(|n| (n.cluster, n.namespace))
        .collect();
    assert_eq!(
        overview,
        vec![("a".into(), "shop".into()), ("b".into(), "shop".into())]
    );
    // One object's history never mixes clusters.
    let (history, _) = a.object_events_in(Some("a"), &key("shop", "web")).unwrap();
    assert_eq!(history.iter().map(|e| e.id).collect::<Vec<_>>(), vec![in_a]);
    let (newest, _) = a.object_events(&key("shop", "web")).unwrap();
    assert_eq!(newest.iter().map(|e| e.id).collect::<Vec<_>>(), vec![in_b]);
    // Each cluster's sinks read their own log.
    assert_eq!(a.read_log(None, 10).unwrap().len(), 1);
    assert_eq!(b.read_log(None, 10).unwrap()[0].id, in_b);
    a.close();
    b.close();
}

#[test]
fn retention_trims_versions_and_expires_old_events_in_batches() {
    let Some(url) = test_database("retention") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&url, "");
    settings.max_versions_per_object = 3;
    let store = Store::open(dir.path(), settings).unwrap();
    let ids: Vec<EventId> = (0..8)
        .map(|i| {
            recorded(
                store
                    .append_blocking(event("shop", "web", "alice", &format!("v{i}"), i))
                    .unwrap(),
            )
        })
        .collect();
    eventually("trimmed to 3 versions", || {
        let (events, trimmed) = store.object_events(&key("shop", "web")).unwrap();
        events.iter().map(|e| e.id).collect::<Vec<_>>() == ids[5..] && trimmed == 5
    });
    assert_eq!(store.namespaces().unwrap()[0].events, 3, "counters follow");
    store.close();

    // Age: events older than the retention go, the counters with them.
    let mut settings = self::settings(&url, "");
    settings.retention = Some(Duration::from_millis(300));
    let store = Store::open(dir.path(), settings).unwrap();
    eventually("expired", || {
        store
            .list_events(&EventFilter::default(), scan(10))
            .unwrap()
            .items
            .is_empty()
            && store.namespaces().unwrap().is_empty()
    });
    assert!(
        store
            .stats()
            .events_removed_by_retention
            .load(Ordering::Relaxed)
            >= 3
    );
    store.close();
}

#[test]
fn a_size_limit_removes_the_oldest_events() {
    let Some(url) = test_database("size") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&url, "");
    settings.max_size_bytes = Some(4_000);
    let store = Store::open(dir.path(), settings).unwrap();
    let ids: Vec<EventId> = (0..40)
        .map(|i| {
            recorded(
                store
                    .append_blocking(event(
                        "shop",
                        &format!("d{i}"),
                        "alice",
                        &format!("s{i}"),
                        i,
                    ))
                    .unwrap(),
            )
        })
        .collect();
    eventually("under the limit", || {
        store.disk_space() <= 4_000 && store.disk_space() > 0
    });
    let left = store
        .list_events(&EventFilter::default(), scan(100))
        .unwrap()
        .items;
    assert!(left.len() < 40 && !left.is_empty(), "{} left", left.len());
    assert_eq!(left[0].id, *ids.last().unwrap(), "the newest stay");
    store.close();
}

#[test]
fn a_sink_lease_has_one_holder_until_it_expires() {
    let Some(url) = test_database("leases") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, &url, "");
    assert!(store.lease("sink:log", "a").unwrap());
    assert!(!store.lease("sink:log", "b").unwrap(), "a holds it");
    assert!(store.lease("sink:log", "a").unwrap(), "renewed");
    assert!(store.lease("sink:other", "b").unwrap(), "per sink");
    // a stops renewing: b takes over after the TTL (2 s here).
    eventually("b takes over", || store.lease("sink:log", "b").unwrap());
    assert!(!store.lease("sink:log", "a").unwrap());
    store.release_lease("sink:log", "b");
    assert!(
        store.lease("sink:log", "a").unwrap(),
        "released: free at once"
    );
    store.close();
}

/// A TCP relay to the database that the test can cut (every connection dropped, new ones
/// refused) and restore: an outage without stopping the shared server.
struct Relay {
    url: String,
    up: Arc<AtomicBool>,
    _runtime: tokio::runtime::Runtime,
}

impl Relay {
    fn start(url: &str) -> Relay {
        let config: tokio_postgres::Config = url.parse().unwrap();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let relay_port = listener.local_addr().unwrap().port();
        let flag = up.clone();
        runtime.spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !flag.load(Ordering::SeqCst) {
                    continue;
                }
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let cut = async {
                        while flag.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    };
                    tokio::select! { _ = copy => {}, () = cut => {} }
                });
            }
        });
        Relay {
            url: url.replacen(&format!(":{port}/"), &format!(":{relay_port}/"), 1),
            up,
            _runtime: runtime,
        }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

#[test]
fn while_the_database_is_away_events_wait_in_the_outbox_and_drain_in_order() {
    let Some(url) = test_database("outbox") else {
        return;
    };
    let relay = Relay::start(&url);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&relay.url, "");
    if let BackendSettings::Postgres(pg) = &mut settings.backend {
        pg.commit_timeout = Duration::from_millis(500);
    }
    let store = Store::open(dir.path(), settings.clone()).unwrap();
    let before = recorded(
        store
            .append_blocking(event("shop", "web", "alice", "o0", 0))
            .unwrap(),
    );
    assert!(!store.store_status().degraded);

    relay.set_up(false);
    let started = std::time::Instant::now();
    let away: Vec<EventId> = (1..=20)
        .map(|i| {
            recorded(
                store
                    .append_blocking(event("shop", "web", "alice", &format!("o{i}"), i))
                    .unwrap(),
            )
        })
        .collect();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered without the database: {:?}",
        started.elapsed()
    );
    // The relay cuts its connections within 10 ms of going down, so the first of these may
    // still commit before the cut; every later one waits in the outbox.
    let status = store.store_status();
    assert!(
        status.degraded && (19..=20).contains(&status.outbox_events),
        "{status:?}"
    );
    assert!(store.is_open(), "still ready: the webhook is still useful");
    // A restart keeps them (the outbox is on disk); they drain once the database is back.
    store.close();
    relay.set_up(true);
    let store = Store::open(dir.path(), settings).unwrap();
    eventually("the outbox drains", || {
        let status = store.store_status();
        !status.degraded && status.outbox_events == 0
    });
    let (history, _) = store.object_events(&key("shop", "web")).unwrap();
    let ids: Vec<EventId> = history.iter().map(|e| e.id).collect();
    let mut expected = vec![before];
    expected.extend(&away);
    assert_eq!(ids, expected, "nothing lost, order kept");
    let replicas: Vec<u64> = history
        .iter()
        .map(|e| {
            e.object.as_ref().unwrap()["spec"]["replicas"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(replicas, (0..=20).collect::<Vec<_>>());
    store.close();
}

#[test]
fn locks_are_shared_by_the_replicas_of_a_cluster_and_kept_apart_from_other_clusters() {
    use crate::locks::{Error as LockError, Locks};
    use logistis_api::lock::{Lock, LockUser};
    let Some(url) = test_database("locks") else {
        return;
    };
    let body = |name: &str| -> Lock {
        let mut lock: Lock = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        lock.spec.reason = "release 4.2".into();
        lock
    };
    let carol = LockUser {
        username: "carol@example.com".into(),
        groups: vec!["sre".into()],
    };
    let now = chrono::Utc::now();
    let (dir_a, dir_b, dir_c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (a, b) = (open(&dir_a, &url, "prod"), open(&dir_b, &url, "prod"));
    let other = open(&dir_c, &url, "staging");
    let (locks_a, locks_b) = (
        Locks::load(a.clone()).unwrap(),
        Locks::load(b.clone()).unwrap(),
    );
    let locks_other = Locks::load(other.clone()).unwrap();
    let mut watch_b = locks_b.subscribe();

    let made = locks_a
        .create("shop", body("freeze"), carol.clone(), now, false)
        .unwrap();
    // Replica b learns of it on its next read, and tells its watchers.
    assert_eq!(locks_b.reload(now).unwrap(), 1);
    assert_eq!(
        locks_b.get("shop", "freeze", now).unwrap().metadata.uid,
        made.metadata.uid
    );
    let change = watch_b.try_recv().unwrap();
    assert_eq!(change.change.as_str(), "ADDED");
    assert_eq!(locks_b.reload(now).unwrap(), 0, "nothing new: no change");
    // A second create of the name fails on either replica, even one that has not re-read.
    assert!(matches!(
        locks_a.create("shop", body("freeze"), carol.clone(), now, false),
        Err(LockError::AlreadyExists { .. })
    ));
    // Another cluster in the same database has its own locks.
    assert!(locks_other.reload(now).unwrap() == 0 && locks_other.is_empty());
    locks_other
        .create("shop", body("freeze"), carol.clone(), now, false)
        .unwrap();

    locks_b.delete("shop", "freeze", now).unwrap();
    assert_eq!(locks_a.reload(now).unwrap(), 1);
    assert!(locks_a.get("shop", "freeze", now).is_none());
    assert_eq!(watch_b.try_recv().unwrap().change.as_str(), "DELETED");
    // A restart reads the set from the database.
    a.close();
    let a = open(&dir_a, &url, "prod");
    assert!(Locks::load(a.clone()).unwrap().is_empty());
    assert_eq!(Locks::load(other.clone()).unwrap().len(), 1);
    for store in [a, b, other] {
        store.close();
    }
}

#[test]
fn a_bulk_load_is_appended_in_order_with_its_duplicates_named() {
    let Some(url) = test_database("a_bulk_load_is_appended_in_order_with_its_duplicates_named")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, &url, "prod");
    let outcomes = store
        .append_bulk(vec![
            event("shop", "web", "alice", "b1", 2),
            event("shop", "web", "bob", "b2", 3),
            event("shop", "web", "bob", "b2", 3),
        ])
        .blocking_recv()
        .unwrap()
        .unwrap();
    let outcomes: Vec<Appended> = outcomes.into_iter().map(Result::unwrap).collect();
    let (first, second) = (recorded(outcomes[0]), recorded(outcomes[1]));
    assert!(first < second);
    assert_eq!(outcomes[2], Appended::Duplicate(second));
    let (events, _) = store.object_events(&key("shop", "web")).unwrap();
    let users: Vec<_> = events.iter().map(|e| e.user.username.as_str()).collect();
    assert_eq!(users, ["alice", "bob"]);
    assert!(events.iter().all(|e| e.cluster == "prod"));
    assert_eq!(events[1].object.as_ref().unwrap()["spec"]["replicas"], 3);
    store.close();
}
