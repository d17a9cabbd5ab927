//! The feedback ledger and the online calibration of model scores from media
//! feedback: decision-time state, kept per strategy and updated as feedback
//! arrives.
//!
//! Calibration is a Bayesian-smoothed odds correction per strategy and head:
//! feedback keeps exponentially decayed sums of what happened (clicks per
//! exposure, conversions per click) and of what the raw model predicted for
//! the same users; every `interval_seconds` the shift becomes
//! `ln((observed + α·p̄) / (predicted + α·p̄))`, `α` pseudo-events of prior
//! belief that the model is right. For the small rates of ads this is the
//! intercept of Platt scaling with the slope fixed at 1; it needs no stored
//! per-event history and converges as fast as the decay allows. The shift is
//! applied by [`crate::strategy::score::Scoring::predict`].

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::domain::field::FieldError;
use crate::domain::taxonomy::TagCode;
use crate::index::profile::ItemKey;
use crate::strategy::score::{Shift, sigmoid};

/// The `[calibration]` section of the engine config.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrationConfig {
    /// Whether shifts are recomputed at all (observed vs predicted is reported either way).
    pub enabled: bool,
    /// How often shifts are recomputed, seconds.
    pub interval_seconds: u64,
    /// Half-life of the decayed feedback sums, seconds.
    pub half_life_seconds: u64,
    /// Prior strength in pseudo-events (see the module docs).
    pub prior_events: f64,
    /// The largest shift applied either way, in logits (e^3 = 20x odds).
    pub max_shift: f64,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_seconds: 60,
            half_life_seconds: 6 * 3600,
            prior_events: 20.0,
            max_shift: 3.0,
        }
    }
}

impl CalibrationConfig {
    /// Checks ranges; the message names the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.interval_seconds == 0 {
            return Err(FieldError::new(
                "calibration.interval_seconds",
                "must be at least 1",
            ));
        }
        if self.half_life_seconds == 0 {
            return Err(FieldError::new(
                "calibration.half_life_seconds",
                "must be at least 1",
            ));
        }
        if !(self.prior_events.is_finite() && self.prior_events >= 0.0) {
            return Err(FieldError::new("calibration.prior_events", "must be >= 0"));
        }
        if !(self.max_shift.is_finite() && self.max_shift >= 0.0) {
            return Err(FieldError::new("calibration.max_shift", "must be >= 0"));
        }
        Ok(())
    }
}

/// A feedback event's kind, as the calibration counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An ad of the strategy was shown.
    Exposure,
    /// It was clicked.
    Click,
    /// The click converted.
    Conversion,
}

/// What the model said about the user a feedback event is about.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scored {
    /// The raw logit of the head the event speaks to (CTR for exposures,
    /// CVR for clicks); `None` when the strategy lacks that head.
    pub logit: Option<f64>,
    /// The calibrated probability served for it at the time.
    pub served: Option<f64>,
}

/// Raw logits of scored events, decayed, in bins of 1/8 logit over
/// [`LOGIT_RANGE`], each keeping its weight and weighted logit sum (so a
/// bin's mass sits at its mean, not its centre). Enough to solve exactly for
/// the shift that makes the model's expected count equal the observed one.
#[derive(Debug, Clone, PartialEq)]
pub struct LogitBins(Box<[[f64; 2]]>);

/// The logits the calibration histogram spans; beyond, the edge bins take them.
pub const LOGIT_RANGE: std::ops::Range<f64> = -12.0..4.0;
const BIN_WIDTH: f64 = 0.125;

impl Default for LogitBins {
    fn default() -> Self {
        let n = ((LOGIT_RANGE.end - LOGIT_RANGE.start) / BIN_WIDTH) as usize;
        Self(vec![[0.0; 2]; n].into_boxed_slice())
    }
}

impl LogitBins {
    fn add(&mut self, logit: f64, w: f64) {
        let last = self.0.len() - 1;
        let i = (((logit - LOGIT_RANGE.start) / BIN_WIDTH).floor().max(0.0) as usize).min(last);
        self.0[i][0] += w;
        self.0[i][1] += w * logit;
    }

    fn scale(&mut self, f: f64) {
        for b in self.0.iter_mut() {
            b[0] *= f;
            b[1] *= f;
        }
    }

    /// Expected events if every logit were shifted by `b`, and the mass.
    fn expected(&self, b: f64) -> (f64, f64) {
        self.0
            .iter()
            .filter(|[w, _]| *w > 0.0)
            .fold((0.0, 0.0), |(e, n), [w, wl]| {
                (e + w * sigmoid(wl / w + b), n + w)
            })
    }

