//! Ingesting one behaviour event: `ingest::event::decode` of its protobuf
//! bytes plus `ingest::apply::apply` to the 1 M-user index.
//!
//! * `existing_user`: events about 65,536 users drawn from the population, in
//!   turn: the in-place fast path (`UserIndex::update_in_place`); after the
//!   first round the day's count exists and is incremented.
//! * `new_user`: events about users the index does not hold: the builder path
//!   (`UserIndex::modify`), which creates the profile. The new users are
//!   deleted again outside the timed part, in batches, so the index does not grow.
//! * `decode_only`: the decode step alone.
//!
//! ```text
//! cargo bench --bench apply
//! ```

#[allow(dead_code)]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use prost::Message;
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::index::UserId;
use rta_engine::ingest::apply::{ApplyContext, apply};
use rta_engine::ingest::event::{DecodeContext, Format, TopicKind, decode};
use rta_engine::ingest::pb;

/// New users applied between two clean-ups of the `new_user` case.
const BATCH: u64 = 4_096;

/// A protobuf `BehaviourEvent`: `user` browsed infant formula of brand 8557.
fn browse_event(user: UserId, ago_ms: i64) -> Vec<u8> {
    pb::BehaviourEvent {
        user_id: user,
        event_time_ms: common::NOW_MS - ago_ms,
        action: pb::Action::Browse as i32,
        category_id: 1319,
        brand_id: 8557,
        ..Default::default()
    }
    .encode_to_vec()
}

fn bench_apply(c: &mut Criterion) {
    let taxonomy = Taxonomy::default_taxonomy();
    let index = common::population(&taxonomy);
    let decode_ctx = DecodeContext {
        taxonomy: &taxonomy,
        now_ms: common::NOW_MS,
        retention_days: u32::from(common::RETENTION_DAYS),
    };
    let apply_ctx = ApplyContext {
        today: common::today(),
        tz_offset_secs: common::TZ_OFFSET_SECS,
        retention_days: common::RETENTION_DAYS,
    };
    let existing: Vec<Vec<u8>> = common::sample_users(common::SAMPLE, 2)
        .into_iter()
        .enumerate()
        .map(|(i, u)| browse_event(u, (i as i64 % 3_600) * 1_000))
        .collect();
    let first_new = common::users() + 1;
    let fresh: Vec<Vec<u8>> = (0..BATCH)
        .map(|k| browse_event(first_new + k, 1_000))
        .collect();
    let decode_apply = |payload: &[u8]| {
        let event = decode(TopicKind::Behaviour, Format::Protobuf, payload, &decode_ctx)
            .expect("bench events are valid");
        apply(&index, &event, &apply_ctx).expect("bench events apply")
    };
    let mask = common::SAMPLE - 1;

    let mut g = c.benchmark_group("apply");
    g.bench_function("behaviour/decode_only", |b| {
        let mut i = 0;
        b.iter(|| {
            let p = &existing[i & mask];
            i += 1;
            decode(
                TopicKind::Behaviour,
                Format::Protobuf,
                black_box(p),
                &decode_ctx,
            )
        })
    });
    g.bench_function("behaviour/existing_user", |b| {
        let mut i = 0;
        b.iter(|| {
            let p = &existing[i & mask];
            i += 1;
            decode_apply(black_box(p))
        })
    });
    g.bench_function("behaviour/new_user", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = (iters - done).min(BATCH);
                let started = Instant::now();
                for p in &fresh[..n as usize] {
                    decode_apply(black_box(p));
                }
                timed += started.elapsed();
                for k in 0..n {
                    index.delete(first_new + k);
                }
                done += n;
            }
            timed
        })
    });
    g.finish();
    assert_eq!(
        index.users() as u64,
        common::users(),
        "new users were cleaned up"
    );
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);
