//! Experiments: a strategy's variants, bound to the media's experiment
//! buckets or to a stable hash of the user, with a holdout that is never
//! targeted, so that operators can measure lift.
//!
//! Assignment is a pure function of the strategy's salt, the user (or, for
//! an unknown device, its first usable id) and the request's buckets: the
//! same user always lands in the same arm, on every replica, across restarts.

use serde::Deserialize;

use crate::domain::ids::DeviceKey;
use crate::index::UserId;

/// Hash assignment resolution: shares are exact to 1 / 10 000.
const SLOTS: u64 = 10_000;

/// A strategy's `[strategy.experiment]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Mixed into the user hash; change it to reshuffle users (default: the strategy id).
    #[serde(default)]
    pub salt: Option<String>,
    /// Share of hash-assigned users never targeted by this strategy.
    #[serde(default)]
    pub holdout: f64,
    /// The variants.
    #[serde(default, rename = "variant")]
    pub variants: Vec<VariantSpec>,
}

/// One variant.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    /// Its name, a metric label: 1-32 characters of [A-Za-z0-9_-].
    pub name: String,
    /// Share of hash-assigned users (with `holdout`, the shares sum to 1).
    #[serde(default)]
    pub share: Option<f64>,
    /// Media experiment bucket ids (Tencent `exps.exp_id`) bound to it.
    #[serde(default)]
    pub buckets: Vec<u64>,
    /// Bid factor in this variant (default: the strategy's).
    #[serde(default)]
    pub bid_factor: Option<f64>,
    /// Media-facing id in this variant (default: the strategy's), so the
    /// media reports it apart.
    #[serde(default)]
    pub target_id: Option<String>,
}

/// A compiled experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    salt: u64,
    holdout_slots: u64,
    /// Hash-assigned variants with their slot upper bounds, ascending.
    by_hash: Vec<(u64, usize)>,
    /// The variants, in file order.
    pub variants: Vec<Variant>,
}

/// A compiled variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Its name.
    pub name: std::sync::Arc<str>,
    /// Bound media buckets.
    pub buckets: Vec<u64>,
    /// Bid factor override.
    pub bid_factor: Option<f64>,
    /// Media-facing id override.
    pub target_id: Option<std::sync::Arc<str>>,
}

/// Where a request landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// Variant `i` of [`Experiment::variants`].
    Variant(usize),
    /// The holdout: not targeted.
    Holdout,
    /// Outside the experiment (no bucket matched and no hash variants): the
    /// strategy as configured.
    Outside,
}

/// Arm label of the holdout in metrics and explanations.
pub const HOLDOUT: &str = "holdout";
/// Arm label of traffic outside the experiment.
pub const OUTSIDE: &str = "outside";

/// Who is being assigned.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// A known user.
    User(UserId),
    /// An unknown device, by its id.
    Device(&'a DeviceKey),
}

impl ExperimentSpec {
    /// Checks and compiles; `default_salt` is the strategy id. Errors name the field.
    pub fn compile(
        &self,
        default_salt: &str,
        bid_range: &std::ops::RangeInclusive<f64>,
    ) -> Result<Experiment, String> {
        if self.variants.is_empty() {
            return Err("`experiment` needs at least one `variant`".into());
        }
        if !(0.0..1.0).contains(&self.holdout) {
            return Err("`experiment.holdout` must be within 0..1".into());
        }
        let mut by_hash = Vec::new();
        let mut total = self.holdout;
        let mut variants = Vec::with_capacity(self.variants.len());
        for (i, v) in self.variants.iter().enumerate() {
            if v.name.is_empty()
                || v.name.len() > 32
                || !v
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
                || v.name == HOLDOUT
                || v.name == OUTSIDE
            {
                return Err(format!(
                    "variant name `{}` must be 1-32 characters of [A-Za-z0-9_-], not `{HOLDOUT}` or `{OUTSIDE}`",
                    v.name
                ));
            }
            if self.variants[..i].iter().any(|o| o.name == v.name) {
                return Err(format!("variant `{}` appears twice", v.name));
            }
            match (v.share, v.buckets.is_empty()) {
                (Some(_), false) => {
                    return Err(format!(
                        "variant `{}`: give `share` or `buckets`, not both",
                        v.name
                    ));
                }
                (None, true) => {
                    return Err(format!("variant `{}` needs `share` or `buckets`", v.name));
                }
                (Some(share), true) => {
                    if !(share > 0.0 && share <= 1.0) {
                        return Err(format!(
                            "variant `{}`: `share` must be within (0, 1]",
                            v.name
                        ));
                    }
                    total += share;
                    by_hash.push((slots(total), i));
                }
                (None, false) => {}
            }
            if let Some(b) = v.bid_factor
                && !bid_range.contains(&b)
            {
                return Err(format!(
                    "variant `{}`: `bid_factor` {b} is outside the media's range",
                    v.name
                ));
            }
            if let Some(t) = &v.target_id
                && (t.is_empty() || t.len() > 64)
            {
                return Err(format!(
                    "variant `{}`: `target_id` must be 1-64 characters",
                    v.name
                ));
            }
            variants.push(Variant {
                name: v.name.as_str().into(),
                buckets: v.buckets.clone(),
                bid_factor: v.bid_factor,
                target_id: v.target_id.as_deref().map(Into::into),
            });
        }
        if !by_hash.is_empty() && (total - 1.0).abs() > 1e-6 {
            return Err(format!(
                "`holdout` and the variants' shares sum to {total}, not 1"
            ));
        }
        if by_hash.is_empty() && self.holdout > 0.0 {
            return Err("`holdout` needs variants assigned by `share`".into());
        }
        if let Some(last) = by_hash.last_mut() {
            last.0 = SLOTS; // rounding never leaves a user unassigned
        }
        let salt = self.salt.as_deref().unwrap_or(default_salt);
        Ok(Experiment {
            salt: fnv1a64(salt.as_bytes()),
            holdout_slots: slots(self.holdout),
            by_hash,
            variants,
        })
    }
}

