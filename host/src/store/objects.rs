//! How an event's objects are stored: a version costs what it changed.
//!
//! Each part (the object, the old object) is kept as the exact JSON bytes the admission
//! layer produced, compressed with zstd — either alone (a *snapshot*) or as a delta: a zstd
//! frame compressed with another text as its raw-content dictionary, so only what differs
//! from that text costs bytes. (The first releases compressed with `ZSTD_CCtx_refPrefix`;
//! a prefix and a raw-content dictionary are the same history to the decoder.) The bases a delta can name:
//! - `Own`: an UPDATE's object against its old object, the other part of the same event
//!   (exactly the change);
//! - `Base`: the *state* (object, or old object when there is none) of an earlier event of
//!   the same object, whose id the record names. An UPDATE's old object is usually that
//!   state, resourceVersion and status aside: it costs a few bytes, or one byte when equal.
//!
//! - `Dict`: a kind's dictionary (see `dicts`): the first version of an object, which has
//!   no earlier version, compressed against the first objects of its kind.
//!
//! A record that names no base is self-contained. The writer makes one every
//! [`MAX_DEPTH`] versions of an object (and whenever the deltas since the last one outweigh
//! a third of the object), so rebuilding any version reads at most that many records, and
//! retention, before it removes a base, rewrites the first survivor as self-contained.
//!
//! Value: `[2][flags: bit 0 = base id follows][base id: u64 BE][object part][old part]`,
//! part = `[tag]` (absent, same as base), `[tag][len: u32 LE][zstd frame]`, or for `Dict`
//! `[tag][dictionary id: u32 LE][len: u32 LE][zstd frame]`. Values that
//! start with `{` are the first format: the JSON `{"object":…,"oldObject":…}`.

use logistis_api::EventId;

use super::Error;
use super::dicts::{Dict, Dictionaries};
use super::record;

/// The format byte of this layout (the first one is JSON and starts with `{`).
const FORMAT: u8 = 2;
const HAS_BASE: u8 = 1;
/// Versions rebuilt from one snapshot at most: bounds the work of reading one event.
pub const MAX_DEPTH: u32 = 32;
/// zstd level: 3 is zstd's default; higher levels buy little on objects of a few KB.
const LEVEL: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Tag {
    Absent = 0,
    /// Compressed alone.
    Full = 1,
    /// Compressed against the other part of the same event.
    Own = 2,
    /// Compressed against the base event's state.
    Base = 3,
    /// Equal to the base event's state.
    SameAsBase = 4,
    /// Compressed against a dictionary of its kind.
    Dict = 5,
}

impl Tag {
    fn from_byte(byte: u8) -> Option<Tag> {
        Some(match byte {
            0 => Tag::Absent,
            1 => Tag::Full,
            2 => Tag::Own,
            3 => Tag::Base,
            4 => Tag::SameAsBase,
            5 => Tag::Dict,
            _ => return None,
        })
    }
}

thread_local! {
    /// One compression context per thread, reused: creating one allocates and clears
    /// ~1 MB of tables, which cost more than compressing a few KB of JSON.
    static CCTX: std::cell::RefCell<zstd_safe::CCtx<'static>> =
        std::cell::RefCell::new(zstd_safe::CCtx::create());
    static DCTX: std::cell::RefCell<zstd_safe::DCtx<'static>> =
        std::cell::RefCell::new(zstd_safe::DCtx::create());
}

/// Compress `data`, with `prefix` as a raw-content dictionary when given (the text a
/// reader already has: only what differs from it costs bytes).
pub fn compress(data: &[u8], prefix: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
    let result = CCTX.with(|cctx| {
        let mut cctx = cctx.borrow_mut();
        match prefix {
            Some(prefix) => cctx.compress_using_dict(&mut out, data, prefix, LEVEL),
            None => cctx.compress(&mut out, data, LEVEL),
        }
    });
    match result {
        Ok(_) => out,
        // Cannot happen with a buffer of `compress_bound` bytes; keep the data readable
        // anyway, compressed alone by a fresh context.
        Err(_) => {
            out.clear();
            zstd_safe::compress(&mut out, data, LEVEL)
                .map(|_| out)
                .unwrap_or_default()
        }
    }
}