    /// The shift `b` with `Σ w σ(l + b) + α σ(l̄ + b) = observed + α σ(l̄)`:
    /// the intercept of Platt scaling, with `α` pseudo-events of prior at
    /// the mean raw prediction (`l̄` its logit). Bisection: the left side
    /// grows with `b`.
    fn solve(&self, observed: f64, prior: f64, max_shift: f64) -> f64 {
        let (raw, n) = self.expected(0.0);
        if n <= 0.0 || !observed.is_finite() {
            return 0.0;
        }
        let mean = (raw / n).clamp(1e-9, 1.0 - 1e-9);
        let lbar = (mean / (1.0 - mean)).ln();
        let target = observed + prior * mean;
        let f = |b: f64| self.expected(b).0 + prior * sigmoid(lbar + b) - target;
        let (mut lo, mut hi) = (-max_shift, max_shift);
        if f(lo) >= 0.0 {
            return lo;
        }
        if f(hi) <= 0.0 {
            return hi;
        }
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if f(mid) < 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }
}

/// Decayed sums of one strategy's feedback. All sums share one reference
/// time, so their ratios do not depend on when they are read.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FeedbackSums {
    /// Exposures.
    pub exposures: f64,
    /// Clicks.
    pub clicks: f64,
    /// Conversions.
    pub conversions: f64,
    /// Exposures of users the model scored.
    pub scored_exposures: f64,
    /// Clicks of those users.
    pub scored_clicks: f64,
    /// Conversions of those users.
    pub scored_conversions: f64,
    /// Scored exposures the CTR head gave a prediction for.
    pub predicted_exposures: f64,
    /// Scored clicks the CVR head gave a prediction for.
    pub predicted_clicks: f64,
    /// Sum of raw pCTR over scored exposures.
    pub raw_pctr: f64,
    /// Sum of calibrated pCTR over scored exposures (with the shift in force
    /// when the feedback arrived, an approximation of what was served).
    pub served_pctr: f64,
    /// Sum of raw pCVR over scored clicks.
    pub raw_pcvr: f64,
    /// Sum of calibrated pCVR over scored clicks.
    pub served_pcvr: f64,
    /// Raw CTR logits of scored exposures.
    #[serde(skip)]
    ctr_logits: Option<LogitBins>,
    /// Raw CVR logits of scored clicks.
    #[serde(skip)]
    cvr_logits: Option<LogitBins>,
    /// The reference time of the sums, Unix ms.
    #[serde(skip)]
    at_ms: i64,
}

impl FeedbackSums {
    fn scale(&mut self, f: f64) {
        for v in [
            &mut self.exposures,
            &mut self.clicks,
            &mut self.conversions,
            &mut self.scored_exposures,
            &mut self.scored_clicks,
            &mut self.scored_conversions,
            &mut self.predicted_exposures,
            &mut self.predicted_clicks,
            &mut self.raw_pctr,
            &mut self.served_pctr,
            &mut self.raw_pcvr,
            &mut self.served_pcvr,
        ] {
            *v *= f;
        }
        for bins in [&mut self.ctr_logits, &mut self.cvr_logits]
            .into_iter()
            .flatten()
        {
            bins.scale(f);
        }
    }

    /// Adds one event at `time_ms` with weight decayed to the sums' reference time.
    fn add(&mut self, o: Outcome, scored: Option<Scored>, time_ms: i64, half_life_ms: f64) {
        self.add_with(o, scored, time_ms, half_life_ms, true);
    }

    /// As [`FeedbackSums::add`]; `bin`: also keep the logit (the sums that
    /// calibration solves over; per-group sums only report).
    fn add_with(
        &mut self,
        o: Outcome,
        scored: Option<Scored>,
        time_ms: i64,
        half_life_ms: f64,
        bin: bool,
    ) {
        let w = if time_ms >= self.at_ms {
            let f = decay(time_ms - self.at_ms, half_life_ms);
            if f < 1.0 {
                self.scale(f);
            }
            self.at_ms = time_ms;
            1.0
        } else {
            decay(self.at_ms - time_ms, half_life_ms)
        };
        let (all, scored_n, predicted) = match o {
            Outcome::Exposure => (
                &mut self.exposures,
                &mut self.scored_exposures,
                Some((
                    &mut self.predicted_exposures,
                    &mut self.raw_pctr,
                    &mut self.served_pctr,
                    &mut self.ctr_logits,
                )),
            ),
            Outcome::Click => (
                &mut self.clicks,
                &mut self.scored_clicks,
                Some((
                    &mut self.predicted_clicks,
                    &mut self.raw_pcvr,
                    &mut self.served_pcvr,
                    &mut self.cvr_logits,
                )),
            ),
            Outcome::Conversion => (&mut self.conversions, &mut self.scored_conversions, None),
        };
        *all += w;
        let Some(scored) = scored else { return };
        *scored_n += w;
        if let (Some((n_predicted, raw_sum, served_sum, bins)), Some(logit)) =
            (predicted, scored.logit)
            && logit.is_finite()
        {
            *n_predicted += w;
            let raw = sigmoid(logit);
            *raw_sum += w * raw;
            *served_sum += w * scored.served.unwrap_or(raw);
            if bin {
                bins.get_or_insert_with(LogitBins::default).add(logit, w);
            }
        }
    }

