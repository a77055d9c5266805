//! `-o blame`: the newest manifest of one object, each line prefixed with the version, user
//! and time of the change that last set it, like `git blame`. Lines set by the newest change
//! stand out (yellow gutter) on a terminal; older ones are dimmed.

use logistis_api::Blame;

use super::{Renderer, shorten};
use crate::color::Style;

/// Long usernames (service accounts) are cut so the manifest keeps its place.
const MAX_USER_WIDTH: usize = 40;

pub fn blame(answer: &Blame, renderer: &Renderer) -> String {
    let newest = answer.lines.iter().map(|l| l.version).max();
    let gutters: Vec<(u64, String, String, String)> = answer
        .lines
        .iter()
        .map(|line| {
            (
                line.version,
                format!("v{}", line.version),
                // A change only the watch saw has no user: `?` (its manager is in -o json).
                if line.user.username.is_empty()
                    && line.status == Some(logistis_api::Status::Observed)
                {
                    "?".to_owned()
                } else {
                    shorten(&line.user.username, MAX_USER_WIDTH)
                },
                renderer.time(line.time),
            )
        })
        .collect();
    let width = |pick: fn(&(u64, String, String, String)) -> &String| {
        gutters
            .iter()
            .map(|g| pick(g).chars().count())
            .max()
            .unwrap_or(0)
    };
    let (version_width, user_width, time_width) =
        (width(|g| &g.1), width(|g| &g.2), width(|g| &g.3));

    let mut out = String::new();
    for (line, (version, label, user, time)) in answer.lines.iter().zip(&gutters) {
        let gutter = format!("{label:<version_width$}  {user:<user_width$}  {time:>time_width$} |");
        let style = if Some(*version) == newest {
            Style::Recent
        } else {
            Style::Dim
        };
        out.push_str(&renderer.painter.paint(style, &gutter));
        if !line.line.is_empty() {
            out.push(' ');
            out.push_str(&line.line);
        }
        out.push('\n');
    }
    out
}

/// Notes for stderr: what the view cannot show.
pub fn notes(answer: &Blame) -> Vec<String> {
    let mut notes = Vec::new();
    if answer.deleted {
        notes.push(format!(
            "the object was deleted in version {}: this is the manifest as deleted",
            answer.version
        ));
    }
    if answer.trimmed_events > 0 {
        notes.push(format!(
            "retention removed {} older events: lines marked v{} may have been set earlier",
            answer.trimmed_events, answer.first_version
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    fn answer() -> Blame {
        let line = |text: &str, version: u64, user: &str, time: &str| {
            serde_json::json!({"line": text, "version": version, "eventId": "00061765a2a39000",
                               "time": time, "user": {"username": user}, "operation": "UPDATE"})
        };
        serde_json::from_value(serde_json::json!({
            "object": {"group": "apps", "kind": "Deployment", "namespace": "shop", "name": "web"},
            "version": 3, "generation": 1, "deleted": false, "firstVersion": 1, "trimmedEvents": 0,
            "lines": [
                line("apiVersion: apps/v1", 1, "alice", "2024-04-29T12:00:00Z"),
                line("spec:", 1, "alice", "2024-04-29T12:00:00Z"),
                line("  replicas: 3", 2, "system:serviceaccount:kube-system:hpa", "2024-05-01T09:00:00Z"),
                line("      - image: nginx:1.27", 3, "bob", "2024-05-01T11:25:00Z")
            ]
        }))
        .unwrap()
    }

    #[test]
    fn every_line_carries_version_user_and_time_in_aligned_columns() {
        let text = blame(&answer(), &fixtures::renderer(false));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("v1  alice "), "{text}");
        assert!(lines[0].ends_with("2d | apiVersion: apps/v1"), "{text}");
        assert!(
            lines[2].starts_with("v2  system:serviceaccount:kube-system:hpa  "),
            "{text}"
        );
        assert!(lines[2].ends_with("3h |   replicas: 3"), "{text}");
        assert!(
            lines[3].ends_with("35m |       - image: nginx:1.27"),
            "{text}"
        );
        let bar = lines[0].find('|').unwrap();
        assert!(lines.iter().all(|l| l.find('|') == Some(bar)), "{text}");
    }

    #[test]
    fn newest_lines_stand_out_when_coloured() {
        let text = blame(&answer(), &fixtures::renderer(true));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("\x1b[2mv1"), "{text:?}");
        assert!(lines[3].starts_with("\x1b[33mv3"), "{text:?}");
        assert!(
            lines[3].ends_with("\x1b[0m       - image: nginx:1.27"),
            "{text:?}"
        );
    }

    #[test]
    fn notes_explain_deleted_and_trimmed_history() {
        let mut answer = answer();
        assert!(notes(&answer).is_empty());
        answer.deleted = true;
        answer.trimmed_events = 4;
        answer.first_version = 5;
        let notes = notes(&answer);
        assert!(notes[0].contains("deleted in version 3"), "{notes:?}");
        assert!(
            notes[1].contains("retention removed 4") && notes[1].contains("v5"),
            "{notes:?}"
        );
    }
}
