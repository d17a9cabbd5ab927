//! pCTR / pCVR from a dual-tower model: the per-strategy score policy that
//! the strategy file declares.
//!
//! The offline model has two towers: the user tower's output (a small
//! vector per user) arrives by Kafka and is kept, int8-quantised, in the
//! user's profile ([`crate::index::profile::UserVector`]); the strategy tower's
//! output (one weight vector and a bias per head: CTR and CVR) is written in
//! the strategy file. A prediction is `sigmoid(user · weights + bias)`, then
//! shifted by the strategy's current calibration ([`Shift`]), which the
//! decision layer's feedback ledger (`decision::ledger`) keeps.

use serde::{Deserialize, Serialize};

use crate::index::profile::VectorView;

/// The model generation the strategy file's vectors belong to.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The version label; user vectors must carry the same one.
    pub version: String,
    /// [`crate::index::profile::model_tag`] of the version.
    pub tag: u16,
    /// Vector dimensions.
    pub dims: usize,
}

impl ModelInfo {
    /// Whether a user vector is of this model: its version's tag and its
    /// dimensions (a vector of the right version but the wrong length is a
    /// producer's bug, never scored).
    #[inline]
    pub fn produced(&self, v: &VectorView<'_>) -> bool {
        v.model == self.tag && v.dims() == self.dims
    }
}

/// One head of the strategy tower.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// The strategy-side vector.
    pub weights: Vec<f32>,
    /// The bias added to the dot product.
    #[serde(default)]
    pub bias: f32,
}

/// What a scored strategy's bid factor follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BidFrom {
    /// The configured bid factor, unchanged.
    #[default]
    Fixed,
    /// Proportional to pCTR.
    Ctr,
    /// Proportional to pCVR.
    Cvr,
    /// Proportional to the expected value pCTR x pCVR.
    Value,
}

/// What a scored strategy does for a user without a (current) vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Match on the audience alone, at the configured bid factor.
    #[default]
    Match,
    /// Do not match.
    Refuse,
}

/// A strategy's `[strategy.score]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scoring {
    /// The CTR head, if the strategy uses one.
    #[serde(default)]
    pub ctr: Option<Head>,
    /// The CVR head, if the strategy uses one.
    #[serde(default)]
    pub cvr: Option<Head>,
    /// Match only when pCTR is at least this.
    #[serde(default)]
    pub min_pctr: f64,
    /// Match only when pCVR is at least this.
    #[serde(default)]
    pub min_pcvr: f64,
    /// What the bid factor follows.
    #[serde(default)]
    pub bid_from: BidFrom,
    /// The score at which the bid factor equals the configured one; the
    /// factor scales with score / reference, clamped to the media's range.
    #[serde(default)]
    pub reference: f64,
    /// What to do for users without a vector of the model's version.
    #[serde(default)]
    pub fallback: Fallback,
}

