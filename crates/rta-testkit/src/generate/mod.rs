//! Random but realistic strategy files, deterministic from a seed.
//!
//! Benchmarks need many strategies (10 to 100,000), and property tests of an
//! indexed matcher against [`rta_engine::strategy::LinearMatcher`] need many different ones;
//! neither should depend on a file written by hand. [`StrategyGenerator`]
//! writes audiences in the audience language ([`rta_engine::strategy::lang`]) over the demo
//! catalogue of [`rta_engine::demo::population`] and the tag systems of a [`Taxonomy`],
//! shaped like what advertisers run:
//!
//! * the strategy templates of the demo file: high intent (carted, not
//!   bought), repeated browsing, repurchase windows, new customers for a
//!   brand, cross-category, the GOAL overlay ([`Template`]);
//! * tag and demographic segments, and 4A / RFM / CLV lifecycle rules;
//! * a long tail on data the demo population never produces (searches,
//!   favourites, shares, SKUs, scene tags nobody holds), as strategies written
//!   ahead of the data feeding them are;
//! * each narrowed by zero to two more demographic or tag clauses, sometimes an
//!   `or` of two, sometimes a `not`, sometimes the request's OS.
//!
//! So most strategies match a small share of users (real advertisers run
//! many narrow strategies), and a few ([`Mix::broad`]) match a large one,
//! like retargeting a whole target group or prospecting unknown devices.
//! [`Mix::arbitrary`] adds random `and` / `or` / `not` trees over every kind of
//! predicate, operator and window the language has, with no intent behind
//! them: the edge cases a property test wants and a benchmark does not.
//!
//! The output is text. [`strategy_file`] writes a strategy file, and
//! [`strategy_set`] loads it through [`StrategySet::from_toml`], so parsing
//! and compiling are exercised exactly as for a file an operator wrote.
//!
//! Determinism: strategy `i` of seed `s` depends only on `(s, i)` (it has its
//! own PCG stream, like users in [`rta_engine::demo::population`]), so the first `n`
//! strategies of a longer run are those of a shorter one, and any one
//! strategy can be regenerated alone.
//!
//! # Two workloads
//!
//! By default ([`Workload::Shared`]) every strategy draws on the one demo
//! catalogue, so what a user matches grows with the number of strategies: a
//! thousand strategies about the same ten categories hold ten times as many
//! about the user's categories as a hundred do.
//! [`Workload::PerAdvertiser`] is how 100,000 live strategies come about in
//! reality: many advertisers, about a hundred strategies each, each on its
//! own first-party data. Strategy `i` belongs to advertiser
//! `i / STRATEGIES_PER_ADVERTISER` and is scoped to that advertiser's data:
//! its categories, brands and SKUs are the demo catalogue's ids plus
//! `advertiser * ADVERTISER_ID_STRIDE` (behaviour on one advertiser's site is
//! not behaviour on another's), and its tags include the advertiser's own
//! [`FIRST_PARTY`] tags ([`advertiser_taxonomy`] has them). The templates are
//! the same; those that would otherwise hold for users with no data of the
//! advertiser (segments, the GOAL overlay's `four_a in {none, ...}`, broad
//! and prospecting strategies) get a clause on the advertiser's data.
//! Platform-wide tags and demographics still narrow strategies, as they do in
//! reality. Users for it are [`advertiser_customer`]s: demo users whose
//! behaviour is spread over two or three advertisers. Such a user matches
//! about as many strategies at 100,000 as at 1,000, since the strategies
//! added belong to advertisers the user never dealt with.

use std::fmt::Write as _;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use rta_engine::demo::population::{CATALOGUE, generate_user};
use rta_engine::domain::taxonomy::{DEFAULT_TAXONOMY, Taxonomy};
use rta_engine::index::UserId;
use rta_engine::index::profile::{Day, ItemKey, ProfileError, Scope, UserProfile};
use rta_engine::strategy::{StrategyError, StrategySet};

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
    /// to its advertiser's own items and first-party tags (see the module
    /// documentation): what a user matches stays flat as advertisers are
    /// added. [`Mix::arbitrary`] trees use the advertiser's items too but are
    /// not scoped (they test matchers, not workloads).
    PerAdvertiser,
}

/// The advertiser strategy `i` belongs to in [`Workload::PerAdvertiser`].
pub fn advertiser_of(i: u64) -> u32 {
    // below ADVERTISERS, so it fits
    ((i / STRATEGIES_PER_ADVERTISER) % u64::from(ADVERTISERS)) as u32
}

/// What advertiser `advertiser`'s item ids are offset by.
fn item_base(advertiser: u32) -> u32 {
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

/// What a generated strategy is for, after the strategy templates of the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Template {
    /// Carted a category or brand recently and not bought it (high intent).
    HighIntent,
    /// Browsed a category or brand several times recently, bought none.
    Browsers,
    /// Bought a category inside its repurchase window and not since.
    Repurchase,
    /// Buys a category but never bought one of its brands (category new customer).
    NewCustomer,
    /// Bought a brand but not (yet) another category (cross-category).
    CrossCategory,
    /// Core target groups with a scene, 4A below act on a brand, an age band (GOAL).
    GoalOverlay,
    /// A tag and demographic segment.
    Segment,
    /// 4A / RFM / CLV states of a brand.
    Lifecycle,
    /// Data the demo population never produces: no generated user matches.
    LongTail,
    /// Broad: a large share of users matches (a whole target group, an age band).
    Broad,
    /// Broad, and evaluated for unknown devices too (`match_unknown_devices`).
    Prospecting,
    /// A random `and` / `or` / `not` tree over every kind of predicate.
    Arbitrary,
}

