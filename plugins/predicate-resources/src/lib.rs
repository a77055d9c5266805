//! Capture predicate over what changed: include and exclude rules on group, kind,
//! subresource and operation. Replaces kwatchman's `ignoreEvents`.
//!
//! ```yaml
//! config:
//!   exclude:
//!     - kinds: ["Event", "Lease"]                # any operation
//!     - subresources: ["status"]                 # every status update
//!     - kinds: ["Pod"]
//!       operations: ["UPDATE"]
//!   include:                                     # empty: everything not excluded
//!     - groups: ["apps", ""]                     # "" is the core group
//! ```
//! A rule matches when every list it names matches (globs; kinds as
//! `Event::kind_is` reads them: `Deployment`, `Deployment.apps`, `deployments`).

use logistis_plugin_sdk::{Event, Predicate, Verdict, glob};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    include: Vec<Rule>,
    #[serde(default)]
    exclude: Vec<Rule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default)]
    subresources: Vec<String>,
    #[serde(default)]
    operations: Vec<String>,
}

impl Rule {
    fn matches(&self, event: &Event) -> bool {
        let resource = &event.resource;
        (self.groups.is_empty() || glob::matches_any(&self.groups, &resource.group))
            && (self.kinds.is_empty() || self.kinds.iter().any(|kind| event.kind_is(kind)))
            && (self.subresources.is_empty()
                || glob::matches_any(&self.subresources, &resource.subresource))
            && (self.operations.is_empty()
                || self
                    .operations
                    .iter()
                    .any(|operation| event.operation_is(operation)))
    }
}

struct Resources(Config);

impl Predicate for Resources {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = logistis_plugin_sdk::config::parse(config)?;
        let all = config.include.iter().chain(&config.exclude);
        if let Some(rule) = all.clone().find(|rule| {
            rule.groups.is_empty()
                && rule.kinds.is_empty()
                && rule.subresources.is_empty()
                && rule.operations.is_empty()
        }) {
            // An empty rule matches everything: almost certainly a typo in the config.
            return Err(format!(
                "a rule names nothing and would match every event: {rule:?}"
            ));
        }
        Ok(Resources(config))
    }

    fn evaluate(&self, event: &Event) -> Verdict {
        let Config { include, exclude } = &self.0;
        let excluded = exclude.iter().any(|rule| rule.matches(event));
        let included = include.is_empty() || include.iter().any(|rule| rule.matches(event));
        if included && !excluded {
            Verdict::Capture
        } else {
            Verdict::Skip
        }
    }
}

logistis_plugin_sdk::export_predicate!(Resources);

#[cfg(test)]
mod tests {
    use logistis_plugin_sdk::Operation;
    use logistis_plugin_sdk::testing::event;

    use super::*;

    const CONFIG: &str = r#"{"exclude":[{"kinds":["Event","Lease"]},{"subresources":["status"]},
        {"kinds":["Pod"],"operations":["update"]}],"include":[{"groups":["apps",""]}]}"#;

    fn verdict(group: &str, kind: &str, subresource: &str, operation: Operation) -> Verdict {
        let mut event = event();
        event.resource.group = group.into();
        event.resource.kind = kind.into();
        event.resource.resource = String::new();
        event.resource.subresource = subresource.into();
        event.operation = operation;
        Resources::configure(CONFIG).unwrap().evaluate(&event)
    }

    #[test]
    fn rules() {
        assert_eq!(
            verdict("apps", "Deployment", "", Operation::Update),
            Verdict::Capture
        );
        assert_eq!(
            verdict("apps", "Deployment", "status", Operation::Update),
            Verdict::Skip
        );
        assert_eq!(verdict("", "Event", "", Operation::Create), Verdict::Skip);
        assert_eq!(verdict("", "Pod", "", Operation::Update), Verdict::Skip);
        assert_eq!(verdict("", "Pod", "", Operation::Create), Verdict::Capture);
        assert_eq!(
            verdict("batch", "Job", "", Operation::Create),
            Verdict::Skip
        );
    }

    #[test]
    fn empty_rule_is_rejected() {
        let error = Resources::configure(r#"{"exclude":[{}]}"#).err().unwrap();
        assert!(error.contains("would match every event"), "{error}");
    }
}
