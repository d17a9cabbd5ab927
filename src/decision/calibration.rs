//! What the feedback loop reports per strategy: observed against predicted
//! rates and the shift calibration applies, as JSON for `/calibration` and as
//! Prometheus gauges written from the live set at each scrape.

use std::sync::Arc;

use crate::decision::DecisionEngine;
use crate::decision::ledger::{CalibrationConfig, FeedbackLedger};
use crate::strategy::StrategySet;
use crate::telemetry;
use serde::Serialize;

use crate::decision::ledger::FeedbackSums;
use crate::strategy::score::Shift;
use crate::telemetry::{MODEL_CALIBRATION_SHIFT, MODEL_OBSERVED_RATE, MODEL_PREDICTED_RATE};

/// Observed vs predicted rates of one strategy, for `/metrics` and the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationRow {
    /// Strategy id.
    pub strategy_id: String,
    /// Whether the strategy is scored by the model.
    pub scored: bool,
    /// Decayed feedback sums.
    pub sums: FeedbackSums,
    /// Clicks per exposure.
    pub observed_ctr: Option<f64>,
    /// Mean pCTR served to exposed users.
    pub predicted_ctr: Option<f64>,
    /// Conversions per click.
    pub observed_cvr: Option<f64>,
    /// Mean pCVR served to clicking users.
    pub predicted_cvr: Option<f64>,
    /// The logit shift now applied.
    pub shift: Shift,
    /// The same rates per target group of the users feedback was about
    /// (empty from [`DecisionEngine::calibration_rates`]).
    pub by_group: Vec<GroupRates>,
}

/// Observed vs predicted rates of one strategy within one target group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupRates {
    /// The group's name (`urban_family`).
    pub group: String,
    /// Decayed exposures.
    pub exposures: f64,
    /// Clicks per exposure.
    pub observed_ctr: Option<f64>,
    /// Mean pCTR served to exposed users.
    pub predicted_ctr: Option<f64>,
    /// Conversions per click.
    pub observed_cvr: Option<f64>,
    /// Mean pCVR served to clicking users.
    pub predicted_cvr: Option<f64>,
}

/// Appends to `out`, in the Prometheus text format, the calibration gauges of
/// the strategies in `rows` (observed and predicted rates, the applied shift).
///
/// Written from the live set at each scrape instead of kept in the exporter,
/// whose series cannot be removed: a strategy taken out of the set would
/// otherwise go on being reported with its last rates, as if still served.
pub fn write_calibration(out: &mut String, rows: &[CalibrationRow]) {
    use std::fmt::Write;
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    type Pick = fn(&CalibrationRow) -> [Option<f64>; 2];
    let families: [(&str, &str, Pick); 3] = [
        (
            MODEL_OBSERVED_RATE,
            "Observed rate from decayed feedback, by strategy and rate",
            |r| [r.observed_ctr, r.observed_cvr],
        ),
        (
            MODEL_PREDICTED_RATE,
            "Mean calibrated prediction served to the users feedback is about, by strategy and rate",
            |r| [r.predicted_ctr, r.predicted_cvr],
        ),
        (
            MODEL_CALIBRATION_SHIFT,
            "Logit shift applied by calibration, by strategy and rate",
            |r| {
                if r.scored {
                    [Some(r.shift.ctr), Some(r.shift.cvr)]
                } else {
                    [None, None]
                }
            },
        ),
    ];
    for (name, help, pick) in families {
        let mut header = false;
        for r in rows {
            for (rate, value) in ["ctr", "cvr"].into_iter().zip(pick(r)) {
                let Some(v) = value else { continue };
                if !header {
                    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                    header = true;
                }
                let _ = writeln!(
                    out,
                    "{name}{{strategy=\"{}\",rate=\"{rate}\"}} {}",
                    escape_label(&r.strategy_id),
                    sample(v)
                );
            }
        }
    }
}

