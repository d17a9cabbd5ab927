//! The per-advertiser workload ([`Workload::PerAdvertiser`]): how strategies
//! are assigned to advertisers, each advertiser's item ids and first-party
//! tags ([`advertiser_taxonomy`]), and the demo users recast as customers of
//! a few advertisers ([`advertiser_customer`]).

use std::fmt::Write as _;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use rta_engine::demo::population::generate_user;
use rta_engine::domain::taxonomy::{DEFAULT_TAXONOMY, Taxonomy};
use rta_engine::index::UserId;
use rta_engine::index::profile::{Day, ItemKey, ProfileError, Scope, UserProfile};

/// Strategies per advertiser in [`Workload::PerAdvertiser`]: strategy `i`
/// (from 0) belongs to advertiser `i / STRATEGIES_PER_ADVERTISER`.
pub const STRATEGIES_PER_ADVERTISER: u64 = 100;

/// In [`Workload::PerAdvertiser`], the item ids of advertiser `a` are the
/// demo catalogue's (categories and brands below 16,000, SKUs below
/// 1,000,000) plus `a * ADVERTISER_ID_STRIDE`.
pub const ADVERTISER_ID_STRIDE: u32 = 1_000_000;

/// Advertisers with data of their own: as many as 30-bit item ids hold at
/// [`ADVERTISER_ID_STRIDE`] (1,073, i.e. 107,300 strategies, more than a
/// strategy file may hold). Strategies past them reuse advertisers' data
/// from advertiser 0 on.
pub const ADVERTISERS: u32 = (ItemKey::MAX_ID + 1) / ADVERTISER_ID_STRIDE;

const _: () = assert!(
    (ADVERTISERS as u64 - 1) * ADVERTISER_ID_STRIDE as u64 + (ADVERTISER_ID_STRIDE as u64 - 1)
        <= ItemKey::MAX_ID as u64
);
const _: () = assert!(
    ADVERTISERS as u64 * STRATEGIES_PER_ADVERTISER >= rta_engine::strategy::MAX_STRATEGIES as u64
);

/// The tag system of advertisers' first-party tags in
/// [`advertiser_taxonomy`]: values `a0000_member`, `a0000_high_value`, ...
pub const FIRST_PARTY: &str = "first_party";

/// The first-party tags each advertiser has: its members (CRM), its
/// high-value customers, customers its models say are about to churn, and a
/// lookalike audience of people like its customers who are not.
pub const FIRST_PARTY_TAGS: [&str; 4] = ["member", "high_value", "churn_risk", "lookalike"];

/// Which data generated strategies draw on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Workload {
    /// Every strategy on the one demo catalogue and the shared tag systems:
    /// what a user matches grows with the number of strategies.
    #[default]
    Shared,
    /// [`STRATEGIES_PER_ADVERTISER`] strategies per advertiser, each scoped
    /// to its advertiser's own items and first-party tags (see the [`generate`](super)
    /// module documentation): what a user matches stays flat as advertisers are
    /// added. [`Mix::arbitrary`](super::Mix::arbitrary) trees use the advertiser's items too but are
    /// not scoped (they test matchers, not workloads).
    PerAdvertiser,
}

/// The advertiser strategy `i` belongs to in [`Workload::PerAdvertiser`].
pub fn advertiser_of(i: u64) -> u32 {
    // below ADVERTISERS, so it fits
    ((i / STRATEGIES_PER_ADVERTISER) % u64::from(ADVERTISERS)) as u32
}

/// What advertiser `advertiser`'s item ids are offset by.
pub(super) fn item_base(advertiser: u32) -> u32 {
    (advertiser % ADVERTISERS) * ADVERTISER_ID_STRIDE
}

/// The [`FIRST_PARTY`] value naming tag `name` of `advertiser`: `a0042_member`.
pub fn first_party_value(advertiser: u32, name: &str) -> String {
    format!("a{advertiser:04}_{name}")
}