impl Template {
    /// A short name, written as the strategy's description.
    pub fn name(self) -> &'static str {
        match self {
            Self::HighIntent => "high_intent",
            Self::Browsers => "browsers",
            Self::Repurchase => "repurchase",
            Self::NewCustomer => "new_customer",
            Self::CrossCategory => "cross_category",
            Self::GoalOverlay => "goal_overlay",
            Self::Segment => "segment",
            Self::Lifecycle => "lifecycle",
            Self::LongTail => "long_tail",
            Self::Broad => "broad",
            Self::Prospecting => "prospecting",
            Self::Arbitrary => "arbitrary",
        }
    }

    /// Whether the template is meant to match a large share of users.
    pub fn is_broad(self) -> bool {
        matches!(self, Self::Broad | Self::Prospecting)
    }
}

/// The narrow templates and their weights (percent).
const NARROW: &[(Template, u32)] = &[
    (Template::HighIntent, 14),
    (Template::Browsers, 14),
    (Template::Repurchase, 10),
    (Template::NewCustomer, 10),
    (Template::CrossCategory, 8),
    (Template::GoalOverlay, 12),
    (Template::Segment, 14),
    (Template::Lifecycle, 10),
    (Template::LongTail, 8),
];

/// Shares of the kinds of strategy generated; the rest are narrow templates.
///
/// Shares are probabilities per strategy; values outside `0..=1` act as the
/// nearest bound, and `broad + arbitrary` above 1 leaves no narrow strategies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    /// Share of broad strategies ([`Template::Broad`] and, a third of them,
    /// [`Template::Prospecting`]).
    pub broad: f64,
    /// Share of [`Template::Arbitrary`] trees: for property tests, 0 for benchmarks.
    pub arbitrary: f64,
}

impl Default for Mix {
    /// 2 % broad, no arbitrary trees: the mix the benchmarks use.
    fn default() -> Self {
        Self {
            broad: 0.02,
            arbitrary: 0.0,
        }
    }
}

/// One generated strategy, before it is written to a file.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedStrategy {
    /// `gen_000001`, `gen_000002`, ... (position from 1, six digits at least).
    pub id: String,
    /// A numeric media-facing id, unique within the run.
    pub target_id: String,
    /// In `0.5..=3.0`, two decimals.
    pub bid_factor: f64,
    /// What the strategy is for; written as its description.
    pub template: Template,
    /// Whether unknown devices are evaluated (prospecting and some arbitrary trees).
    pub match_unknown_devices: bool,
    /// The audience, one line, in the audience language.
    pub audience: String,
}

/// Generates strategies for a taxonomy from a seed; an [`Iterator`] over
/// strategies 0, 1, 2, ... (it never ends: take what you need).
#[derive(Debug, Clone)]
pub struct StrategyGenerator<'t> {
    taxonomy: &'t Taxonomy,
    seed: u64,
    mix: Mix,
    workload: Workload,
    next: u64,
}

impl<'t> StrategyGenerator<'t> {
    /// A generator with the default [`Mix`] and [`Workload`], starting at strategy 0.
    pub fn new(taxonomy: &'t Taxonomy, seed: u64) -> Self {
        Self {
            taxonomy,
            seed,
            mix: Mix::default(),
            workload: Workload::default(),
            next: 0,
        }
    }

    /// The same generator on another workload. For
    /// [`Workload::PerAdvertiser`], give it [`advertiser_taxonomy`] (with
    /// another taxonomy, clauses on first-party tags become clauses on the
    /// advertiser's brands).
    pub fn with_workload(mut self, workload: Workload) -> Self {
        self.workload = workload;
        self
    }

    /// The same generator with another mix of strategy kinds.
    pub fn with_mix(mut self, mix: Mix) -> Self {
        self.mix = mix;
        self
    }

    /// Strategy number `i` (from 0) of this seed and mix; the same every time.
    pub fn strategy(&self, i: u64) -> GeneratedStrategy {
        let mut d = Draw {
            rng: Pcg64Mcg::seed_from_u64(
                self.seed ^ 0x5354_5241_5445_4759 ^ (i + 1).wrapping_mul(0xd1b5_4a32_d192_ed03),
            ),
            taxonomy: self.taxonomy,
            advertiser: match self.workload {
                Workload::Shared => None,
                Workload::PerAdvertiser => Some(advertiser_of(i)),
            },
        };
        let roll: f64 = d.rng.random();
        let template = if roll < self.mix.broad {
            if d.chance(1.0 / 3.0) {
                Template::Prospecting
            } else {
                Template::Broad
            }
        } else if roll < self.mix.broad + self.mix.arbitrary {
            Template::Arbitrary
        } else {
            let mut w = d
                .rng
                .random_range(0..NARROW.iter().map(|(_, w)| w).sum::<u32>());
            NARROW
                .iter()
                .find(|(_, tw)| {
                    let hit = w < *tw;
                    w = w.saturating_sub(*tw);
                    hit
                })
                .map_or(Template::Segment, |(t, _)| *t)
        };
        let (audience, match_unknown_devices) = match template {
            Template::Broad => (d.broad(), false),
            // an advertiser's prospecting needs its lookalike tag: known users only
            Template::Prospecting => (d.prospecting(), d.advertiser.is_none()),
            Template::Arbitrary => (d.arbitrary(3), d.chance(0.2)),
            narrow => (d.narrow(narrow), false),
        };
        let bid_factor = f64::from(d.rng.random_range(50u32..=300)) / 100.0;
        GeneratedStrategy {
            id: format!("gen_{:06}", i + 1),
            target_id: (700_000 + i + 1).to_string(),
            bid_factor,
            template,
            match_unknown_devices,
            audience,
        }
    }
}

