//! Field paths (`spec.containers[name=web].image`, JSON pointers): parsing any text never
//! panics, and a parsed path can be looked up and printed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logistis::history::FieldPath;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(path) = FieldPath::parse(text) {
        let object = serde_json::json!({
            "spec": {"containers": [{"name": "web", "image": "nginx"}], "replicas": 3},
            "metadata": {"labels": {"app.kubernetes.io/name": "web"}}
        });
        let _ = path.lookup(&object);
        let _ = path.resolve(&object);
        let _ = path.to_string();
    }
});
