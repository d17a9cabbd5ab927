//! The decision pipeline: device ids -> blacklist -> user -> profile ->
//! every live strategy -> caps, model score, experiment arm -> answer. Wire
//! formats (gRPC, Tencent HTTP) translate to a [`DecisionRequest`] and back;
//! nothing here knows about them.
//!
//! The hot path does at most a few hash lookups, matches under a shard read
//! lock (no await, no I/O), and allocates only the answer's match list.
//! Strategies without score, cap or experiment skip the settling step; an
//! empty blacklist with its rate rule off costs one atomic load.
//!
//! The engine also closes the feedback loop ([`EventObserver`]): media
//! feedback updates the model's calibration ledger and the anti-cheat rules,
//! and control events edit the blacklist.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;

pub mod blacklist;
pub mod calibration;
pub mod observer;
pub mod tally;

use crate::decision::blacklist::{Blacklist, BlacklistConfig, Listed, Reason};
pub use crate::decision::calibration::{CalibrationRow, GroupRates};
use crate::decision::observer::{ControlEvent, EventObserver, FeedbackEvent, Subject};
use crate::decision::tally::Tally;
pub use crate::domain::calendar::Clock;
use crate::domain::ids::DeviceKey;
use crate::domain::taxonomy::Taxonomy;
use crate::index::profile::{Action, Day, UserProfile};
use crate::index::{UserId, UserIndex};
use crate::strategy::experiment::{self, Arm};
use crate::strategy::frequency::CapState;
use crate::strategy::score::{
    CalibrationConfig, Fallback, FeedbackLedger, Outcome, Prediction, Scored, Shift,
};
use crate::strategy::{EvalContext, Os, Strategy, StrategySet};
use crate::telemetry;

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
    pub outcome: &'static str,
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

/// Why a strategy whose audience matched was not taken (a metric label).
pub mod refusal {
    /// The user's exposures to the strategy reached its cap.
    pub const CAP: &str = "cap";
    /// The model's score is below the strategy's threshold.
    pub const SCORE: &str = "score";
    /// The user has no vector of the model and the strategy's fallback refuses.
    pub const NO_VECTOR: &str = "no_vector";
    /// The user is in the strategy's experiment holdout.
    pub const HOLDOUT: &str = "holdout";
    /// All of them, in counter order.
    pub const ALL: [&str; 4] = [CAP, SCORE, NO_VECTOR, HOLDOUT];
}

/// Per strategy: matched, or the first clause that failed, and what the
/// settling steps said.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Strategy id.
    pub strategy_id: String,
    /// Whether it was taken.
    pub matched: bool,
    /// The first clause the user failed, as written.
    pub failed_clause: Option<String>,
    /// The audience matched but a later step refused ([`refusal`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<&'static str>,
    /// The user against the strategy's frequency cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap: Option<CapState>,
    /// The model's calibrated prediction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<Prediction>,
    /// The strategy is scored but the user has no vector of the model.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub missing_vector: bool,
    /// The experiment arm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arm: Option<String>,
    /// The bid factor it would be taken at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bid_factor: Option<f64>,
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
    /// Why the request is refused outright, if it is blacklisted.
    pub blacklisted: Option<Reason>,
    /// The user against the overall frequency cap, if one is configured.
    pub user_cap: Option<CapState>,
    /// The user's vector: its dimensions, and whether it is of the live model.
    pub vector: Option<VectorInfo>,
    /// The decision itself.
    pub decision: Decision,
    /// One verdict per live strategy.
    pub verdicts: Vec<Verdict>,
}

/// A user's vector, as `explain` shows it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct VectorInfo {
    /// Dimensions.
    pub dims: usize,
    /// Whether it was produced by the strategy file's model version.
    pub current_model: bool,
}

/// Decides requests against the index and the live strategy set.
pub struct DecisionEngine {
    index: Arc<UserIndex>,
    live: ArcSwap<Live>,
    clock: Clock,
    blacklist: Arc<Blacklist>,
    ledger: FeedbackLedger,
    calibration: CalibrationConfig,
    /// The tag system feedback is broken down by, with its vocabulary.
    groups: OnceLock<(u32, Arc<Taxonomy>)>,
}

