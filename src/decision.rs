//! The decision pipeline: device ids -> user -> profile -> every live
//! strategy -> answer. Wire formats (gRPC, Tencent HTTP) translate to a
//! [`DecisionRequest`] and back; nothing here knows about them.
//!
//! The hot path does at most a few hash lookups, matches under a shard read
//! lock (no await, no I/O), and allocates only the answer's match list.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::ids::DeviceKey;
use crate::index::{UserId, UserIndex};
use crate::profile::{Day, UserProfile, day_of};
use crate::strategy::{EvalContext, Os, StrategySet};
use crate::telemetry;

/// Where "today" comes from.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system clock, in a business time zone `tz_offset_secs` east of UTC.
    System {
        /// Offset of the business time zone from UTC, in seconds (UTC+8: 28800).
        tz_offset_secs: i32,
    },
    /// A fixed day, for tests and replays.
    Fixed(Day),
}

impl Clock {
    /// Today in the business time zone.
    pub fn today(&self) -> Day {
        match self {
            Self::System { tz_offset_secs } => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                day_of(now, *tz_offset_secs)
            }
            Self::Fixed(d) => *d,
        }
    }
}

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
}

/// A strategy the device matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchedStrategy {
    /// Our strategy id.
    pub strategy_id: Arc<str>,
    /// The media-facing id.
    pub target_id: Arc<str>,
    /// The bid factor.
    pub bid_factor: f64,
    /// Predicted CTR, when a model is configured.
    pub pctr: Option<f64>,
    /// Predicted CVR, when a model is configured.
    pub pcvr: Option<f64>,
}

/// The answer for one ad opportunity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Whether to take the traffic.
    pub take: bool,
    /// Matched strategies, in strategy-file order.
    pub matches: Vec<MatchedStrategy>,
    /// How long the media may cache this answer, in seconds.
    pub cache_seconds: u32,
    /// The outcome, as counted in metrics.
    pub outcome: &'static str,
}

/// Per strategy: matched, or the first clause that failed.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Strategy id.
    pub strategy_id: String,
    /// Whether it matched.
    pub matched: bool,
    /// The first clause the user failed, as written.
    pub failed_clause: Option<String>,
}

/// Why a device matched or did not match each strategy.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The user the ids resolved to.
    pub user_id: Option<UserId>,
    /// How many of the given ids were doubtful and ignored.
    pub doubtful_ids: usize,
    /// The strategy set's version.
    pub strategy_version: String,
    /// The decision itself.
    pub decision: Decision,
    /// One verdict per live strategy.
    pub verdicts: Vec<Verdict>,
}

/// Decides requests against the index and the live strategy set.
pub struct DecisionEngine {
    index: Arc<UserIndex>,
    live: ArcSwap<Live>,
    clock: Clock,
}

/// The serving strategy set with its per-strategy match counters, registered
/// once per set (at its first counted match, so that a recorder installed
/// after the engine was built still gets them): looking a labelled counter up
/// in the metrics registry on every match would cost more than matching.
struct Live {
    set: Arc<StrategySet>,
    matched: OnceLock<Box<[metrics::Counter]>>,
}

impl Live {
    fn new(set: StrategySet) -> Self {
        Self {
            set: Arc::new(set),
            matched: OnceLock::new(),
        }
    }

