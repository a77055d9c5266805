//! Tables like kubectl's: upper-case headers, no borders, columns three spaces apart, one row
//! per change. On a terminal the last column wraps to its width; piped, nothing wraps, so
//! scripts see whole values.

use comfy_table::{ContentArrangement, Table, presets};
use logistis_api::{
    BisectAnswer, Event, FieldHistory, NamespaceList, Operation, Status, VersionList,
};

use super::{Renderer, compact};

/// At most this many `op path value` lines per change in the PATCH column.
const MAX_PATCH_LINES: usize = 8;
/// Values in cells are cut to this many characters.
const MAX_VALUE_WIDTH: usize = 60;

fn table(renderer: &Renderer, header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_header(header.to_vec());
    table.set_content_arrangement(if renderer.terminal {
        ContentArrangement::Dynamic
    } else {
        ContentArrangement::Disabled
    });
    for column in table.column_iter_mut() {
        column.set_padding((0, 3));
    }
    table
}

fn finish(table: &Table) -> String {
    let mut text = table.trim_fmt();
    text.push('\n');
    text
}

/// What the query API calls the cluster-scoped "namespace".
fn namespace_label(namespace: &str) -> &str {
    if namespace.is_empty() {
        "(cluster)"
    } else {
        namespace
    }
}

/// More than one cluster among these: then tables get a CLUSTER column.
fn several_clusters<'a>(mut clusters: impl Iterator<Item = &'a str>) -> bool {
    let first = clusters.next();
    clusters.any(|c| Some(c) != first)
}

/// `kubectl blame`: one row per namespace (per cluster and namespace when several clusters
/// share the database).
pub fn overview(list: &NamespaceList, renderer: &Renderer) -> String {
    let show_cluster = several_clusters(list.items.iter().map(|row| row.cluster.as_str()));
    let mut header = vec![
        "NAMESPACE",
        "CHANGES",
        "LAST CHANGE",
        "OBJECT",
        "OPERATION",
        "USER",
    ];
    if show_cluster {
        header.insert(0, "CLUSTER");
    }
    let mut out = table(renderer, &header);
    for row in &list.items {
        let (time, key, operation, user) = match &row.latest {
            Some(event) => (
                renderer.time(event.time),
                event.resource.display_key(),
                event.operation.to_string(),
                event.user.username.clone(),
            ),
            None => Default::default(),
        };
        let mut cells = vec![
            namespace_label(&row.namespace).to_owned(),
            row.events.to_string(),
            time,
            key,
            operation,
            user,
        ];
        if show_cluster {
            cells.insert(0, row.cluster.clone());
        }
        out.add_row(cells);
    }
    finish(&out)
}

/// A list of changes: KEY, OPERATION, USER, TIME, PATCH (and NAMESPACE first when the list
/// spans namespaces, CLUSTER before it when it spans clusters, STATUS after OPERATION when
/// the server confirms changes by watch).
pub fn events(items: &[Event], show_namespace: bool, renderer: &Renderer) -> String {
    let show_status = items.iter().any(|e| e.status.is_some());
    let show_cluster = several_clusters(items.iter().map(|e| e.cluster.as_str()));
    let mut header = vec!["KEY", "OPERATION", "USER", "TIME", "PATCH"];
    if show_status {
        header.insert(2, "STATUS");
    }
    if show_namespace {
        header.insert(0, "NAMESPACE");
    }
    if show_cluster {
        header.insert(0, "CLUSTER");
    }
    let mut out = table(renderer, &header);
    for event in items {
        let mut row = vec![
            event.resource.display_key(),
            event.operation.to_string(),
            user_cell(event),
            renderer.time(event.time),
            patch_summary(event).join("\n"),
        ];
        if show_status {
            row.insert(2, status_cell(event.status));
        }
        if show_namespace {
            row.insert(0, namespace_label(&event.resource.namespace).to_owned());
        }
        if show_cluster {
            row.insert(0, event.cluster.clone());
        }
        out.add_row(row);
    }
    finish(&out)
}

/// The STATUS cell: the status name, `-` when the change has none (not confirmed by watch).
pub fn status_cell(status: Option<Status>) -> String {
    status.map_or_else(|| "-".to_owned(), |s| s.as_str().to_owned())
}

/// The USER cell: the username; for a change only the watch saw (no review, so no user),
/// `?` and the field manager that last wrote the object, the best hint of who it was.
pub fn user_cell(event: &Event) -> String {
    if !event.user.username.is_empty() {
        return event.user.username.clone();
    }
    match (&event.status, &event.observed_by) {
        (Some(Status::Observed), Some(hint)) if !hint.manager.is_empty() => {
            format!("? ({})", hint.manager)
        }
        (Some(Status::Observed), _) => "?".to_owned(),
        _ => String::new(),
    }
}