/// Where one strategy's counts are in its set's [`Tally`]. The counters
/// behind them are registered once per set (at its first counted decision,
/// so that a recorder installed after the engine was built still gets
/// them): looking a labelled counter up in the metrics registry on every
/// match would cost more than matching.
#[derive(Clone, Copy)]
struct StrategySlots {
    matched: u32,
    /// The first of [`refusal::ALL`]'s slots; only for strategies with a
    /// step that can refuse (not plain ones): large sets of plain strategies
    /// would otherwise export 4 series each.
    refused: Option<u32>,
    /// The first of the experiment arms' slots (`Experiment::labels`), and
    /// how many there are.
    arms: (u32, u32),
}

/// A set's per-strategy counts: matches, refusals, experiment arms.
struct StrategyCounts {
    slots: Box<[StrategySlots]>,
    tally: Tally,
}

impl StrategyCounts {
    fn register(set: &StrategySet) -> Self {
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
                    refusal::ALL.map(|r| slot(metrics::counter!(telemetry::STRATEGY_REFUSALS, "strategy" => s.id.clone(), "reason" => r)))[0]
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

/// The serving strategy set with its counters and calibration.
struct Live {
    set: Arc<StrategySet>,
    counts: OnceLock<StrategyCounts>,
    /// Per strategy, the logit shift of its heads.
    shifts: ArcSwap<Box<[Shift]>>,
}

impl Live {
    fn new(set: StrategySet, shifts: Box<[Shift]>) -> Self {
        Self {
            set: Arc::new(set),
            counts: OnceLock::new(),
            shifts: ArcSwap::from_pointee(shifts),
        }
    }

    /// The set's per-strategy counts, registered at the first call.
    fn counts(&self) -> &StrategyCounts {
        self.counts
            .get_or_init(|| StrategyCounts::register(&self.set))
    }
}

/// What settling one audience match came to.
#[derive(Debug, Default)]
struct Settled<'s> {
    taken: Option<MatchedStrategy<&'s str>>,
    refused: Option<&'static str>,
    cap: Option<CapState>,
    score: Option<Prediction>,
    missing_vector: bool,
    arm: Option<Arm>,
}

thread_local! {
    static SCRATCH: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

impl DecisionEngine {
    /// An engine over an index and an initial strategy set, with the default
    /// blacklist rules (all off but media fraud reports) and calibration.
    pub fn new(index: Arc<UserIndex>, strategies: StrategySet, clock: Clock) -> Self {
        Self::with_rules(
            index,
            strategies,
            clock,
            BlacklistConfig::default(),
            CalibrationConfig::default(),
        )
    }

    /// An engine with configured blacklist rules and calibration.
    pub fn with_rules(
        index: Arc<UserIndex>,
        strategies: StrategySet,
        clock: Clock,
        blacklist: BlacklistConfig,
        calibration: CalibrationConfig,
    ) -> Self {
        let ledger = FeedbackLedger::new(calibration.half_life_seconds);
        let shifts = shifts_for(&strategies, &ledger, &calibration);
        Self {
            index,
            live: ArcSwap::from_pointee(Live::new(strategies, shifts)),
            clock,
            blacklist: Arc::new(Blacklist::new(blacklist)),
            ledger,
            calibration,
            groups: OnceLock::new(),
        }
    }

    /// Breaks feedback down by the user's tag of `system` (the target group)
    /// in calibration reports; set once, at start. False if `system` is not
    /// in the taxonomy or a system was already set.
    pub fn group_feedback_by(&self, taxonomy: Arc<Taxonomy>, system: &str) -> bool {
        match taxonomy.system(system) {
            Some(id) => self.groups.set((id, taxonomy)).is_ok(),
            None => false,
        }
    }

    /// The user index.
    pub fn index(&self) -> &Arc<UserIndex> {
        &self.index
    }

    /// The anti-cheat blacklist.
    pub fn blacklist(&self) -> &Arc<Blacklist> {
        &self.blacklist
    }

    /// The engine's clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The live strategy set.
    pub fn strategies(&self) -> Arc<StrategySet> {
        self.live.load().set.clone()
    }

    /// Atomically replaces the live strategy set; requests in flight finish on
    /// the old one. Calibration carries over to strategies that keep their id.
    pub fn swap_strategies(&self, set: StrategySet) {
        let shifts = shifts_for(&set, &self.ledger, &self.calibration);
        self.live.store(Arc::new(Live::new(set, shifts)));
    }

    /// Today, per the engine's clock.
    pub fn today(&self) -> Day {
        self.clock.today()
    }

    /// Adds the per-strategy counts of the serving set (matches, refusals,
    /// experiment arms) gathered since the last call to the metrics
    /// exporter's counters: call before rendering metrics. A replaced set
    /// adds its last counts when its last decision is done.
    pub fn publish_counts(&self) {
        if let Some(c) = self.live.load().counts.get() {
            c.tally.publish();
        }
    }

    /// Decides one request and returns the decision to keep.
    pub fn decide(&self, req: &DecisionRequest<'_>) -> Decision {
        self.decide_counted(req, true, |d| d.owned())
    }

    /// Decides without counting the answer as traffic: for media test requests
    /// and explanations, which must never count toward hit rates, caps,
    /// request-rate rules or experiment arms.
    pub fn decide_uncounted(&self, req: &DecisionRequest<'_>) -> Decision {
        self.decide_counted(req, false, |d| d.owned())
    }

    /// Decides one request and hands the decision, its ids borrowed from
    /// the live strategy set, to `answer`: what serving does, encoding the
    /// answer without copying an id or touching a shared count.
    pub fn decide_with<R>(
        &self,
        req: &DecisionRequest<'_>,
        answer: impl FnOnce(&Decision<&str>) -> R,
    ) -> R {
        self.decide_counted(req, true, answer)
    }

    /// [`DecisionEngine::decide_with`], not counted as traffic (see
    /// [`DecisionEngine::decide_uncounted`]).
    pub fn decide_uncounted_with<R>(
        &self,
        req: &DecisionRequest<'_>,
        answer: impl FnOnce(&Decision<&str>) -> R,
    ) -> R {
        self.decide_counted(req, false, answer)
    }

    /// The blacklist reason refusing this request, if any; counts the
    /// request toward the request-rate rule when it is traffic.
    #[inline]
    fn blacklisted(
        &self,
        req: &DecisionRequest<'_>,
        user: Option<UserId>,
        count: bool,
    ) -> Option<Reason> {
        let rate_rule = count && self.blacklist.config().max_requests_per_second > 0;
        if !rate_rule && self.blacklist.is_empty() {
            return None;
        }
        let now = self.clock.now_ms();
        if rate_rule {
            for d in req.devices.iter().filter(|d| !d.is_doubtful()) {
                if self.blacklist.note_request(d, now) {
                    tracing::debug!(rule = "request_rate", "device blacklisted");
                }
            }
        }
        self.blacklist.check(req.devices, user, now)
    }

    /// Decides; `count` says whether this is traffic (counted in metrics) or not.
    fn decide_counted<R>(
        &self,
        req: &DecisionRequest<'_>,
        count: bool,
        answer: impl FnOnce(&Decision<&str>) -> R,
    ) -> R {
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
        if usable > 0
            && let Some(reason) = self.blacklisted(req, user, count)
        {
            if count {
                metrics::counter!(telemetry::BLACKLIST_REFUSALS, "reason" => reason.label())
                    .increment(1);
            }
            return answer(&Decision {
                take: false,
                matches: Vec::new(),
                cache_seconds: set.cache.unmatched_seconds,
                outcome: telemetry::outcome::BLACKLISTED,
            });
        }
        let today = self.clock.today();
        let only = restriction(set, req.only_strategies);
        // loaded at the first strategy that needs one: plain sets never pay for it
        let mut shifts = None;
        let counts = count.then(|| {
            let c = live.counts();
            (c, c.tally.row())
        });
        let decision = SCRATCH.with(|scratch| {
            let mut hits = scratch.borrow_mut();
            hits.clear();
            let mut capped = false;
            // feedback keys of the strategies taken whose caps count answers
            let mut answered: Vec<crate::index::profile::ItemKey> = Vec::new();
            let mut run = |profile: &UserProfile, known_user: bool, hits: &mut Vec<u32>| {
                if known_user
                    && let Some(cap) = &set.user_cap
                    && cap.user_state(profile, today).reached()
                {
                    capped = true;
                    return Vec::new();
                }
                let ctx = EvalContext {
                    profile,
                    known_user,
                    today,
                    os: req.os,
                };
                set.matching(&ctx, only.as_deref(), hits);
                let user = user.filter(|_| known_user);
                let strategies = set.strategies();
                let mut matches = Vec::with_capacity(hits.len());
                let mut ranked = false;
                for &i in hits.iter() {
                    let slots = counts.and_then(|(c, row)| Some((c.slots.get(i as usize)?, row)));
                    if let Some(a) = set.plain_answer(i as usize) {
                        if let Some((c, row)) = slots {
                            row.add(c.matched);
                        }
                        matches.push(MatchedStrategy {
                            strategy_id: &*a.id,
                            target_id: &*a.target_id,
                            bid_factor: a.bid_factor,
                            pctr: None,
                            pcvr: None,
                        });
                        continue;
                    }
                    let Some(s) = strategies.get(i as usize) else {
                        continue;
                    };
                    let shift = if s.score.is_some() {
                        shifts
                            .get_or_insert_with(|| live.shifts.load())
                            .get(i as usize)
                            .copied()
                            .unwrap_or_default()
                    } else {
                        Shift::default()
                    };
                    let settled = self.settle(
                        set,
                        s,
                        profile,
                        (user, req.devices),
                        req.experiments,
                        today,
                        shift,
                    );
                    if let Some((c, row)) = slots {
                        if let (Some(arm), Some(e)) = (settled.arm, &s.experiment)
                            && let Ok(k) = u32::try_from(e.arm_index(arm))
                            && k < c.arms.1
                        {
                            row.add(c.arms.0 + k);
                        }
                        match settled.refused {
                            Some(r) => {
                                if let Some(k) = refusal::ALL.iter().position(|x| *x == r)
                                    && let Some(first) = c.refused
                                {
                                    row.add(first + k as u32);
                                }
                            }
                            None => row.add(c.matched),
                        }
                    }
                    if let Some(m) = settled.taken {
                        ranked |= m.pctr.is_some() || m.pcvr.is_some();
                        matches.push(m);
                        if count && set.counts_strategy_answers(i as usize) {
                            answered.push(s.feedback_key);
                        }
                    }
                }
                if ranked {
                    // by expected value, highest first; unscored keep file order after
                    matches.sort_by(|a, b| value_of(b).total_cmp(&value_of(a)));
                }
                matches
            };
            let mut known = false;
            let mut matches = match user {
                Some(u) => match self.index.with_profile(u, |p| run(p, true, &mut hits)) {
                    Some(m) => {
                        known = true;
                        m
                    }
                    None => Vec::new(),
                },
                None => Vec::new(),
            };
            if !known && usable > 0 {
                matches = run(&UserProfile::empty(), false, &mut hits);
            }
            let take = !matches.is_empty();
            if count
                && known
                && take
                && let Some(u) = user
                && set.counts_any_answers()
            {
                self.count_answers(set, u, answered, today);
            }
            let (outcome, cache_seconds) = if take {
                (telemetry::outcome::TAKE, set.cache.matched_seconds)
            } else if usable == 0 {
                // never let a placeholder id key the media's cache
                (telemetry::outcome::NO_USABLE_ID, 0)
            } else if capped {
                (telemetry::outcome::CAPPED, set.cache.unmatched_seconds)
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
        });
        // the scratch released: `answer` may decide again
        answer(&decision)
    }

    /// Counts a taken answer in the user's profile under `keys` (the feedback
    /// keys of the strategies taken whose caps count decisions) and, when the
    /// user cap counts decisions, under the answers key. After the read lock
    /// was released: this takes the shard's write lock.
    fn count_answers(
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

    /// Settles one audience match: frequency cap, then the model's score
    /// and thresholds, then the experiment arm (last, so that the holdout is
    /// drawn from users who would otherwise have been targeted), then the
    /// bid factor (the variant's base, scaled by the score).
    #[allow(clippy::too_many_arguments)]
    fn settle<'s>(
        &self,
        set: &StrategySet,
        s: &'s Strategy,
        profile: &UserProfile,
        who: (Option<UserId>, &[DeviceKey]),
        buckets: &[u64],
        today: Day,
        shift: Shift,
    ) -> Settled<'s> {
        let mut out = Settled::default();
        if let Some(cap) = &s.cap {
            let st = cap.strategy_state(profile, s.feedback_key, today);
            out.cap = Some(st);
            if st.reached() {
                out.refused = Some(refusal::CAP);
                return out;
            }
        }
        if let (Some(score), Some(model)) = (&s.score, &set.model) {
            match score.predict(profile.vector(), model, shift) {
                Some(p) => {
                    out.score = Some(p);
                    if score.passes(&p).is_err() {
                        out.refused = Some(refusal::SCORE);
                        return out;
                    }
                }
                None => {
                    out.missing_vector = true;
                    if score.fallback == Fallback::Refuse {
                        out.refused = Some(refusal::NO_VECTOR);
                        return out;
                    }
                }
            }
        }
        let mut base = s.bid_factor;
        let mut target_id = &*s.target_id;
        if let Some(e) = &s.experiment
            && let Some(subject) = subject_of(who.0, who.1)
        {
            let arm = e.assign(subject, buckets);
            out.arm = Some(arm);
            match arm {
                Arm::Holdout => {
                    out.refused = Some(refusal::HOLDOUT);
                    return out;
                }
                Arm::Variant(i) => {
                    if let Some(v) = e.variants.get(i) {
                        base = v.bid_factor.unwrap_or(base);
                        if let Some(t) = &v.target_id {
                            target_id = t;
                        }
                    }
                }
                Arm::Outside => {}
            }
        }
        let bid_factor = match (&s.score, &out.score) {
            (Some(score), Some(p)) => score.bid_factor(base, p),
            _ => base,
        };
        out.taken = Some(MatchedStrategy {
            strategy_id: &s.id,
            target_id,
            bid_factor,
            pctr: out.score.and_then(|p| p.pctr),
            pcvr: out.score.and_then(|p| p.pcvr),
        });
        out
    }

    /// Decides a request and says, per strategy, why it matched or not, and
    /// what each settling step (cap, score, experiment) said.
    pub fn explain(&self, req: &DecisionRequest<'_>) -> Explanation {
        let decision = self.decide_uncounted(req);
        let live = self.live.load();
        let set = live.set.clone();
        let shifts = live.shifts.load();
        let doubtful_ids = req.devices.iter().filter(|d| d.is_doubtful()).count();
        let user_id = self.index.resolve(req.devices);
        let blacklisted = self
            .blacklist
            .check(req.devices, user_id, self.clock.now_ms());
        let today = self.clock.today();
        let explain_with = |profile: &UserProfile, known_user: bool| {
            let ctx = EvalContext {
                profile,
                known_user,
                today,
                os: req.os,
            };
            let verdicts = set
                .strategies()
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let failed = s.first_failing_clause(&ctx);
                    let mut v = Verdict {
                        strategy_id: s.id.to_string(),
                        matched: failed.is_none(),
                        failed_clause: failed.map(str::to_string),
                        refused: None,
                        cap: None,
                        score: None,
                        missing_vector: false,
                        arm: None,
                        bid_factor: None,
                    };
                    if failed.is_none() {
                        let shift = shifts.get(i).copied().unwrap_or_default();
                        let st = self.settle(
                            &set,
                            s,
                            profile,
                            (user_id.filter(|_| known_user), req.devices),
                            req.experiments,
                            today,
                            shift,
                        );
                        v.matched = st.taken.is_some();
                        v.bid_factor = st.taken.as_ref().map(|m| m.bid_factor);
                        v.refused = st.refused;
                        v.cap = st.cap;
                        v.score = st.score;
                        v.missing_vector = st.missing_vector;
                        v.arm = st
                            .arm
                            .zip(s.experiment.as_ref())
                            .map(|(a, e)| e.label(a).to_string());
                    }
                    v
                })
                .collect::<Vec<_>>();
            let user_cap = set
                .user_cap
                .filter(|_| known_user)
                .map(|c| c.user_state(profile, today));
            let vector = profile.vector().map(|v| VectorInfo {
                dims: v.dims(),
                current_model: set.model.as_ref().is_some_and(|m| m.produced(&v)),
            });
            (verdicts, user_cap, vector)
        };
        let (verdicts, user_cap, vector) = user_id
            .and_then(|u| self.index.with_profile(u, |p| explain_with(p, true)))
            .unwrap_or_else(|| explain_with(&UserProfile::empty(), false));
        Explanation {
            user_id,
            doubtful_ids,
            strategy_version: set.version.clone(),
            blacklisted,
            user_cap,
            vector,
            decision,
            verdicts,
        }
    }

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

