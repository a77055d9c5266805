//! Errors of the aggregated API as Kubernetes `Status` bodies (what kubectl prints as
//! `Error from server (Forbidden): …`), and the refusals of authentication and
//! authorization worded as kube-apiserver words them.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusDetails};

use crate::auth::{self, Question};

/// A failed request of the aggregated API.
#[derive(Debug)]
pub struct KubeError {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
    /// Boxed: most errors carry none, and the error travels in every `Result`.
    pub details: Option<Box<StatusDetails>>,
}

impl KubeError {
    pub fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> KubeError {
        KubeError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> KubeError {
        KubeError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn not_found(message: impl Into<String>) -> KubeError {
        KubeError::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// 403 for `question`, e.g. `changes.logistis.io "…" is forbidden: User "bob" cannot get
    /// resource "changes" in API group "logistis.io" in the namespace "b"`.
    pub fn forbidden(user: &str, question: &Question, name: &str) -> KubeError {
        let message = match question {
            Question::Resource {
                verb,
                group,
                resource,
                namespace,
                ..
            } => {
                let qualified = if group.is_empty() {
                    resource.clone()
                } else {
                    format!("{resource}.{group}")
                };
                let named = if name.is_empty() {
                    qualified
                } else {
                    format!("{qualified} \"{name}\"")
                };
                let scope = if namespace.is_empty() {
                    "at the cluster scope".to_owned()
                } else {
                    format!("in the namespace \"{namespace}\"")
                };
                format!(
                    "{named} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}"
                )
            }
            Question::Url { verb, path } => {
                format!("forbidden: User \"{user}\" cannot {verb} path \"{path}\"")
            }
        };
        let mut error = KubeError::new(StatusCode::FORBIDDEN, "Forbidden", message);
        if let Question::Resource {
            group, resource, ..
        } = question
        {
            error.details = Some(Box::new(StatusDetails {
                group: Some(group.clone()),
                kind: Some(resource.clone()),
                name: (!name.is_empty()).then(|| name.to_owned()),
                ..StatusDetails::default()
            }));
        }
        error
    }

    pub fn unauthorized(reason: &auth::Unauthenticated) -> KubeError {
        match reason {
            auth::Unauthenticated::Unavailable(error) => {
                tracing::warn!(error = format!("{error:#}"), "authentication failed");
                KubeError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "the Kubernetes API could not check the credentials; try again",
                )
            }
            other => KubeError::new(StatusCode::UNAUTHORIZED, "Unauthorized", other.to_string()),
        }
    }

    /// The authorizer could not be asked.
    pub fn authorization_failed(error: auth::Error) -> KubeError {
        tracing::warn!(error = format!("{error:#}"), "authorization failed");
        KubeError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the Kubernetes API could not authorize the request; try again",
        )
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> KubeError {
        tracing::error!(error = format!("{:#}", error.into()), "internal error");
        KubeError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "internal error",
        )
    }
}

impl From<auth::Error> for KubeError {
    fn from(error: auth::Error) -> Self {
        KubeError::authorization_failed(error)
    }
}

impl From<crate::store::Error> for KubeError {
    fn from(error: crate::store::Error) -> Self {
        KubeError::internal(error)
    }
}

impl IntoResponse for KubeError {
    fn into_response(self) -> Response {
        let body = Status {
            code: Some(self.code.as_u16().into()),
            details: self.details.map(|d| *d),
            message: Some(self.message),
            reason: Some(self.reason.into()),
            status: Some("Failure".into()),
            ..Status::default()
        };
        (self.code, Json(body)).into_response()
    }
}
