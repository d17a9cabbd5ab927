//! What the fuzz targets share: the shipped taxonomy, a fixed calendar and a
//! few profiles to evaluate compiled audiences against. Built once per
//! process (the first input pays for it), so that each input costs only the
//! code under test.

use std::sync::LazyLock;

use rta_engine::demo::population::generate_user;
use rta_engine::domain::calendar::day_of;
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::index::profile::{Day, UserProfile};
use rta_engine::strategy::{EvalContext, Os};

/// The taxonomy the engine ships (`deploy/demo/taxonomy.toml`).
pub static TAXONOMY: LazyLock<Taxonomy> = LazyLock::new(Taxonomy::default_taxonomy);

/// "Now" for every target, so that an input means the same on every run:
/// 2026-01-01T00:00:00Z, Unix ms.
pub const NOW_MS: i64 = 1_767_225_600_000;

/// Today (UTC) at [`NOW_MS`].
pub fn today() -> Day {
    day_of(NOW_MS / 1000, 0)
}

/// Generated demo users (tags, demographics, item states, behaviour) and the
/// empty profile of an unknown device.
pub static PROFILES: LazyLock<Vec<UserProfile>> = LazyLock::new(|| {
    let mut people: Vec<UserProfile> = (1..=12)
        .map(|id| generate_user(7, id, today(), &TAXONOMY))
        .collect();
    people.push(UserProfile::empty());
    people
});

const OSES: [Os; 5] = [Os::Unknown, Os::Android, Os::Ios, Os::Harmony, Os::Other];

/// Calls `f` with a context per profile of [`PROFILES`], known and unknown,
/// on today and on days around it, under every OS in turn.
pub fn each_context(mut f: impl FnMut(&EvalContext<'_>)) {
    for (k, p) in PROFILES.iter().enumerate() {
        for known_user in [true, false] {
            f(&EvalContext {
                profile: p,
                known_user,
                today: today() - (k as Day % 12),
                os: OSES[k % OSES.len()],
            });
        }
    }
}