    /// The doubtful-id rule: ids a media flagged as doubtful are listed (when
    /// `blacklist.list_flagged_doubtful_ids` is on), so that a request that
    /// presents one of them as a clean id, from any media, is refused.
    pub fn flag_doubtful_ids(&self, keys: &[DeviceKey]) {
        if !self.blacklist.config().list_flagged_doubtful_ids {
            return;
        }
        let now = self.clock.now_ms();
        for k in keys.iter().filter(|k| !k.is_doubtful()) {
            if self.blacklist.get(Listed::Device(*k), now).is_some() {
                continue;
            }
            match self.blacklist.flag(Listed::Device(*k), Reason::DoubtfulId, now) {
                Ok(_) => metrics::counter!(telemetry::BLACKLIST_LISTED, "reason" => Reason::DoubtfulId.label())
                    .increment(1),
                Err(e) => tracing::debug!(error = %e, "blacklist full; doubtful id not listed"),
            }
        }
    }

    /// Feeds one media feedback event (already applied to the index) to the
    /// calibration ledger and the click-fraud rule.
    fn observe_feedback(
        &self,
        subject: Subject,
        action: Action,
        strategy: crate::index::profile::ItemKey,
        time_ms: i64,
    ) {
        let outcome = match action {
            Action::Exposure => Outcome::Exposure,
            Action::Click => Outcome::Click,
            Action::Conversion => Outcome::Conversion,
            _ => return,
        };
        let user = match subject {
            Subject::User(u) => Some(u),
            Subject::Device(d) => self.index.resolve(&[d]),
        };
        let live = self.live.load();
        let set = &live.set;
        let scored = set
            .index_of_feedback_key(strategy)
            .and_then(|i| Some((i as usize, set.strategies().get(i as usize)?)))
            .and_then(|(i, s)| Some((i, s.score.as_ref()?, set.model.as_ref()?)));
        let rule = self.blacklist.config().max_clicks_without_conversion;
        let today = self.clock.today();
        let mut flag = false;
        let mut scored_by = None;
        let mut group = None;
        if let Some(u) = user {
            self.index.with_profile(u, |p| {
                if let Some((system, _)) = self.groups.get() {
                    // tags are sorted, a system's are contiguous: its first one
                    let tags = p.tags();
                    let at = tags.partition_point(|t| (t >> 24) < *system);
                    group = tags.get(at).copied().filter(|t| (t >> 24) == *system);
                }
                if let Some((i, score, model)) = scored
                    && let Some(v) = p.vector().filter(|v| model.produced(v))
                {
                    let l = score.logits(&v);
                    let shift = live.shifts.load().get(i).copied().unwrap_or_default();
                    let (logit, shift) = match outcome {
                        Outcome::Exposure => (l.ctr, shift.ctr),
                        _ => (l.cvr, shift.cvr),
                    };
                    scored_by = Some(Scored {
                        logit: logit.map(f64::from),
                        served: logit
                            .map(|x| crate::strategy::score::sigmoid(f64::from(x) + shift)),
                    });
                }
                if outcome == Outcome::Click && rule > 0 {
                    let clicks = p.feedback_total(Action::Click, today, today);
                    let conversions = p.feedback_total(Action::Conversion, today, today);
                    flag = clicks > rule && conversions == 0;
                }
            });
        }
        // only live strategies get a ledger entry: feedback naming arbitrary
        // strategy ids must not grow it without bound
        if set.index_of_feedback_key(strategy).is_some() {
            self.ledger
                .record(strategy, group, outcome, scored_by, time_ms);
        }
        if flag
            && let Some(u) = user
            && self
                .blacklist
                .get(Listed::User(u), self.clock.now_ms())
                .is_none()
        {
            match self.blacklist.flag(Listed::User(u), Reason::ClicksWithoutConversion, self.clock.now_ms()) {
                Ok(_) => metrics::counter!(telemetry::BLACKLIST_LISTED, "reason" => Reason::ClicksWithoutConversion.label()).increment(1),
                Err(e) => tracing::warn!(error = %e, "blacklist full; click-fraud rule hit not listed"),
            }
        }
    }

