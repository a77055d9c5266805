//! Output: everything the commands print, as pure functions from query answers to text, so
//! they are tested on hand-written JSON. `table` lays out lists (kubectl style, no borders),
//! `change` prints one change as an RFC 6902 patch or a unified YAML diff, `blame` the
//! per-line view. JSON and YAML print the server's answer unchanged.

pub mod blame;
pub mod change;
pub mod table;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cli::TimeFormat;
use crate::color::Painter;

/// A value could not be written as JSON or YAML.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not write the answer as JSON")]
    Json(#[source] serde_json::Error),
    #[error("could not write the answer as YAML")]
    Yaml(#[source] serde_yaml::Error),
}

/// How to render: colours, times, and whether tables may wrap to the terminal's width.
#[derive(Debug, Clone, Copy)]
pub struct Renderer {
    pub painter: Painter,
    pub time_format: TimeFormat,
    /// "Now" for relative times: taken once, so every row of one answer agrees.
    pub now: DateTime<Utc>,
    pub terminal: bool,
}

impl Renderer {
    pub fn time(&self, time: DateTime<Utc>) -> String {
        crate::time::format(time, self.now, self.time_format)
    }
}

/// Pretty JSON with a final newline.
pub fn json<T: Serialize>(value: &T) -> Result<String, Error> {
    let mut text = serde_json::to_string_pretty(value).map_err(Error::Json)?;
    text.push('\n');
    Ok(text)
}

pub fn yaml<T: Serialize>(value: &T) -> Result<String, Error> {
    serde_yaml::to_string(value).map_err(Error::Yaml)
}

/// A JSON value on one line, cut to `max` characters: for table cells.
pub fn compact(value: &serde_json::Value, max: usize) -> String {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    shorten(&text, max)
}

/// Cuts `text` to at most `max` characters, marking the cut with `…`.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Hand-written answers of the query API, shaped like the server's.

    use chrono::{DateTime, Utc};

    use super::Renderer;
    use crate::cli::TimeFormat;
    use crate::color::Painter;

    pub fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    pub fn renderer(color: bool) -> Renderer {
        Renderer {
            painter: Painter { enabled: color },
            time_format: TimeFormat::Relative,
            now: now(),
            terminal: false,
        }
    }

    pub fn deployment(replicas: u64, image: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "template": {"spec": {"containers": [{"name": "web", "image": image}]}}
            }
        })
    }

    /// A page of `GET /events` for deployment shop/web: create, scale, image change, delete.
    pub fn events() -> logistis_api::EventList {
        serde_json::from_value(serde_json::json!({
            "items": [
                {"id": "00061765a2a3c000", "uid": "u4", "time": "2024-05-01T11:58:00Z",
                 "operation": "DELETE", "user": {"username": "carol", "groups": []},
                 "resource": {"group": "apps", "version": "v1", "kind": "Deployment",
                              "resource": "deployments", "namespace": "shop", "name": "web"},
                 "patch": []},
                {"id": "00061765a2a3b000", "uid": "u3", "time": "2024-05-01T11:25:00Z",
                 "operation": "UPDATE", "user": {"username": "bob", "groups": []},
                 "resource": {"group": "apps", "version": "v1", "kind": "Deployment",
                              "resource": "deployments", "namespace": "shop", "name": "web"},
                 "fieldManager": "kubectl-set",
                 "patch": [{"op": "replace", "path": "/spec/template/spec/containers/0/image",
                            "value": "nginx:1.27"}]},
                {"id": "00061765a2a3a000", "uid": "u2", "time": "2024-05-01T09:00:00Z",
                 "operation": "UPDATE", "user": {"username": "alice", "groups": []},
                 "resource": {"group": "apps", "version": "v1", "kind": "Deployment",
                              "resource": "deployments", "subresource": "scale",
                              "namespace": "shop", "name": "web"},
                 "patch": [{"op": "replace", "path": "/spec/replicas", "value": 3}]},
                {"id": "00061765a2a39000", "uid": "u1", "time": "2024-04-29T12:00:00Z",
                 "operation": "CREATE", "user": {"username": "alice", "groups": []},
                 "resource": {"group": "apps", "version": "v1", "kind": "Deployment",
                              "resource": "deployments", "namespace": "shop", "name": "web"},
                 "patch": [{"op": "add", "path": "", "value": deployment(1, "nginx:1.25")}]}
            ],
            "continue": "00061765a2a39000"
        }))
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_cut_with_an_ellipsis() {
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
        assert_eq!(compact(&serde_json::json!("nginx"), 10), "nginx");
        assert_eq!(
            compact(&serde_json::json!({"a": [1, 2]}), 40),
            r#"{"a":[1,2]}"#
        );
    }

    #[test]
    fn json_and_yaml_keep_the_server_field_names() {
        let list = fixtures::events();
        let text = json(&list).unwrap();
        assert!(
            text.contains("\"continue\": \"00061765a2a39000\""),
            "{text}"
        );
        assert!(text.contains("\"fieldManager\": \"kubectl-set\""), "{text}");
        let text = yaml(&list).unwrap();
        assert!(text.contains("continue: 00061765a2a39000"), "{text}");
        assert!(text.contains("username: bob"), "{text}");
    }
}
