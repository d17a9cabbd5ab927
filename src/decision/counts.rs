//! Per-strategy counts of the serving set (matches, refusals, experiment
//! arms), kept in a per-thread [`Tally`] and registered once per set.

use crate::decision::DecisionEngine;
use crate::decision::tally::Tally;
use crate::domain::ids::UserId;
use crate::index::profile::{Action, Day};
use crate::strategy::StrategySet;
use crate::telemetry::{self, Refusal};

/// Where one strategy's counts are in its set's [`Tally`]. The counters
/// behind them are registered once per set (at its first counted decision,
/// so that a recorder installed after the engine was built still gets
/// them): looking a labelled counter up in the metrics registry on every
/// match would cost more than matching.
#[derive(Clone, Copy)]
pub(super) struct StrategySlots {
    pub(super) matched: u32,
    /// The first of [`Refusal::ALL`]'s slots; only for strategies with a
    /// step that can refuse (not plain ones): large sets of plain strategies
    /// would otherwise export 4 series each.
    pub(super) refused: Option<u32>,
    /// The first of the experiment arms' slots (`Experiment::labels`), and
    /// how many there are.
    pub(super) arms: (u32, u32),
}

/// A set's per-strategy counts: matches, refusals, experiment arms.
pub(super) struct StrategyCounts {
    pub(super) slots: Box<[StrategySlots]>,
    pub(super) tally: Tally,
}

impl StrategyCounts {
    pub(super) fn register(set: &StrategySet) -> Self {
        let mut counters = Vec::new();
        let mut slot = |c: metrics::Counter| {
            counters.push(c);
            (counters.len() - 1) as u32
        };
        let slots = set
            .strategies()
            .iter()
            .map(|s| {
                let matched = slot(metrics::counter!(telemetry::STRATEGY_MATCHES, "strategy" => s.id.clone()));
                let refused = (!s.is_plain()).then(|| {
                    Refusal::ALL.map(|r| slot(metrics::counter!(telemetry::STRATEGY_REFUSALS, "strategy" => s.id.clone(), "reason" => r.label())))[0]
                });
                let arms: Vec<u32> = s
                    .experiment
                    .iter()
                    .flat_map(|e| e.labels())
                    .map(|arm| slot(metrics::counter!(telemetry::EXPERIMENT_ARMS, "strategy" => s.id.clone(), "arm" => arm.to_string())))
                    .collect();
                let arms = (arms.first().copied().unwrap_or(0), arms.len() as u32);
                StrategySlots {
                    matched,
                    refused,
                    arms,
                }
            })
            .collect();
        Self {
            slots,
            tally: Tally::new(counters),
        }
    }
}

impl DecisionEngine {
    /// Counts a taken answer in the user's profile under `keys` (the feedback
    /// keys of the strategies taken whose caps count decisions) and, when the
    /// user cap counts decisions, under the answers key. After the read lock
    /// was released: this takes the shard's write lock.
    pub(super) fn count_answers(
        &self,
        set: &StrategySet,
        user: UserId,
        mut keys: Vec<crate::index::profile::ItemKey>,
        today: Day,
    ) {
        if set.counts_every_answer() {
            keys.push(crate::index::profile::ItemKey::answers());
        }
        if keys.is_empty() {
            return;
        }
        let counted = self.index.update_in_place(user, |p| {
            keys.iter()
                .try_for_each(|k| p.add_count(*k, Action::Offer, today, 1))
        });
        if let Some(Err(e)) = counted {
            // on the request path: never a log line per request at warn
            tracing::debug!(error = %e, "answer not counted toward its cap");
        }
    }
}
