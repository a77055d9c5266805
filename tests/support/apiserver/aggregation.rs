//! The aggregation layer: `APIService` objects in the store (as `kubectl apply` would create
//! them, caBundle and all) route `/apis/{group}/{version}/…` to a Service; the test says where
//! that Service listens ([`super::ApiServer::set_service_endpoint`]). A request is
//! authenticated and authorized by the stand-in first (RequestInfo from the path, like
//! kube-apiserver), then proxied over HTTPS — verifying the backend against the APIService's
//! caBundle under the name `{service}.{namespace}.svc`, presenting the front-proxy client
//! certificate — with the user in `X-Remote-User`, one `X-Remote-Group` per group and one
//! `X-Remote-Extra-{key}` per extra value (key %-escaped as client-go's `headerKeyEscape`),
//! after removing whatever `Authorization`, impersonation or `X-Remote-*` headers the client
//! sent, exactly as client-go's `SetAuthProxyHeaders` does for the aggregator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;

use super::{ApiState, User, status};

/// Headers never forwarded (hop-by-hop, or the client's own credentials).
const DROPPED: [&str; 9] = [
    "authorization",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The APIService serving `group`/`version` from a Service, if one is registered.
pub fn find(state: &ApiState, group: &str, version: &str) -> Option<APIService> {
    let t = state
        .objects
        .find_any("apiregistration.k8s.io", "apiservices")?;
    let object = state.objects.get(&t, "", &format!("{version}.{group}"))?;
    let service: APIService = serde_json::from_value(object).ok()?;
    service.spec.as_ref()?.service.as_ref()?;
    Some(service)
}

/// Every APIService backed by a Service, as (group, version).
pub fn served_group_versions(state: &ApiState) -> Vec<(String, String)> {
    let Some(t) = state
        .objects
        .find_any("apiregistration.k8s.io", "apiservices")
    else {
        return Vec::new();
    };
    state
        .objects
        .list(&t, "")
        .0
        .into_iter()
        .filter_map(|object| serde_json::from_value::<APIService>(object).ok())
        .filter_map(|service| {
            let spec = service.spec?;
            spec.service.as_ref()?;
            Some((spec.group?, spec.version?))
        })
        .collect()
}

/// `%XX` for every byte that may not appear in a header name (and `%` itself).
pub fn header_key_escape(key: &str) -> String {
    let legal = |b: u8| b.is_ascii_alphanumeric() || b"!#$&'*+-.^_`|~".contains(&b);
    key.bytes()
        .map(|b| {
            if legal(b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn unavailable(message: String) -> Response {
    status(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        &message,
    )
}

/// Proxy an authenticated, authorized request to the APIService's backend.
pub async fn proxy(
    state: Arc<ApiState>,
    service: APIService,
    user: User,
    request: Request,
) -> Response {
    let spec = service.spec.clone().unwrap_or_default();
    let reference = spec.service.clone().unwrap_or_default();
    let (namespace, name) = (
        reference.namespace.clone().unwrap_or_default(),
        reference.name.clone().unwrap_or_default(),
    );
    let port = reference.port.unwrap_or(443);
    let Some(address) = state.service_endpoint(&namespace, &name) else {
        return unavailable(format!(
            "error trying to reach service: no endpoints available for service \"{namespace}/{name}\""
        ));
    };
    let host = format!("{name}.{namespace}.svc");
    let mut client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .resolve(&host, SocketAddr::new(address.ip(), address.port()))
        .connect_timeout(Duration::from_secs(5))
        .identity(state.front_proxy_identity().reqwest());
    if spec.insecure_skip_tls_verify == Some(true) {
        client = client.danger_accept_invalid_certs(true);
    } else {
        let bundle = spec
            .ca_bundle
            .as_ref()
            .map(|b| b.0.clone())
            .unwrap_or_default();
        match reqwest::Certificate::from_pem_bundle(&bundle) {
            Ok(certificates) if !certificates.is_empty() => {
                for certificate in certificates {
                    client = client.add_root_certificate(certificate);
                }
            }
            _ => {
                return unavailable(format!(
                    "error trying to reach service: the APIService {} has no caBundle",
                    service.metadata.name.clone().unwrap_or_default()
                ));
            }
        }
    }
    let client = match client.build() {
        Ok(client) => client,
        Err(error) => return unavailable(format!("error trying to reach service: {error}")),
    };
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 8 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forwarded =
        client.request(parts.method.clone(), format!("https://{host}:{port}{path}"));
    let mut headers = reqwest::header::HeaderMap::new();
    for (key, value) in &parts.headers {
        let lower = key.as_str();
        if DROPPED.contains(&lower)
            || lower.starts_with("impersonate-")
            || lower.starts_with("x-remote-")
        {
            continue;
        }
        headers.append(key.clone(), value.clone());
    }
    let add = |headers: &mut reqwest::header::HeaderMap, key: String, value: &str| {
        if let (Ok(key), Ok(value)) = (HeaderName::try_from(key), HeaderValue::from_str(value)) {
            headers.append(key, value);
        }
    };
    add(&mut headers, "X-Remote-User".into(), &user.name);
    for group in &user.groups {
        add(&mut headers, "X-Remote-Group".into(), group);
    }
    for (key, values) in &user.extra {
        for value in values {
            add(
                &mut headers,
                format!("X-Remote-Extra-{}", header_key_escape(key)),
                value,
            );
        }
    }
    forwarded = forwarded.headers(headers).body(body);
    let answer = match forwarded.send().await {
        Ok(answer) => answer,
        Err(error) => return unavailable(format!("error trying to reach service: {error:#}")),
    };
    let mut response = Response::builder().status(answer.status().as_u16());
    for (key, value) in answer.headers() {
        if !DROPPED.contains(&key.as_str()) && key != "content-length" {
            response = response.header(key, value);
        }
    }
    // Stream the answer as it comes: a watch never ends on its own.
    let (tx, body) = super::serve::channel_body();
    let mut answer = answer;
    tokio::spawn(async move {
        while let Ok(Some(chunk)) = answer.chunk().await {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    response.body(body).expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::header_key_escape;

    #[test]
    fn extra_keys_are_escaped_as_client_go_does() {
        assert_eq!(header_key_escape("scopes"), "scopes");
        assert_eq!(
            header_key_escape("authentication.kubernetes.io/pod-name"),
            "authentication.kubernetes.io%2Fpod-name"
        );
        assert_eq!(header_key_escape("100%"), "100%25");
        assert_eq!(header_key_escape("a b"), "a%20b");
    }
}