/// Largest text a frame may claim to hold: etcd refuses objects over 1.5 MiB, and a frame
/// that claims more is corrupt (reading it must not allocate whatever it says).
const MAX_TEXT: u64 = 64 * 1024 * 1024;

fn decompress(id: EventId, frame: &[u8], prefix: Option<&[u8]>) -> Result<Vec<u8>, Error> {
    let corrupt = |reason| Error::Corrupt { id, reason };
    let size = zstd_safe::get_frame_content_size(frame)
        .map_err(|_| corrupt("unreadable compressed object"))?
        .ok_or(corrupt("compressed object without its size"))?;
    if size > MAX_TEXT {
        return Err(corrupt("compressed object claims an impossible size"));
    }
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    DCTX.with(|dctx| {
        let mut dctx = dctx.borrow_mut();
        match prefix {
            Some(prefix) => dctx.decompress_using_dict(&mut out, frame, prefix),
            None => dctx.decompress(&mut out, frame),
        }
    })
    .map_err(|_| corrupt("compressed object does not decompress"))?;
    if out.len() as u64 != size {
        return Err(corrupt("compressed object has the wrong size"));
    }
    Ok(out)
}

/// The JSON texts of an event's objects (as serialised by the admission layer's values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Texts {
    pub object: Option<Vec<u8>>,
    pub old_object: Option<Vec<u8>>,
}

impl Texts {
    /// What later events are compressed against: the object, or the old object when the
    /// event has none (a DELETE).
    pub fn state(&self) -> Option<&[u8]> {
        self.object.as_deref().or(self.old_object.as_deref())
    }

    pub fn into_state(self) -> Option<Vec<u8>> {
        self.object.or(self.old_object)
    }

    pub fn is_empty(&self) -> bool {
        self.object.is_none() && self.old_object.is_none()
    }
}

/// An earlier event of the same object, as a delta base.
#[derive(Debug, Clone, Copy)]
pub struct Base<'a> {
    pub id: EventId,
    pub state: &'a [u8],
}

/// One stored part: how it is compressed, the dictionary it names (`Tag::Dict`), its frame.
#[derive(Debug, Clone)]
struct Part {
    tag: Tag,
    dict: u32,
    frame: Vec<u8>,
}

impl Part {
    fn new(tag: Tag, frame: Vec<u8>) -> Part {
        Part {
            tag,
            dict: 0,
            frame,
        }
    }

    /// `text` alone, or against the kind's dictionary when there is one.
    fn whole(text: &[u8], dict: Option<&Dict>) -> Part {
        match dict {
            Some(dict) => Part {
                tag: Tag::Dict,
                dict: dict.id,
                frame: compress(text, Some(&dict.content)),
            },
            None => Part::new(Tag::Full, compress(text, None)),
        }
    }

    fn uses_base(part: &Option<Part>) -> bool {
        matches!(part, Some(p) if matches!(p.tag, Tag::Base | Tag::SameAsBase))
    }
}

/// Parts compressed on the caller's thread, before the writer knows the base: the object
/// against the old object when there is one (that never needs the base), alone (or against
/// its kind's dictionary) otherwise.
#[derive(Debug, Clone)]
pub struct Precompressed {
    pub texts: Texts,
    object: Option<Part>,
    dict: Option<Dict>,
}

impl Precompressed {
    pub fn new(texts: Texts, dict: Option<Dict>) -> Precompressed {
        let object = texts
            .object
            .as_deref()
            .map(|object| match texts.old_object.as_deref() {
                Some(old) => Part::new(Tag::Own, compress(object, Some(old))),
                None => Part::whole(object, dict.as_ref()),
            });
        Precompressed {
            texts,
            object,
            dict,
        }
    }

