//! Sink: one JSON line per event to the host's log (prefixed there with the plugin's
//! name). Useful as an audit trail in the pod's logs and as the simplest sink to copy.
//!
//! ```yaml
//! config:
//!   objects: false   # include object/oldObject (default false: lines stay short)
//! ```

use logistis_plugin_sdk::{Event, Sink, log};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    objects: bool,
}

struct LogSink(Config);

impl LogSink {
    fn line(&self, event: &Event) -> String {
        event.to_json(self.0.objects).to_string()
    }
}

impl Sink for LogSink {
    fn configure(config: &str) -> Result<Self, String> {
        Ok(LogSink(logistis_plugin_sdk::config::parse(config)?))
    }

    fn deliver(&self, events: &[Event]) -> Result<(), String> {
        for event in events {
            log::info(&self.line(event));
        }
        Ok(())
    }
}

logistis_plugin_sdk::export_sink!(LogSink);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_json_line_per_event() {
        let sink = LogSink::configure("null").unwrap();
        let line = sink.line(&logistis_plugin_sdk::testing::event());
        assert!(!line.contains('\n'));
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(json["resource"]["name"], "web");
        assert!(json.get("object").is_none());
        let sink = LogSink::configure(r#"{"objects":true}"#).unwrap();
        assert!(
            sink.line(&logistis_plugin_sdk::testing::event())
                .contains("oldObject")
        );
    }
}
