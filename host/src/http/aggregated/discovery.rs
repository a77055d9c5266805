//! Discovery of `logistis.io/v1alpha1`: the `APIGroup` and the `APIResourceList` that
//! `kubectl api-resources` lists and that kubectl resolves `kubectl get changes` with.

use axum::Json;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, GroupVersionForDiscovery,
};

use super::{GROUP, VERSION, VIEWS};

fn group() -> APIGroup {
    let version = GroupVersionForDiscovery {
        group_version: format!("{GROUP}/{VERSION}"),
        version: VERSION.into(),
    };
    APIGroup {
        name: GROUP.into(),
        preferred_version: Some(version.clone()),
        versions: vec![version],
        server_address_by_client_cidrs: None,
    }
}

pub async fn group_list() -> Json<APIGroupList> {
    Json(APIGroupList {
        groups: vec![group()],
    })
}

pub async fn api_group() -> Json<APIGroup> {
    Json(group())
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

pub async fn resources() -> Json<APIResourceList> {
    let mut resources = vec![APIResource {
        name: "changes".into(),
        singular_name: "change".into(),
        namespaced: true,
        kind: "Change".into(),
        verbs: strings(&["get", "list", "watch"]),
        short_names: Some(strings(&["chg"])),
        categories: Some(strings(&["logistis"])),
        ..APIResource::default()
    }];
    for (view, kind) in VIEWS {
        resources.push(APIResource {
            name: format!("changes/{view}"),
            singular_name: String::new(),
            namespaced: true,
            kind: (*kind).into(),
            verbs: strings(&["get"]),
            ..APIResource::default()
        });
    }
    resources.push(APIResource {
        name: "locks".into(),
        singular_name: "lock".into(),
        namespaced: true,
        kind: "Lock".into(),
        verbs: strings(&["create", "delete", "get", "list", "watch"]),
        categories: Some(strings(&["logistis"])),
        ..APIResource::default()
    });
    resources.push(APIResource {
        name: "namespacesummaries".into(),
        singular_name: "namespacesummary".into(),
        namespaced: false,
        kind: "NamespaceSummary".into(),
        verbs: strings(&["list"]),
        categories: Some(strings(&["logistis"])),
        ..APIResource::default()
    });
    Json(APIResourceList {
        group_version: format!("{GROUP}/{VERSION}"),
        resources,
    })
}