    fn observe_control(&self, c: &ControlEvent) {
        let now = self.clock.now_ms();
        match *c {
            ControlEvent::List {
                listed,
                reason,
                time_ms,
                ttl_seconds,
            } => {
                if reason == Reason::MediaFraud && !self.blacklist.config().media_fraud {
                    return;
                }
                let ttl = ttl_seconds.map(Duration::from_secs);
                let ttl_ms = ttl.map_or(self.blacklist.config().ttl_seconds as i64 * 1000, |t| {
                    t.as_millis() as i64
                });
                // replayed from the topic's start: an entry already expired stays out
                if time_ms.saturating_add(ttl_ms) <= now {
                    return;
                }
                match self.blacklist.add(listed, reason, time_ms.min(now), ttl) {
                    Ok(_) => {
                        metrics::counter!(telemetry::BLACKLIST_LISTED, "reason" => reason.label())
                            .increment(1)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "blacklist full; control event not applied")
                    }
                }
            }
            ControlEvent::Unlist { listed } => {
                self.blacklist.remove(listed);
            }
        }
    }
}

impl EventObserver for DecisionEngine {
    fn on_feedback(&self, f: &FeedbackEvent) {
        self.observe_feedback(f.subject, f.action, f.strategy, f.time_ms);
    }

    fn on_control(&self, c: &ControlEvent) {
        self.observe_control(c);
    }
}