/// The default taxonomy plus a [`FIRST_PARTY`] system holding the
/// [`FIRST_PARTY_TAGS`] of every one of the [`ADVERTISERS`]: what strategies
/// of [`Workload::PerAdvertiser`] compile against.
pub fn advertiser_taxonomy() -> Taxonomy {
    let mut src = String::with_capacity(DEFAULT_TAXONOMY.len() + 24 * 4 * ADVERTISERS as usize);
    src.push_str(DEFAULT_TAXONOMY);
    src.push_str(
        "\n[[system]]\nname = \"first_party\"\n\
         description = \"Advertisers' own tags (generated per-advertiser workload)\"\nvalues = [\n",
    );
    for a in 0..ADVERTISERS {
        for name in FIRST_PARTY_TAGS {
            // `write!` into a String cannot fail
            let _ = writeln!(src, "  \"{}\",", first_party_value(a, name));
        }
    }
    src.push_str("]\n");
    // built from constants and checked by a unit test: failing is a build defect
    Taxonomy::from_toml(&src).expect("the advertiser taxonomy is valid")
}

/// User `id` of the demo population of `seed` ([`generate_user`]) as a
/// customer of advertisers of [`Workload::PerAdvertiser`]: two or three of
/// the advertisers `among` (clamped to `0..ADVERTISERS`), drawn from
/// `(seed, id)` alone.
///
/// Each item the demo user acted on or holds a state with is moved to one of
/// those advertisers (the same one for all of an item's records, chosen by a
/// hash of the item and the user), its id offset as the strategies' are. The
/// user is a member of each of its advertisers with probability 1/2, one of
/// its high-value customers with 1/5, at risk of churning with 1/10, and in
/// the lookalike audience of each other advertiser of `among` with 3/20
/// (tags `taxonomy` lacks are left out). Demographics and platform tags stay
/// as generated. So the user's data, and what the user can match, is bounded
/// by `among`, not by the number of advertisers running strategies. With
/// `among` empty, items keep the demo catalogue's ids (advertiser 0's).
pub fn advertiser_customer(
    seed: u64,
    id: UserId,
    today: Day,
    taxonomy: &Taxonomy,
    among: std::ops::Range<u32>,
) -> Result<UserProfile, ProfileError> {
    let demo = generate_user(seed, id, today, taxonomy);
    let mut rng = Pcg64Mcg::seed_from_u64(
        seed ^ 0x4144_5645_5254_4953 ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    let among: Vec<u32> = (among.start.min(ADVERTISERS)..among.end.min(ADVERTISERS)).collect();
    let k = rng.random_range(2..=3usize).min(among.len());
    let mine: Vec<u32> = among.choose_multiple(&mut rng, k).copied().collect();
    let salt: u64 = rng.random();
    let moved = |item: ItemKey| -> ItemKey {
        if mine.is_empty() || item.scope() == Scope::Strategy || item.id() >= ADVERTISER_ID_STRIDE {
            return item;
        }
        let h = (((item.scope() as u64) << 32) | u64::from(item.id()))
            .wrapping_add(salt)
            .wrapping_mul(0xd1b5_4a32_d192_ed03);
        let advertiser = mine[((h >> 32) % mine.len() as u64) as usize];
        // below ItemKey::MAX_ID by the constants' checks; kept as is otherwise
        ItemKey::new(item.scope(), u64::from(item.id() + item_base(advertiser))).unwrap_or(item)
    };
    let mut b = demo.to_builder();
    for (item, _) in &mut b.items {
        *item = moved(*item);
    }
    for record in &mut b.behaviour {
        record.item = moved(record.item);
    }
    let mut tag = |advertiser: u32, name: &str, p: f64, rng: &mut Pcg64Mcg| {
        if rng.random_bool(p)
            && let Some(code) = taxonomy.code(FIRST_PARTY, &first_party_value(advertiser, name))
        {
            b.tags.push(code);
        }
    };
    for &a in &among {
        if mine.contains(&a) {
            tag(a, "member", 0.5, &mut rng);
            tag(a, "high_value", 0.2, &mut rng);
            tag(a, "churn_risk", 0.1, &mut rng);
        } else {
            tag(a, "lookalike", 0.15, &mut rng);
        }
    }
    b.build()
}
