//! Sink: one Slack incoming-webhook message per batch, a line per change: who, what,
//! where and the changed paths. Slack truncates long messages badly, so we do it first:
//! at most `max-paths` paths per change and `max-chars` per message, with a count of what
//! was left out.
//!
//! ```yaml
//! allowed-hosts: ["hooks.slack.com"]
//! config:
//!   url: https://hooks.slack.com/services/T000/B000/XXXX
//!   max-paths: 5        # default 5
//!   max-chars: 3000     # default 3000
//! ```

use logistis_plugin_sdk::{Event, Sink, http};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    url: String,
    #[serde(default = "default_max_paths")]
    max_paths: usize,
    #[serde(default = "default_max_chars")]
    max_chars: usize,
}

fn default_max_paths() -> usize {
    5
}

fn default_max_chars() -> usize {
    3000
}

#[derive(Debug)]
struct Slack(Config);

/// One line per change: `*alice* UPDATE Deployment.apps/web in team-a: /spec/replicas`.
fn line(event: &Event, max_paths: usize) -> String {
    let r = &event.resource;
    let mut what = r.kind.clone();
    if !r.group.is_empty() {
        what = format!("{what}.{}", r.group);
    }
    what = format!("{what}/{}", r.name);
    if !r.subresource.is_empty() {
        what = format!("{what}/{}", r.subresource);
    }
    let mut line = format!(
        "*{}* {} `{what}`",
        escape(&event.user.username),
        event.operation.as_str()
    );
    if !r.namespace.is_empty() {
        line.push_str(&format!(" in `{}`", r.namespace));
    }
    let paths = event.changed_paths();
    let shown: Vec<&str> = paths
        .iter()
        .take(max_paths)
        .map(|path| {
            if path.is_empty() {
                "(whole object)"
            } else {
                path.as_str()
            }
        })
        .collect();
    if !shown.is_empty() {
        line.push_str(": ");
        line.push_str(&escape(&shown.join(", ")));
        if paths.len() > shown.len() {
            line.push_str(&format!(" (+{} more)", paths.len() - shown.len()));
        }
    }
    line
}

/// Slack's mrkdwn control characters.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Slack {
    fn message(&self, events: &[Event]) -> String {
        let mut text = String::new();
        for (index, event) in events.iter().enumerate() {
            let line = line(event, self.0.max_paths);
            let left = events.len() - index;
            let note = format!("…and {left} more changes");
            if text.len() + line.len() + 1 > self.0.max_chars.saturating_sub(note.len() + 1) {
                text.push_str(&note);
                break;
            }
            text.push_str(&line);
            text.push('\n');
        }
        text.trim_end().to_owned()
    }
}

impl Sink for Slack {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Option<Config> = logistis_plugin_sdk::config::parse(config)?;
        let config = config.ok_or("config.url is required")?;
        if !config.url.starts_with("https://") && !config.url.starts_with("http://") {
            return Err(format!("config.url {:?} is not an http(s) URL", config.url));
        }
        Ok(Slack(config))
    }

    fn deliver(&self, events: &[Event]) -> Result<(), String> {
        let body = serde_json::json!({ "text": self.message(events) }).to_string();
        let headers = [("content-type".to_owned(), "application/json".to_owned())];
        let response = http::post(&self.0.url, &headers, body.as_bytes())?;
        if (200..300).contains(&response.status) {
            Ok(())
        } else {
            Err(format!("slack answered HTTP {}", response.status))
        }
    }
}

logistis_plugin_sdk::export_sink!(Slack);

#[cfg(test)]
mod tests {
    use logistis_plugin_sdk::testing::event;

    use super::*;

    #[test]
    fn who_what_where_and_paths() {
        let slack =
            Slack::configure(r#"{"url":"https://hooks.slack.com/x","max-paths":1}"#).unwrap();
        let mut event = event();
        assert_eq!(
            slack.message(std::slice::from_ref(&event)),
            "*alice@example.com* UPDATE `Deployment.apps/web` in `team-a`: /spec/replicas"
        );
        event.patch = r#"[{"op":"add","path":"/a"},{"op":"add","path":"/b"}]"#.into();
        assert!(slack.message(&[event]).ends_with(": /a (+1 more)"));
    }

    #[test]
    fn long_batches_are_truncated_with_a_count() {
        let slack = Slack::configure(r#"{"url":"https://h/x","max-chars":300}"#).unwrap();
        let events = vec![event(); 20];
        let text = slack.message(&events);
        assert!(text.len() <= 300, "{}", text.len());
        assert!(text.contains("more changes"), "{text}");
    }
}