    /// Whether whole parts are compressed against a dictionary of their kind.
    pub fn has_dict(&self) -> bool {
        self.dict.is_some()
    }

    /// The stored value: against `base` when given (the writer decides), self-contained
    /// otherwise. Returns the value and how many bytes depend on the base.
    pub fn encode(&self, base: Option<Base<'_>>) -> (Vec<u8>, usize) {
        let texts = &self.texts;
        // Without an old object the object can only be compressed alone or against the base.
        let object = match (&self.object, base) {
            (
                Some(Part {
                    tag: Tag::Full | Tag::Dict,
                    ..
                }),
                Some(base),
            ) => texts
                .object
                .as_deref()
                .map(|object| Part::new(Tag::Base, compress(object, Some(base.state)))),
            (object, _) => object.clone(),
        };
        let old = texts.old_object.as_deref().map(|old| match base {
            Some(base) if base.state == old => Part::new(Tag::SameAsBase, Vec::new()),
            Some(base) => Part::new(Tag::Base, compress(old, Some(base.state))),
            // Self-contained: the old object alone, the object (already) against it.
            None => Part::whole(old, self.dict.as_ref()),
        });
        let base = base.filter(|_| Part::uses_base(&object) || Part::uses_base(&old));
        let mut value = Vec::with_capacity(
            26 + object.as_ref().map_or(0, |p| p.frame.len())
                + old.as_ref().map_or(0, |p| p.frame.len()),
        );
        value.push(FORMAT);
        value.push(if base.is_some() { HAS_BASE } else { 0 });
        if let Some(base) = base {
            value.extend_from_slice(&base.id.to_be_bytes());
        }
        let mut dependent = 0;
        for part in [&object, &old] {
            match part {
                None => value.push(Tag::Absent as u8),
                Some(part) => {
                    value.push(part.tag as u8);
                    if part.tag == Tag::Dict {
                        value.extend_from_slice(&part.dict.to_le_bytes());
                    }
                    if part.tag != Tag::SameAsBase {
                        let len = u32::try_from(part.frame.len()).unwrap_or(u32::MAX);
                        value.extend_from_slice(&len.to_le_bytes());
                        value.extend_from_slice(&part.frame);
                    }
                    if matches!(part.tag, Tag::Base | Tag::SameAsBase) {
                        dependent += part.frame.len() + 1;
                    }
                }
            }
        }
        (value, dependent)
    }
}

/// The base a stored value needs, if any. Values of the first format never need one.
pub fn base_of(id: EventId, value: &[u8]) -> Result<Option<EventId>, Error> {
    match value {
        [FORMAT, flags, rest @ ..] if flags & HAS_BASE != 0 => {
            let bytes: [u8; 8] =
                rest.get(..8)
                    .and_then(|b| b.try_into().ok())
                    .ok_or(Error::Corrupt {
                        id,
                        reason: "truncated base id",
                    })?;
            Ok(Some(EventId(u64::from_be_bytes(bytes))))
        }
        [FORMAT, _, ..] | [b'{', ..] => Ok(None),
        [] => Err(Error::Corrupt {
            id,
            reason: "empty objects record",
        }),
        _ => Err(Error::Corrupt {
            id,
            reason: "unknown objects format",
        }),
    }
}

