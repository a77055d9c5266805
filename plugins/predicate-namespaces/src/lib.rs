//! Capture predicate over where the change happened: include and exclude namespaces by
//! glob.
//!
//! ```yaml
//! config:
//!   exclude: ["kube-*", "*-sandbox"]
//!   include: ["team-*", "prod"]      # empty: every namespace
//!   cluster-scoped: true             # capture cluster-scoped objects (default true)
//! ```

use logistis_plugin_sdk::{Event, Predicate, Verdict};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default = "yes")]
    cluster_scoped: bool,
}

fn yes() -> bool {
    true
}

impl Default for Config {
    fn default() -> Self {
        Config {
            include: Vec::new(),
            exclude: Vec::new(),
            cluster_scoped: true,
        }
    }
}

struct Namespaces(Config);

impl Predicate for Namespaces {
    fn configure(config: &str) -> Result<Self, String> {
        Ok(Namespaces(logistis_plugin_sdk::config::parse(config)?))
    }

    fn evaluate(&self, event: &Event) -> Verdict {
        let config = &self.0;
        let capture = if event.resource.namespace.is_empty() {
            config.cluster_scoped
        } else {
            !event.namespace_in(&config.exclude)
                && (config.include.is_empty() || event.namespace_in(&config.include))
        };
        if capture {
            Verdict::Capture
        } else {
            Verdict::Skip
        }
    }
}

logistis_plugin_sdk::export_predicate!(Namespaces);

#[cfg(test)]
mod tests {
    use logistis_plugin_sdk::testing::event;

    use super::*;

    fn verdict(config: &str, namespace: &str) -> Verdict {
        let mut event = event();
        event.resource.namespace = namespace.into();
        Namespaces::configure(config).unwrap().evaluate(&event)
    }

    #[test]
    fn include_exclude_and_cluster_scope() {
        let config = r#"{"include":["team-*","prod"],"exclude":["team-sandbox"]}"#;
        assert_eq!(verdict(config, "team-a"), Verdict::Capture);
        assert_eq!(verdict(config, "prod"), Verdict::Capture);
        assert_eq!(verdict(config, "team-sandbox"), Verdict::Skip);
        assert_eq!(verdict(config, "default"), Verdict::Skip);
        assert_eq!(verdict(config, ""), Verdict::Capture);
        assert_eq!(verdict(r#"{"cluster-scoped":false}"#, ""), Verdict::Skip);
        assert_eq!(
            verdict(r#"{"exclude":["kube-*"]}"#, "kube-system"),
            Verdict::Skip
        );
        assert_eq!(verdict("null", "anything"), Verdict::Capture);
    }
}
