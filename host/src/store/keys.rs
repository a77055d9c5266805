//! The binary key codec. Every index key is a sequence of escaped, terminated strings
//! followed by the 8-byte big-endian event id, so byte order is (fields…, time) order and
//! "newest N for this prefix" is one reverse range scan.
//!
//! Strings are escaped (`00` → `00 01`) and terminated by `00 00`: a prefix ends exactly at a
//! field boundary, so `nginx` never matches `nginx-2`, and any byte can appear in a field.

use logistis_api::EventId;

/// Append one escaped, terminated string field.
pub fn push_field(key: &mut Vec<u8>, field: &str) {
    for &byte in field.as_bytes() {
        if byte == 0 {
            key.extend_from_slice(&[0, 1]);
        } else {
            key.push(byte);
        }
    }
    key.extend_from_slice(&[0, 0]);
}

/// A prefix made of the given fields.
pub fn prefix(fields: &[&str]) -> Vec<u8> {
    let mut key = Vec::with_capacity(fields.iter().map(|f| f.len() + 2).sum::<usize>() + 8);
    for field in fields {
        push_field(&mut key, field);
    }
    key
}

/// `prefix` followed by the id.
pub fn with_id(prefix: &[u8], id: EventId) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The id at the end of an index key (or the whole key of the event log).
pub fn id_suffix(key: &[u8]) -> Option<EventId> {
    let start = key.len().checked_sub(8)?;
    let bytes: [u8; 8] = key[start..].try_into().ok()?;
    Some(EventId(u64::from_be_bytes(bytes)))
}

/// Decode the fields of a key made by [`prefix`] (used for listing namespaces).
pub fn decode_fields(mut key: &[u8]) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    while !key.is_empty() {
        let mut field = Vec::new();
        loop {
            match key {
                [0, 0, rest @ ..] => {
                    key = rest;
                    break;
                }
                [0, 1, rest @ ..] => {
                    field.push(0);
                    key = rest;
                }
                [byte, rest @ ..] => {
                    field.push(*byte);
                    key = rest;
                }
                [] => return None,
            }
        }
        fields.push(String::from_utf8(field).ok()?);
    }
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_exact_prefixes() {
        let a = with_id(
            &prefix(&["apps", "deployment", "default", "nginx"]),
            EventId(5),
        );
        let b = prefix(&["apps", "deployment", "default", "nginx-2"]);
        let p = prefix(&["apps", "deployment", "default", "nginx"]);
        assert!(a.starts_with(&p));
        assert!(!b.starts_with(&p));
    }

    #[test]
    fn order_is_fields_then_time() {
        let p = prefix(&["default"]);
        let older = with_id(&p, EventId(1));
        let newer = with_id(&p, EventId(256));
        assert!(older < newer);
        assert!(with_id(&prefix(&[""]), EventId(u64::MAX)) < with_id(&prefix(&["a"]), EventId(0)));
        assert_eq!(id_suffix(&newer), Some(EventId(256)));
    }

    #[test]
    fn nul_bytes_round_trip() {
        let key = prefix(&["a\0b", "", "c"]);
        assert_eq!(decode_fields(&key).unwrap(), vec!["a\0b", "", "c"]);
        assert!(decode_fields(b"a").is_none());
    }
}