fn slots(share: f64) -> u64 {
    ((share * SLOTS as f64).round() as u64).min(SLOTS)
}

impl Experiment {
    /// The arm of `subject` for a request carrying media `buckets`. A bucket
    /// binding wins over the hash (the media's experiment owns that traffic).
    #[inline]
    pub fn assign(&self, subject: Subject<'_>, buckets: &[u64]) -> Arm {
        if !buckets.is_empty()
            && let Some(i) = self
                .variants
                .iter()
                .position(|v| v.buckets.iter().any(|b| buckets.contains(b)))
        {
            return Arm::Variant(i);
        }
        if self.by_hash.is_empty() {
            return Arm::Outside;
        }
        let slot = self.slot(subject);
        if slot < self.holdout_slots {
            return Arm::Holdout;
        }
        self.by_hash
            .iter()
            .find(|(bound, _)| slot < *bound)
            .map_or(Arm::Outside, |(_, i)| Arm::Variant(*i))
    }

    /// The arm's label.
    pub fn label(&self, arm: Arm) -> &str {
        match arm {
            Arm::Variant(i) => self.variants.get(i).map_or(OUTSIDE, |v| &v.name),
            Arm::Holdout => HOLDOUT,
            Arm::Outside => OUTSIDE,
        }
    }

    /// Every arm label this experiment can produce (for pre-registered counters).
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.variants
            .iter()
            .map(|v| &*v.name)
            .chain([HOLDOUT, OUTSIDE])
    }

    /// Index of an arm among [`Experiment::labels`].
    pub fn arm_index(&self, arm: Arm) -> usize {
        match arm {
            Arm::Variant(i) => i,
            Arm::Holdout => self.variants.len(),
            Arm::Outside => self.variants.len() + 1,
        }
    }

    fn slot(&self, subject: Subject<'_>) -> u64 {
        let h = match subject {
            Subject::User(u) => mix(self.salt ^ mix(u)),
            Subject::Device(d) => {
                let mut w = [0u8; 8];
                w.copy_from_slice(&d.0[..8]);
                mix(self.salt ^ mix(u64::from_le_bytes(w) ^ 0x5bd1_e995))
            }
        };
        h % SLOTS
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// splitmix64's finaliser: consecutive user ids spread uniformly.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RANGE: std::ops::RangeInclusive<f64> = 0.2..=5.0;

    fn spec(holdout: f64, shares: &[f64]) -> ExperimentSpec {
        ExperimentSpec {
            salt: None,
            holdout,
            variants: shares
                .iter()
                .enumerate()
                .map(|(i, s)| VariantSpec {
                    name: format!("v{i}"),
                    share: Some(*s),
                    buckets: vec![],
                    bid_factor: None,
                    target_id: None,
                })
                .collect(),
        }
    }

    #[test]
    fn shares_and_holdout_are_honoured_over_many_users() {
        let e = spec(0.1, &[0.45, 0.45]).compile("s", &RANGE).unwrap();
        let mut n = [0usize; 3];
        for u in 0..100_000u64 {
            match e.assign(Subject::User(u), &[]) {
                Arm::Variant(i) => n[i] += 1,
                Arm::Holdout => n[2] += 1,
                Arm::Outside => panic!("hash variants cover everyone"),
            }
        }
        for (got, want) in n.iter().zip([45_000, 45_000, 10_000]) {
            // 4 sigma of a binomial at 100 000
            assert!(got.abs_diff(want) < 700, "{n:?}");
        }
    }

    #[test]
    fn assignment_is_stable_and_depends_on_the_salt() {
        let a = spec(0.2, &[0.8]).compile("s1", &RANGE).unwrap();
        let b = spec(0.2, &[0.8]).compile("s2", &RANGE).unwrap();
        let arms = |e: &Experiment| -> Vec<Arm> {
            (0..1000).map(|u| e.assign(Subject::User(u), &[])).collect()
        };
        assert_eq!(arms(&a), arms(&a.clone()));
        assert_ne!(arms(&a), arms(&b));
    }

    #[test]
    fn buckets_win_over_the_hash_and_unbound_traffic_is_outside() {
        let mut s = spec(0.5, &[0.5]);
        s.variants.push(VariantSpec {
            name: "media".into(),
            share: None,
            buckets: vec![77, 78],
            bid_factor: Some(2.0),
            target_id: Some("t-media".into()),
        });
        let e = s.compile("s", &RANGE).unwrap();
        for u in 0..200 {
            assert_eq!(e.assign(Subject::User(u), &[1, 78]), Arm::Variant(1));
        }
        let only_buckets = ExperimentSpec {
            salt: None,
            holdout: 0.0,
            variants: vec![s.variants[1].clone()],
        }
        .compile("s", &RANGE)
        .unwrap();
        assert_eq!(only_buckets.assign(Subject::User(1), &[5]), Arm::Outside);
        assert_eq!(
            only_buckets.assign(Subject::User(1), &[77]),
            Arm::Variant(0)
        );
        let d = DeviceKey([9; 16]);
        assert_eq!(
            only_buckets.label(only_buckets.assign(Subject::Device(&d), &[])),
            OUTSIDE
        );
    }

    #[test]
    fn bad_specs_are_rejected_with_the_reason() {
        let err = |s: ExperimentSpec| s.compile("s", &RANGE).unwrap_err();
        assert!(err(spec(0.1, &[0.5])).contains("sum to"));
        assert!(err(spec(1.0, &[0.5])).contains("holdout"));
        assert!(err(spec(0.0, &[])).contains("at least one"));
        let mut dup = spec(0.0, &[0.5, 0.5]);
        dup.variants[1].name = "v0".into();
        assert!(err(dup).contains("twice"));
        let mut bad = spec(0.0, &[1.0]);
        bad.variants[0].name = HOLDOUT.into();
        assert!(err(bad).contains("name"));
        let mut both = spec(0.0, &[1.0]);
        both.variants[0].buckets = vec![1];
        assert!(err(both).contains("not both"));
        let mut bid = spec(0.0, &[1.0]);
        bid.variants[0].bid_factor = Some(7.0);
        assert!(err(bid).contains("bid_factor"));
    }

    proptest! {
        #[test]
        fn every_user_gets_exactly_the_arm_its_slot_says(
            holdout in 0.0f64..0.9,
            cuts in proptest::collection::vec(1u32..100, 1..5),
            users in proptest::collection::vec(any::<u64>(), 1..50),
        ) {
            let total: u32 = cuts.iter().sum();
            let shares: Vec<f64> = cuts.iter().map(|c| (1.0 - holdout) * f64::from(*c) / f64::from(total)).collect();
            let e = spec(holdout, &shares).compile("p", &RANGE).unwrap();
            for u in users {
                let slot = e.slot(Subject::User(u));
                let arm = e.assign(Subject::User(u), &[]);
                // the model: walk the cumulative shares
                let want = if slot < slots(holdout) {
                    Arm::Holdout
                } else {
                    let mut acc = holdout;
                    let mut found = Arm::Variant(shares.len() - 1);
                    for (i, s) in shares.iter().enumerate() {
                        acc += s;
                        if i + 1 < shares.len() && slot < slots(acc) {
                            found = Arm::Variant(i);
                            break;
                        }
                    }
                    found
                };
                prop_assert_eq!(arm, want);
            }
        }
    }
}
