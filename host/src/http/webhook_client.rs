//! `--webhook-client-ca`: only the API server may post reviews. It presents a client
//! certificate when its AdmissionConfiguration names a kubeconfig for this webhook; a review
//! without one (401), from another CA (401) or with a name not allowed (403) is refused
//! before it is read, so it is never recorded, and counted in
//! `logistis_webhook_client_refused_total{reason}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use logistis_api::ErrorBody;

use super::AppState;
use crate::config::WebhookClientAuth;
use crate::tls::{ClientCertError, PeerCertificates};

pub async fn require(
    State((state, client)): State<(AppState, Option<Arc<WebhookClientAuth>>)>,
    request: Request,
    next: Next,
) -> Response {
    let Some(client) = client else {
        return next.run(request).await;
    };
    let peer = request.extensions().get::<PeerCertificates>();
    match client.ca.verify(peer, &client.allowed_names) {
        Ok(_) => next.run(request).await,
        Err(error) => {
            let (status, reason) = match &error {
                ClientCertError::Missing => (StatusCode::UNAUTHORIZED, "missing"),
                ClientCertError::Untrusted(_) => (StatusCode::UNAUTHORIZED, "untrusted"),
                ClientCertError::NoCommonName | ClientCertError::NameNotAllowed { .. } => {
                    (StatusCode::FORBIDDEN, "name")
                }
            };
            state.metrics.webhook_client_refused(reason);
            tracing::warn!(error = %error, "review refused: client authentication failed (--webhook-client-ca)");
            (
                status,
                Json(ErrorBody {
                    error: format!("review refused, not recorded: {error}"),
                }),
            )
                .into_response()
        }
    }
}
