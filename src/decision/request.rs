//! What a wire format hands the pipeline, and what it gets back: a validated
//! request for one ad opportunity, and the decision with its matches.

use std::sync::Arc;

use serde::Serialize;

use crate::domain::ids::DeviceKey;
use crate::domain::media::{MediaIds, MediaScope};
use crate::domain::os::Os;
use crate::telemetry::Outcome;

/// One ad opportunity, already validated.
#[derive(Debug, Clone, Copy)]
pub struct DecisionRequest<'a> {
    /// The device's ids (doubtful ones are skipped here).
    pub devices: &'a [DeviceKey],
    /// The device's OS.
    pub os: Os,
    /// The media's experiment buckets.
    pub experiments: &'a [u64],
    /// When non-empty, only these strategy ids are considered.
    pub only_strategies: &'a [&'a str],
    /// When set, only the strategies this media knows (by the ids it asks
    /// about, when it names any) are considered.
    pub media: Option<MediaScope<'a>>,
}

/// A strategy the device matched.
///
/// Its ids are `&str` borrowed from the live strategy set while a decision
/// is being answered ([`DecisionEngine::decide_with`]), and `Arc<str>` in a
/// decision kept beyond that ([`DecisionEngine::decide`]): cloning an `Arc`
/// for each of a user's twenty matches costs two atomic writes each, to
/// counts every core serving the same strategies shares.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchedStrategy<S = Arc<str>> {
    /// Our strategy id.
    pub strategy_id: S,
    /// The media-facing id (a variant's, when its experiment arm has one).
    pub target_id: S,
    /// The ids the numbered media know the strategy by.
    #[serde(skip_serializing_if = "MediaIds::is_empty")]
    pub media_ids: MediaIds,
    /// The experiment variant the request landed in, by position in the
    /// strategy's `experiment.variant` list; `None` outside an experiment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<u16>,
    /// The bid factor.
    pub bid_factor: f64,
    /// Predicted CTR, when the strategy is scored and the user has a vector.
    pub pctr: Option<f64>,
    /// Predicted CVR, likewise.
    pub pcvr: Option<f64>,
}

/// The answer for one ad opportunity (ids as in [`MatchedStrategy`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision<S = Arc<str>> {
    /// Whether to take the traffic.
    pub take: bool,
    /// Matched strategies: by expected value (pCTR x pCVR) when scored,
    /// otherwise in strategy-file order.
    pub matches: Vec<MatchedStrategy<S>>,
    /// How long the media may cache this answer, in seconds.
    pub cache_seconds: u32,
    /// The outcome, as counted in metrics.
    pub outcome: Outcome,
}

impl Decision<&str> {
    /// This decision with its ids copied out of the strategy set, to keep.
    pub fn owned(&self) -> Decision {
        Decision {
            take: self.take,
            matches: self
                .matches
                .iter()
                .map(|m| MatchedStrategy {
                    strategy_id: Arc::from(m.strategy_id),
                    target_id: Arc::from(m.target_id),
                    media_ids: m.media_ids,
                    variant: m.variant,
                    bid_factor: m.bid_factor,
                    pctr: m.pctr,
                    pcvr: m.pcvr,
                })
                .collect(),
            cache_seconds: self.cache_seconds,
            outcome: self.outcome,
        }
    }
}
