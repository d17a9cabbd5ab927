//! [`Draw`]: one strategy's own random stream, and the vocabulary every kind
//! of strategy is written in (catalogue items, tags, the advertiser's own
//! data, demographics, narrowing clauses).

use rand::Rng;
use rand::seq::IndexedRandom;
use rand_pcg::Pcg64Mcg;

use rta_engine::demo::population::CATALOGUE;
use rta_engine::domain::taxonomy::Taxonomy;

use super::advertiser::{FIRST_PARTY, first_party_value, item_base};

/// Draws the parts of one strategy from its own random stream.
pub(super) struct Draw<'t> {
    pub(super) rng: Pcg64Mcg,
    pub(super) taxonomy: &'t Taxonomy,
    /// The advertiser whose data the strategy is on
    /// ([`Workload::PerAdvertiser`](super::Workload::PerAdvertiser)).
    pub(super) advertiser: Option<u32>,
}

impl<'t> Draw<'t> {
    /// True with probability `p`.
    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.rng.random::<f64>() < p
    }

    /// One of `xs`, uniformly.
    pub(super) fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.rng.random_range(0..xs.len())]
    }

    /// A number in `lo..=hi`, uniformly.
    pub(super) fn range(&mut self, lo: u32, hi: u32) -> u32 {
        self.rng.random_range(lo..=hi)
    }

    /// What item ids are offset by: the advertiser's, 0 on the shared catalogue.
    pub(super) fn base(&self) -> u32 {
        self.advertiser.map_or(0, item_base)
    }

    /// A catalogue category (its id offset by [`Draw::base`]) with its brands
    /// (as in the catalogue: [`Draw::brand_in`] offsets them).
    pub(super) fn category(&mut self) -> (u32, &'static [u32]) {
        let (category, brands) = self.pick(CATALOGUE);
        (category + self.base(), brands)
    }

    /// A brand of `brands`, the first (the advertiser's own) more often.
    pub(super) fn brand_in(&mut self, brands: &[u32]) -> u32 {
        let brand = match brands.first() {
            Some(&own) if self.chance(0.4) => own,
            Some(_) => self.pick(brands),
            None => 8557,
        };
        brand + self.base()
    }

    /// A brand of a catalogue category ([`Draw::brand_in`]).
    pub(super) fn brand(&mut self) -> u32 {
        let (_, brands) = self.category();
        self.brand_in(brands)
    }

    /// A SKU id, offset by [`Draw::base`].
    pub(super) fn sku(&mut self) -> u32 {
        self.range(100_000, 999_999) + self.base()
    }

    /// `category C` or `brand B` of one catalogue line.
    pub(super) fn item(&mut self, brand_share: f64) -> String {
        let (category, brands) = self.category();
        if self.chance(brand_share) {
            format!("brand {}", self.brand_in(brands))
        } else {
            format!("category {category}")
        }
    }

    /// The value names of a tag system of the taxonomy, when it has it.
    pub(super) fn values(&self, system: &str) -> Option<&'t [String]> {
        self.taxonomy
            .systems()
            .iter()
            .find(|s| s.name == system)
            .map(|s| s.values.as_slice())
            .filter(|v| !v.is_empty())
    }

    /// `system == v` or `system in {v, w, ...}` with up to `k` distinct values.
    pub(super) fn tag(&mut self, system: &str, k: usize) -> Option<String> {
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
    pub(super) fn tag_value(&self, system: &str, value: &str) -> Option<String> {
        self.taxonomy
            .code(system, value)
            .map(|_| format!("{system} == {value}"))
    }

    /// `first_party == aNNNN_<name>` of the strategy's advertiser, when there
    /// is one and the taxonomy has the tag.
    pub(super) fn own_tag(&self, name: &str) -> Option<String> {
        let advertiser = self.advertiser?;
        self.tag_value(FIRST_PARTY, &first_party_value(advertiser, name))
    }

    /// A clause on the advertiser's data: its tag `name`, or (with a taxonomy
    /// lacking first-party tags) awareness of one of its brands.
    pub(super) fn own_scope(&mut self, name: &str) -> String {
        match self.own_tag(name) {
            Some(t) => t,
            None => format!("four_a(brand {}) >= aware", self.brand()),
        }
    }

    /// A demographic condition in the ranges the demo population draws from.
    pub(super) fn demographic(&mut self) -> String {
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
    pub(super) fn refiner(&mut self) -> String {
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
    pub(super) fn days(&mut self, choices: &[u32]) -> u32 {
        self.pick(choices)
    }
}
