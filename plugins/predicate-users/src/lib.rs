//! Capture predicate over who made the change: include and exclude users, groups and
//! `userInfo.extra` values by glob. Replaces the old `-match-user`, `-match-group` and
//! `-match-user-extra` flags.
//!
//! ```yaml
//! config:
//!   exclude:
//!     users: ["system:serviceaccount:kube-system:*", "system:kube-controller-manager"]
//!   include:
//!     groups: ["devs", "system:masters"]
//!     extra: {"example.com/team": ["platform"]}
//! ```
//! An event matching `exclude` is skipped. When `include` names anything, an event must
//! match it (any user, group or extra glob) to be captured.

use std::collections::BTreeMap;

use logistis_plugin_sdk::{Event, Predicate, Verdict};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    include: Who,
    #[serde(default)]
    exclude: Who,
}

/// A set of globs over the request's `userInfo`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Who {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    extra: BTreeMap<String, Vec<String>>,
}

impl Who {
    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty() && self.extra.is_empty()
    }

    fn matches(&self, event: &Event) -> bool {
        event.user_matches(&self.users)
            || event.group_matches(&self.groups)
            || self
                .extra
                .iter()
                .any(|(key, globs)| event.extra_matches(key, globs))
    }
}

struct Users(Config);

impl Predicate for Users {
    fn configure(config: &str) -> Result<Self, String> {
        Ok(Users(logistis_plugin_sdk::config::parse(config)?))
    }

    fn evaluate(&self, event: &Event) -> Verdict {
        let Config { include, exclude } = &self.0;
        if exclude.matches(event) || (!include.is_empty() && !include.matches(event)) {
            Verdict::Skip
        } else {
            Verdict::Capture
        }
    }
}

logistis_plugin_sdk::export_predicate!(Users);

#[cfg(test)]
mod tests {
    use logistis_plugin_sdk::testing::event;

    use super::*;

    fn verdict(config: &str, username: &str, groups: &[&str]) -> Verdict {
        let mut event = event();
        event.user.username = username.into();
        event.user.groups = groups.iter().map(|g| g.to_string()).collect();
        Users::configure(config).unwrap().evaluate(&event)
    }

    #[test]
    fn excludes_then_includes() {
        let config = r#"{"exclude":{"users":["system:serviceaccount:kube-system:*"]},
                         "include":{"groups":["devs"],"users":["root"]}}"#;
        assert_eq!(
            verdict(config, "system:serviceaccount:kube-system:x", &["devs"]),
            Verdict::Skip
        );
        assert_eq!(verdict(config, "alice", &["devs"]), Verdict::Capture);
        assert_eq!(verdict(config, "root", &[]), Verdict::Capture);
        assert_eq!(verdict(config, "bob", &["ops"]), Verdict::Skip);
        assert_eq!(verdict("null", "anyone", &[]), Verdict::Capture);
    }

    #[test]
    fn extra_values() {
        let config = r#"{"include":{"extra":{"team":["plat*"]}}}"#;
        let mut event = event();
        event.user.extra = vec![("team".into(), vec!["platform".into()])];
        assert_eq!(
            Users::configure(config).unwrap().evaluate(&event),
            Verdict::Capture
        );
        event.user.extra.clear();
        assert_eq!(
            Users::configure(config).unwrap().evaluate(&event),
            Verdict::Skip
        );
    }

    #[test]
    fn rejects_unknown_fields() {
        assert!(Users::configure(r#"{"exclude":{"user":["x"]}}"#).is_err());
    }
}