/// The shifts of a set's strategies from the ledger (zero when disabled).
fn shifts_for(set: &StrategySet, ledger: &FeedbackLedger, cfg: &CalibrationConfig) -> Box<[Shift]> {
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

/// Who experiments assign: the user, or an unknown device by its first usable id.
fn subject_of(user: Option<UserId>, devices: &[DeviceKey]) -> Option<experiment::Subject<'_>> {
    match user {
        Some(u) => Some(experiment::Subject::User(u)),
        None => devices
            .iter()
            .find(|d| !d.is_doubtful())
            .map(experiment::Subject::Device),
    }
}

fn value_of(m: &MatchedStrategy<&str>) -> f64 {
    Prediction {
        pctr: m.pctr,
        pcvr: m.pcvr,
    }
    .value()
    .unwrap_or(-1.0)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::taxonomy::Taxonomy;
    use crate::index::profile::ItemKey;
    use crate::index::record::UserRecord;
    use crate::ingest::event::FeedbackEvent;

    const TODAY: Day = 2000;
    const STRATEGIES: &str = include_str!("../../tests/fixtures/intel/strategies.toml");

    fn engine(rules: BlacklistConfig) -> (DecisionEngine, DeviceKey) {
        engine_with(STRATEGIES, rules)
    }

    fn engine_with(strategies: &str, rules: BlacklistConfig) -> (DecisionEngine, DeviceKey) {
        let t = Taxonomy::default_taxonomy();
        let rec: UserRecord = serde_json::from_str(
            r#"{"user_id": 9, "devices": ["raw:imei:860000000000009"], "tags": {"target_group": ["urban_family"]}}"#,
        )
        .unwrap();
        let index = Arc::new(UserIndex::default());
        index.upsert(9, rec.to_profile(&t, TODAY).unwrap()).unwrap();
        let set = StrategySet::from_toml(strategies, "intel", &t).unwrap();
        let e = DecisionEngine::with_rules(
            index,
            set,
            Clock::Fixed(TODAY),
            rules,
            CalibrationConfig::default(),
        );
        let device = crate::index::record::parse_device("raw:imei:860000000000009").unwrap();
        (e, device)
    }

    fn req(d: &DeviceKey) -> DecisionRequest<'_> {
        DecisionRequest {
            devices: std::slice::from_ref(d),
            os: Os::Android,
            experiments: &[],
            only_strategies: &[],
        }
    }

    #[test]
    fn the_request_rate_rule_lists_a_device_past_its_limit_and_only_traffic_counts() {
        let (e, d) = engine(BlacklistConfig {
            max_requests_per_second: 5,
            ..Default::default()
        });
        for _ in 0..20 {
            assert!(
                e.decide_uncounted(&req(&d)).take,
                "test traffic never counts"
            );
        }
        for i in 0..5 {
            assert!(e.decide(&req(&d)).take, "request {i} is within the limit");
        }
        let d6 = e.decide(&req(&d));
        assert_eq!(
            (d6.take, d6.outcome),
            (false, telemetry::outcome::BLACKLISTED)
        );
        assert_eq!(
            e.blacklist()
                .get(Listed::Device(d), e.clock().now_ms())
                .map(|x| x.reason),
            Some(Reason::RequestRate)
        );
    }

    #[test]
    fn clicks_without_conversion_list_the_user_once_the_rule_is_passed() {
        let (e, d) = engine(BlacklistConfig {
            max_clicks_without_conversion: 2,
            ..Default::default()
        });
        let now = e.clock().now_ms();
        let click = |action| {
            let ev = FeedbackEvent {
                subject: Subject::User(9),
                time_ms: now,
                action,
                strategy: ItemKey::strategy("capped"),
            };
            // the index first (as ingestion applies it), then the observer
            e.index()
                .update_in_place(9, |p| p.add_count(ev.strategy, action, TODAY, 1))
                .unwrap()
                .unwrap();
            e.on_feedback(&ev);
        };
        click(Action::Click);
        click(Action::Click);
        assert!(e.decide(&req(&d)).take, "2 clicks: at the limit, not over");
        click(Action::Click);
        assert!(!e.decide(&req(&d)).take, "3 clicks, no conversion: listed");
        assert_eq!(
            e.blacklist().get(Listed::User(9), now).map(|x| x.reason),
            Some(Reason::ClicksWithoutConversion)
        );
        // a converting user is not a click bot
        let (e2, d2) = engine(BlacklistConfig {
            max_clicks_without_conversion: 2,
            ..Default::default()
        });
        e2.index()
            .update_in_place(9, |p| {
                p.add_count(ItemKey::strategy("capped"), Action::Conversion, TODAY, 1)
            })
            .unwrap()
            .unwrap();
        for _ in 0..5 {
            e2.index()
                .update_in_place(9, |p| {
                    p.add_count(ItemKey::strategy("capped"), Action::Click, TODAY, 1)
                })
                .unwrap()
                .unwrap();
            e2.on_feedback(&FeedbackEvent {
                subject: Subject::User(9),
                time_ms: now,
                action: Action::Click,
                strategy: ItemKey::strategy("capped"),
            });
        }
        assert!(e2.decide(&req(&d2)).take);
    }

    #[test]
    fn media_flagged_doubtful_ids_are_listed_only_when_the_rule_is_on() {
        let (off, d) = engine(BlacklistConfig::default());
        off.flag_doubtful_ids(&[d]);
        assert!(off.decide(&req(&d)).take);
        let (on, d) = engine(BlacklistConfig {
            list_flagged_doubtful_ids: true,
            ..Default::default()
        });
        on.flag_doubtful_ids(&[d]);
        let r = on.decide(&req(&d));
        assert_eq!(r.outcome, telemetry::outcome::BLACKLISTED);
    }

    #[test]
    fn control_events_list_and_unlist_and_expired_ones_are_skipped() {
        let (e, d) = engine(BlacklistConfig::default());
        let now = e.clock().now_ms();
        let list = |time_ms, ttl_seconds| ControlEvent::List {
            listed: Listed::Device(d),
            reason: Reason::Operator,
            time_ms,
            ttl_seconds,
        };
        // an hour-long listing from two hours ago: replayed, already over
        e.on_control(&list(now - 7_200_000, Some(3600)));
        assert!(e.decide(&req(&d)).take);
        e.on_control(&list(now - 1000, Some(3600)));
        assert!(!e.decide(&req(&d)).take);
        e.on_control(&ControlEvent::Unlist {
            listed: Listed::Device(d),
        });
        assert!(e.decide(&req(&d)).take);
    }

    #[test]
    fn a_cap_counting_decisions_holds_without_feedback_and_ignores_test_traffic() {
        let src = "[[strategy]]\nid = \"c\"\ntarget_id = \"1\"\naudience = \"target_group in {urban_family}\"\ncap = { exposures = 2, days = 1, count = \"decisions\" }\n\n[[strategy]]\nid = \"free\"\ntarget_id = \"2\"\naudience = \"target_group in {urban_family}\"\n";
        let (e, d) = engine_with(src, BlacklistConfig::default());
        for _ in 0..5 {
            assert_eq!(e.decide_uncounted(&req(&d)).matches.len(), 2);
        }
        for _ in 0..2 {
            assert_eq!(e.decide(&req(&d)).matches.len(), 2);
        }
        let third = e.decide(&req(&d));
        let ids: Vec<&str> = third.matches.iter().map(|m| &*m.strategy_id).collect();
        assert_eq!(ids, ["free"], "the capped strategy answered twice today");
        let offers = e
            .index()
            .with_profile(9, |p| {
                p.count(ItemKey::strategy("c"), Action::Offer, TODAY, TODAY)
            })
            .unwrap();
        assert_eq!(offers, 2);
    }

    #[test]
    fn a_user_cap_counting_decisions_counts_one_per_answer_however_many_matched() {
        let src = "[user_cap]\nexposures = 2\ncount = \"decisions\"\n\n[[strategy]]\nid = \"a\"\ntarget_id = \"1\"\naudience = \"target_group in {urban_family}\"\n\n[[strategy]]\nid = \"b\"\ntarget_id = \"2\"\naudience = \"target_group in {urban_family}\"\n";
        let (e, d) = engine_with(src, BlacklistConfig::default());
        for _ in 0..2 {
            assert_eq!(e.decide(&req(&d)).matches.len(), 2);
        }
        let third = e.decide(&req(&d));
        assert_eq!(
            (third.take, third.outcome),
            (false, telemetry::outcome::CAPPED)
        );
    }
}
