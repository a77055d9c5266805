//! `TokenReview` and `SubjectAccessReview`, as kube-apiserver answers them to a delegating
//! server (what `system:auth-delegator` lets Logistis create): tokens from the test's users,
//! decisions from the test's [`super::Rbac`] table.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewStatus, UserInfo};
use k8s_openapi::api::authorization::v1::{SubjectAccessReview, SubjectAccessReviewStatus};

use super::rbac::Attributes;
use super::{ApiState, status};

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`.
pub async fn token_review(State(state): State<Arc<ApiState>>, body: axum::body::Bytes) -> Response {
    let Ok(mut review) = serde_json::from_slice::<TokenReview>(&body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not a TokenReview",
        );
    };
    let token = review.spec.token.clone();
    let user = state.user_by_token(&token);
    review.status = Some(match user {
        Some(user) => TokenReviewStatus {
            authenticated: Some(true),
            audiences: review.spec.audiences.clone(),
            user: Some(UserInfo {
                username: Some(user.name.clone()),
                uid: Some(user.uid.clone()),
                groups: Some(user.groups.clone()),
                extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            }),
            error: None,
        },
        None => TokenReviewStatus {
            authenticated: Some(false),
            error: Some("invalid bearer token".into()),
            ..TokenReviewStatus::default()
        },
    });
    state.count_review("tokenreviews");
    (StatusCode::CREATED, Json(review)).into_response()
}

/// `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`.
pub async fn subject_access_review(
    State(state): State<Arc<ApiState>>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(mut review) = serde_json::from_slice::<SubjectAccessReview>(&body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not a SubjectAccessReview",
        );
    };
    let spec = &review.spec;
    let mut attributes = Attributes {
        user: spec.user.clone().unwrap_or_default(),
        groups: spec.groups.clone().unwrap_or_default(),
        ..Attributes::default()
    };
    match (&spec.resource_attributes, &spec.non_resource_attributes) {
        (Some(resource), _) => {
            attributes.resource_request = true;
            attributes.verb = resource.verb.clone().unwrap_or_default();
            attributes.group = resource.group.clone().unwrap_or_default();
            attributes.resource = resource.resource.clone().unwrap_or_default();
            attributes.subresource = resource.subresource.clone().unwrap_or_default();
            attributes.namespace = resource.namespace.clone().unwrap_or_default();
            attributes.name = resource.name.clone().unwrap_or_default();
        }
        (None, Some(url)) => {
            attributes.verb = url.verb.clone().unwrap_or_default();
            attributes.path = url.path.clone().unwrap_or_default();
        }
        (None, None) => {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "SubjectAccessReview.authorization.k8s.io is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
            );
        }
    }
    let allowed = state.rbac().allows(&attributes);
    state.record_decision(attributes.clone(), allowed);
    review.status = Some(SubjectAccessReviewStatus {
        allowed,
        denied: None,
        reason: Some(if allowed {
            "RBAC: allowed by the stand-in's table".into()
        } else {
            String::new()
        }),
        evaluation_error: None,
    });
    state.count_review("subjectaccessreviews");
    (StatusCode::CREATED, Json(review)).into_response()
}