impl Iterator for StrategyGenerator<'_> {
    type Item = GeneratedStrategy;

    fn next(&mut self) -> Option<GeneratedStrategy> {
        let s = self.strategy(self.next);
        self.next += 1;
        Some(s)
    }
}

/// The first `count` strategies of `seed` with the default [`Mix`].
pub fn generate(taxonomy: &Taxonomy, seed: u64, count: usize) -> Vec<GeneratedStrategy> {
    StrategyGenerator::new(taxonomy, seed).take(count).collect()
}

/// A strategy file (TOML, as [`StrategySet::from_toml`] reads) holding `strategies`.
pub fn strategy_file(strategies: &[GeneratedStrategy], version: &str) -> String {
    let mut out = String::with_capacity(64 + strategies.len() * 200);
    // `write!` into a String cannot fail
    let _ = writeln!(
        out,
        "# Generated by rta_engine::strategy::generate: {} strategies.\nversion = \"{}\"",
        strategies.len(),
        version.escape_default()
    );
    for s in strategies {
        let _ = write!(
            out,
            "\n[[strategy]]\nid = \"{}\"\ntarget_id = \"{}\"\nbid_factor = {:.2}\ndescription = \"{}\"\n",
            s.id,
            s.target_id,
            s.bid_factor,
            s.template.name()
        );
        if s.match_unknown_devices {
            out.push_str("match_unknown_devices = true\n");
        }
        // audiences are one line of names, numbers and punctuation, never a quote
        let _ = writeln!(out, "audience = '{}'", s.audience);
    }
    out
}

/// The first `count` strategies of `seed` (default [`Mix`]), written as a
/// strategy file and loaded through [`StrategySet::from_toml`].
pub fn strategy_set(
    taxonomy: &Taxonomy,
    seed: u64,
    count: usize,
) -> Result<StrategySet, StrategyError> {
    let src = strategy_file(
        &generate(taxonomy, seed, count),
        &format!("generated-{seed}-{count}"),
    );
    StrategySet::from_toml(&src, &format!("generated(seed {seed}, {count})"), taxonomy)
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

/// Draws the parts of one strategy from its own random stream.
struct Draw<'t> {
    rng: Pcg64Mcg,
    taxonomy: &'t Taxonomy,
    /// The advertiser whose data the strategy is on ([`Workload::PerAdvertiser`]).
    advertiser: Option<u32>,
}

const FOUR_A: &[&str] = &["none", "aware", "appeal", "act", "advocate"];
const LEVELS: &[&str] = &["unknown", "low", "mid", "high"];
const STATES: &[&str] = &["four_a", "rfm_r", "rfm_f", "rfm_m", "clv"];
const ACTIONS: &[&str] = &["browse", "search", "favorite", "cart", "buy", "share"];
const OPS: &[&str] = &["==", "!=", ">=", "<=", ">", "<"];