    /// Observed CTR (clicks per exposure), if any exposure was seen.
    pub fn observed_ctr(&self) -> Option<f64> {
        (self.exposures > 0.0).then(|| self.clicks / self.exposures)
    }

    /// Observed CVR (conversions per click), if any click was seen.
    pub fn observed_cvr(&self) -> Option<f64> {
        (self.clicks > 0.0).then(|| self.conversions / self.clicks)
    }

    /// Mean pCTR served to exposed users the model scored.
    pub fn predicted_ctr(&self) -> Option<f64> {
        (self.predicted_exposures > 0.0).then(|| self.served_pctr / self.predicted_exposures)
    }

    /// Mean pCVR served to clicking users the model scored.
    pub fn predicted_cvr(&self) -> Option<f64> {
        (self.predicted_clicks > 0.0).then(|| self.served_pcvr / self.predicted_clicks)
    }

    /// The shifts that make the raw model's expected clicks (conversions)
    /// over the scored exposures (clicks) equal those observed.
    pub fn shift(&self, prior_events: f64, max_shift: f64) -> Shift {
        let one = |bins: &Option<LogitBins>, observed: f64| {
            bins.as_ref()
                .map_or(0.0, |b| b.solve(observed, prior_events, max_shift))
        };
        Shift {
            ctr: one(&self.ctr_logits, self.scored_clicks),
            cvr: one(&self.cvr_logits, self.scored_conversions),
        }
    }
}

fn decay(dt_ms: i64, half_life_ms: f64) -> f64 {
    (-(dt_ms as f64) / half_life_ms * std::f64::consts::LN_2).exp()
}

/// Decayed feedback sums per strategy (by feedback key, so they survive
/// strategy-file reloads that keep the id), and per strategy and target
/// group (a tag), for reports.
#[derive(Debug)]
pub struct FeedbackLedger {
    half_life_ms: f64,
    sums: Mutex<HashMap<ItemKey, FeedbackSums>>,
    groups: Mutex<HashMap<ItemKey, HashMap<TagCode, FeedbackSums>>>,
}

