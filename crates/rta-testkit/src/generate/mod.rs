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
//! [`strategy_set`] loads it through
//! [`StrategySet::from_toml`](rta_engine::strategy::StrategySet::from_toml), so parsing
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

mod advertiser;
mod arbitrary;
mod draw;
mod file;
mod templates;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use rta_engine::domain::taxonomy::Taxonomy;

pub use advertiser::{
    ADVERTISER_ID_STRIDE, ADVERTISERS, FIRST_PARTY, FIRST_PARTY_TAGS, STRATEGIES_PER_ADVERTISER,
    Workload, advertiser_customer, advertiser_of, advertiser_taxonomy, first_party_value,
};
pub use file::{strategy_file, strategy_set};
pub use templates::Template;

use draw::Draw;
use templates::NARROW;

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

#[cfg(test)]
mod tests;
