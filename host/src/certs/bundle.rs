//! The caBundle patch, pure: which webhooks of the ValidatingWebhookConfiguration get our CA
//! bundle, and the exact request body.
//!
//! A JSON Patch (RFC 6902) rather than a merge patch: webhooks are addressed by index, and a
//! `test` operation before each change checks that the webhook at that index still has the
//! name and the Service we read. If someone edits the configuration between our read and our
//! patch, the API server rejects the whole patch and we read again, instead of writing our CA
//! onto a webhook that no longer calls us. (A merge patch would replace the whole `webhooks`
//! list; a strategic merge patch keyed by name cannot say "only if it still calls us".)
//! Webhooks that call another Service or a URL are never touched.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use serde_json::{Value, json};

/// What the configuration needs.
#[derive(Debug, Clone, PartialEq)]
pub enum BundlePatch {
    /// Every webhook calling our Service already carries the bundle.
    UpToDate,
    /// No webhook calls our Service: nothing to patch (a misnamed configuration or Service).
    NoWebhook,
    /// The JSON Patch body, and how many webhooks it changes.
    Patch { body: Value, webhooks: usize },
}

/// The patch that puts `bundle` (PEM) on every webhook of `config` calling Service
/// `namespace/service`.
pub fn bundle_patch(
    config: &ValidatingWebhookConfiguration,
    namespace: &str,
    service: &str,
    bundle: &[u8],
) -> BundlePatch {
    let encoded =
        serde_json::to_value(ByteString(bundle.to_vec())).expect("bytes always serialize");
    let mut operations = Vec::new();
    let mut ours = 0;
    for (index, webhook) in config.webhooks.iter().flatten().enumerate() {
        let Some(target) = &webhook.client_config.service else {
            continue;
        };
        if target.namespace != namespace || target.name != service {
            continue;
        }
        ours += 1;
        if webhook
            .client_config
            .ca_bundle
            .as_ref()
            .is_some_and(|current| current.0 == bundle)
        {
            continue;
        }
        let at = format!("/webhooks/{index}");
        operations.extend([
            json!({"op": "test", "path": format!("{at}/name"), "value": webhook.name}),
            json!({"op": "test", "path": format!("{at}/clientConfig/service/namespace"), "value": namespace}),
            json!({"op": "test", "path": format!("{at}/clientConfig/service/name"), "value": service}),
            json!({"op": "add", "path": format!("{at}/clientConfig/caBundle"), "value": encoded}),
        ]);
    }
    match (ours, operations.len()) {
        (0, _) => BundlePatch::NoWebhook,
        (_, 0) => BundlePatch::UpToDate,
        (_, count) => BundlePatch::Patch {
            body: Value::Array(operations),
            webhooks: count / 4,
        },
    }
}

