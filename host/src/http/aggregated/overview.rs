//! `namespacesummaries`: the per-namespace overview (changes stored, the latest one) of the
//! namespaces the caller may list changes in — one cluster-scope question first, then one
//! per namespace (cached). Where the caller may not read Secrets, their changes are neither
//! counted nor shown as the latest one (a namespace with only those is left out).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};

use super::changes::{change, object_name};
use super::status::KubeError;
use super::table::{self, IncludeObject};
use super::{Context, GROUP, VERSION};
use crate::auth::verdict::is_secret;
use crate::auth::{Caller, Question};

async fn answer(
    context: Arc<Context>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, KubeError> {
    let store = context.app.store.clone();
    let summaries = tokio::task::spawn_blocking(move || store.namespaces())
        .await
        .map_err(KubeError::internal)??;
    let visibility = caller
        .visibility("list", summaries.iter().map(|s| s.namespace.clone()))
        .await?;
    if !visibility.cluster && visibility.namespaces.is_empty() {
        return Err(KubeError::forbidden(
            caller.name(),
            &Question::resource("list", GROUP, "changes", ""),
            "",
        ));
    }
    let mut summaries: Vec<_> = summaries
        .into_iter()
        .filter(|s| visibility.namespace(&s.namespace))
        .collect();
    // Where the caller may not read Secrets, their changes are neither shown nor counted.
    let hidden: Vec<String> = summaries
        .iter()
        .filter(|s| !visibility.allows(&s.namespace, true))
        .map(|s| s.namespace.clone())
        .collect();
    if !hidden.is_empty() {
        let store = context.app.store.clone();
        let secrets = tokio::task::spawn_blocking(move || {
            hidden
                .into_iter()
                .map(|namespace| {
                    let count = secret_changes(&store, &namespace)?;
                    Ok((namespace, count))
                })
                .collect::<crate::store::Result<std::collections::HashMap<_, _>>>()
        })
        .await
        .map_err(KubeError::internal)??;
        for summary in &mut summaries {
            if let Some(count) = secrets.get(&summary.namespace) {
                summary.events = summary.events.saturating_sub(*count);
            }
        }
    }
    let items: Vec<Value> = summaries
        .into_iter()
        .filter(|s| s.events > 0)
        .map(|mut s| {
            if s.latest.as_ref().is_some_and(|e| {
                is_secret(&e.resource.group, &e.resource.kind)
                    && !visibility.allows(&s.namespace, true)
            }) {
                s.latest = None;
            }
            let name = if s.namespace.is_empty() {
                "-".to_owned()
            } else {
                s.namespace.clone()
            };
            json!({
                "apiVersion": format!("{GROUP}/{VERSION}"), "kind": "NamespaceSummary",
                "metadata": {"name": name},
                "cluster": s.cluster, "namespace": s.namespace, "changes": s.events,
                "latest": s.latest.as_ref().map(|e| change(e, false)),
            })
        })
        .collect();
    if table::wants_table(&headers) {
        let columns = vec![
            table::column(
                "Name",
                "string",
                "name",
                "The namespace (- for cluster-scoped objects).",
            ),
            table::column("Changes", "integer", "", "Changes stored."),
            table::column("Last Change", "string", "", "Age of the newest change."),
            table::column("Object", "string", "", "The object of the newest change."),
            table::column("Operation", "string", "", "Its operation."),
            table::column("User", "string", "", "Who made it."),
        ];
        let now = Utc::now();
        let rows = items
            .iter()
            .map(|item| {
                let latest = &item["latest"];
                let event: Option<logistis_api::Event> = latest
                    .is_object()
                    .then(|| serde_json::from_value(latest.clone()).ok())
                    .flatten();
                table::row(
                    vec![
                        item["metadata"]["name"].clone(),
                        item["changes"].clone(),
                        json!(
                            event
                                .as_ref()
                                .map_or(String::new(), |e| table::age(e.time, now))
                        ),
                        json!(event.as_ref().map_or(String::new(), object_name)),
                        json!(event.as_ref().map_or("", |e| e.operation.as_str())),
                        json!(event.as_ref().map_or("", |e| e.user.username.as_str())),
                    ],
                    IncludeObject::Metadata.row_object(item),
                )
            })
            .collect();
        return Ok(Json(table::table(Some(&columns), rows, "0", None)).into_response());
    }
    Ok(Json(json!({
        "apiVersion": format!("{GROUP}/{VERSION}"), "kind": "NamespaceSummaryList",
        "metadata": {}, "items": items,
    }))
    .into_response())
}

pub async fn list(
    State(context): State<Arc<Context>>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    answer(context, caller.0, headers)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// How many changes of Secrets `namespace` holds (read from the kind index, page by page).
fn secret_changes(store: &crate::store::Store, namespace: &str) -> crate::store::Result<u64> {
    let filter = crate::store::EventFilter {
        namespace: Some(namespace.to_owned()),
        group: Some(String::new()),
        kind: Some("Secret".to_owned()),
        ..Default::default()
    };
    let mut count = 0;
    let mut before = None;
    loop {
        let page = store.list_events(
            &filter,
            crate::store::Scan {
                limit: 1_000,
                before,
                budget: crate::store::Scan::DEFAULT_BUDGET,
            },
        )?;
        count += page.items.len() as u64;
        match page.next {
            Some(next) => before = Some(next),
            None => return Ok(count),
        }
    }
}
