//! `plugins.yaml`: any text is either a valid set or a list of problems, never a panic; an
//! accepted set names at least the sections it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logistis::plugins::spec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match spec::parse(std::path::Path::new("/plugins"), text) {
        Ok(set) => {
            for plugin in set.predicates.iter().chain(&set.sinks) {
                assert!(plugin.path.starts_with("/plugins"));
            }
        }
        Err(problems) => assert!(!problems.is_empty()),
    }
});