/// The PATCH cell: `op path value` per operation, or one word for what a patch cannot say.
pub fn patch_summary(event: &Event) -> Vec<String> {
    match event.operation {
        Operation::Create => return vec!["created".to_owned()],
        Operation::Delete => return vec!["deleted".to_owned()],
        Operation::Connect => return vec![connect_summary(event)],
        _ => {}
    }
    let Some(ops) = event.patch.as_array() else {
        return vec![compact(&event.patch, MAX_VALUE_WIDTH)];
    };
    if ops.is_empty() {
        return vec!["(no change)".to_owned()];
    }
    let mut lines: Vec<String> = ops
        .iter()
        .take(MAX_PATCH_LINES)
        .map(|op| {
            let field = |name: &str| op.get(name).and_then(|v| v.as_str()).unwrap_or("");
            let path = if field("path").is_empty() {
                "/"
            } else {
                field("path")
            };
            match (field("op"), op.get("value")) {
                ("move" | "copy", _) => format!("{} {} -> {path}", field("op"), field("from")),
                (name, Some(value)) => {
                    format!("{name} {path} {}", compact(value, MAX_VALUE_WIDTH))
                }
                (name, None) => format!("{name} {path}"),
            }
        })
        .collect();
    if ops.len() > MAX_PATCH_LINES {
        lines.push(format!("… {} more", ops.len() - MAX_PATCH_LINES));
    }
    lines
}

/// `exec: sh -c date (container web)` for a `pods/exec`; the subresource otherwise.
fn connect_summary(event: &Event) -> String {
    let subresource = if event.resource.subresource.is_empty() {
        "connect"
    } else {
        &event.resource.subresource
    };
    let Some(options) = &event.options else {
        return subresource.to_owned();
    };
    let mut text = subresource.to_owned();
    if let Some(command) = options.get("command").and_then(|c| c.as_array()) {
        let words: Vec<&str> = command.iter().filter_map(|w| w.as_str()).collect();
        text.push_str(": ");
        text.push_str(&super::shorten(&words.join(" "), MAX_VALUE_WIDTH));
    }
    if let Some(container) = options.get("container").and_then(|c| c.as_str()) {
        text.push_str(&format!(" (container {container})"));
    }
    text
}

/// `--versions`: VERSION, TIME, OPERATION, USER, CHANGES (GENERATION when re-created).
pub fn versions(list: &VersionList, renderer: &Renderer) -> String {
    let show_generation = list.generations.len() > 1;
    let show_status = list.items.iter().any(|v| v.status.is_some());
    let mut header = vec!["VERSION", "TIME", "OPERATION", "USER", "CHANGES"];
    if show_status {
        header.insert(3, "STATUS");
    }
    if show_generation {
        header.insert(1, "GENERATION");
    }
    let mut out = table(renderer, &header);
    for version in &list.items {
        let user = match (&version.status, version.user.username.as_str()) {
            (Some(Status::Observed), "") => version
                .field_manager
                .as_ref()
                .map_or_else(|| "?".to_owned(), |m| format!("? ({m})")),
            (_, user) => user.to_owned(),
        };
        let mut row = vec![
            version.version.to_string(),
            renderer.time(version.time),
            version.operation.to_string(),
            user,
            version.summary.clone(),
        ];
        if show_status {
            row.insert(3, status_cell(version.status));
        }
        if show_generation {
            row.insert(1, version.generation.to_string());
        }
        out.add_row(row);
    }
    finish(&out)
}

/// `--path FIELD`: every version that changed the field, with old and new value.
pub fn field_history(history: &FieldHistory, renderer: &Renderer) -> String {
    let mut out = table(
        renderer,
        &["VERSION", "TIME", "OPERATION", "USER", "OLD", "NEW"],
    );
    let value = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .map_or_else(|| "<none>".to_owned(), |v| compact(v, MAX_VALUE_WIDTH))
    };
    for change in &history.items {
        out.add_row(vec![
            change.version.to_string(),
            renderer.time(change.time),
            change.operation.to_string(),
            change.user.username.clone(),
            value(&change.old),
            value(&change.new),
        ]);
    }
    finish(&out)
}

