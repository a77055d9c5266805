//! Secret redaction: every value under a Secret's `data` and `stringData`, every annotation
//! value but a few known-harmless ones (some platforms keep tokens there, e.g.
//! `openshift.io/token-secret.value`), and the same values inside the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation become a keyed hash, so
//! "did it change?" stays answerable and the value is never stored.
//!
//! The key is per installation (a file in the data dir), so hashes cannot be compared across
//! clusters or brute-forced from a public rainbow table of common passwords.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// The annotation `kubectl apply` writes with the whole applied manifest in it.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Secret annotations kept in clear: names and uids written by Kubernetes, Helm and
/// cert-manager, which identify the Secret's owner and hold no secret.
pub const HARMLESS_ANNOTATIONS: &[&str] = &[
    "kubernetes.io/service-account.name",
    "kubernetes.io/service-account.uid",
    "meta.helm.sh/release-name",
    "meta.helm.sh/release-namespace",
    "cert-manager.io/certificate-name",
    "cert-manager.io/issuer-name",
    "cert-manager.io/issuer-kind",
    "cert-manager.io/issuer-group",
];

/// Every redacted value starts with this, so readers can tell a hash from a value.
pub const REDACTED_PREFIX: &str = "hmac-sha256:";

/// The keyed hash used for Secret values.
#[derive(Clone)]
pub struct Redactor {
    key: [u8; 32],
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor { key: <hidden> }")
    }
}

impl Redactor {
    pub fn new(key: [u8; 32]) -> Self {
        Redactor { key }
    }

    /// `hmac-sha256:` + the first 128 bits of HMAC-SHA256(key, value), URL-safe base64.
    fn hash(&self, value: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(value);
        let digest = mac.finalize().into_bytes();
        format!("{REDACTED_PREFIX}{}", URL_SAFE_NO_PAD.encode(&digest[..16]))
    }

    /// `data` values are base64: hash the decoded bytes, so the same secret value gives the same
    /// hash whether it was written through `data` or `stringData`.
    fn hash_data_value(&self, value: &Value) -> Value {
        let hashed = match value {
            Value::String(text) => match STANDARD.decode(text.as_bytes()) {
                Ok(bytes) => self.hash(&bytes),
                Err(_) => self.hash(text.as_bytes()),
            },
            Value::Null => return Value::Null,
            other => self.hash(other.to_string().as_bytes()),
        };
        Value::String(hashed)
    }

    fn hash_string_data_value(&self, value: &Value) -> Value {
        match value {
            Value::String(text) => Value::String(self.hash(text.as_bytes())),
            Value::Null => Value::Null,
            other => Value::String(self.hash(other.to_string().as_bytes())),
        }
    }

    /// Redact one Secret object in place (`data`, `stringData`, annotations, last-applied
    /// annotation).
    pub fn redact_secret(&self, object: &mut Value) {
        self.redact_secret_fields(object);
        self.redact_annotations(object);
        let Some(annotation) = object
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
            .and_then(|annotations| annotations.get_mut(LAST_APPLIED))
        else {
            return;
        };
        let replacement = match annotation.as_str().map(serde_json::from_str::<Value>) {
            Some(Ok(mut applied)) if applied.is_object() => {
                self.redact_secret_fields(&mut applied);
                self.redact_annotations(&mut applied);
                Value::String(applied.to_string())
            }
            // Not JSON we understand: the whole annotation may hold values, so hash all of it.
            Some(_) | None => Value::String(self.hash(annotation.to_string().as_bytes())),
        };
        *annotation = replacement;
    }

    /// Every annotation value but last-applied (redacted field by field) and the harmless ones.
    fn redact_annotations(&self, object: &mut Value) {
        let Some(annotations) = object
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        for (key, value) in annotations.iter_mut() {
            if key == LAST_APPLIED || HARMLESS_ANNOTATIONS.contains(&key.as_str()) {
                continue;
            }
            *value = self.hash_string_data_value(value);
        }
    }

    fn redact_secret_fields(&self, object: &mut Value) {
        if let Some(data) = object.get_mut("data").and_then(Value::as_object_mut) {
            for value in data.values_mut() {
                *value = self.hash_data_value(value);
            }
        } else if let Some(data) = object.get_mut("data")
            && !data.is_null()
        {
            *data = Value::String(self.hash(data.to_string().as_bytes()));
        }
        if let Some(data) = object.get_mut("stringData").and_then(Value::as_object_mut) {
            for value in data.values_mut() {
                *value = self.hash_string_data_value(value);
            }
        } else if let Some(data) = object.get_mut("stringData")
            && !data.is_null()
        {
            *data = Value::String(self.hash(data.to_string().as_bytes()));
        }
    }
}