/// Decode a stored value; `base` is the state of the event [`base_of`] names, `dicts` the
/// database's dictionaries.
pub fn decode(
    id: EventId,
    value: &[u8],
    base: Option<&[u8]>,
    dicts: &Dictionaries,
) -> Result<Texts, Error> {
    let corrupt = |reason| Error::Corrupt { id, reason };
    if value.first() == Some(&b'{') {
        let raw = record::decode_raw_objects(id, value)?;
        return Ok(Texts {
            object: raw.object.map(|r| r.get().as_bytes().to_vec()),
            old_object: raw.old_object.map(|r| r.get().as_bytes().to_vec()),
        });
    }
    let mut rest = match value {
        [FORMAT, flags, rest @ ..] if flags & HAS_BASE != 0 => {
            rest.get(8..).ok_or(corrupt("truncated base id"))?
        }
        [FORMAT, _, rest @ ..] => rest,
        _ => return Err(corrupt("unknown objects format")),
    };
    let mut parts: [(Tag, &[u8]); 2] = [(Tag::Absent, &[]), (Tag::Absent, &[])];
    let mut dictionaries: [Option<std::sync::Arc<[u8]>>; 2] = [None, None];
    for (part, dictionary) in parts.iter_mut().zip(&mut dictionaries) {
        let (&tag, after) = rest
            .split_first()
            .ok_or(corrupt("truncated objects record"))?;
        let tag = Tag::from_byte(tag).ok_or(corrupt("unknown part of an objects record"))?;
        rest = after;
        if matches!(tag, Tag::Absent | Tag::SameAsBase) {
            *part = (tag, &[]);
            continue;
        }
        if tag == Tag::Dict {
            let dict: [u8; 4] = rest
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(corrupt("truncated objects record"))?;
            *dictionary = Some(
                dicts
                    .content(u32::from_le_bytes(dict))
                    .ok_or(corrupt("its compression dictionary is missing"))?,
            );
            rest = &rest[4..];
        }
        let len: [u8; 4] = rest
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(corrupt("truncated objects record"))?;
        let len = u32::from_le_bytes(len) as usize;
        let frame = rest
            .get(4..4 + len)
            .ok_or(corrupt("truncated objects record"))?;
        rest = &rest[4 + len..];
        *part = (tag, frame);
    }
    if !rest.is_empty() {
        return Err(corrupt("trailing bytes in an objects record"));
    }
    let need_base = || base.ok_or(corrupt("the base of a delta is missing"));
    let [(object_tag, object_frame), (old_tag, old_frame)] = parts;
    let [object_dict, old_dict] = dictionaries;
    // The old object first: an object stored against it needs it.
    let old = match old_tag {
        Tag::Absent => None,
        Tag::Full => Some(decompress(id, old_frame, None)?),
        Tag::Base => Some(decompress(id, old_frame, Some(need_base()?))?),
        Tag::SameAsBase => Some(need_base()?.to_vec()),
        Tag::Dict => Some(decompress(id, old_frame, old_dict.as_deref())?),
        Tag::Own => None, // against the object: below
    };
    let object = match object_tag {
        Tag::Absent => None,
        Tag::Full => Some(decompress(id, object_frame, None)?),
        Tag::Base => Some(decompress(id, object_frame, Some(need_base()?))?),
        Tag::Own => {
            let old = old
                .as_deref()
                .ok_or(corrupt("object stored against a missing part"))?;
            Some(decompress(id, object_frame, Some(old))?)
        }
        Tag::SameAsBase => Some(need_base()?.to_vec()),
        Tag::Dict => Some(decompress(id, object_frame, object_dict.as_deref())?),
    };
    let old = match old_tag {
        Tag::Own => {
            let object = object
                .as_deref()
                .ok_or(corrupt("old object stored against a missing part"))?;
            Some(decompress(id, old_frame, Some(object))?)
        }
        _ => old,
    };
    if object_tag == Tag::Own && old_tag == Tag::Own {
        return Err(corrupt("both parts stored against each other"));
    }
    Ok(Texts {
        object,
        old_object: old,
    })
}