    /// Strategy `i`'s match counter.
    fn matched(&self, i: usize) -> Option<&metrics::Counter> {
        self.matched
            .get_or_init(|| {
                self.set
                    .strategies()
                    .iter()
                    .map(|s| {
                        metrics::counter!(telemetry::STRATEGY_MATCHES, "strategy" => s.id.clone())
                    })
                    .collect()
            })
            .get(i)
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

impl DecisionEngine {
    /// An engine over an index and an initial strategy set.
    pub fn new(index: Arc<UserIndex>, strategies: StrategySet, clock: Clock) -> Self {
        Self {
            index,
            live: ArcSwap::from_pointee(Live::new(strategies)),
            clock,
        }
    }

    /// The user index.
    pub fn index(&self) -> &Arc<UserIndex> {
        &self.index
    }

    /// The live strategy set.
    pub fn strategies(&self) -> Arc<StrategySet> {
        self.live.load().set.clone()
    }

    /// Atomically replaces the live strategy set; requests in flight finish on the old one.
    pub fn swap_strategies(&self, set: StrategySet) {
        self.live.store(Arc::new(Live::new(set)));
    }

    /// Today, per the engine's clock.
    pub fn today(&self) -> Day {
        self.clock.today()
    }

    /// Decides one request.
    pub fn decide(&self, req: &DecisionRequest<'_>) -> Decision {
        self.decide_counted(req, true)
    }

    /// Decides without counting the answer as traffic: for media test requests
    /// and explanations, which must never count toward hit rates, caps or feedback.
    pub fn decide_uncounted(&self, req: &DecisionRequest<'_>) -> Decision {
        self.decide_counted(req, false)
    }

    /// Decides; `count` says whether this is traffic (counted in metrics) or not.
    fn decide_counted(&self, req: &DecisionRequest<'_>, count: bool) -> Decision {
        let live = self.live.load();
        let set = &live.set;
        let usable = req.devices.iter().filter(|d| !d.is_doubtful()).count();
        if count && usable < req.devices.len() {
            metrics::counter!(telemetry::DOUBTFUL_IDS)
                .increment((req.devices.len() - usable) as u64);
        }
        let user = if usable == 0 {
            None
        } else {
            self.index.resolve(req.devices)
        };
        let today = self.clock.today();
        let only = restriction(set, req.only_strategies);
        SCRATCH.with(|scratch| {
            let mut hits = scratch.borrow_mut();
            hits.clear();
            let run = |profile: &UserProfile, known_user: bool, hits: &mut Vec<u32>| {
                let ctx = EvalContext {
                    profile,
                    known_user,
                    today,
                    os: req.os,
                };
                set.matching(&ctx, only.as_deref(), hits);
            };
            let known = match user {
                Some(u) => self
                    .index
                    .with_profile(u, |p| run(p, true, &mut hits))
                    .is_some(),
                None => false,
            };
            if !known && usable > 0 {
                run(&UserProfile::empty(), false, &mut hits);
            }
            let strategies = set.strategies();
            let matches: Vec<MatchedStrategy> = hits
                .iter()
                .filter_map(|&i| Some((i as usize, strategies.get(i as usize)?)))
                .map(|(i, s)| {
                    if count && let Some(matched) = live.matched(i) {
                        matched.increment(1);
                    }
                    MatchedStrategy {
                        strategy_id: s.id.clone(),
                        target_id: s.target_id.clone(),
                        bid_factor: s.bid_factor,
                        pctr: None,
                        pcvr: None,
                    }
                })
                .collect();
            let take = !matches.is_empty();
            let (outcome, cache_seconds) = if take {
                (telemetry::outcome::TAKE, set.cache.matched_seconds)
            } else if usable == 0 {
                // never let a placeholder id key the media's cache
                (telemetry::outcome::NO_USABLE_ID, 0)
            } else if known {
                (telemetry::outcome::NO_MATCH, set.cache.unmatched_seconds)
            } else {
                (
                    telemetry::outcome::UNKNOWN_DEVICE,
                    set.cache.unknown_device_seconds,
                )
            };
            Decision {
                take,
                matches,
                cache_seconds,
                outcome,
            }
        })
    }

    /// Decides a request and says, per strategy, why it matched or not.
    pub fn explain(&self, req: &DecisionRequest<'_>) -> Explanation {
        let decision = self.decide_counted(req, false);
        let set = self.strategies();
        let doubtful_ids = req.devices.iter().filter(|d| d.is_doubtful()).count();
        let user_id = self.index.resolve(req.devices);
        let today = self.clock.today();
        let verdicts_for = |profile: &UserProfile, known_user: bool| -> Vec<Verdict> {
            let ctx = EvalContext {
                profile,
                known_user,
                today,
                os: req.os,
            };
            set.strategies()
                .iter()
                .map(|s| {
                    let failed = s.first_failing_clause(&ctx);
                    Verdict {
                        strategy_id: s.id.to_string(),
                        matched: failed.is_none(),
                        failed_clause: failed.map(str::to_string),
                    }
                })
                .collect()
        };
        let verdicts = user_id
            .and_then(|u| self.index.with_profile(u, |p| verdicts_for(p, true)))
            .unwrap_or_else(|| verdicts_for(&UserProfile::empty(), false));
        Explanation {
            user_id,
            doubtful_ids,
            strategy_version: set.version.clone(),
            decision,
            verdicts,
        }
    }
}

/// Sorted strategy indexes a request is restricted to; `None` when unrestricted.
fn restriction(set: &StrategySet, ids: &[&str]) -> Option<Vec<u32>> {
    if ids.is_empty() {
        return None;
    }
    let mut idx: Vec<u32> = ids.iter().filter_map(|id| set.index_of(id)).collect();
    idx.sort_unstable();
    idx.dedup();
    Some(idx)
}