/// `--bisect PATH=VALUE`: one sentence, the answer first.
pub fn bisect(answer: &BisectAnswer, field: &str, renderer: &Renderer) -> String {
    let version = &answer.version;
    let previous = answer.previous.as_ref().map_or_else(
        || "the field did not exist before".to_owned(),
        |v| format!("it was {} before", compact(v, MAX_VALUE_WIDTH)),
    );
    format!(
        "{field} = {} since version {}: {} by {}, {} (event {}); {previous}\n",
        compact(&answer.value, MAX_VALUE_WIDTH),
        version.version,
        version.operation,
        version.user.username,
        renderer.time(version.time),
        version.event_id,
    )
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    #[test]
    fn statuses_get_a_column_and_observed_changes_a_hinted_user() {
        let mut list = fixtures::events();
        let plain = events(&list.items, false, &fixtures::renderer(false));
        assert!(
            !plain.contains("STATUS"),
            "no column without confirmation: {plain}"
        );
        list.items[0].status = Some(Status::Confirmed);
        list.items[1].status = Some(Status::Phantom);
        list.items[2].status = Some(Status::Observed);
        list.items[2].user.username.clear();
        list.items[2].observed_by = Some(logistis_api::ManagerHint {
            manager: "hpa-controller".into(),
            ..Default::default()
        });
        let text = events(&list.items, false, &fixtures::renderer(false));
        let lines: Vec<&str> = text.lines().collect();
        let at = |column: &str| lines[0].find(column).unwrap();
        assert!(
            at("OPERATION") < at("STATUS") && at("STATUS") < at("USER"),
            "{text}"
        );
        assert!(lines[1].contains("confirmed"), "{text}");
        assert!(lines[2].contains("phantom"), "{text}");
        assert!(
            lines[3].contains("observed") && lines[3].contains("? (hpa-controller)"),
            "{text}"
        );
        assert!(lines[4].contains(" - "), "a change without status: {text}");
    }

    #[test]
    fn event_table_has_seed_columns_and_readable_patches() {
        let list = fixtures::events();
        let text = events(&list.items, false, &fixtures::renderer(false));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("KEY"), "{text}");
        for column in ["OPERATION", "USER", "TIME", "PATCH"] {
            assert!(lines[0].contains(column), "{text}");
        }
        assert!(lines[1].starts_with("Deployment.apps/web "), "{text}");
        assert!(
            lines[1].contains("DELETE") && lines[1].contains("carol"),
            "{text}"
        );
        assert!(
            lines[1].contains("2m") && lines[1].ends_with("deleted"),
            "{text}"
        );
        assert!(
            text.contains("replace /spec/template/spec/containers/0/image nginx:1.27"),
            "{text}"
        );
        assert!(text.contains("Deployment.apps/web/scale"), "{text}");
        assert!(text.contains("replace /spec/replicas 3"), "{text}");
        assert!(text.contains("2d") && text.contains("created"), "{text}");
        assert!(!text.contains("NAMESPACE"), "{text}");
        assert!(
            lines.iter().all(|l| l.trim_end() == *l),
            "no trailing blanks: {text:?}"
        );
    }

    #[test]
    fn namespace_column_when_the_list_spans_namespaces() {
        let list = fixtures::events();
        let text = events(&list.items, true, &fixtures::renderer(false));
        assert!(text.starts_with("NAMESPACE"), "{text}");
        assert!(text.lines().nth(1).unwrap().starts_with("shop "), "{text}");
    }

    #[test]
    fn long_patches_are_cut() {
        let mut event = fixtures::events().items.remove(1);
        let ops: Vec<_> = (0..10)
            .map(|i| serde_json::json!({"op": "add", "path": format!("/metadata/labels/l{i}"), "value": "x".repeat(100)}))
            .collect();
        event.patch = serde_json::Value::Array(ops);
        let lines = patch_summary(&event);
        assert_eq!(lines.len(), MAX_PATCH_LINES + 1);
        assert_eq!(lines.last().unwrap(), "… 2 more");
        assert!(
            lines[0].ends_with('…') && lines[0].chars().count() < 100,
            "{lines:?}"
        );
        event.patch = serde_json::json!([{"op": "move", "from": "/a", "path": "/b"}, {"op": "remove", "path": "/c"}]);
        assert_eq!(patch_summary(&event), ["move /a -> /b", "remove /c"]);
    }

    #[test]
    fn connect_shows_the_command() {
        let mut event = fixtures::events().items.remove(0);
        event.operation = Operation::Connect;
        event.resource.kind = "Pod".into();
        event.resource.subresource = "exec".into();
        event.options = Some(
            serde_json::json!({"kind": "PodExecOptions", "command": ["sh", "-c", "date"], "container": "web"}),
        );
        assert_eq!(patch_summary(&event), ["exec: sh -c date (container web)"]);
    }

    #[test]
    fn a_cluster_column_only_when_several_clusters_are_shown() {
        let mut events = fixtures::events().items;
        let one = super::events(&events, false, &fixtures::renderer(false));
        assert!(!one.contains("CLUSTER"), "{one}");
        events[0].cluster = "eu-1".into();
        events[1].cluster = "us-2".into();
        let two = super::events(&events, false, &fixtures::renderer(false));
        assert!(two.starts_with("CLUSTER"), "{two}");
        assert!(two.contains("eu-1") && two.contains("us-2"), "{two}");
        let list: NamespaceList = serde_json::from_value(serde_json::json!({"items": [
            {"cluster": "eu-1", "namespace": "shop", "events": 2, "latest": serde_json::to_value(&events[0]).unwrap()},
            {"cluster": "us-2", "namespace": "shop", "events": 4, "latest": serde_json::to_value(&events[1]).unwrap()}
        ]}))
        .unwrap();
        let overview = super::overview(&list, &fixtures::renderer(false));
        assert!(overview.starts_with("CLUSTER   NAMESPACE"), "{overview}");
    }

    #[test]
    fn overview_names_cluster_scope() {
        let events = fixtures::events();
        let list: NamespaceList = serde_json::from_value(serde_json::json!({"items": [
            {"namespace": "", "events": 2, "latest": serde_json::to_value(&events.items[3]).unwrap()},
            {"namespace": "shop", "events": 4, "latest": serde_json::to_value(&events.items[0]).unwrap()}
        ]}))
        .unwrap();
        let text = overview(&list, &fixtures::renderer(false));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("NAMESPACE   CHANGES   LAST CHANGE"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("(cluster)") && lines[1].contains("CREATE"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("shop") && lines[2].contains(" 4 "),
            "{text}"
        );
        assert!(
            lines[2].contains("Deployment.apps/web") && lines[2].ends_with("carol"),
            "{text}"
        );
    }

    #[test]
    fn versions_and_field_history() {
        let list: VersionList = serde_json::from_value(serde_json::json!({
            "object": {"group": "apps", "kind": "Deployment", "namespace": "shop", "name": "web"},
            "firstVersion": 1, "trimmedEvents": 0,
            "generations": [{"generation": 1, "firstVersion": 1, "lastVersion": 2, "deleted": false}],
            "items": [
                {"version": 1, "generation": 1, "eventId": "00061765a2a39000", "time": "2024-04-29T12:00:00Z",
                 "user": {"username": "alice"}, "operation": "CREATE", "summary": "created"},
                {"version": 2, "generation": 1, "eventId": "00061765a2a3a000", "time": "2024-05-01T09:00:00Z",
                 "user": {"username": "alice"}, "operation": "UPDATE", "subresource": "scale",
                 "changedPaths": ["spec.replicas"], "summary": "spec.replicas"}
            ]
        }))
        .unwrap();
        let text = versions(&list, &fixtures::renderer(false));
        assert!(text.starts_with("VERSION   TIME   OPERATION"), "{text}");
        assert!(!text.contains("GENERATION"), "{text}");
        let row = text.lines().nth(2).unwrap();
        assert!(
            row.starts_with("2 ") && row.contains("3h") && row.ends_with("spec.replicas"),
            "{text}"
        );

        let history: FieldHistory = serde_json::from_value(serde_json::json!({
            "object": {"group": "apps", "kind": "Deployment", "namespace": "shop", "name": "web"},
            "path": "/spec/replicas", "firstVersion": 1, "trimmedEvents": 0,
            "items": [
                {"version": 1, "generation": 1, "eventId": "00061765a2a39000", "time": "2024-04-29T12:00:00Z",
                 "user": {"username": "alice"}, "operation": "CREATE", "new": 1},
                {"version": 2, "generation": 1, "eventId": "00061765a2a3a000", "time": "2024-05-01T09:00:00Z",
                 "user": {"username": "alice"}, "operation": "UPDATE", "old": 1, "new": 3}
            ]
        }))
        .unwrap();
        let text = field_history(&history, &fixtures::renderer(false));
        let rows: Vec<&str> = text.lines().collect();
        assert!(
            rows[1].contains("<none>") && rows[1].ends_with('1'),
            "{text}"
        );
        let cells: Vec<&str> = rows[2].split_whitespace().collect();
        assert_eq!(cells[cells.len() - 2..], ["1", "3"], "{text}");
    }

    #[test]
    fn bisect_answers_in_one_sentence() {
        let answer: BisectAnswer = serde_json::from_value(serde_json::json!({
            "object": {"group": "apps", "kind": "Deployment", "namespace": "shop", "name": "web"},
            "path": "/spec/replicas", "value": 3, "previous": 1,
            "version": {"version": 2, "generation": 1, "eventId": "00061765a2a3a000",
                        "time": "2024-05-01T09:00:00Z", "user": {"username": "alice"},
                        "operation": "UPDATE", "summary": "spec.replicas"}
        }))
        .unwrap();
        assert_eq!(
            bisect(&answer, "spec.replicas", &fixtures::renderer(false)),
            "spec.replicas = 3 since version 2: UPDATE by alice, 3h (event 00061765a2a3a000); \
             it was 1 before\n"
        );
    }
}