/// The texts of event `id` and how many deltas rebuilding them took (0: self-contained),
/// reading its record and those of its bases with `get`; `None` when it has no objects.
/// A base that is missing or a chain longer than any the writer makes is corruption.
pub fn rebuild<V, G>(
    id: EventId,
    get: G,
    dicts: &Dictionaries,
) -> Result<Option<(Texts, u32)>, Error>
where
    V: AsRef<[u8]>,
    G: Fn(EventId) -> Result<Option<V>, Error>,
{
    let Some(first) = get(id)? else {
        return Ok(None);
    };
    let mut chain = vec![(id, first)];
    // Retention rewrites the first survivor before it deletes a base, so each base exists.
    loop {
        let (at, value) = chain.last().expect("the chain starts with the event");
        let at = *at;
        let Some(base) = base_of(at, value.as_ref())? else {
            break;
        };
        if chain.len() > 4 * MAX_DEPTH as usize || base >= at {
            return Err(Error::Corrupt {
                id: at,
                reason: "its chain of deltas does not end",
            });
        }
        let value = get(base)?.ok_or(Error::Corrupt {
            id: at,
            reason: "the base of its delta is missing",
        })?;
        chain.push((base, value));
    }
    let depth = u32::try_from(chain.len() - 1).unwrap_or(u32::MAX);
    let (last, older) = chain
        .split_first()
        .expect("the chain starts with the event");
    let mut state: Option<Vec<u8>> = None;
    for (at, value) in older.iter().rev() {
        state = decode(*at, value.as_ref(), state.as_deref(), dicts)?.into_state();
    }
    let texts = decode(last.0, last.1.as_ref(), state.as_deref(), dicts)?;
    Ok(Some((texts, depth)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(replicas: u32, rv: u32) -> Vec<u8> {
        format!(
            r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"web","resourceVersion":"{rv}","labels":{{"app":"web","team":"shop"}}}},"spec":{{"replicas":{replicas},"template":{{"spec":{{"containers":[{{"name":"web","image":"registry.example.com/shop/web:1.2.3"}}]}}}}}}}}"#
        )
        .into_bytes()
    }

    fn texts(object: Option<Vec<u8>>, old: Option<Vec<u8>>) -> Texts {
        Texts {
            object,
            old_object: old,
        }
    }

    #[test]
    fn every_combination_round_trips() {
        let base_state = text(1, 10);
        let base = Base {
            id: EventId(7),
            state: &base_state,
        };
        let cases = [
            texts(Some(text(2, 11)), Some(text(1, 10))),
            texts(Some(text(2, 11)), Some(text(1, 9))),
            texts(Some(text(2, 11)), None),
            texts(None, Some(text(1, 10))),
            texts(None, Some(text(3, 12))),
            texts(None, None),
        ];
        let dicts = Dictionaries::default();
        let content: std::sync::Arc<[u8]> = text(4, 3).into();
        dicts.publish(
            b"apps".to_vec(),
            Dict {
                id: 3,
                content: content.clone(),
            },
        );
        let with_dict = Some(Dict { id: 3, content });
        for (case, dict) in cases
            .iter()
            .flat_map(|case| [(case.clone(), None), (case.clone(), with_dict.clone())])
        {
            let pre = Precompressed::new(case.clone(), dict.clone());
            for base in [None, Some(base)] {
                let (value, _) = pre.encode(base);
                let named = base_of(EventId(8), &value).unwrap();
                let state = named.map(|id| {
                    assert_eq!(id, EventId(7));
                    base_state.as_slice()
                });
                assert_eq!(
                    decode(EventId(8), &value, state, &dicts).unwrap(),
                    case,
                    "{base:?} {dict:?}"
                );
            }
        }
    }

    #[test]
    fn an_update_costs_what_it_changed() {
        let base_state = text(1, 10);
        let update = Precompressed::new(texts(Some(text(2, 11)), Some(text(1, 10))), None);
        let (value, _) = update.encode(Some(Base {
            id: EventId(7),
            state: &base_state,
        }));
        let alone = compress(&text(2, 11), None).len();
        assert!(value.len() < 40, "{} bytes (alone: {alone})", value.len());
        assert!(alone > value.len() * 3);
    }

    #[test]
    fn a_first_version_costs_what_distinguishes_it_from_its_kind() {
        let sibling = text(3, 40)
            .iter()
            .map(|&b| if b == b'w' { b'x' } else { b })
            .collect::<Vec<u8>>();
        let dict = Dict {
            id: 1,
            content: std::sync::Arc::from([text(1, 10), sibling].concat()),
        };
        let dicts = Dictionaries::default();
        dicts.publish(b"k".to_vec(), dict.clone());
        let create = texts(Some(text(2, 11)), None);
        let (with, _) = Precompressed::new(create.clone(), Some(dict)).encode(None);
        let (alone, _) = Precompressed::new(create.clone(), None).encode(None);
        assert!(
            with.len() * 3 < alone.len(),
            "{} vs {}",
            with.len(),
            alone.len()
        );
        assert_eq!(decode(EventId(2), &with, None, &dicts).unwrap(), create);
        // Without its dictionary the record is corrupt, and says so.
        let error = decode(EventId(2), &with, None, &Dictionaries::default()).unwrap_err();
        assert!(error.to_string().contains("dictionary"), "{error}");
    }

    #[test]
    fn frames_of_the_previous_release_refprefix_decode_as_they_did() {
        // That release compressed deltas with ZSTD_CCtx_refPrefix; this one reads them with
        // the same text as a raw-content dictionary, and its own frames likewise.
        let (base, text) = (text(1, 10), text(2, 11));
        let mut cctx = zstd_safe::CCtx::create();
        cctx.set_parameter(zstd_safe::CParameter::CompressionLevel(LEVEL))
            .unwrap();
        cctx.ref_prefix(&base).unwrap();
        let mut old = Vec::with_capacity(zstd_safe::compress_bound(text.len()));
        cctx.compress2(&mut old, &text).unwrap();
        assert_eq!(decompress(EventId(1), &old, Some(&base)).unwrap(), text);
        let new = compress(&text, Some(&base));
        assert_eq!(decompress(EventId(1), &new, Some(&base)).unwrap(), text);
        let mut dctx = zstd_safe::DCtx::create();
        dctx.ref_prefix(&base).unwrap();
        let mut out = Vec::with_capacity(text.len());
        dctx.decompress(&mut out, &new).unwrap();
        assert_eq!(out, text, "and the other way round");
    }

    #[test]
    fn the_first_format_is_read_as_it_was() {
        let value = br#"{"object":{"a":1},"oldObject":{"a":0}}"#;
        assert_eq!(base_of(EventId(1), value).unwrap(), None);
        assert_eq!(
            decode(EventId(1), value, None, &Dictionaries::default()).unwrap(),
            texts(Some(b"{\"a\":1}".to_vec()), Some(b"{\"a\":0}".to_vec()))
        );
    }

    #[test]
    fn damage_is_an_error_naming_the_event() {
        let none = Dictionaries::default();
        let pre = Precompressed::new(texts(Some(text(2, 11)), Some(text(1, 10))), None);
        let (value, _) = pre.encode(None);
        for cut in [0, 1, 3, 10, value.len() - 1] {
            let error = decode(EventId(42), &value[..cut], None, &none).unwrap_err();
            assert!(error.to_string().contains("002a"), "{error}");
        }
        let mut flipped = value.clone();
        let at = flipped.len() - 5;
        flipped[at] ^= 0xff;
        // A flipped byte either fails to decompress or changes the text: never a panic.
        let _ = decode(EventId(42), &flipped, None, &none);
        assert!(decode(EventId(42), &[9, 0], None, &none).is_err());
        let delta = Precompressed::new(texts(None, Some(text(1, 11))), None)
            .encode(Some(Base {
                id: EventId(7),
                state: &text(1, 10),
            }))
            .0;
        assert!(matches!(
            decode(EventId(42), &delta, None, &none),
            Err(Error::Corrupt { .. })
        ));
    }
}