/// The patch that puts `bundle` on the APIService if it calls Service `namespace/service`
/// (tested in the patch, as for the webhooks); `NoWebhook` when it calls another.
pub fn api_service_patch(
    api_service: &APIService,
    namespace: &str,
    service: &str,
    bundle: &[u8],
) -> BundlePatch {
    let Some(spec) = &api_service.spec else {
        return BundlePatch::NoWebhook;
    };
    let ours = spec.service.as_ref().is_some_and(|s| {
        s.namespace.as_deref() == Some(namespace) && s.name.as_deref() == Some(service)
    });
    if !ours {
        return BundlePatch::NoWebhook;
    }
    if spec
        .ca_bundle
        .as_ref()
        .is_some_and(|current| current.0 == bundle)
    {
        return BundlePatch::UpToDate;
    }
    let encoded =
        serde_json::to_value(ByteString(bundle.to_vec())).expect("bytes always serialize");
    BundlePatch::Patch {
        body: json!([
            {"op": "test", "path": "/spec/service/namespace", "value": namespace},
            {"op": "test", "path": "/spec/service/name", "value": service},
            {"op": "add", "path": "/spec/caBundle", "value": encoded},
        ]),
        webhooks: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUNDLE: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    // base64 of BUNDLE, as the API carries `caBundle`.
    const ENCODED: &str =
        "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=";

    fn config(ca_bundle_of_ours: Option<&str>) -> ValidatingWebhookConfiguration {
        let mut ours = json!({
            "name": "record.logistis.io",
            "clientConfig": {"service": {"namespace": "logistis", "name": "logistis", "path": "/validate"}},
            "sideEffects": "NoneOnDryRun", "admissionReviewVersions": ["v1"]
        });
        if let Some(bundle) = ca_bundle_of_ours {
            ours["clientConfig"]["caBundle"] = json!(bundle);
        }
        serde_json::from_value(json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "logistis"},
            "webhooks": [
                {"name": "other.example.com",
                 "clientConfig": {"service": {"namespace": "other", "name": "logistis"}, "caBundle": "b3RoZXI="},
                 "sideEffects": "None", "admissionReviewVersions": ["v1"]},
                {"name": "url.example.com", "clientConfig": {"url": "https://example.com/hook"},
                 "sideEffects": "None", "admissionReviewVersions": ["v1"]},
                ours,
            ]
        }))
        .unwrap()
    }

    #[test]
    fn patches_only_our_webhook_guarded_by_its_name_and_service() {
        let patch = bundle_patch(&config(None), "logistis", "logistis", BUNDLE);
        assert_eq!(
            patch,
            BundlePatch::Patch {
                body: json!([
                    {"op": "test", "path": "/webhooks/2/name", "value": "record.logistis.io"},
                    {"op": "test", "path": "/webhooks/2/clientConfig/service/namespace", "value": "logistis"},
                    {"op": "test", "path": "/webhooks/2/clientConfig/service/name", "value": "logistis"},
                    {"op": "add", "path": "/webhooks/2/clientConfig/caBundle", "value": ENCODED},
                ]),
                webhooks: 1,
            }
        );
    }

    #[test]
    fn a_stale_bundle_is_replaced_and_a_current_one_left_alone() {
        let stale = bundle_patch(&config(Some("b2xk")), "logistis", "logistis", BUNDLE);
        let BundlePatch::Patch { body, .. } = stale else {
            panic!("expected a patch, got {stale:?}");
        };
        assert_eq!(body[3]["value"], ENCODED);
        assert_eq!(
            bundle_patch(&config(Some(ENCODED)), "logistis", "logistis", BUNDLE),
            BundlePatch::UpToDate
        );
    }

    #[test]
    fn no_webhook_for_our_service_is_reported_not_patched() {
        assert_eq!(
            bundle_patch(&config(None), "logistis", "elsewhere", BUNDLE),
            BundlePatch::NoWebhook
        );
        let empty: ValidatingWebhookConfiguration =
            serde_json::from_value(json!({"metadata": {"name": "logistis"}})).unwrap();
        assert_eq!(
            bundle_patch(&empty, "logistis", "logistis", BUNDLE),
            BundlePatch::NoWebhook
        );
    }

    #[test]
    fn the_patch_applies_to_the_configuration_it_was_made_from() {
        let original = config(None);
        let BundlePatch::Patch { body, .. } =
            bundle_patch(&original, "logistis", "logistis", BUNDLE)
        else {
            panic!("expected a patch");
        };
        let mut document = serde_json::to_value(&original).unwrap();
        let patch: json_patch::Patch = serde_json::from_value(body.clone()).unwrap();
        json_patch::patch(&mut document, &patch).unwrap();
        let patched: ValidatingWebhookConfiguration = serde_json::from_value(document).unwrap();
        assert_eq!(
            bundle_patch(&patched, "logistis", "logistis", BUNDLE),
            BundlePatch::UpToDate
        );
        let webhooks = patched.webhooks.unwrap();
        assert_eq!(
            webhooks[0].client_config.ca_bundle.as_ref().unwrap().0,
            b"other"
        );

        // Reordered in between: the guard fails and nothing is written.
        let mut reordered = serde_json::to_value(&original).unwrap();
        reordered["webhooks"].as_array_mut().unwrap().swap(0, 2);
        let before = reordered.clone();
        let patch: json_patch::Patch = serde_json::from_value(body).unwrap();
        assert!(json_patch::patch(&mut reordered, &patch).is_err());
        assert_eq!(reordered, before);
    }
}
