//! Admission: an AdmissionReview becomes an [`Event`] — pure, no IO.
//!
//! The order matters and is the same for every request: parse once ([`review`]), decide
//! dry-run, resolve the parent Kind ([`kinds`]), redact Secrets ([`redact`]) before anything
//! else looks at the objects, drop `managedFields`, then diff the noise-free views
//! ([`noise`]) into an RFC 6902 patch. An UPDATE whose diff is empty is noise, not a change.

pub mod kinds;
pub mod limits;
pub mod noise;
pub mod redact;
pub mod review;

use chrono::{DateTime, Utc};
use logistis_api::{Event, EventId, Operation, ResourceRef, UserInfo};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use kinds::KindTable;
pub use redact::Redactor;
pub use review::{AdmissionRequest, AdmissionResponseReview, ReviewError};

/// What the admission layer needs to know besides the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Record `dryRun: true` requests (flagged); by default they are skipped.
    pub record_dry_run: bool,
    /// Record UPDATEs whose only change is noise; by default they are skipped.
    pub record_noise: bool,
}

/// A change to record, before the store gives it an id.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// `id` is a placeholder until the store assigns one.
    pub event: Event,
    /// Identifies a re-sent review: the request uid plus what it is about. `None` when the
    /// review has no uid (nothing to deduplicate on).
    pub dedupe_key: Option<[u8; 32]>,
}

/// The admission layer's verdict on one request. The webhook answers `allowed: true` in
/// every case; only [`Outcome::Record`] reaches the store.
#[derive(Debug, Clone)]
pub enum Outcome {
    Record(Box<NewEvent>),
    SkippedDryRun,
    SkippedNoise,
}

/// Build the event for one admission request received at `time`.
pub fn build_event(
    mut request: AdmissionRequest,
    time: DateTime<Utc>,
    policy: Policy,
    redactor: &Redactor,
    kinds: &KindTable,
) -> Outcome {
    let dry_run = request.dry_run.unwrap_or(false);
    if dry_run && !policy.record_dry_run {
        return Outcome::SkippedDryRun;
    }
    let operation = Operation::parse(&request.operation);
    let mut object = request.object.take().filter(|v| !v.is_null());
    let mut old_object = request.old_object.take().filter(|v| !v.is_null());

    let resource = resource_ref(&request, object.as_ref().or(old_object.as_ref()), kinds);

    // CONNECT carries connect options (PodExecOptions...), not a version of the object.
    let options = if operation == Operation::Connect {
        object.take()
    } else {
        None
    };

    if redact::is_secret(
        &resource.group,
        &resource.kind,
        request
            .resource
            .as_ref()
            .map_or(("", ""), |r| (r.group.as_str(), r.resource.as_str())),
        object.as_ref().or(old_object.as_ref()),
    ) {
        for object in [&mut object, &mut old_object].into_iter().flatten() {
            redactor.redact_secret(object);
        }
    }
    for object in [&mut object, &mut old_object].into_iter().flatten() {
        noise::drop_managed_fields(object);
    }

    let patch = match (&operation, &old_object, &object) {
        (Operation::Connect | Operation::Delete, _, _) => json!([]),
        (Operation::Update, Some(before), Some(after)) => {
            // Diff the objects as they are and drop the noise operations: the same patch as
            // diffing stripped copies, without deep-copying two objects per update.
            let mut patch = json_patch::diff(before, after);
            patch
                .0
                .retain(|op| !noise::is_noise_path(op.path().as_str()));
            if patch.0.is_empty() && !policy.record_noise {
                return Outcome::SkippedNoise;
            }
            serde_json::to_value(patch).unwrap_or_else(|_| json!([]))
        }
        (_, _, Some(after)) => json!([{"op": "add", "path": "", "value": noise::strip(after)}]),
        _ => json!([]),
    };

    let object_uid = object
        .as_ref()
        .or(old_object.as_ref())
        .and_then(|o| o.pointer("/metadata/uid"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let field_manager = request
        .options
        .as_ref()
        .and_then(|o| o.get("fieldManager"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let dedupe_key =
        (!request.uid.is_empty()).then(|| dedupe_key(&request.uid, &operation, &resource));
    let user = UserInfo {
        username: request.user_info.username,
        uid: request.user_info.uid,
        groups: request.user_info.groups.unwrap_or_default(),
        extra: request.user_info.extra.unwrap_or_default(),
    };

    Outcome::Record(Box::new(NewEvent {
        event: Event {
            id: EventId(0),
            cluster: String::new(),
            uid: request.uid,
            time,
            operation,
            user,
            resource,
            object_uid,
            field_manager,
            dry_run,
            patch,
            options,
            object,
            old_object,
            status: None,
            confirmation: None,
            observed_by: None,
            denied: None,
        },
        dedupe_key,
    }))
}

/// The resource a request is about, as its event would record it (a subresource filed under
/// its parent's Kind): what locks match against before any event is built.
pub fn resource_of(request: &AdmissionRequest, kinds: &KindTable) -> ResourceRef {
    let object = request
        .object
        .as_ref()
        .filter(|v| !v.is_null())
        .or(request.old_object.as_ref().filter(|v| !v.is_null()));
    resource_ref(request, object, kinds)
}

/// The request's resource, filled in from the object where the request is silent.
fn resource_ref(
    request: &AdmissionRequest,
    object: Option<&Value>,
    kinds: &KindTable,
) -> ResourceRef {
    let metadata = |field: &str| {
        object
            .and_then(|o| o.get("metadata"))
            .and_then(|m| m.get(field))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let (mut group, mut version, mut kind) = match &request.kind {
        Some(gvk) => (gvk.group.clone(), gvk.version.clone(), gvk.kind.clone()),
        None => Default::default(),
    };
    if kind.is_empty()
        && let Some(object) = object
    {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (String::new(), api_version.to_owned()),
        };
        kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
    }
    let (resource, resource_group) = match &request.resource {
        Some(gvr) => (gvr.resource.clone(), gvr.group.clone()),
        None => (String::new(), group.clone()),
    };
    let subresource = request.sub_resource.clone().unwrap_or_default();
    if subresource.is_empty() {
        kinds.learn(&resource_group, &resource, &kind);
    } else if let Some(parent) = kinds.kind_of(&resource_group, &resource) {
        // File `deployments/scale` under the Deployment, not under `Scale`.
        kind = parent;
        group = resource_group;
        if let Some(gvr) = &request.resource {
            version = gvr.version.clone();
        }
    }
    let namespace = request
        .namespace
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| metadata("namespace"))
        .unwrap_or_default();
    // A CREATE with generateName reaches admission before the name is generated: record it
    // under the prefix the user asked for.
    let name = request
        .name
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| metadata("name"))
        .or_else(|| metadata("generateName"))
        .unwrap_or_default();
    ResourceRef {
        group,
        version,
        kind,
        resource,
        subresource,
        namespace,
        name,
    }
}

/// SHA-256 over the request uid and the request's identity: a re-sent review repeats both;
/// two different requests that happen to share a uid (hand-built reviews do) do not.
fn dedupe_key(uid: &str, operation: &Operation, resource: &ResourceRef) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in [
        uid,
        operation.as_str(),
        &resource.group,
        &resource.resource,
        &resource.subresource,
        &resource.namespace,
        &resource.name,
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests;