impl Scoring {
    /// Checks the section against the file's model; the message names the field.
    pub fn validate(&self, model: Option<&ModelInfo>) -> Result<(), String> {
        let Some(model) = model else {
            return Err("`score` needs a `[model]` section naming the model version".into());
        };
        if self.ctr.is_none() && self.cvr.is_none() {
            return Err("`score` needs a `ctr` or a `cvr` head".into());
        }
        for (name, head) in [("ctr", &self.ctr), ("cvr", &self.cvr)] {
            if let Some(h) = head {
                if h.weights.len() != model.dims {
                    return Err(format!(
                        "`score.{name}.weights` has {} values, the model has {} dimensions",
                        h.weights.len(),
                        model.dims
                    ));
                }
                if !h.bias.is_finite() || h.weights.iter().any(|w| !w.is_finite()) {
                    return Err(format!("`score.{name}` holds a value that is not finite"));
                }
            }
        }
        for (name, v) in [("min_pctr", self.min_pctr), ("min_pcvr", self.min_pcvr)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("`score.{name}` must be within 0..=1"));
            }
        }
        if self.min_pctr > 0.0 && self.ctr.is_none() {
            return Err("`score.min_pctr` needs a `ctr` head".into());
        }
        if self.min_pcvr > 0.0 && self.cvr.is_none() {
            return Err("`score.min_pcvr` needs a `cvr` head".into());
        }
        let needs = match self.bid_from {
            BidFrom::Fixed => None,
            BidFrom::Ctr => Some(self.ctr.is_some()),
            BidFrom::Cvr => Some(self.cvr.is_some()),
            BidFrom::Value => Some(self.ctr.is_some() && self.cvr.is_some()),
        };
        if let Some(has_heads) = needs {
            if !has_heads {
                return Err("`score.bid_from` names a head the strategy does not have".into());
            }
            if !(self.reference.is_finite() && self.reference > 0.0 && self.reference <= 1.0) {
                return Err(
                    "`score.reference` must be within (0, 1] when `bid_from` is set".into(),
                );
            }
        }
        Ok(())
    }

    /// Raw logits (before calibration) of the heads present, for `user`.
    #[inline]
    pub fn logits(&self, user: &VectorView<'_>) -> Logits {
        Logits {
            ctr: self.ctr.as_ref().map(|h| user.dot(&h.weights) + h.bias),
            cvr: self.cvr.as_ref().map(|h| user.dot(&h.weights) + h.bias),
        }
    }

    /// The calibrated prediction for `user`, or `None` when the user has no
    /// vector of `model` (the strategy's [`Fallback`] applies).
    #[inline]
    pub fn predict(
        &self,
        user: Option<VectorView<'_>>,
        model: &ModelInfo,
        shift: Shift,
    ) -> Option<Prediction> {
        let user = user.filter(|u| model.produced(u))?;
        let l = self.logits(&user);
        Some(Prediction {
            pctr: l.ctr.map(|x| sigmoid(f64::from(x) + shift.ctr)),
            pcvr: l.cvr.map(|x| sigmoid(f64::from(x) + shift.cvr)),
        })
    }

    /// Whether a prediction passes the thresholds; otherwise the failing one.
    pub fn passes(&self, p: &Prediction) -> Result<(), &'static str> {
        if p.pctr.is_some_and(|v| v < self.min_pctr) {
            return Err("pctr below min_pctr");
        }
        if p.pcvr.is_some_and(|v| v < self.min_pcvr) {
            return Err("pcvr below min_pcvr");
        }
        Ok(())
    }

    /// The bid factor for a prediction, from the configured `base`, clamped
    /// to the media's range.
    pub fn bid_factor(&self, base: f64, p: &Prediction) -> f64 {
        let score = match self.bid_from {
            BidFrom::Fixed => return base,
            BidFrom::Ctr => p.pctr,
            BidFrom::Cvr => p.pcvr,
            BidFrom::Value => p.pctr.zip(p.pcvr).map(|(a, b)| a * b),
        };
        let Some(score) = score else { return base };
        let f = base * score / self.reference;
        if f.is_finite() {
            f.clamp(
                *crate::domain::limits::BID_FACTOR_RANGE.start(),
                *crate::domain::limits::BID_FACTOR_RANGE.end(),
            )
        } else {
            base
        }
    }
}

/// Raw logits of a strategy's heads for one user.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Logits {
    /// CTR head.
    pub ctr: Option<f32>,
    /// CVR head.
    pub cvr: Option<f32>,
}

/// A calibrated prediction.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Prediction {
    /// Probability of a click given an exposure.
    pub pctr: Option<f64>,
    /// Probability of a conversion given a click.
    pub pcvr: Option<f64>,
}

impl Prediction {
    /// The expected value used for ranking: pCTR x pCVR, or the head present.
    pub fn value(&self) -> Option<f64> {
        match (self.pctr, self.pcvr) {
            (Some(a), Some(b)) => Some(a * b),
            (a, b) => a.or(b),
        }
    }
}

