//! Setup shared by the benchmarks: the generated population, its clock, and
//! device ids drawn from it. Everything is deterministic (fixed seeds, a fixed
//! "now"), so every run measures the same users and strategies.
//!
//! Each bench file uses a part of this module; the rest is dead code there.

use std::sync::Arc;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rta_engine::demo::population;
use rta_engine::domain::ids::{DeviceIdKind, DeviceKey};
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::index::profile::{Day, UserProfile, day_of};
use rta_engine::index::{UserId, UserIndex};
use rta_engine::strategy::Os;

/// Population seed: the demo's default, so figures match `rta-engine demo`.
pub const SEED: u64 = 42;
/// Seed of the generated strategy sets.
pub const STRATEGY_SEED: u64 = 7;
/// "Now" for every benchmark: 2026-11-23T04:00:00Z.
pub const NOW_MS: i64 = 1_795_406_400_000;
/// Business time zone, UTC+8.
pub const TZ_OFFSET_SECS: i32 = 8 * 3600;
/// Behaviour retention, days.
pub const RETENTION_DAYS: u16 = 90;
/// How many distinct devices or users a benchmark cycles through (a power of two).
pub const SAMPLE: usize = 1 << 16;

/// Today in the business time zone, as of [`NOW_MS`].
pub fn today() -> Day {
    day_of(NOW_MS / 1000, TZ_OFFSET_SECS)
}

/// Users in the benchmark population: `RTA_BENCH_USERS`, default 1,000,000.
pub fn users() -> u64 {
    std::env::var("RTA_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1_000_000)
}

/// The generated population (`population::populate`), built once per bench binary.
pub fn population(taxonomy: &Taxonomy) -> Arc<UserIndex> {
    let n = users();
    let started = Instant::now();
    let index = Arc::new(UserIndex::with_capacity(n as usize));
    population::populate(&index, n, SEED, today(), taxonomy);
    eprintln!(
        "setup: {} users, {} devices generated and indexed in {:.1}s",
        index.users(),
        index.devices(),
        started.elapsed().as_secs_f64()
    );
    index
}

/// `n` user ids drawn uniformly from the population (with repeats), fixed by `salt`.
pub fn sample_users(n: usize, salt: u64) -> Vec<UserId> {
    let mut rng = Pcg64Mcg::seed_from_u64(0xbe4c_0000 ^ salt);
    let total = users();
    (0..n).map(|_| rng.random_range(1..=total)).collect()
}

/// A user's profile as generated (the same one the index holds).
pub fn profile(taxonomy: &Taxonomy, user: UserId) -> UserProfile {
    population::generate_user(SEED, user, today(), taxonomy)
}

/// A user's first device and the OS it implies (IMEI: Android, IDFA: iOS).
pub fn first_device(taxonomy: &Taxonomy, user: UserId) -> (DeviceKey, Os) {
    let p = profile(taxonomy, user);
    let first = p
        .devices()
        .next()
        .expect("generated users have at least one device");
    let imei = format!("86{:013}", user % 10_000_000_000_000);
    let android = DeviceKey::from_raw(DeviceIdKind::Imei, &imei).is_ok_and(|k| k == first);
    (first, if android { Os::Android } else { Os::Ios })
}

/// `n` random device keys that no generated user holds (2^-128 odds otherwise).
pub fn unknown_devices(n: usize) -> Vec<DeviceKey> {
    let mut rng = Pcg64Mcg::seed_from_u64(0x0dd_c0de);
    (0..n).map(|_| DeviceKey(rng.random())).collect()
}

/// A customer of two or three of the advertisers `among` in the per-advertiser
/// strategy workload: population user `user` with its behaviour moved onto
/// them (`rta_testkit::generate::advertiser_customer`).
pub fn customer(taxonomy: &Taxonomy, user: UserId, among: std::ops::Range<u32>) -> UserProfile {
    rta_testkit::generate::advertiser_customer(SEED, user, today(), taxonomy, among)
        .expect("generated customers fit a profile")
}
