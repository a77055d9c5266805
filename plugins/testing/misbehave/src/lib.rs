//! TEST ONLY — never deploy. A predicate that misbehaves on request, so the test suite can
//! show that a looping, trapping or memory-hungry plugin never fails an admission request
//! and never harms the other plugins.
//!
//! ```yaml
//! config:
//!   evaluate: loop        # capture | skip | loop | trap | alloc
//!   namespace: chaos      # misbehave only for this namespace (default: every event)
//!   configure: reject     # ok (default) | reject: refuse the config at load time
//! ```

use logistis_plugin_sdk::{Event, Predicate, Verdict, log};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Behaviour {
    #[default]
    Capture,
    Skip,
    Loop,
    Trap,
    Alloc,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    evaluate: Behaviour,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    configure: Option<String>,
}

struct Misbehave(Config);

impl Misbehave {
    fn behaviour(&self, event: &Event) -> Behaviour {
        match &self.0.namespace {
            Some(namespace) if *namespace != event.resource.namespace => Behaviour::Capture,
            _ => self.0.evaluate,
        }
    }
}

impl Predicate for Misbehave {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = logistis_plugin_sdk::config::parse(config)?;
        if config.configure.as_deref() == Some("reject") {
            return Err("rejected on purpose (configure: reject)".into());
        }
        Ok(Misbehave(config))
    }

    fn evaluate(&self, event: &Event) -> Verdict {
        match self.behaviour(event) {
            Behaviour::Capture => Verdict::Capture,
            Behaviour::Skip => Verdict::Skip,
            Behaviour::Loop => {
                log::warn("looping forever");
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Behaviour::Trap => panic!("trapping on purpose"),
            Behaviour::Alloc => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
        }
    }
}

logistis_plugin_sdk::export_predicate!(Misbehave);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviour_only_in_the_chosen_namespace() {
        let plugin = Misbehave::configure(r#"{"evaluate":"skip","namespace":"chaos"}"#).unwrap();
        let mut event = logistis_plugin_sdk::testing::event();
        assert_eq!(plugin.evaluate(&event), Verdict::Capture);
        event.resource.namespace = "chaos".into();
        assert_eq!(plugin.evaluate(&event), Verdict::Skip);
        assert!(Misbehave::configure(r#"{"configure":"reject"}"#).is_err());
    }
}
