//! What kube-apiserver authorizes a request as, read from its method, path and query — a
//! port of k8s.io/apiserver `pkg/endpoints/request/requestinfo.go` (`RequestInfoFactory`),
//! so that the stand-in authorizes an aggregated path exactly as the real API server does
//! before it proxies it.

/// The attributes the authorizer sees.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub is_resource_request: bool,
    /// The path, for non-resource requests.
    pub path: String,
    pub verb: String,
    pub api_prefix: String,
    pub api_group: String,
    pub api_version: String,
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// resource/name/subresource/… as they appear after the namespace.
    pub parts: Vec<String>,
}

/// `proxy` and `watch` as the first segment after the version are verbs (deprecated forms).
const SPECIAL_VERBS: [&str; 2] = ["proxy", "watch"];
/// Segments after `namespaces/{ns}` that are subresources of the namespace itself.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

impl RequestInfo {
    /// Parse a request. `query` is the raw query string (without `?`).
    pub fn parse(method: &str, path: &str, query: &str) -> RequestInfo {
        let verb = method.to_ascii_lowercase();
        let mut info = RequestInfo {
            path: path.to_owned(),
            verb: verb.clone(),
            ..RequestInfo::default()
        };
        let mut parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        if parts == [""] {
            parts.clear();
        }
        if parts.len() < 3 || !matches!(parts[0], "api" | "apis") {
            return info;
        }
        info.api_prefix = parts[0].to_owned();
        let mut current = &parts[1..];
        if info.api_prefix == "apis" {
            // /apis/{group}/{version}/{resource}: one more part than the groupless prefix.
            if current.len() < 3 {
                return info;
            }
            info.api_group = current[0].to_owned();
            current = &current[1..];
        }
        info.is_resource_request = true;
        info.api_version = current[0].to_owned();
        current = &current[1..];

        if SPECIAL_VERBS.contains(&current[0]) {
            if current.len() < 2 {
                // kube-apiserver answers this with an error; the authorizer never sees it.
                info.is_resource_request = false;
                return info;
            }
            info.verb = current[0].to_owned();
            current = &current[1..];
        } else {
            info.verb = match method {
                "POST" => "create",
                "GET" | "HEAD" => "get",
                "PUT" => "update",
                "PATCH" => "patch",
                "DELETE" => "delete",
                _ => "",
            }
            .to_owned();
        }

        if current[0] == "namespaces" && current.len() > 1 {
            info.namespace = current[1].to_owned();
            if current.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&current[2]) {
                current = &current[2..];
            }
        }
        info.parts = current.iter().map(|p| (*p).to_owned()).collect();
        if info.parts.len() >= 3 && info.verb != "proxy" {
            info.subresource = info.parts[2].clone();
        }
        if info.parts.len() >= 2 {
            info.name = info.parts[1].clone();
        }
        if !info.parts.is_empty() {
            info.resource = info.parts[0].clone();
        }

        if info.name.is_empty() && info.verb == "get" {
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_str(query).unwrap_or_default();
            let watch = pairs
                .iter()
                .any(|(k, v)| k == "watch" && matches!(v.as_str(), "true" | "1"));
            info.verb = if watch { "watch" } else { "list" }.to_owned();
            // A list or watch of one name (fieldSelector metadata.name=X) is authorized
            // with that name.
            if let Some((_, selector)) = pairs.iter().find(|(k, _)| k == "fieldSelector")
                && let Some(name) = exact_name(selector)
            {
                info.name = name;
            }
        }
        if info.name.is_empty() && info.verb == "delete" {
            info.verb = "deletecollection".to_owned();
        }
        info
    }

    /// `resource` or `resource/subresource`, as RBAC rules name it.
    pub fn resource_with_subresource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// `metadata.name=X` (or `==`) as the only requirement on the name in a field selector.
fn exact_name(selector: &str) -> Option<String> {
    selector.split(',').find_map(|term| {
        let (field, value) = term.split_once("==").or_else(|| term.split_once('='))?;
        (field.trim() == "metadata.name" && !field.ends_with('!'))
            .then(|| value.trim().to_owned())
            .filter(|name| !name.is_empty() && !name.contains('/') && name != "." && name != "..")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: &str, path: &str, query: &str) -> (String, String, String, String, String) {
        let i = RequestInfo::parse(method, path, query);
        (i.verb, i.namespace, i.resource, i.subresource, i.name)
    }

    fn s(v: &str) -> String {
        v.to_owned()
    }

    #[test]
    fn resource_requests_as_kube_apiserver_reads_them() {
        let base = "/apis/logistis.io/v1alpha1";
        assert_eq!(
            info(
                "GET",
                &format!("{base}/namespaces/shop/changes"),
                "limit=500"
            ),
            (s("list"), s("shop"), s("changes"), s(""), s(""))
        );
        assert_eq!(
            info("GET", &format!("{base}/changes"), "watch=true"),
            (s("watch"), s(""), s("changes"), s(""), s(""))
        );
        assert_eq!(
            info("GET", &format!("{base}/namespaces/shop/changes/abc"), ""),
            (s("get"), s("shop"), s("changes"), s(""), s("abc"))
        );
        assert_eq!(
            info(
                "GET",
                &format!("{base}/namespaces/shop/changes/web/history/x/y"),
                ""
            ),
            (s("get"), s("shop"), s("changes"), s("history"), s("web"))
        );
        assert_eq!(
            info(
                "GET",
                "/api/v1/namespaces/kube-system/configmaps",
                "fieldSelector=metadata.name%3Dextension-apiserver-authentication&watch=1"
            ),
            (
                s("watch"),
                s("kube-system"),
                s("configmaps"),
                s(""),
                s("extension-apiserver-authentication")
            )
        );
        assert_eq!(
            info("GET", "/api/v1/namespaces/shop", ""),
            (s("get"), s("shop"), s("namespaces"), s(""), s("shop"))
        );
        assert_eq!(
            info("DELETE", "/api/v1/namespaces/shop/pods", ""),
            (s("deletecollection"), s("shop"), s("pods"), s(""), s(""))
        );
        assert_eq!(
            info("GET", "/api/v1/watch/namespaces/shop/pods", ""),
            (s("watch"), s("shop"), s("pods"), s(""), s(""))
        );
    }

    #[test]
    fn discovery_and_other_paths_are_non_resource_requests() {
        for path in [
            "/apis",
            "/apis/logistis.io",
            "/apis/logistis.io/v1alpha1",
            "/api",
            "/metrics",
            "/",
        ] {
            let i = RequestInfo::parse("GET", path, "");
            assert!(!i.is_resource_request, "{path}");
            assert_eq!(i.verb, "get");
            assert_eq!(i.path, path);
        }
        assert!(!RequestInfo::parse("GET", "/api/v1", "").is_resource_request);
    }
}