/// A label value escaped for the text format (backslash, quote, newline).
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value as the text format spells it (`+Inf`, `-Inf`, `NaN`).
fn sample(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

impl DecisionEngine {
    /// Recomputes every scored strategy's calibration shift from the
    /// feedback ledger (when calibration is enabled). Runs on the configured
    /// cadence and on demand from the admin API; requests in flight keep the
    /// old shifts.
    pub fn recalibrate(&self) {
        let live = self.live.load();
        let shifts = shifts_for(&live.set, &self.ledger, &self.calibration);
        live.shifts.store(Arc::new(shifts));
        metrics::counter!(telemetry::MODEL_RECALIBRATIONS).increment(1);
    }

    /// Observed vs predicted rates and the applied shift, per live strategy
    /// that is scored or has feedback, each with its rates per target group.
    pub fn calibration_report(&self) -> Vec<CalibrationRow> {
        self.calibration_rows(true)
    }

    /// [`Self::calibration_report`] without the rates per target group
    /// (`by_group` left empty): what the metrics endpoint writes as gauges
    /// at every scrape (see [`calibration::write_calibration`]), without
    /// taking the ledger's group lock once per strategy.
    pub fn calibration_rates(&self) -> Vec<CalibrationRow> {
        self.calibration_rows(false)
    }

    fn calibration_rows(&self, by_group: bool) -> Vec<CalibrationRow> {
        let live = self.live.load();
        let shifts = live.shifts.load();
        live.set
            .strategies()
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let sums = self.ledger.sums(s.feedback_key);
                if sums.is_none() && s.score.is_none() {
                    return None;
                }
                let sums = sums.unwrap_or_default();
                Some(CalibrationRow {
                    strategy_id: s.id.to_string(),
                    scored: s.score.is_some(),
                    observed_ctr: sums.observed_ctr(),
                    predicted_ctr: sums.predicted_ctr(),
                    observed_cvr: sums.observed_cvr(),
                    predicted_cvr: sums.predicted_cvr(),
                    shift: shifts.get(i).copied().unwrap_or_default(),
                    by_group: if by_group {
                        self.ledger.group_sums(s.feedback_key)
                    } else {
                        Vec::new()
                    }
                    .into_iter()
                    .map(|(g, x)| GroupRates {
                        group: self
                            .groups
                            .get()
                            .and_then(|(_, t)| t.name_of(g))
                            .map_or_else(|| format!("#{g}"), |(_, v)| v.to_string()),
                        exposures: x.exposures,
                        observed_ctr: x.observed_ctr(),
                        predicted_ctr: x.predicted_ctr(),
                        observed_cvr: x.observed_cvr(),
                        predicted_cvr: x.predicted_cvr(),
                    })
                    .collect(),
                    sums,
                })
            })
            .collect()
    }
}

/// The shifts of a set's strategies from the ledger (zero when disabled).
pub(super) fn shifts_for(
    set: &StrategySet,
    ledger: &FeedbackLedger,
    cfg: &CalibrationConfig,
) -> Box<[Shift]> {
    set.strategies()
        .iter()
        .map(|s| {
            if !cfg.enabled || s.score.is_none() {
                return Shift::default();
            }
            ledger
                .sums(s.feedback_key)
                .map(|x| x.shift(cfg.prior_events, cfg.max_shift))
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, scored: bool, observed_ctr: Option<f64>) -> CalibrationRow {
        CalibrationRow {
            strategy_id: id.to_string(),
            scored,
            sums: FeedbackSums::default(),
            observed_ctr,
            predicted_ctr: None,
            observed_cvr: None,
            predicted_cvr: Some(f64::INFINITY),
            shift: Shift {
                ctr: -0.5,
                cvr: 0.0,
            },
            by_group: Vec::new(),
        }
    }

    #[test]
    fn calibration_gauges_are_written_only_for_the_rows_given_and_escaped() {
        let mut out = String::new();
        write_calibration(
            &mut out,
            &[
                row("scored", true, Some(0.25)),
                row("odd\"id\\\n", false, None),
            ],
        );
        let want = [
            "# HELP rta_model_observed_rate Observed rate from decayed feedback, by strategy and rate",
            "# TYPE rta_model_observed_rate gauge",
            r#"rta_model_observed_rate{strategy="scored",rate="ctr"} 0.25"#,
            "# HELP rta_model_predicted_rate Mean calibrated prediction served to the users feedback is about, by strategy and rate",
            "# TYPE rta_model_predicted_rate gauge",
            r#"rta_model_predicted_rate{strategy="scored",rate="cvr"} +Inf"#,
            r#"rta_model_predicted_rate{strategy="odd\"id\\\n",rate="cvr"} +Inf"#,
            "# HELP rta_model_calibration_shift Logit shift applied by calibration, by strategy and rate",
            "# TYPE rta_model_calibration_shift gauge",
            r#"rta_model_calibration_shift{strategy="scored",rate="ctr"} -0.5"#,
            r#"rta_model_calibration_shift{strategy="scored",rate="cvr"} 0"#,
        ];
        assert_eq!(out.lines().collect::<Vec<_>>(), want);
        let mut none = String::new();
        write_calibration(&mut none, &[]);
        assert_eq!(none, "", "no strategy, no family");
    }
}
