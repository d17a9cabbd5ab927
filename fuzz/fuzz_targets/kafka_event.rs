//! A Kafka message of any topic kind in any format: the first byte picks the
//! kind and the format (one target covers all 24 pairs, and coverage guides
//! the fuzzer to each), the rest is the payload. Every frame is decoded and
//! what validates is applied to a fresh index, as the consumer does; then
//! the index must still be consistent: every device a profile lists
//! resolves to that profile's user, and no device is linked without one.
//! (Two keys that share their first 96 bits are one device to the device
//! table, by design: `index::device_table`. Inputs whose events name such
//! a pair, which only chosen keys can be, are not checked.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use rta_engine::domain::calendar::day_of;
use rta_engine::index::UserIndex;
use rta_engine::index::record::UserRecord;
use rta_engine::ingest::apply::{ApplyContext, apply};
use rta_engine::ingest::event::{
    DecodeContext, Event, Format, IdentityEvent, TopicKind, decode, frames,
};
use rta_engine_fuzz::{NOW_MS, TAXONOMY, today};

const KINDS: [TopicKind; 6] = [
    TopicKind::Tags,
    TopicKind::Behaviour,
    TopicKind::Feedback,
    TopicKind::Identity,
    TopicKind::Vectors,
    TopicKind::Control,
];
const FORMATS: [Format; 4] = [
    Format::Protobuf,
    Format::Json,
    Format::ProtobufDelimited,
    Format::JsonLines,
];

/// Behaviour retention, days (the config's default).
const RETENTION_DAYS: u16 = 90;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let pair = usize::from(selector) % (KINDS.len() * FORMATS.len());
    let (kind, format) = (KINDS[pair / FORMATS.len()], FORMATS[pair % FORMATS.len()]);
    let dctx = DecodeContext {
        taxonomy: &TAXONOMY,
        now_ms: NOW_MS,
        retention_days: u32::from(RETENTION_DAYS),
    };
    let actx = ApplyContext {
        today: day_of(NOW_MS / 1000, 0),
        tz_offset_secs: 0,
        retention_days: RETENTION_DAYS,
    };
    let index = UserIndex::with_capacity(0);
    // the device keys the events link or unlink
    let mut seen = Vec::new();
    for frame in frames(format, payload) {
        let Ok(frame) = frame else {
            break;
        };
        if let Ok(event) = decode(kind, format, frame, &dctx) {
            match &event {
                Event::Tags(t) => seen.extend_from_slice(&t.devices),
                Event::Identity(
                    IdentityEvent::Link { device, .. } | IdentityEvent::Unlink { device },
                ) => seen.push(*device),
                _ => {}
            }
            let _ = apply(&index, &event, &actx);
        }
    }
    seen.sort();
    seen.dedup();
    if seen.windows(2).any(|w| w[0].0[..12] == w[1].0[..12]) {
        return;
    }
    let mut users = Vec::new();
    index.for_each(|user, profile| {
        users.push((user, profile.devices().collect::<Vec<_>>()));
        let _ = UserRecord::from_profile(user, profile, &TAXONOMY, today());
    });
    let mut listed = 0;
    for (user, devices) in &users {
        for d in devices {
            assert_eq!(index.resolve(&[*d]), Some(*user), "{d:?} of user {user}");
        }
        listed += devices.len();
    }
    assert_eq!(
        index.devices(),
        listed,
        "linked devices that no profile lists"
    );
});