/// The logistic function.
#[inline]
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Additive logit corrections of one strategy's heads.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Shift {
    /// Added to the CTR logit.
    pub ctr: f64,
    /// Added to the CVR logit.
    pub cvr: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::profile::{UserProfile, UserVector};

    fn model() -> ModelInfo {
        ModelInfo {
            version: "m1".into(),
            tag: crate::index::profile::model_tag("m1"),
            dims: 4,
        }
    }

    fn scoring(bid_from: BidFrom) -> Scoring {
        Scoring {
            ctr: Some(Head {
                weights: vec![1.0, 0.0, 0.0, 0.0],
                bias: -3.0,
            }),
            cvr: Some(Head {
                weights: vec![0.0, 1.0, 0.0, 0.0],
                bias: -2.0,
            }),
            min_pctr: 0.0,
            min_pcvr: 0.0,
            bid_from,
            reference: 0.01,
            fallback: Fallback::Match,
        }
    }

    fn profile_with(values: &[f32], version: &str) -> UserProfile {
        let mut p = crate::index::profile::ProfileBuilder::default()
            .build()
            .unwrap();
        p.set_vector(
            &UserVector::quantise(crate::index::profile::model_tag(version), values).unwrap(),
        )
        .unwrap();
        p
    }

    #[test]
    fn prediction_is_sigmoid_of_dot_plus_bias_within_quantisation_error() {
        let s = scoring(BidFrom::Fixed);
        let p = profile_with(&[1.0, 0.5, -0.25, 2.0], "m1");
        let got = s.predict(p.vector(), &model(), Shift::default()).unwrap();
        let want_ctr = sigmoid(1.0 - 3.0);
        let want_cvr = sigmoid(0.5 - 2.0);
        assert!((got.pctr.unwrap() - want_ctr).abs() < 0.003, "{got:?}");
        assert!((got.pcvr.unwrap() - want_cvr).abs() < 0.003, "{got:?}");
        // a shift of ln 2 doubles the odds
        let shifted = s
            .predict(
                p.vector(),
                &model(),
                Shift {
                    ctr: 2f64.ln(),
                    cvr: 0.0,
                },
            )
            .unwrap();
        let odds = |p: f64| p / (1.0 - p);
        assert!((odds(shifted.pctr.unwrap()) / odds(got.pctr.unwrap()) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn a_vector_of_another_model_or_none_is_not_scored() {
        let s = scoring(BidFrom::Fixed);
        let longer = profile_with(&[1.0, 0.5, -0.25, 2.0, 1.0], "m1");
        assert_eq!(s.predict(longer.vector(), &model(), Shift::default()), None);
        let other = profile_with(&[1.0, 0.5, -0.25, 2.0], "m0");
        assert_eq!(s.predict(other.vector(), &model(), Shift::default()), None);
        assert_eq!(
            s.predict(UserProfile::empty().vector(), &model(), Shift::default()),
            None
        );
    }

    #[test]
    fn bid_factor_scales_with_the_score_and_stays_in_the_media_range() {
        let s = scoring(BidFrom::Ctr);
        let p = |pctr| Prediction {
            pctr: Some(pctr),
            pcvr: Some(0.1),
        };
        assert!((s.bid_factor(1.0, &p(0.01)) - 1.0).abs() < 1e-12);
        assert!((s.bid_factor(1.5, &p(0.02)) - 3.0).abs() < 1e-12);
        assert_eq!(s.bid_factor(1.0, &p(0.9)), 5.0);
        assert_eq!(s.bid_factor(1.0, &p(0.0001)), 0.2);
        assert_eq!(scoring(BidFrom::Fixed).bid_factor(1.3, &p(0.9)), 1.3);
        let v = scoring(BidFrom::Value);
        assert!((v.bid_factor(1.0, &p(0.05)) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn thresholds_name_the_failing_head() {
        let mut s = scoring(BidFrom::Fixed);
        s.min_pctr = 0.05;
        s.min_pcvr = 0.2;
        let p = |a, b| Prediction {
            pctr: Some(a),
            pcvr: Some(b),
        };
        assert_eq!(s.passes(&p(0.05, 0.2)), Ok(()));
        assert_eq!(s.passes(&p(0.049, 0.5)), Err("pctr below min_pctr"));
        assert_eq!(s.passes(&p(0.5, 0.19)), Err("pcvr below min_pcvr"));
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let m = model();
        assert!(scoring(BidFrom::Value).validate(Some(&m)).is_ok());
        assert!(scoring(BidFrom::Value).validate(None).is_err());
        let mut s = scoring(BidFrom::Fixed);
        s.ctr.as_mut().unwrap().weights.pop();
        assert!(s.validate(Some(&m)).unwrap_err().contains("3 values"));
        let mut s = scoring(BidFrom::Ctr);
        s.reference = 0.0;
        assert!(s.validate(Some(&m)).unwrap_err().contains("reference"));
        let mut s = scoring(BidFrom::Fixed);
        s.cvr = None;
        s.min_pcvr = 0.1;
        assert!(s.validate(Some(&m)).unwrap_err().contains("min_pcvr"));
        let mut s = scoring(BidFrom::Fixed);
        s.ctr.as_mut().unwrap().bias = f32::NAN;
        assert!(s.validate(Some(&m)).is_err());
    }
}
