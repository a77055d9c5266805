//! API discovery: the resource types a cluster serves, with their short names, as
//! [`KindInfo`]s in kubectl's priority order (core, then the groups in the order `/apis`
//! lists them, each at its preferred version). Only used for names the built-in table does not
//! know, because it costs one request per API group.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use tokio::task::JoinSet;

use crate::kinds::KindInfo;

/// Discovery failed as a whole (the core group or the group list could not be read). A single
/// group that fails (an aggregated API that is down) is skipped, as kubectl does.
#[derive(Debug, thiserror::Error)]
#[error("could not list the API resources of the cluster")]
pub struct Error(#[source] kube::Error);

/// Every resource type the cluster serves, in priority order.
pub async fn discover(client: &kube::Client) -> Result<Vec<KindInfo>, Error> {
    let core = client.list_core_api_resources("v1").await.map_err(Error)?;
    let groups = client.list_api_groups().await.map_err(Error)?;

    let mut tasks = JoinSet::new();
    for (index, group) in groups.groups.into_iter().enumerate() {
        let Some(version) = group
            .preferred_version
            .or_else(|| group.versions.into_iter().next())
        else {
            continue;
        };
        let client = client.clone();
        tasks.spawn(async move {
            let list = client
                .list_api_group_resources(&version.group_version)
                .await;
            (index, list)
        });
    }
    let mut lists = vec![(0, core)];
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, Ok(list))) = joined {
            lists.push((index + 1, list));
        }
    }
    lists.sort_by_key(|(index, _)| *index);
    Ok(lists.iter().flat_map(|(_, list)| kinds_of(list)).collect())
}

/// The kinds of one `APIResourceList`, subresources (`pods/exec`) left out.
pub fn kinds_of(list: &APIResourceList) -> Vec<KindInfo> {
    let (group, version) = match list.group_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", list.group_version.as_str()),
    };
    list.resources
        .iter()
        .filter(|resource| !resource.name.contains('/'))
        .map(|resource| KindInfo {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: resource.kind.clone(),
            plural: resource.name.clone(),
            singular: if resource.singular_name.is_empty() {
                resource.kind.to_ascii_lowercase()
            } else {
                resource.singular_name.clone()
            },
            short_names: resource.short_names.clone().unwrap_or_default(),
            namespaced: resource.namespaced,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{KindQuery, resolve};

    #[test]
    fn resource_lists_become_kinds_without_subresources() {
        let list: APIResourceList = serde_json::from_value(serde_json::json!({
            "kind": "APIResourceList",
            "groupVersion": "policies.kubewarden.io/v1",
            "resources": [
                {"name": "admissionpolicygroups", "singularName": "admissionpolicygroup",
                 "namespaced": true, "kind": "AdmissionPolicyGroup", "shortNames": ["apg"],
                 "verbs": ["get", "list"]},
                {"name": "admissionpolicygroups/status", "singularName": "",
                 "namespaced": true, "kind": "AdmissionPolicyGroup", "verbs": ["get"]}
            ]
        }))
        .unwrap();
        let kinds = kinds_of(&list);
        assert_eq!(kinds.len(), 1);
        assert_eq!(kinds[0].group, "policies.kubewarden.io");
        assert_eq!(kinds[0].version, "v1");
        let found = resolve(&kinds, &KindQuery::parse("apg")).unwrap();
        assert_eq!(
            found.qualified(),
            "AdmissionPolicyGroup.policies.kubewarden.io"
        );
        assert!(found.namespaced);
    }

    #[test]
    fn core_group_version_has_no_group() {
        let list: APIResourceList = serde_json::from_value(serde_json::json!({
            "groupVersion": "v1",
            "resources": [{"name": "pods", "singularName": "", "namespaced": true,
                           "kind": "Pod", "verbs": []}]
        }))
        .unwrap();
        let kinds = kinds_of(&list);
        assert_eq!(kinds[0].group, "");
        assert_eq!(kinds[0].singular, "pod");
    }
}
