//! One change as text: its RFC 6902 patch (`-o patch`) or a unified YAML diff (`-o diff`,
//! `--diff`). An event's diff is built from the object before and that object with the
//! event's patch applied, not from the raw object after: the server leaves noise
//! (`resourceVersion`, `status`, ...) out of the patch, and the diff should say the same.

use logistis_api::{Event, Operation};
use similar::TextDiff;

use super::{Error, Renderer, json};
use crate::color::{Painter, Style};

/// Lines of context around each hunk, as `diff -u` and git default to.
const CONTEXT_LINES: usize = 3;

/// `UPDATE Deployment.apps/web in shop by bob, 35m (event …)`.
pub fn headline(event: &Event, renderer: &Renderer) -> String {
    let place = if event.resource.namespace.is_empty() {
        String::new()
    } else {
        format!(" in {}", event.resource.namespace)
    };
    let text = format!(
        "{} {}{place} by {}, {} (event {})",
        event.operation,
        event.resource.display_key(),
        event.user.username,
        renderer.time(event.time),
        event.id
    );
    renderer.painter.paint(Style::Header, &text)
}

/// `-o patch`: a headline comment and the patch as JSON, per change.
pub fn patches(items: &[Event], renderer: &Renderer) -> Result<String, Error> {
    let mut out = String::new();
    for event in items {
        out.push_str("# ");
        out.push_str(&headline(event, renderer));
        out.push('\n');
        out.push_str(&json(&event.patch)?);
    }
    Ok(out)
}

/// `-o diff` of one event fetched with its objects (`GET /events/{id}`).
pub fn event_diff(event: &Event, renderer: &Renderer) -> Result<String, Error> {
    let mut out = headline(event, renderer);
    out.push('\n');
    match event.operation {
        Operation::Delete => out.push_str("(deleted)\n"),
        Operation::Connect => {
            out.push_str(&format!(
                "({})\n",
                super::table::patch_summary(event).join(" ")
            ));
        }
        _ => {
            let before = event.old_object.clone().unwrap_or(serde_json::Value::Null);
            let after = apply_patch(&before, &event.patch)
                .or_else(|| event.object.clone())
                .unwrap_or(serde_json::Value::Null);
            let key = event.resource.display_key();
            let text = unified(&to_yaml(&before)?, &to_yaml(&after)?, &key, &key);
            if text.is_empty() {
                out.push_str("(no change)\n");
            } else {
                out.push_str(&colorize(&text, renderer.painter));
            }
        }
    }
    Ok(out)
}

/// `before` with the RFC 6902 `patch` applied; `None` when the patch does not apply (then
/// the stored object after is the best we have).
pub fn apply_patch(
    before: &serde_json::Value,
    patch: &serde_json::Value,
) -> Option<serde_json::Value> {
    let patch: json_patch::Patch = serde_json::from_value(patch.clone()).ok()?;
    let mut doc = before.clone();
    json_patch::patch(&mut doc, &patch).ok()?;
    Some(doc)
}

fn to_yaml(value: &serde_json::Value) -> Result<String, Error> {
    if value.is_null() {
        return Ok(String::new());
    }
    super::yaml(value)
}

/// `diff -u` of two texts with `--- a/KEY` / `+++ b/KEY` headers; empty when equal.
pub fn unified(before: &str, after: &str, before_name: &str, after_name: &str) -> String {
    if before == after {
        return String::new();
    }
    TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(CONTEXT_LINES)
        .header(&format!("a/{before_name}"), &format!("b/{after_name}"))
        .to_string()
}

