//! Sink: POST each batch as JSON to a URL, `{"events": [...]}` with every event in the shape
//! of the query API. A non-2xx answer fails the batch, and the host retries it with
//! back-off, so the receiver should deduplicate on the event `id`.
//!
//! ```yaml
//! allowed-hosts: ["audit.example.com"]     # the host refuses any other destination
//! config:
//!   url: https://audit.example.com/logistis
//!   headers: {Authorization: "Bearer ..."}
//!   objects: true                          # include object/oldObject (default true)
//! ```

use std::collections::BTreeMap;

use logistis_plugin_sdk::{Event, Sink, http};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "yes")]
    objects: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug)]
struct Webhook {
    url: String,
    headers: Vec<(String, String)>,
    objects: bool,
}

impl Webhook {
    fn payload(&self, events: &[Event]) -> Vec<u8> {
        let events: Vec<_> = events
            .iter()
            .map(|event| event.to_json(self.objects))
            .collect();
        serde_json::json!({ "events": events })
            .to_string()
            .into_bytes()
    }
}

impl Sink for Webhook {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Option<Config> = logistis_plugin_sdk::config::parse(config)?;
        let config = config.ok_or("config.url is required")?;
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(format!("config.url {:?} is not an http(s) URL", config.url));
        }
        let mut headers: Vec<(String, String)> = config.headers.into_iter().collect();
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("content-type".into(), "application/json".into()));
        }
        Ok(Webhook {
            url: config.url,
            headers,
            objects: config.objects,
        })
    }

    fn deliver(&self, events: &[Event]) -> Result<(), String> {
        let response = http::post(&self.url, &self.headers, &self.payload(events))?;
        if (200..300).contains(&response.status) {
            Ok(())
        } else {
            Err(format!("{} answered HTTP {}", self.url, response.status))
        }
    }
}

logistis_plugin_sdk::export_sink!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_and_payload() {
        assert!(
            Webhook::configure("null")
                .unwrap_err()
                .contains("url is required")
        );
        assert!(Webhook::configure(r#"{"url":"ftp://x"}"#).is_err());
        let hook =
            Webhook::configure(r#"{"url":"http://h/x","headers":{"X-Token":"t"},"objects":false}"#)
                .unwrap();
        assert!(hook.headers.contains(&("X-Token".into(), "t".into())));
        assert!(hook.headers.iter().any(|(name, _)| name == "content-type"));
        let payload: serde_json::Value =
            serde_json::from_slice(&hook.payload(&[logistis_plugin_sdk::testing::event()]))
                .unwrap();
        assert_eq!(
            payload["events"][0]["user"]["username"],
            "alice@example.com"
        );
        assert!(payload["events"][0].get("object").is_none());
    }
}
