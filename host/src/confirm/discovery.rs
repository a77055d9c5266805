//! Which resources to watch: every resource the API server lists that supports `list` and
//! `watch` (the webhook covers them all), minus [`DEFAULT_EXCLUDE`] (what the shipped
//! webhook leaves out, and questions that are not objects), filtered by
//! `--confirm-include/--confirm-exclude`. Discovery runs again every minute so a new CRD is
//! watched without a restart, and a removed one stops.
//!
//! Patterns name resources as kubectl does, `RESOURCE[.GROUP]`: `secrets` (core),
//! `deployments.apps`, `*.example.com`, `*` — a `*` matches any run of characters.

use std::sync::Arc;
use std::time::Duration;

use kube::discovery::{ApiResource, Discovery, verbs};
use tokio_util::sync::CancellationToken;

use super::watch::{self, Context};

/// Never watched: what the webhook's `matchConditions` leave out (leases, events, access
/// reviews), and Logistis' own aggregated API.
pub const DEFAULT_EXCLUDE: &[&str] = &[
    "*.coordination.k8s.io",
    "events",
    "events.events.k8s.io",
    "*.authentication.k8s.io",
    "*.authorization.k8s.io",
    "*.logistis.io",
];

/// `RESOURCE[.GROUP]` with `*` globs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePattern {
    text: String,
    resource: String,
    group: String,
}

impl ResourcePattern {
    pub fn parse(text: &str) -> Result<ResourcePattern, String> {
        let text = text.trim();
        let valid = !text.is_empty()
            && text.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '*')
            });
        if !valid {
            return Err(format!(
                "{text:?}: expected RESOURCE[.GROUP] such as secrets, deployments.apps or *.example.com"
            ));
        }
        let (resource, group) = match text.split_once('.') {
            Some((resource, group)) => (resource, group),
            // `*` alone: every resource of every group.
            None if text == "*" => ("*", "*"),
            None => (text, ""),
        };
        Ok(ResourcePattern {
            text: text.to_owned(),
            resource: resource.to_owned(),
            group: group.to_owned(),
        })
    }

    pub fn matches(&self, group: &str, resource: &str) -> bool {
        glob(&self.resource, resource) && glob(&self.group, group)
    }
}

impl std::fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// `*` matches any run of characters (also none); everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

/// Whether a discovered resource is watched under these settings.
pub fn selected(settings: &super::ConfirmSettings, group: &str, resource: &str) -> bool {
    let excluded_by_default = DEFAULT_EXCLUDE.iter().any(|p| {
        ResourcePattern::parse(p)
            .expect("valid default pattern")
            .matches(group, resource)
    });
    let included =
        settings.include.is_empty() || settings.include.iter().any(|p| p.matches(group, resource));
    included && !excluded_by_default && !settings.exclude.iter().any(|p| p.matches(group, resource))
}

/// Ask the API server what it serves; keep what can be listed and watched and is selected.
pub async fn discover(
    client: &kube::Client,
    settings: &super::ConfirmSettings,
) -> Result<Vec<ApiResource>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut found = Vec::new();
    for group in discovery.groups() {
        for (resource, capabilities) in group.recommended_resources() {
            if capabilities.supports_operation(verbs::LIST)
                && capabilities.supports_operation(verbs::WATCH)
                && selected(settings, &resource.group, &resource.plural)
            {
                found.push(resource);
            }
        }
    }
    Ok(found)
}

/// Connect, discover, start a watch per resource; again every `rediscover_interval`.
/// While the API server is unreachable, retry with back-off (1 s doubling to 60 s).
pub async fn run(context: Arc<Context>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_secs(1);
    let mut client = None;
    let mut tasks: std::collections::HashMap<super::ResourceKey, tokio::task::JoinHandle<()>> =
        std::collections::HashMap::new();
    loop {
        if client.is_none() {
            match kube::Client::try_default().await {
                Ok(connected) => client = Some(connected),
                Err(error) => {
                    tracing::warn!(error = %crate::telemetry::chain(&error), retry_in = ?backoff, "confirmation: cannot build a Kubernetes client");
                }
            }
        }
        let discovered = match &client {
            Some(client) => match discover(client, context.confirmer.settings()).await {
                Ok(found) => Some((client.clone(), found)),
                Err(error) => {
                    tracing::warn!(error = %crate::telemetry::chain(&error), retry_in = ?backoff, "confirmation: discovery failed");
                    None
                }
            },
            None => None,
        };
        let wait = match discovered {
            Some((client, found)) => {
                backoff = Duration::from_secs(1);
                let (started, gone) = context.confirmer.set_watched(found);
                for key in gone {
                    if let Some(task) = tasks.remove(&key) {
                        tracing::info!(
                            group = key.0,
                            resource = key.1,
                            "confirmation: resource gone, watch stopped"
                        );
                        task.abort();
                    }
                }
                for state in started {
                    let key = (state.resource.group.clone(), state.resource.plural.clone());
                    tracing::info!(
                        resource = super::metrics::discovery_name(&state.resource),
                        "confirmation: watching"
                    );
                    tasks.insert(
                        key,
                        tokio::spawn(watch::run(
                            context.clone(),
                            state,
                            client.clone(),
                            shutdown.clone(),
                        )),
                    );
                }
                context.confirmer.settings().rediscover_interval
            }
            None => {
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(60));
                wait
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    for (_, task) in tasks {
        task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confirm::ConfirmSettings;

    #[test]
    fn patterns_name_resources_as_kubectl_does() {
        let secrets = ResourcePattern::parse("secrets").unwrap();
        assert!(secrets.matches("", "secrets"));
        assert!(!secrets.matches("example.com", "secrets"));
        let apps = ResourcePattern::parse("*.apps").unwrap();
        assert!(apps.matches("apps", "deployments"));
        assert!(!apps.matches("", "pods"));
        let crds = ResourcePattern::parse("*.example.com").unwrap();
        assert!(crds.matches("example.com", "widgets"));
        assert!(ResourcePattern::parse("*").unwrap().matches("x.io", "y"));
        assert!(ResourcePattern::parse("Deployments").is_err());
        assert!(ResourcePattern::parse("").is_err());
    }

    #[test]
    fn defaults_leave_out_what_the_webhook_leaves_out() {
        let settings = ConfirmSettings::default();
        assert!(selected(&settings, "apps", "deployments"));
        assert!(!selected(&settings, "coordination.k8s.io", "leases"));
        assert!(!selected(&settings, "", "events"));
        assert!(!selected(&settings, "events.k8s.io", "events"));
        let narrowed = ConfirmSettings {
            include: vec![ResourcePattern::parse("*.apps").unwrap()],
            exclude: vec![ResourcePattern::parse("replicasets.apps").unwrap()],
            ..ConfirmSettings::default()
        };
        assert!(selected(&narrowed, "apps", "deployments"));
        assert!(!selected(&narrowed, "apps", "replicasets"));
        assert!(!selected(&narrowed, "", "pods"));
    }
}