impl FeedbackLedger {
    /// An empty ledger whose sums halve every `half_life_seconds`.
    pub fn new(half_life_seconds: u64) -> Self {
        Self {
            half_life_ms: (half_life_seconds.max(1) as f64) * 1000.0,
            sums: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// Records one feedback event about a user of target group `group` (if
    /// known); `scored` is what the model said of the user, `None` when the
    /// user was not scored.
    pub fn record(
        &self,
        strategy: ItemKey,
        group: Option<TagCode>,
        o: Outcome,
        scored: Option<Scored>,
        time_ms: i64,
    ) {
        if let Ok(mut sums) = self.sums.lock() {
            sums.entry(strategy)
                .or_default()
                .add(o, scored, time_ms, self.half_life_ms);
        }
        if let Some(g) = group
            && let Ok(mut groups) = self.groups.lock()
        {
            groups
                .entry(strategy)
                .or_default()
                .entry(g)
                .or_default()
                .add_with(o, scored, time_ms, self.half_life_ms, false);
        }
    }

    /// The sums of one strategy per target group, by group code.
    pub fn group_sums(&self, strategy: ItemKey) -> Vec<(TagCode, FeedbackSums)> {
        let Ok(groups) = self.groups.lock() else {
            return Vec::new();
        };
        let mut out: Vec<(TagCode, FeedbackSums)> = groups
            .get(&strategy)
            .map(|m| m.iter().map(|(g, s)| (*g, s.clone())).collect())
            .unwrap_or_default();
        out.sort_by_key(|(g, _)| *g);
        out
    }

    /// The sums of one strategy.
    pub fn sums(&self, strategy: ItemKey) -> Option<FeedbackSums> {
        self.sums.lock().ok()?.get(&strategy).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(p: f64) -> Option<Scored> {
        Some(Scored {
            logit: Some((p / (1.0 - p)).ln()),
            served: Some(p),
        })
    }

    fn logit(p: f64) -> f64 {
        (p / (1.0 - p)).ln()
    }

    #[test]
    fn calibration_recovers_a_constant_miscalibration() {
        // the raw model predicts 2 % where users click at 4 %: after enough
        // feedback the shift doubles the odds (ln 2 for small rates)
        let key = ItemKey::strategy("s");
        let mut t = 1_795_406_400_000;
        // feedback about users the model did not score moves nothing
        let ledger = FeedbackLedger::new(3600);
        for i in 0..20_000 {
            ledger.record(key, None, Outcome::Exposure, None, t);
            if i % 25 == 0 {
                ledger.record(key, None, Outcome::Click, None, t);
            }
            t += 10;
        }
        let sums = ledger.sums(key).unwrap();
        assert!(sums.observed_ctr().unwrap() > 0.03);
        assert_eq!(sums.shift(20.0, 3.0), Shift::default(), "{sums:?}");
        let ledger = FeedbackLedger::new(3600);
        for i in 0..20_000 {
            ledger.record(key, None, Outcome::Exposure, sc(0.02), t);
            if i % 25 == 0 {
                ledger.record(key, None, Outcome::Click, sc(0.1), t);
            }
            t += 10;
        }
        let sums = ledger.sums(key).unwrap();
        assert!(
            (sums.observed_ctr().unwrap() - 0.04).abs() < 1e-3,
            "{sums:?}"
        );
        assert!((sums.predicted_ctr().unwrap() - 0.02).abs() < 1e-9);
        // the shift moves the raw 2 % to the observed 4 % (in logits, exactly)
        let shift = sums.shift(20.0, 3.0);
        let want = logit(sums.observed_ctr().unwrap()) - logit(0.02);
        assert!((shift.ctr - want).abs() < 1e-3, "{shift:?} vs {want}");
        // the prior pulls a small sample towards no correction
        let small = FeedbackLedger::new(3600);
        for i in 0..100 {
            small.record(key, None, Outcome::Exposure, sc(0.02), t + i);
        }
        small.record(key, None, Outcome::Click, sc(0.1), t + 100);
        small.record(key, None, Outcome::Click, sc(0.1), t + 101);
        let s = small.sums(key).unwrap().shift(20.0, 3.0).ctr;
        assert!(s > 0.0 && s < logit(0.02) - logit(0.01), "{s}");
    }

    #[test]
    fn old_feedback_decays_so_calibration_follows_change() {
        let ledger = FeedbackLedger::new(60);
        let key = ItemKey::strategy("s");
        let t0 = 1_795_406_400_000;
        // an hour of 1 % clicks, then an hour of 4 %
        for (start, every) in [(t0, 100), (t0 + 3_600_000, 25)] {
            for i in 0..3600 {
                let t = start + i * 1000;
                ledger.record(key, None, Outcome::Exposure, sc(0.01), t);
                if i % every == 0 {
                    ledger.record(key, None, Outcome::Click, sc(0.1), t);
                }
            }
        }
        // the first hour (1 %) has decayed away: the rate is the second's
        // (clicks every 25 s weighted towards the click-less last seconds)
        let ctr = ledger.sums(key).unwrap().observed_ctr().unwrap();
        assert!((0.03..=0.045).contains(&ctr), "{ctr}");
        // out-of-order events count with their decayed weight
        let late = FeedbackLedger::new(60);
        late.record(key, None, Outcome::Exposure, None, t0 + 120_000);
        late.record(key, None, Outcome::Exposure, None, t0);
        let e = late.sums(key).unwrap().exposures;
        assert!((e - 1.25).abs() < 1e-9, "{e}");
    }

    #[test]
    fn shifts_are_bounded_and_finite() {
        let mut s = FeedbackSums::default();
        s.add(Outcome::Exposure, sc(1e-9), 0, 1000.0);
        for _ in 0..1000 {
            s.add(Outcome::Click, sc(0.5), 0, 1000.0);
        }
        let sh = s.shift(0.0, 3.0);
        assert_eq!(sh.ctr, 3.0);
        assert!(sh.cvr.is_finite());
    }

    #[test]
    fn the_shift_is_exact_for_a_spread_of_predictions_where_a_ratio_is_not() {
        // half the users at 10 %, half at 40 %, all clicking at odds x 2:
        // the solved shift is ln 2, where scaling probabilities would not be
        let mut s = FeedbackSums::default();
        let odds2 = |p: f64| sigmoid(logit(p) + 2f64.ln());
        for p in [0.1, 0.4] {
            for _ in 0..1000 {
                s.add(Outcome::Exposure, sc(p), 0, 1e9);
            }
        }
        s.scored_clicks = 1000.0 * (odds2(0.1) + odds2(0.4));
        s.clicks = s.scored_clicks;
        let sh = s.shift(0.0, 3.0);
        assert!((sh.ctr - 2f64.ln()).abs() < 1e-6, "{sh:?}");
    }
}
