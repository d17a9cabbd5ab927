//! A user file (JSON lines, as `users.file` and the admin API read them):
//! each line parsed into a `UserRecord`, built into a profile and upserted,
//! as `load_user_file` does; the profile read back as a record must build
//! the same profile again. (Not for records with `feedback`: it reads back
//! as behaviour under scope `strategy` and a hashed id, which a record may
//! not name, by design.) The whole input is also tried as one device id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rta_engine::index::UserIndex;
use rta_engine::index::record::{UserRecord, parse_device};
use rta_engine_fuzz::{TAXONOMY, today};

fuzz_target!(|text: &str| {
    if let Ok(key) = parse_device(text) {
        // an id parses to the key its 32-hex form names
        assert_eq!(parse_device(&key.to_hex()).ok(), Some(key), "{text:?}");
    }
    let index = UserIndex::with_capacity(0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(record) = serde_json::from_str::<UserRecord>(line) else {
            continue;
        };
        let Ok(profile) = record.to_profile(&TAXONOMY, today()) else {
            continue;
        };
        let back = UserRecord::from_profile(record.user_id, &profile, &TAXONOMY, today());
        if record.feedback.is_empty() {
            let again = back.to_profile(&TAXONOMY, today());
            assert_eq!(
                again.as_ref().ok(),
                Some(&profile),
                "{line}\nread back as {back:?}"
            );
        }
        let _ = serde_json::to_string(&back);
        let _ = index.upsert(record.user_id, profile);
    }
});