/// Colours a unified diff line by line: additions green, removals red, hunk headers cyan,
/// file headers bold.
pub fn colorize(diff: &str, painter: Painter) -> String {
    if !painter.enabled {
        return diff.to_owned();
    }
    let mut out = String::with_capacity(diff.len() + diff.len() / 4);
    for line in diff.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        let style = if body.starts_with("+++") || body.starts_with("---") {
            Some(Style::Header)
        } else if body.starts_with('+') {
            Some(Style::Added)
        } else if body.starts_with('-') {
            Some(Style::Removed)
        } else if body.starts_with("@@") {
            Some(Style::Hunk)
        } else {
            None
        };
        match style {
            Some(style) => out.push_str(&painter.paint(style, body)),
            None => out.push_str(body),
        }
        out.push_str(newline);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    fn with_objects(index: usize) -> Event {
        let mut event = fixtures::events().items.remove(index);
        match event.operation {
            Operation::Create => event.object = Some(fixtures::deployment(1, "nginx:1.25")),
            _ => {
                let mut before = fixtures::deployment(3, "nginx:1.25");
                before["metadata"]["resourceVersion"] = "100".into();
                let mut after = fixtures::deployment(3, "nginx:1.27");
                // Noise the server keeps in the object but not in the patch.
                after["metadata"]["resourceVersion"] = "101".into();
                after["status"] = serde_json::json!({"observedGeneration": 2});
                event.old_object = Some(before);
                event.object = Some(after);
            }
        }
        event
    }

    #[test]
    fn update_diff_follows_the_patch_not_the_noise() {
        let text = event_diff(&with_objects(1), &fixtures::renderer(false)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "UPDATE Deployment.apps/web in shop by bob, 35m (event 00061765a2a3b000)"
        );
        assert_eq!(lines[1], "--- a/Deployment.apps/web");
        assert_eq!(lines[2], "+++ b/Deployment.apps/web");
        assert!(lines.contains(&"-      - image: nginx:1.25"), "{text}");
        assert!(lines.contains(&"+      - image: nginx:1.27"), "{text}");
        assert!(
            !text.contains("observedGeneration") && !text.contains("\"101\""),
            "{text}"
        );
        assert_eq!(
            lines.iter().filter(|l| l.starts_with('+')).count(),
            2,
            "{text}"
        );
    }

    #[test]
    fn create_diff_adds_every_line_and_delete_says_so() {
        let renderer = fixtures::renderer(false);
        let text = event_diff(&with_objects(3), &renderer).unwrap();
        assert!(text.contains("+kind: Deployment"), "{text}");
        assert!(text.contains("+  replicas: 1"), "{text}");
        assert!(!text.lines().skip(3).any(|l| l.starts_with('-')), "{text}");
        let text = event_diff(&fixtures::events().items[0], &renderer).unwrap();
        assert!(
            text.starts_with("DELETE Deployment.apps/web in shop by carol"),
            "{text}"
        );
        assert!(text.ends_with("(deleted)\n"), "{text}");
    }

    #[test]
    fn colours_mark_added_removed_and_hunks() {
        let text = event_diff(&with_objects(1), &fixtures::renderer(true)).unwrap();
        assert!(text.starts_with("\x1b[1mUPDATE"), "{text:?}");
        assert!(
            text.contains("\x1b[32m+      - image: nginx:1.27\x1b[0m\n"),
            "{text:?}"
        );
        assert!(
            text.contains("\x1b[31m-      - image: nginx:1.25\x1b[0m\n"),
            "{text:?}"
        );
        assert!(text.contains("\x1b[36m@@"), "{text:?}");
        let plain = event_diff(&with_objects(1), &fixtures::renderer(false)).unwrap();
        assert!(!plain.contains('\x1b'));
    }

    #[test]
    fn a_patch_that_does_not_apply_falls_back_to_the_object() {
        let mut event = with_objects(1);
        event.patch = serde_json::json!([{"op": "replace", "path": "/nowhere/x", "value": 1}]);
        let text = event_diff(&event, &fixtures::renderer(false)).unwrap();
        assert!(text.contains("+      - image: nginx:1.27"), "{text}");
        assert!(text.contains("+status:"), "{text}");
    }

    #[test]
    fn patch_output_is_json_under_a_headline() {
        let list = fixtures::events();
        let text = patches(&list.items[1..2], &fixtures::renderer(false)).unwrap();
        let (head, body) = text.split_once('\n').unwrap();
        assert!(
            head.starts_with("# UPDATE Deployment.apps/web in shop by bob"),
            "{text}"
        );
        let patch: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(patch[0]["path"], "/spec/template/spec/containers/0/image");
        assert_eq!(patch[0]["value"], "nginx:1.27");
    }
}
