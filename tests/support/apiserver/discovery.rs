//! Discovery as kubectl reads it (the legacy, unaggregated form — kubectl falls back to it
//! when the answer is plain `application/json`): `/api`, `/api/v1`, `/apis`, `/apis/{group}`
//! and `/apis/{group}/{version}` for the store's types, with the groups of `APIService`s
//! listed in `/apis` and their group-version documents left to the backend (proxied).

use std::collections::BTreeMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, APIVersions, GroupVersionForDiscovery,
    ServerAddressByClientCIDR,
};

use super::objects::ResourceType;
use super::{ApiState, aggregation, status};

fn resource(t: &ResourceType) -> APIResource {
    APIResource {
        name: t.resource.clone(),
        singular_name: if t.resource.contains('/') {
            String::new()
        } else {
            t.kind.to_lowercase()
        },
        namespaced: t.namespaced,
        kind: t.kind.clone(),
        verbs: t.verbs.clone(),
        short_names: (!t.short_names.is_empty()).then(|| t.short_names.clone()),
        ..APIResource::default()
    }
}

/// `/api`.
pub fn api_versions() -> Response {
    Json(APIVersions {
        versions: vec!["v1".into()],
        server_address_by_client_cidrs: vec![ServerAddressByClientCIDR {
            client_cidr: "0.0.0.0/0".into(),
            server_address: "127.0.0.1".into(),
        }],
    })
    .into_response()
}

/// Every group and its versions: the store's types and the APIServices.
fn groups(state: &ApiState) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let pairs = state
        .objects
        .types()
        .into_iter()
        .filter(|t| !t.group.is_empty())
        .map(|t| (t.group, t.version))
        .chain(aggregation::served_group_versions(state));
    for (group, version) in pairs {
        let versions = groups.entry(group).or_default();
        if !versions.contains(&version) {
            versions.push(version);
        }
    }
    groups
}

fn api_group(name: &str, versions: &[String]) -> APIGroup {
    let versions: Vec<GroupVersionForDiscovery> = versions
        .iter()
        .map(|v| GroupVersionForDiscovery {
            group_version: format!("{name}/{v}"),
            version: v.clone(),
        })
        .collect();
    APIGroup {
        name: name.to_owned(),
        preferred_version: versions.first().cloned(),
        versions,
        server_address_by_client_cidrs: None,
    }
}

/// `/apis`.
pub fn group_list(state: &ApiState) -> Response {
    let groups = groups(state)
        .iter()
        .map(|(name, versions)| api_group(name, versions))
        .collect();
    Json(APIGroupList { groups }).into_response()
}

/// `/apis/{group}`.
pub fn group(state: &ApiState, name: &str) -> Response {
    match groups(state).get(name) {
        Some(versions) => Json(api_group(name, versions)).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}

/// `/api/v1` (`group` empty) or `/apis/{group}/{version}` for the store's types.
pub fn resources(state: &ApiState, group: &str, version: &str) -> Response {
    let resources: Vec<APIResource> = state
        .objects
        .types()
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .map(resource)
        .collect();
    if resources.is_empty() {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Json(APIResourceList {
        group_version,
        resources,
    })
    .into_response()
}