impl<'t> Draw<'t> {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random::<f64>() < p
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.rng.random_range(0..xs.len())]
    }

    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        self.rng.random_range(lo..=hi)
    }

    /// What item ids are offset by: the advertiser's, 0 on the shared catalogue.
    fn base(&self) -> u32 {
        self.advertiser.map_or(0, item_base)
    }

    /// A catalogue category (its id offset by [`Draw::base`]) with its brands
    /// (as in the catalogue: [`Draw::brand_in`] offsets them).
    fn category(&mut self) -> (u32, &'static [u32]) {
        let (category, brands) = self.pick(CATALOGUE);
        (category + self.base(), brands)
    }

    /// A brand of `brands`, the first (the advertiser's own) more often.
    fn brand_in(&mut self, brands: &[u32]) -> u32 {
        let brand = match brands.first() {
            Some(&own) if self.chance(0.4) => own,
            Some(_) => self.pick(brands),
            None => 8557,
        };
        brand + self.base()
    }

    fn brand(&mut self) -> u32 {
        let (_, brands) = self.category();
        self.brand_in(brands)
    }

    fn sku(&mut self) -> u32 {
        self.range(100_000, 999_999) + self.base()
    }

    /// `category C` or `brand B` of one catalogue line.
    fn item(&mut self, brand_share: f64) -> String {
        let (category, brands) = self.category();
        if self.chance(brand_share) {
            format!("brand {}", self.brand_in(brands))
        } else {
            format!("category {category}")
        }
    }

    /// The value names of a tag system of the taxonomy, when it has it.
    fn values(&self, system: &str) -> Option<&'t [String]> {
        self.taxonomy
            .systems()
            .iter()
            .find(|s| s.name == system)
            .map(|s| s.values.as_slice())
            .filter(|v| !v.is_empty())
    }

    /// `system == v` or `system in {v, w, ...}` with up to `k` distinct values.
    fn tag(&mut self, system: &str, k: usize) -> Option<String> {
        let values = self.values(system)?;
        let chosen: Vec<&str> = values
            .choose_multiple(&mut self.rng, k.max(1))
            .map(String::as_str)
            .collect();
        Some(match chosen.as_slice() {
            [one] => format!("{system} == {one}"),
            many => format!("{system} in {{{}}}", many.join(", ")),
        })
    }

    /// A tag test on a named value, when the taxonomy has it.
    fn tag_value(&self, system: &str, value: &str) -> Option<String> {
        self.taxonomy
            .code(system, value)
            .map(|_| format!("{system} == {value}"))
    }

    /// `first_party == aNNNN_<name>` of the strategy's advertiser, when there
    /// is one and the taxonomy has the tag.
    fn own_tag(&self, name: &str) -> Option<String> {
        let advertiser = self.advertiser?;
        self.tag_value(FIRST_PARTY, &first_party_value(advertiser, name))
    }

    /// A clause on the advertiser's data: its tag `name`, or (with a taxonomy
    /// lacking first-party tags) awareness of one of its brands.
    fn own_scope(&mut self, name: &str) -> String {
        match self.own_tag(name) {
            Some(t) => t,
            None => format!("four_a(brand {}) >= aware", self.brand()),
        }
    }

    /// A demographic condition in the ranges the demo population draws from.
    fn demographic(&mut self) -> String {
        match self.rng.random_range(0..10) {
            0 => {
                let lo = self.range(16, 50);
                let hi = lo + self.range(5, 20);
                format!("age in {lo}..{hi}")
            }
            1 => {
                if self.chance(0.5) {
                    format!("age >= {}", self.pick(&[18, 25, 30, 35, 40]))
                } else {
                    format!("age <= {}", self.pick(&[25, 30, 35, 45]))
                }
            }
            2 => format!("gender == {}", self.pick(&["male", "female"])),
            3 => match self.rng.random_range(0..3) {
                0 => format!("city_tier <= {}", self.range(1, 3)),
                1 => "city_tier in 3..6".to_string(),
                _ => format!("city_tier >= {}", self.range(3, 5)),
            },
            4 => format!("marital == {}", self.pick(&["single", "married"])),
            5 => format!("children == {}", self.pick(&["yes", "no"])),
            6 => {
                if self.chance(0.7) {
                    format!(
                        "education >= {}",
                        self.pick(&["college", "bachelor", "master"])
                    )
                } else {
                    "education in {high_school, college}".to_string()
                }
            }
            7 => {
                if self.chance(0.7) {
                    let names = [
                        "white_collar",
                        "blue_collar",
                        "self_employed",
                        "civil_servant",
                        "retired",
                    ];
                    let two: Vec<&str> = names.choose_multiple(&mut self.rng, 2).copied().collect();
                    format!("occupation in {{{}}}", two.join(", "))
                } else {
                    "occupation != student".to_string()
                }
            }
            8 => match self.rng.random_range(0..4) {
                0 => format!("purchasing_power >= {}", self.range(10, 40)),
                1 => "purchasing_power in 5..20".to_string(),
                2 => format!("purchasing_power > {}", self.range(20, 40)),
                _ => format!("purchasing_power < {}", self.range(10, 20)),
            },
            _ => format!("age in {}..{}", self.range(18, 30), self.range(31, 60)),
        }
    }

    /// One more narrowing condition: a tag, a demographic, sometimes an `or` or a `not`.
    fn refiner(&mut self) -> String {
        let r = self.rng.random_range(0..100);
        let tag = match r {
            0..30 => {
                let k = self.range(1, 3) as usize;
                self.tag("target_group", k)
            }
            30..45 => {
                let k = self.range(2, 5) as usize;
                self.tag("value_group", k)
            }
            45..52 => self.tag("custom", 1),
            52..57 => {
                let k = self.range(1, 2) as usize;
                self.tag("scene", k)
            }
            57..62 => self
                .tag_value("custom", "high_return_rate")
                .or_else(|| self.tag("custom", 1))
                .map(|t| format!("not {t}")),
            62..70 => {
                let (a, b) = (self.demographic(), self.demographic());
                Some(format!("({a} or {b})"))
            }
            _ => None,
        };
        tag.unwrap_or_else(|| self.demographic())
    }

    /// A window in days from `choices`.
    fn days(&mut self, choices: &[u32]) -> u32 {
        self.pick(choices)
    }

    fn narrow(&mut self, template: Template) -> String {
        let mut clauses: Vec<String> = Vec::with_capacity(6);
        match template {
            Template::HighIntent => {
                if self.chance(0.4)
                    && let Some(t) = self.tag("target_group", 3)
                {
                    clauses.push(t);
                }
                let item = self.item(0.25);
                let w = self.days(&[3, 7, 14]);
                let w2 = self.days(&[14, 30, 60]);
                clauses.push(format!("cart({item}, {w}d)"));
                clauses.push(format!("not buy({item}, {w2}d)"));
            }
            Template::Browsers => {
                let item = self.item(0.4);
                let w = self.days(&[1, 3, 7]);
                let n = self.range(2, 5);
                clauses.push(match self.rng.random_range(0..4) {
                    0 => format!("browse({item}, {w}d) > {}", n - 1),
                    1 => format!("browse({item}, {w}d) in {n}..{}", n + 10),
                    _ => format!("browse({item}, {w}d) >= {n}"),
                });
                let w2 = self.days(&[7, 30]);
                clauses.push(format!("not buy({item}, {w2}d)"));
            }
            Template::Repurchase => {
                let (category, _) = self.category();
                let from = self.days(&[15, 20, 30]);
                let to = from + self.days(&[15, 25, 40]);
                clauses.push(format!("buy(category {category}, {from}d..{to}d)"));
                clauses.push(format!("not buy(category {category}, {from}d)"));
            }
            Template::NewCustomer => {
                let (category, brands) = self.category();
                let brand = self.brand_in(brands);
                let w = self.days(&[60, 90]);
                clauses.push(format!("buy(category {category}, {w}d)"));
                clauses.push(format!("not buy(brand {brand})"));
            }
            Template::CrossCategory => {
                let brand = self.brand();
                let (other, _) = self.category();
                clauses.push(format!("buy(brand {brand}, 180d)"));
                clauses.push(format!("not buy(category {other}, 180d)"));
                if self.chance(0.4) {
                    clauses.push("children == yes".to_string());
                }
            }
            Template::GoalOverlay => {
                let k = self.range(2, 3) as usize;
                if let Some(t) = self.tag("target_group", k) {
                    clauses.push(t);
                }
                if let Some(values) = self.values("scene") {
                    let two: Vec<&str> = values
                        .choose_multiple(&mut self.rng, 2)
                        .map(String::as_str)
                        .collect();
                    let any: Vec<String> = two.iter().map(|v| format!("scene == {v}")).collect();
                    clauses.push(format!("({})", any.join(" or ")));
                }
                let brand = self.brand();
                // `none` would hold for everyone the advertiser never reached
                let below_act = if self.advertiser.is_some() {
                    "aware, appeal"
                } else {
                    "none, aware, appeal"
                };
                clauses.push(format!("four_a(brand {brand}) in {{{below_act}}}"));
                let lo = self.range(18, 30);
                clauses.push(format!("age in {lo}..{}", lo + self.range(10, 25)));
            }
            Template::Segment => {
                // an advertiser's segment starts from its own CRM data
                if self.advertiser.is_some() {
                    let name = self.pick(&FIRST_PARTY_TAGS[..3]);
                    let own = self.own_scope(name);
                    clauses.push(own);
                }
                let k = self.range(1, 2) as usize;
                if let Some(t) = self.tag("target_group", k) {
                    clauses.push(t);
                }
                let k = self.range(2, 4) as usize;
                if let Some(t) = self.tag("value_group", k) {
                    clauses.push(t);
                }
                clauses.push(self.demographic());
            }
            Template::Lifecycle => {
                let brand = self.brand();
                let b = format!("brand {brand}");
                match self.rng.random_range(0..4) {
                    0 => {
                        clauses.push(format!("four_a({b}) >= act"));
                        clauses.push(format!("clv({b}) >= mid"));
                    }
                    1 => {
                        clauses.push(format!("rfm_r({b}) in {{low, mid}}"));
                        clauses.push(format!("rfm_f({b}) == high"));
                    }
                    2 => {
                        clauses.push(format!("four_a({b}) == appeal"));
                        clauses.push(format!("not cart({b}, 7d)"));
                    }
                    _ => {
                        clauses.push(format!("rfm_m({b}) == high"));
                        clauses.push(format!("four_a({b}) != advocate"));
                    }
                }
            }
            _ => {
                // LongTail: data the demo population does not have
                match self.rng.random_range(0..6) {
                    0 => {
                        let item = self.item(0.3);
                        clauses.push(format!("search({item}, 7d) >= 2"));
                    }
                    1 => clauses.push(format!("favorite(sku {}, 30d)", self.sku())),
                    2 => {
                        let brand = self.brand();
                        clauses.push(format!("share(brand {brand}, 30d) > 0"));
                    }
                    3 => {
                        let sku = self.sku();
                        clauses.push(format!("buy(sku {sku}, 90d)"));
                        clauses.push(format!("not buy(sku {sku}, 7d)"));
                    }
                    4 => {
                        let item = self.item(0.3);
                        clauses.push(format!("browse({item}, 30d..60d) >= 1"));
                    }
                    _ => {
                        let first = match self.advertiser {
                            Some(_) => self.own_tag("churn_risk"),
                            None => self.tag_value("scene", "pet_owner"),
                        };
                        match first.zip(self.tag_value("custom", "premium_buyer")) {
                            Some((a, b)) => {
                                clauses.push(a);
                                clauses.push(b);
                            }
                            None => clauses.push(format!("favorite(sku {}, 7d)", self.sku())),
                        }
                    }
                }
            }
        }
        let extra = match self.rng.random_range(0..100) {
            0..30 => 0,
            30..75 => 1,
            _ => 2,
        };
        for _ in 0..extra {
            let r = self.refiner();
            clauses.push(r);
        }
        if self.chance(0.1) {
            clauses.push(
                self.pick(&["os == ios", "os in {android, harmony}", "os != ios"])
                    .to_string(),
            );
        }
        clauses.join(" and ")
    }

    fn broad(&mut self) -> String {
        if self.advertiser.is_some() {
            return self.own_broad();
        }
        match self.rng.random_range(0..5) {
            0 => {
                let k = self.range(4, 6) as usize;
                self.tag("target_group", k)
                    .unwrap_or_else(|| "age in 18..45".to_string())
            }
            1 => format!("age in {}..{}", self.range(16, 22), self.range(40, 55)),
            2 => {
                let brand = self.brand();
                let (category, _) = self.category();
                format!("four_a(brand {brand}) >= aware or browse(category {category}, 30d)")
            }
            3 => {
                let member = self
                    .tag_value("custom", "member")
                    .unwrap_or_else(|| "gender == female".to_string());
                format!("city_tier <= {} or {member}", self.range(2, 4))
            }
            _ => match self.tag("value_group", 3) {
                Some(t) => format!("not {t}"),
                None => "age >= 18".to_string(),
            },
        }
    }

    /// An advertiser's broad strategy: much of its own customer base.
    fn own_broad(&mut self) -> String {
        match self.rng.random_range(0..4) {
            0 => match self.own_tag("member").zip(self.own_tag("high_value")) {
                Some((a, b)) => format!("{a} or {b}"),
                None => format!("four_a(brand {}) >= aware", self.brand()),
            },
            1 => format!("four_a(brand {}) >= aware", self.brand()),
            2 => {
                let brand = self.brand();
                let (category, _) = self.category();
                format!("four_a(brand {brand}) >= aware or browse(category {category}, 30d)")
            }
            _ => {
                let (category, _) = self.category();
                let member = self.own_scope("member");
                format!("buy(category {category}, 90d) or {member}")
            }
        }
    }

    fn prospecting(&mut self) -> String {
        if self.advertiser.is_some() {
            // people like the advertiser's customers, who are not (yet)
            let lookalike = self.own_scope("lookalike");
            let brand = self.brand();
            return if self.chance(0.5) {
                format!("{lookalike} and not buy(brand {brand}, 90d)")
            } else {
                format!("{lookalike} and not four_a(brand {brand}) >= act")
            };
        }
        match self.rng.random_range(0..4) {
            0 => "os in {android, harmony}".to_string(),
            1 => format!("not buy(brand {}, 90d)", self.brand()),
            2 => format!("not four_a(brand {}) >= act", self.brand()),
            _ => match self.tag("custom", 1) {
                Some(t) => format!("not {t}"),
                None => "os != ios".to_string(),
            },
        }
    }

    /// A random tree of depth at most `depth` over every kind of predicate.
    fn arbitrary(&mut self, depth: u32) -> String {
        if depth == 0 || self.chance(0.35) {
            return self.leaf();
        }
        match self.rng.random_range(0..3) {
            0 | 1 => {
                let op = if self.chance(0.5) { " and " } else { " or " };
                let n = self.range(2, 3);
                let parts: Vec<String> = (0..n)
                    .map(|_| format!("({})", self.arbitrary(depth - 1)))
                    .collect();
                parts.join(op)
            }
            _ => format!("not ({})", self.arbitrary(depth - 1)),
        }
    }

    /// One predicate of any kind, operator and window.
    fn leaf(&mut self) -> String {
        match self.rng.random_range(0..6) {
            0 => {
                let systems = self.taxonomy.systems();
                if systems.is_empty() {
                    return self.demographic();
                }
                let name = systems[self.rng.random_range(0..systems.len())]
                    .name
                    .clone();
                let k = self.range(1, 3) as usize;
                match self.tag(&name, k) {
                    Some(t) if self.chance(0.2) => match t.split_once(" == ") {
                        Some((s, v)) => format!("{s} != {v}"),
                        None => t,
                    },
                    Some(t) => t,
                    None => self.demographic(),
                }
            }
            1 => self.demographic(),
            2 | 3 => {
                let action = self.pick(ACTIONS);
                let item = match self.rng.random_range(0..5) {
                    0 => format!("sku {}", self.sku()),
                    1 | 2 => self.item(0.0),
                    _ => self.item(1.0),
                };
                let window = match self.rng.random_range(0..4) {
                    0 => String::new(),
                    1 => {
                        let from = self.range(1, 30);
                        format!(", {from}d..{}d", from + self.range(1, 60))
                    }
                    _ => format!(", {}d", self.pick(&[1, 3, 7, 14, 30, 90, 180])),
                };
                let n = self.range(1, 4);
                let test = match self.rng.random_range(0..4) {
                    0 => String::new(),
                    1 => format!(" in {}..{}", n - 1, n + self.range(0, 5)),
                    _ => format!(" {} {n}", self.pick(OPS)),
                };
                format!("{action}({item}{window}){test}")
            }
            4 => {
                let field = self.pick(STATES);
                let names = if field == "four_a" { FOUR_A } else { LEVELS };
                let brand = if self.chance(0.8) {
                    format!("brand {}", self.brand())
                } else {
                    self.item(0.0)
                };
                if self.chance(0.3) {
                    let two: Vec<&str> = names.choose_multiple(&mut self.rng, 2).copied().collect();
                    format!("{field}({brand}) in {{{}}}", two.join(", "))
                } else {
                    format!("{field}({brand}) {} {}", self.pick(OPS), self.pick(names))
                }
            }
            _ => format!(
                "os {} {}",
                self.pick(&["==", "!="]),
                self.pick(&["android", "ios", "harmony", "other"])
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rta_engine::demo::population::generate_user;
    use rta_engine::strategy::{EvalContext, Os};

    fn taxonomy() -> Taxonomy {
        Taxonomy::default_taxonomy()
    }

    fn load(strategies: &[GeneratedStrategy]) -> StrategySet {
        let src = strategy_file(strategies, "test");
        match StrategySet::from_toml(&src, "generated.toml", &taxonomy()) {
            Ok(set) => set,
            Err(e) => panic!("generated file does not load: {e}"),
        }
    }

    #[test]
    fn the_same_seed_generates_the_same_strategies() {
        let t = taxonomy();
        assert_eq!(generate(&t, 7, 300), generate(&t, 7, 300));
        assert_eq!(
            strategy_file(&generate(&t, 7, 300), "v"),
            strategy_file(&generate(&t, 7, 300), "v")
        );
        let other = generate(&t, 8, 300);
        let same = generate(&t, 7, 300)
            .iter()
            .zip(&other)
            .filter(|(a, b)| a.audience == b.audience)
            .count();
        assert!(same < 30, "{same} of 300 audiences equal across seeds");
    }

    #[test]
    fn a_shorter_run_is_a_prefix_of_a_longer_one() {
        let t = taxonomy();
        let long = generate(&t, 3, 500);
        assert_eq!(generate(&t, 3, 120), long[..120]);
        assert_eq!(StrategyGenerator::new(&t, 3).strategy(321), long[321]);
    }

    #[test]
    fn exactly_the_requested_number_is_generated_and_loaded() {
        let t = taxonomy();
        for n in [0, 1, 10, 37, 1000] {
            let strategies = generate(&t, 11, n);
            assert_eq!(strategies.len(), n);
            let set = load(&strategies);
            assert_eq!(set.strategies().len(), n);
            let ids: std::collections::HashSet<_> =
                set.strategies().iter().map(|s| s.id.clone()).collect();
            assert_eq!(ids.len(), n, "ids are unique");
        }
        let set = strategy_set(&t, 11, 250).expect("generated set compiles");
        assert_eq!(set.strategies().len(), 250);
    }

    #[test]
    fn every_generated_set_compiles_for_every_mix() {
        let t = taxonomy();
        let mixes = [
            Mix::default(),
            Mix {
                broad: 0.5,
                arbitrary: 0.0,
            },
            Mix {
                broad: 0.0,
                arbitrary: 1.0,
            },
            Mix {
                broad: 0.1,
                arbitrary: 0.3,
            },
        ];
        for seed in 0..8 {
            for mix in mixes {
                let strategies: Vec<_> = StrategyGenerator::new(&t, seed)
                    .with_mix(mix)
                    .take(400)
                    .collect();
                assert_eq!(load(&strategies).strategies().len(), 400);
            }
        }
    }

    #[test]
    fn arbitrary_trees_use_every_construct_of_the_language() {
        let t = taxonomy();
        let text: String = StrategyGenerator::new(&t, 5)
            .with_mix(Mix {
                broad: 0.0,
                arbitrary: 1.0,
            })
            .take(1000)
            .map(|s| s.audience + "\n")
            .collect();
        for construct in [
            " and ",
            " or ",
            "not (",
            " in {",
            "d..",
            " != ",
            " >= ",
            " <= ",
            " > ",
            " < ",
            " == ",
            "sku ",
            "brand ",
            "category ",
            "four_a(",
            "rfm_r(",
            "rfm_f(",
            "rfm_m(",
            "clv(",
            "search(",
            "favorite(",
            "share(",
            "browse(",
            "cart(",
            "buy(",
            "os ",
            "target_group",
            "value_group",
            "scene",
            "custom",
            "age",
            "city_tier",
            "purchasing_power",
            "occupation",
            "education",
        ] {
            assert!(text.contains(construct), "no `{construct}` in 1000 trees");
        }
    }

    /// Per strategy, the share of `users` generated users it matches.
    fn match_shares(set: &StrategySet, users: u64) -> Vec<f64> {
        let t = taxonomy();
        let today = 2518;
        let mut hits = vec![0u32; set.strategies().len()];
        let mut out = Vec::new();
        for id in 1..=users {
            let p = generate_user(42, id, today, &t);
            let ctx = EvalContext {
                profile: &p,
                known_user: true,
                today,
                os: Os::Android,
            };
            out.clear();
            set.matching(&ctx, None, &mut out);
            for &i in &out {
                hits[i as usize] += 1;
            }
        }
        hits.iter().map(|&h| f64::from(h) / users as f64).collect()
    }

    #[test]
    fn most_strategies_miss_a_typical_user_and_broad_ones_hit_many() {
        let t = taxonomy();
        let strategies = generate(&t, 9, 1000);
        let set = load(&strategies);
        let shares = match_shares(&set, 2000);
        let (mut narrow, mut broad) = (Vec::new(), Vec::new());
        for (s, share) in strategies.iter().zip(&shares) {
            if s.template.is_broad() {
                broad.push(*share);
            } else {
                narrow.push(*share);
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        // a user matches about 1 % of the narrow strategies ...
        assert!(mean(&narrow) < 0.02, "narrow mean share {}", mean(&narrow));
        // ... most of which match under 1 % of users, but not nobody at all
        let rare = narrow.iter().filter(|s| **s < 0.01).count();
        assert!(
            rare * 10 >= narrow.len() * 7,
            "{rare} of {} rare",
            narrow.len()
        );
        let live = narrow.iter().filter(|s| **s > 0.0).count();
        assert!(
            live * 2 >= narrow.len(),
            "{live} of {} ever match",
            narrow.len()
        );
        // a few broad ones match a large share
        assert!((10..=35).contains(&broad.len()), "{} broad", broad.len());
        assert!(mean(&broad) > 0.2, "broad mean share {}", mean(&broad));
    }

    fn per_advertiser(t: &Taxonomy, seed: u64, n: usize) -> Vec<GeneratedStrategy> {
        StrategyGenerator::new(t, seed)
            .with_workload(Workload::PerAdvertiser)
            .take(n)
            .collect()
    }

    fn load_with(strategies: &[GeneratedStrategy], t: &Taxonomy) -> StrategySet {
        match StrategySet::from_toml(&strategy_file(strategies, "test"), "generated.toml", t) {
            Ok(set) => set,
            Err(e) => panic!("generated file does not load: {e}"),
        }
    }

    #[test]
    fn the_advertiser_taxonomy_has_every_advertisers_tags() {
        let t = advertiser_taxonomy();
        assert_eq!(ADVERTISERS, 1073);
        let last = ADVERTISERS - 1;
        for name in FIRST_PARTY_TAGS {
            assert!(t.code(FIRST_PARTY, &first_party_value(0, name)).is_some());
            assert!(
                t.code(FIRST_PARTY, &first_party_value(last, name))
                    .is_some()
            );
        }
        assert!(t.code("target_group", "urban_family").is_some());
        // the largest id of the last advertiser is a valid item id
        let top = u64::from(item_base(last)) + u64::from(ADVERTISER_ID_STRIDE) - 1;
        assert!(ItemKey::new(Scope::Sku, top).is_ok());
        assert_eq!(advertiser_of(0), 0);
        assert_eq!(advertiser_of(99_999), 999);
        assert_eq!(advertiser_of(107_300), 0);
    }

    #[test]
    fn per_advertiser_strategies_are_deterministic_and_leave_the_default_alone() {
        let t = advertiser_taxonomy();
        let long = per_advertiser(&t, 3, 500);
        assert_eq!(per_advertiser(&t, 3, 120), long[..120]);
        let g = StrategyGenerator::new(&t, 3).with_workload(Workload::PerAdvertiser);
        assert_eq!(g.strategy(321), long[321]);
        // the default workload is unchanged by the taxonomy's extra system
        assert_eq!(generate(&t, 3, 300), generate(&taxonomy(), 3, 300));
        // advertiser 4's strategies talk about its items and tags only
        let mut items = 0;
        for s in &long[400..500] {
            assert!(!s.match_unknown_devices, "{}", s.audience);
            for scope in ["category ", "brand ", "sku "] {
                for (at, _) in s.audience.match_indices(scope) {
                    let digits: String = s.audience[at + scope.len()..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    let id: u32 = digits.parse().expect("an item id follows its scope");
                    assert_eq!(id / ADVERTISER_ID_STRIDE, 4, "{}", s.audience);
                    items += 1;
                }
            }
            for (at, _) in s.audience.match_indices("first_party") {
                assert!(s.audience[at..].contains("a0004_"), "{}", s.audience);
            }
        }
        assert!(items > 100, "{items} items in 100 strategies");
        assert!(long[400..500].iter().any(|s| s.audience.contains("a0004_")));
    }

    #[test]
    fn a_customer_is_deterministic_and_shops_at_two_or_three_advertisers() {
        let t = advertiser_taxonomy();
        for id in 1..=200 {
            let p = advertiser_customer(42, id, 2518, &t, 0..10).expect("profile fits");
            assert_eq!(
                Ok(&p),
                advertiser_customer(42, id, 2518, &t, 0..10).as_ref(),
                "user {id}"
            );
            let demo = generate_user(42, id, 2518, &t);
            assert_eq!(p.behaviour().count(), demo.behaviour().count());
            assert_eq!(p.items().count(), demo.items().count());
            let mut advertisers: Vec<u32> = p
                .behaviour()
                .map(|b| b.item)
                .chain(p.items().map(|(k, _)| k))
                .map(|k| k.id() / ADVERTISER_ID_STRIDE)
                .collect();
            advertisers.sort_unstable();
            advertisers.dedup();
            assert!(advertisers.len() <= 3, "user {id}: {advertisers:?}");
            assert!(
                advertisers.iter().all(|a| *a < 10),
                "user {id}: {advertisers:?}"
            );
        }
    }

    /// Per user, the strategies of `set` it matches, through the index and by
    /// evaluating every strategy; both must agree.
    fn matched(
        set: &StrategySet,
        users: &[rta_engine::index::profile::UserProfile],
    ) -> Vec<Vec<u32>> {
        use rta_engine::strategy::{LinearMatcher, Matcher};
        users
            .iter()
            .map(|p| {
                let ctx = EvalContext {
                    profile: p,
                    known_user: true,
                    today: 2518,
                    os: Os::Android,
                };
                let (mut idx, mut lin) = (Vec::new(), Vec::new());
                set.matching(&ctx, None, &mut idx);
                LinearMatcher.matching(set.strategies(), &ctx, None, &mut lin);
                assert_eq!(idx, lin, "index and linear scan disagree");
                idx
            })
            .collect()
    }

    #[test]
    fn a_customers_matches_stay_flat_as_advertisers_are_added() {
        let t = advertiser_taxonomy();
        let all = per_advertiser(&t, 7, 10_000);
        let (small, large) = (load_with(&all[..1_000], &t), load_with(&all, &t));
        assert_eq!(large.strategies().len(), 10_000);
        // customers of advertisers 0..10, the advertisers of the first 1,000
        let users: Vec<_> = (1..=300)
            .map(|id| advertiser_customer(42, id, 2518, &t, 0..10).expect("profile fits"))
            .collect();
        let (at_1k, at_10k) = (matched(&small, &users), matched(&large, &users));
        let total = |m: &[Vec<u32>]| m.iter().map(Vec::len).sum::<usize>();
        // users do match, several strategies on average ...
        assert!(
            total(&at_1k) >= 2 * users.len(),
            "{} matches over {} users",
            total(&at_1k),
            users.len()
        );
        // ... and the 90 advertisers added are not theirs: no more matches
        for (u, (a, b)) in at_1k.iter().zip(&at_10k).enumerate() {
            assert!(
                b.len() <= a.len() + 1,
                "user {u}: {} then {}",
                a.len(),
                b.len()
            );
            assert!(b.iter().all(|&i| i < 1_000), "user {u} matches {b:?}");
        }
    }
}
