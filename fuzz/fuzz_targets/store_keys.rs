//! The store's key codec: fields round-trip through `prefix`/`decode_fields`, any bytes
//! decode without a panic, and a prefix never matches a longer field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logistis::store::keys;
use logistis_api::EventId;

fuzz_target!(|data: &[u8]| {
    let _ = keys::decode_fields(data);
    let _ = keys::id_suffix(data);
    // Split the input into up to four UTF-8 fields at 0xff bytes.
    let text = String::from_utf8_lossy(data);
    let fields: Vec<&str> = text.split('\u{fffd}').take(4).collect();
    let prefix = keys::prefix(&fields);
    let decoded = keys::decode_fields(&prefix).expect("a prefix decodes");
    assert_eq!(decoded, fields);
    let key = keys::with_id(&prefix, EventId(42));
    assert_eq!(keys::id_suffix(&key), Some(EventId(42)));
    if let Some(first) = fields.first() {
        let longer = keys::prefix(&[&format!("{first}x")]);
        assert!(!longer.starts_with(&keys::prefix(&[first])));
    }
});
