//! How an event is laid out in the store: a small summary (what lists read) and, separately,
//! the objects (what version queries read), so listing 50 events never loads 50 manifests.
//!
//! Summary value: `[format: u8 = 1][flags: u8][dedupe key: 32 bytes if flag 1][JSON]`.
//! The dedupe key rides along so retention can remove the dedupe entry with the event.
//! Flag 2: the patch is one `add` of the whole (noise-free) object — a CREATE — and is left
//! out of the JSON: the object is stored beside it, and reads rebuild the patch from it.
//! That keeps one copy of every created object instead of two.

use logistis_api::{Event, EventId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Error;

const FORMAT: u8 = 1;
/// The summary carries a dedupe key.
const HAS_DEDUPE: u8 = 1;
/// The patch is the whole object (see the module documentation).
const PATCH_IS_OBJECT: u8 = 2;

/// How a summary's patch is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredPatch {
    /// In the summary's JSON.
    Inline,
    /// Left out: `[{"op": "add", "path": "", "value": <the object without noise>}]`.
    WholeObject,
}

/// Whether `patch` is the one `add` of a whole object that reads can rebuild from `object`.
pub fn patch_is_whole_object(patch: &Value, object: Option<&Value>) -> bool {
    let Some([operation]) = patch.as_array().map(Vec::as_slice) else {
        return false;
    };
    object.is_some()
        && operation.get("op").and_then(Value::as_str) == Some("add")
        && operation.get("path").and_then(Value::as_str) == Some("")
}

/// The patch of a [`StoredPatch::WholeObject`] event.
pub fn whole_object_patch(object: Option<&Value>) -> Value {
    match object {
        Some(object) => {
            serde_json::json!([{"op": "add", "path": "", "value": crate::admission::noise::strip(object)}])
        }
        None => serde_json::json!([]),
    }
}

/// The objects of one event, as the first format stored them under its id (JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Objects {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_object: Option<Value>,
}

#[cfg(test)]
impl Objects {
    pub fn is_empty(&self) -> bool {
        self.object.is_none() && self.old_object.is_none()
    }
}

/// The summary of `event`, whose objects are already taken out — and with
/// [`StoredPatch::WholeObject`] its patch too (`Value::Null`).
pub fn encode_summary(event: &Event, dedupe: Option<&[u8; 32]>, patch: StoredPatch) -> Vec<u8> {
    debug_assert!(patch == StoredPatch::Inline || event.patch.is_null());
    let mut value = Vec::with_capacity(512);
    value.push(FORMAT);
    let mut flags = 0;
    if dedupe.is_some() {
        flags |= HAS_DEDUPE;
    }
    if patch == StoredPatch::WholeObject {
        flags |= PATCH_IS_OBJECT;
    }
    value.push(flags);
    if let Some(key) = dedupe {
        value.extend_from_slice(key);
    }
    serde_json::to_writer(&mut value, event).expect("an Event always serialises");
    value
}

/// A summary value taken apart: its dedupe key, how its patch is stored, and its JSON.
type Parts<'a> = (Option<[u8; 32]>, StoredPatch, &'a [u8]);

/// Split a summary value into its parts.
fn split_summary(id: EventId, value: &[u8]) -> Result<Parts<'_>, Error> {
    let corrupt = |reason: &'static str| Error::Corrupt { id, reason };
    let (&format, rest) = value.split_first().ok_or(corrupt("empty record"))?;
    if format != FORMAT {
        return Err(corrupt("unknown record format"));
    }
    let (&flags, rest) = rest.split_first().ok_or(corrupt("truncated record"))?;
    let patch = if flags & PATCH_IS_OBJECT != 0 {
        StoredPatch::WholeObject
    } else {
        StoredPatch::Inline
    };
    if flags & HAS_DEDUPE == 0 {
        return Ok((None, patch, rest));
    }
    let key: [u8; 32] = rest
        .get(..32)
        .and_then(|k| k.try_into().ok())
        .ok_or(corrupt("truncated dedupe key"))?;
    Ok((Some(key), patch, &rest[32..]))
}

/// A summary's event (its patch still to be rebuilt when [`StoredPatch::WholeObject`]), and
/// its dedupe key.
pub fn decode_summary(
    id: EventId,
    value: &[u8],
) -> Result<(Event, StoredPatch, Option<[u8; 32]>), Error> {
    let (dedupe, patch, json) = split_summary(id, value)?;
    let mut event: Event =
        serde_json::from_slice(json).map_err(|source| Error::Decode { id, source })?;
    // The summary is serialised before the writer allocates the id: the key is the truth.
    event.id = id;
    Ok((event, patch, dedupe))
}

/// Just what deletion needs (index keys and counters), without building the patch.
#[derive(Debug, Deserialize)]
pub struct SummaryKeys {
    pub resource: logistis_api::ResourceRef,
    pub user: UserName,
}

#[derive(Debug, Deserialize)]
pub struct UserName {
    #[serde(default)]
    pub username: String,
}

/// The fields list filters look at, borrowed from the summary: deciding that an event does
/// not match costs no allocation and no patch.
#[derive(Debug, Deserialize)]
pub struct FilterFields<'a> {
    /// The cluster the event came from (empty: unnamed).
    #[serde(default, borrow)]
    pub cluster: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub resource: ResourceFields<'a>,
    #[serde(borrow)]
    pub user: UserFields<'a>,
    #[serde(borrow)]
    pub operation: std::borrow::Cow<'a, str>,
    pub time: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Deserialize)]
pub struct ResourceFields<'a> {
    #[serde(default, borrow)]
    pub group: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    pub kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    pub namespace: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    pub name: std::borrow::Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
pub struct UserFields<'a> {
    #[serde(default, borrow)]
    pub username: std::borrow::Cow<'a, str>,
}

pub fn decode_filter_fields(id: EventId, value: &[u8]) -> Result<FilterFields<'_>, Error> {
    let (_, _, json) = split_summary(id, value)?;
    serde_json::from_slice(json).map_err(|source| Error::Decode { id, source })
}

/// Decode only the index-relevant fields of a summary, and its dedupe key.
pub fn decode_summary_keys(
    id: EventId,
    value: &[u8],
) -> Result<(SummaryKeys, Option<[u8; 32]>), Error> {
    let (dedupe, _, json) = split_summary(id, value)?;
    let keys = serde_json::from_slice(json).map_err(|source| Error::Decode { id, source })?;
    Ok((keys, dedupe))
}

/// The objects value of the first format (JSON), as that release wrote it: kept to write
/// stores of that format in tests.
#[cfg(test)]
pub fn encode_objects(objects: &Objects) -> Vec<u8> {
    serde_json::to_vec(objects).expect("objects always serialise")
}

/// The objects of one event, left unparsed until asked for.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawObjects<'a> {
    #[serde(default, borrow)]
    pub object: Option<&'a serde_json::value::RawValue>,
    #[serde(default, borrow)]
    pub old_object: Option<&'a serde_json::value::RawValue>,
}

pub fn decode_raw_objects(id: EventId, value: &[u8]) -> Result<RawObjects<'_>, Error> {
    serde_json::from_slice(value).map_err(|source| Error::Decode { id, source })
}