/// A core `v1` Secret: by the request's kind or resource (`secrets`), or by the object's own
/// `apiVersion`/`kind`, all case-insensitively. Erring towards "Secret" costs a hash; the
/// other way costs a leak.
/// `resource` is the request's `(group, resource)`.
pub fn is_secret(group: &str, kind: &str, resource: (&str, &str), object: Option<&Value>) -> bool {
    if group.is_empty() && kind.eq_ignore_ascii_case("Secret") {
        return true;
    }
    if resource.0.is_empty() && resource.1.eq_ignore_ascii_case("secrets") {
        return true;
    }
    object.is_some_and(|object| {
        object
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|kind| kind.eq_ignore_ascii_case("Secret"))
            && object
                .get("apiVersion")
                .and_then(Value::as_str)
                .is_some_and(|version| version.eq_ignore_ascii_case("v1"))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn redactor() -> Redactor {
        Redactor::new([7; 32])
    }

    #[test]
    fn hashes_data_string_data_and_last_applied() {
        let applied = json!({"apiVersion":"v1","kind":"Secret","data":{"password":"aHVudGVyMg=="},
            "stringData":{"token":"s3cr3t-token"},"metadata":{"name":"s"}});
        let mut secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "annotations": {LAST_APPLIED: applied.to_string(), "team": "a"}},
            "data": {"password": "aHVudGVyMg=="},
            "stringData": {"token": "s3cr3t-token"}
        });
        redactor().redact_secret(&mut secret);
        let text = secret.to_string();
        for plaintext in ["aHVudGVyMg==", "hunter2", "s3cr3t-token"] {
            assert!(!text.contains(plaintext), "{plaintext} leaked in {text}");
        }
        let password = secret["data"]["password"].as_str().unwrap();
        assert!(password.starts_with(REDACTED_PREFIX));
        // The annotation still parses, with the same hash for the same value.
        let annotation = secret["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .unwrap();
        let applied: Value = serde_json::from_str(annotation).unwrap();
        assert_eq!(applied["data"]["password"], password);
        assert_ne!(secret["metadata"]["annotations"]["team"], "a");
    }

    #[test]
    fn every_annotation_value_is_hashed_but_the_harmless_ones() {
        let applied = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t",
            "annotations": {"openshift.io/token-secret.value": "sha256~applied-token"}}});
        let mut secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "t", "annotations": {
                "openshift.io/token-secret.value": "sha256~live-token",
                "kubernetes.io/service-account.name": "builder",
                "example.com/note": {"nested": "not-a-string-secret"},
                LAST_APPLIED: applied.to_string(),
            }},
        });
        redactor().redact_secret(&mut secret);
        let text = secret.to_string();
        for plaintext in ["live-token", "applied-token", "not-a-string-secret"] {
            assert!(!text.contains(plaintext), "{plaintext} leaked in {text}");
        }
        let annotations = &secret["metadata"]["annotations"];
        assert!(
            annotations["openshift.io/token-secret.value"]
                .as_str()
                .unwrap()
                .starts_with(REDACTED_PREFIX)
        );
        assert_eq!(annotations["kubernetes.io/service-account.name"], "builder");
    }

    #[test]
    fn same_value_same_hash_across_data_and_string_data_and_keys_matter() {
        let mut a = json!({"data": {"k": "aHVudGVyMg=="}});
        let mut b = json!({"stringData": {"k": "hunter2"}});
        redactor().redact_secret(&mut a);
        redactor().redact_secret(&mut b);
        assert_eq!(a["data"]["k"], b["stringData"]["k"]);
        let mut c = json!({"data": {"k": "aHVudGVyMg=="}});
        Redactor::new([8; 32]).redact_secret(&mut c);
        assert_ne!(a["data"]["k"], c["data"]["k"]);
    }

    #[test]
    fn unparseable_annotation_is_hashed_whole() {
        let mut secret = json!({"metadata": {"annotations": {LAST_APPLIED: "password=hunter2"}}});
        redactor().redact_secret(&mut secret);
        let text = secret.to_string();
        assert!(!text.contains("hunter2"));
    }

    #[test]
    fn recognises_secrets() {
        assert!(is_secret("", "Secret", ("", "secrets"), None));
        assert!(!is_secret(
            "example.com",
            "Secret",
            ("example.com", "secrets"),
            None
        ));
        assert!(is_secret(
            "",
            "",
            ("", ""),
            Some(&json!({"apiVersion": "v1", "kind": "Secret"}))
        ));
        assert!(!is_secret(
            "",
            "ConfigMap",
            ("", "configmaps"),
            Some(&json!({"kind": "ConfigMap"}))
        ));
        // By resource alone, and whatever the spelling of the kind.
        assert!(is_secret(
            "",
            "",
            ("", "secrets"),
            Some(&json!({"data": {}}))
        ));
        assert!(is_secret("", "secret", ("", ""), None));
        assert!(is_secret("", "SECRET", ("", ""), None));
        assert!(is_secret("apps", "Sekret", ("", "Secrets"), None));
        assert!(is_secret(
            "",
            "",
            ("", ""),
            Some(&json!({"apiVersion": "v1", "kind": "secret"}))
        ));
    }
}
