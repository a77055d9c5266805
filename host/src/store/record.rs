//! How an event is laid out in the store: a small summary (what lists read) and, separately,
//! the objects (what version queries read), so listing 50 events never loads 50 manifests.
//!
//! Summary value: `[format: u8 = 1][has_dedupe: u8][dedupe key: 32 bytes if has_dedupe][JSON]`.
//! The dedupe key rides along so retention can remove the dedupe entry with the event.

use logistis_api::{Event, EventId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Error;

const FORMAT: u8 = 1;

/// The objects of one event, stored under its id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Objects {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_object: Option<Value>,
}

impl Objects {
    pub fn is_empty(&self) -> bool {
        self.object.is_none() && self.old_object.is_none()
    }
}

pub fn encode_summary(event: &Event, dedupe: Option<&[u8; 32]>) -> Vec<u8> {
    let mut value = Vec::with_capacity(512);
    value.push(FORMAT);
    match dedupe {
        Some(key) => {
            value.push(1);
            value.extend_from_slice(key);
        }
        None => value.push(0),
    }
    serde_json::to_writer(&mut value, event).expect("an Event always serialises");
    value
}

/// Split a summary value into its dedupe key and its JSON.
fn split_summary(id: EventId, value: &[u8]) -> Result<(Option<[u8; 32]>, &[u8]), Error> {
    let corrupt = |reason: &'static str| Error::Corrupt { id, reason };
    let (&format, rest) = value.split_first().ok_or(corrupt("empty record"))?;
    if format != FORMAT {
        return Err(corrupt("unknown record format"));
    }
    let (&has_dedupe, rest) = rest.split_first().ok_or(corrupt("truncated record"))?;
    if has_dedupe != 1 {
        return Ok((None, rest));
    }
    let key: [u8; 32] = rest
        .get(..32)
        .and_then(|k| k.try_into().ok())
        .ok_or(corrupt("truncated dedupe key"))?;
    Ok((Some(key), &rest[32..]))
}

pub fn decode_summary(id: EventId, value: &[u8]) -> Result<(Event, Option<[u8; 32]>), Error> {
    let (dedupe, json) = split_summary(id, value)?;
    let mut event: Event =
        serde_json::from_slice(json).map_err(|source| Error::Decode { id, source })?;
    // The summary is serialised before the writer allocates the id: the key is the truth.
    event.id = id;
    Ok((event, dedupe))
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

/// Decode only the index-relevant fields of a summary, and its dedupe key.
pub fn decode_summary_keys(
    id: EventId,
    value: &[u8],
) -> Result<(SummaryKeys, Option<[u8; 32]>), Error> {
    let (dedupe, json) = split_summary(id, value)?;
    let keys = serde_json::from_slice(json).map_err(|source| Error::Decode { id, source })?;
    Ok((keys, dedupe))
}

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

/// Parse one raw object.
pub fn parse_raw(
    id: EventId,
    raw: Option<&serde_json::value::RawValue>,
) -> Result<Option<Value>, Error> {
    raw.map(|raw| serde_json::from_str(raw.get()).map_err(|source| Error::Decode { id, source }))
        .transpose()
}

pub fn decode_objects(id: EventId, value: &[u8]) -> Result<Objects, Error> {
    serde_json::from_slice(value).map_err(|source| Error::Decode { id, source })
}
