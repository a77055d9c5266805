//! Server-side printing: the `meta.k8s.io/v1` `Table` kubectl asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` (k8s-openapi has no Table type; the
//! JSON follows the Kubernetes API reference: `columnDefinitions`, `rows` of `cells` with the
//! row's object as `PartialObjectMetadata` unless `includeObject=None|Object` says otherwise).

use axum::http::{HeaderMap, header};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// Whether the client asked for a Table.
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
        })
}

/// What a row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(value: Option<&str>) -> Result<IncludeObject, String> {
        match value {
            None | Some("") | Some("Metadata") => Ok(IncludeObject::Metadata),
            Some("None") => Ok(IncludeObject::None),
            Some("Object") => Ok(IncludeObject::Object),
            Some(other) => Err(format!(
                "includeObject={other:?}: expected None, Metadata or Object"
            )),
        }
    }

    /// The row's object.
    pub fn row_object(self, object: &Value) -> Value {
        match self {
            IncludeObject::None => Value::Null,
            IncludeObject::Object => object.clone(),
            IncludeObject::Metadata => json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": object["metadata"].clone(),
            }),
        }
    }
}

/// A column: name, type, format, description; priority 0 (shown without `-o wide`).
pub fn column(name: &str, kind: &str, format: &str, description: &str) -> Value {
    json!({"name": name, "type": kind, "format": format, "description": description, "priority": 0})
}

/// A Table with these columns and rows; `columns` left out when `None` (watch events after
/// the first).
pub fn table(
    columns: Option<&[Value]>,
    rows: Vec<Value>,
    resource_version: &str,
    next: Option<String>,
) -> Value {
    let mut metadata = json!({"resourceVersion": resource_version});
    if let Some(next) = next {
        metadata["continue"] = json!(next);
    }
    let mut table = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "rows": rows});
    if let Some(columns) = columns {
        table["columnDefinitions"] = json!(columns);
    }
    table
}

/// A row.
pub fn row(cells: Vec<Value>, object: Value) -> Value {
    if object.is_null() {
        json!({"cells": cells})
    } else {
        json!({"cells": cells, "object": object})
    }
}

/// kubectl's short ages: `45s`, `12m`, `5h`, `3d`, `2y` (k8s `duration.HumanDuration`, coarser).
pub fn age(time: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - time).num_seconds().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 3 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s if s < 86400 * 365 * 2 => format!("{}d", s / 86400),
        s => format!("{}y", s / (86400 * 365)),
    }
}

fn short(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(39).collect::<String>())
    } else {
        text
    }
}

/// A one-line summary of a change: `created`, `deleted`, `exec: sh -c …`, or the first
/// operation of the patch (`replace /spec/replicas 3`) and how many more there are.
pub fn summary(operation: &str, patch: &Value, options: Option<&Value>) -> String {
    match operation {
        "CREATE" => return "created".into(),
        "DELETE" => return "deleted".into(),
        "CONNECT" => {
            let command = options
                .and_then(|o| o["command"].as_array())
                .map(|parts| {
                    parts
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            return short(&Value::String(
                format!("connect: {command}").trim().to_owned(),
            ));
        }
        _ => {}
    }
    let operations = patch.as_array().map(Vec::as_slice).unwrap_or_default();
    let Some(first) = operations.first() else {
        return "no change".into();
    };
    let mut text = format!(
        "{} {}",
        first["op"].as_str().unwrap_or("?"),
        first["path"].as_str().unwrap_or("")
    );
    if let Some(value) = first.get("value") {
        text = format!("{text} {}", short(value));
    }
    if operations.len() > 1 {
        text = format!("{text} (+{} more)", operations.len() - 1);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn kubectl_table_accept_header_is_recognised() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"),
        );
        assert!(wants_table(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_table(&headers));
    }

    #[test]
    fn summaries_and_ages_are_short() {
        let patch = json!([{"op": "replace", "path": "/spec/replicas", "value": 3},
                           {"op": "add", "path": "/metadata/labels/a", "value": "b"}]);
        assert_eq!(
            summary("UPDATE", &patch, None),
            "replace /spec/replicas 3 (+1 more)"
        );
        assert_eq!(summary("CREATE", &json!([]), None), "created");
        assert_eq!(
            summary(
                "CONNECT",
                &json!([]),
                Some(&json!({"command": ["sh", "-c", "id"]}))
            ),
            "connect: sh -c id"
        );
        let now = Utc::now();
        assert_eq!(age(now - chrono::Duration::seconds(30), now), "30s");
        assert_eq!(age(now - chrono::Duration::minutes(30), now), "30m");
        assert_eq!(age(now - chrono::Duration::days(3), now), "3d");
    }
}
