//! The wire format of an AdmissionReview (`admission.k8s.io/v1` and `v1beta1`), parsed once.
//!
//! Our own lenient types rather than kube's: real reviews in the wild lack fields (no `uid`,
//! no `kind`, objects without `apiVersion`), and the objects stay `serde_json::Value`s so
//! they are parsed exactly once per request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The two AdmissionReview versions the API server may send; we answer in the one asked.
pub const SUPPORTED_API_VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub request: Option<AdmissionRequest>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct GroupVersionResource {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub resource: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestUserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    #[serde(default)]
    pub extra: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub kind: Option<GroupVersionKind>,
    #[serde(default)]
    pub resource: Option<GroupVersionResource>,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub user_info: RequestUserInfo,
    #[serde(default)]
    pub object: Option<Value>,
    #[serde(default)]
    pub old_object: Option<Value>,
    #[serde(default)]
    pub dry_run: Option<bool>,
    #[serde(default)]
    pub options: Option<Value>,
}

/// The answer: `allowed: true` — Logistis records, it never blocks the cluster — except when
/// a lock a person set denies the request ([`AdmissionResponseReview::deny`]).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponseReview {
    pub api_version: String,
    pub kind: &'static str,
    pub response: AdmissionResponse,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    /// Why a request is denied (a `meta/v1` Status): the API server shows `message` to the
    /// user and answers with `code`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ResponseStatus>,
}

/// The part of a `meta/v1` Status a webhook answers with.
#[derive(Debug, Clone, Serialize)]
pub struct ResponseStatus {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl AdmissionResponseReview {
    /// `allowed: true` for `uid`, in the AdmissionReview version the request used.
    pub fn allow(api_version: &str, uid: &str) -> Self {
        AdmissionResponseReview {
            api_version: api_version.to_owned(),
            kind: "AdmissionReview",
            response: AdmissionResponse {
                uid: uid.to_owned(),
                allowed: true,
                status: None,
            },
        }
    }

    /// `allowed: false` for `uid` with `message` (403 Forbidden), for a lock.
    pub fn deny(api_version: &str, uid: &str, message: String) -> Self {
        let mut answer = Self::allow(api_version, uid);
        answer.response.allowed = false;
        answer.response.status = Some(ResponseStatus {
            code: 403,
            reason: "Forbidden",
            message,
        });
        answer
    }
}

/// Why a body is not a usable AdmissionReview (answered with 400).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("the body is not a valid AdmissionReview JSON document")]
    Json(#[source] serde_json::Error),
    #[error("the body is not a valid AdmissionReview JSON document: expected a JSON object")]
    NotAnObject,
    #[error(
        "unsupported AdmissionReview apiVersion {0:?} (expected admission.k8s.io/v1 or v1beta1)"
    )]
    ApiVersion(String),
    #[error("the AdmissionReview has no request")]
    NoRequest,
}

/// Parse a body into a review that has a request and a supported version.
pub fn parse(body: &[u8]) -> Result<(String, AdmissionRequest), ReviewError> {
    // serde would read a JSON array as a struct by position: only an object is a review.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ReviewError::NotAnObject);
    }
    let review: AdmissionReview = serde_json::from_slice(body).map_err(ReviewError::Json)?;
    // An absent apiVersion is read as v1 (some hand-built reviews omit it); a wrong one is an error.
    let api_version = review
        .api_version
        .unwrap_or_else(|| SUPPORTED_API_VERSIONS[0].to_owned());
    if !SUPPORTED_API_VERSIONS.contains(&api_version.as_str()) {
        return Err(ReviewError::ApiVersion(api_version));
    }
    let request = review.request.ok_or(ReviewError::NoRequest)?;
    Ok((api_version, request))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_minimal_review_without_uid_or_kind() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview",
            "request":{"operation":"UPDATE","object":{"metadata":{"name":"p"}}}}"#;
        let (version, request) = parse(body).unwrap();
        assert_eq!(version, "admission.k8s.io/v1beta1");
        assert_eq!(request.uid, "");
        assert!(request.kind.is_none());
    }

    #[test]
    fn rejects_bad_bodies_with_a_reason() {
        assert!(matches!(parse(b"{not json"), Err(ReviewError::Json(_))));
        assert!(matches!(
            parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
            Err(ReviewError::NoRequest)
        ));
        assert!(matches!(
            parse(br#"{"apiVersion":"v2","request":{}}"#),
            Err(ReviewError::ApiVersion(v)) if v == "v2"
        ));
        assert!(matches!(parse(b"[1,2]"), Err(ReviewError::NotAnObject)));
        assert!(matches!(parse(b"  "), Err(ReviewError::NotAnObject)));
    }

    #[test]
    fn answers_in_the_version_asked() {
        let answer = AdmissionResponseReview::allow("admission.k8s.io/v1beta1", "u-1");
        let json = serde_json::to_value(answer).unwrap();
        assert_eq!(json["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(json["kind"], "AdmissionReview");
        assert_eq!(json["response"]["uid"], "u-1");
        assert_eq!(json["response"]["allowed"], true);
        assert!(json["response"].get("status").is_none());
        let denied = AdmissionResponseReview::deny("admission.k8s.io/v1", "u-2", "locked".into());
        let json = serde_json::to_value(denied).unwrap();
        assert_eq!(json["response"]["allowed"], false);
        assert_eq!(json["response"]["status"]["code"], 403);
        assert_eq!(json["response"]["status"]["message"], "locked");
    }
}
