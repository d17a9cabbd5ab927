//! Profile lookup in the 1 M-user generated population: `UserIndex::resolve`
//! (device key -> user) and `UserIndex::with_profile` (user -> profile).
//!
//! "random" cases cycle through 65,536 devices (or users) drawn uniformly from
//! the population, so most lookups miss the CPU caches as production traffic
//! does; "same_device" repeats one device, the cache-warm best case.
//!
//! ```text
//! cargo bench --bench lookup
//! RTA_BENCH_USERS=10000000 cargo bench --bench lookup   # another population size
//! ```

#[allow(dead_code)]
mod common;

use std::hint::black_box;
use std::slice;

use criterion::{Criterion, criterion_group, criterion_main};
use rta_engine::domain::ids::DeviceKey;
use rta_engine::domain::taxonomy::Taxonomy;

fn lookup(c: &mut Criterion) {
    let taxonomy = Taxonomy::default_taxonomy();
    let index = common::population(&taxonomy);
    let users = common::sample_users(common::SAMPLE, 1);
    let known: Vec<DeviceKey> = users
        .iter()
        .map(|u| common::first_device(&taxonomy, *u).0)
        .collect();
    let unknown = common::unknown_devices(common::SAMPLE);
    assert!(
        known
            .iter()
            .all(|k| index.resolve(slice::from_ref(k)).is_some()),
        "every sampled device resolves"
    );
    assert!(
        unknown
            .iter()
            .all(|k| index.resolve(slice::from_ref(k)).is_none()),
        "no unknown device resolves"
    );
    let mask = common::SAMPLE - 1;

    let mut g = c.benchmark_group("lookup");
    g.bench_function("resolve/hit_random_device", |b| {
        let mut i = 0;
        b.iter(|| {
            let k = &known[i & mask];
            i += 1;
            index.resolve(slice::from_ref(black_box(k)))
        })
    });
    g.bench_function("resolve/hit_same_device", |b| {
        let k = known[0];
        b.iter(|| index.resolve(slice::from_ref(black_box(&k))))
    });
    g.bench_function("resolve/miss_random_device", |b| {
        let mut i = 0;
        b.iter(|| {
            let k = &unknown[i & mask];
            i += 1;
            index.resolve(slice::from_ref(black_box(k)))
        })
    });
    g.bench_function("with_profile/hit_random_user", |b| {
        let mut i = 0;
        b.iter(|| {
            let u = users[i & mask];
            i += 1;
            index.with_profile(black_box(u), |p| p.tags().len())
        })
    });
    g.bench_function("with_profile/miss", |b| {
        let absent = common::users() + 1;
        b.iter(|| index.with_profile(black_box(absent), |p| p.tags().len()))
    });
    g.bench_function("resolve_then_profile/hit_random_device", |b| {
        let mut i = 0;
        b.iter(|| {
            let k = &known[i & mask];
            i += 1;
            index
                .resolve(slice::from_ref(black_box(k)))
                .and_then(|u| index.with_profile(u, |p| p.tags().len()))
        })
    });
    g.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
