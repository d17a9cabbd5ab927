//! The strategy templates ([`Template`]) and the audiences [`Draw`] writes
//! for them: the narrow ones after the demo file, broad and prospecting ones.

use rand::Rng;
use rand::seq::IndexedRandom;

use super::advertiser::FIRST_PARTY_TAGS;
use super::draw::Draw;

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
pub(super) const NARROW: &[(Template, u32)] = &[
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

impl Draw<'_> {
    /// The audience of a narrow `template`: its clauses, narrowed by zero to
    /// two [`Draw::refiner`]s and sometimes the request's OS.
    pub(super) fn narrow(&mut self, template: Template) -> String {
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

    /// A broad audience ([`Template::Broad`]): a large share of users.
    pub(super) fn broad(&mut self) -> String {
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

    /// A prospecting audience ([`Template::Prospecting`]): broad, for
    /// unknown devices too on the shared catalogue.
    pub(super) fn prospecting(&mut self) -> String {
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
}
