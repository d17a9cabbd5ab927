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

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

pub mod blacklist;
pub mod calibration;
mod counts;
mod explain;
mod feedback;
pub mod ledger;
pub mod observer;
mod request;
pub mod tally;

use calibration::shifts_for;
use counts::StrategyCounts;
pub use explain::{Explanation, VectorInfo, Verdict};
pub use request::{Decision, DecisionRequest, MatchedStrategy};

use crate::decision::blacklist::{Blacklist, BlacklistConfig, Reason};
pub use crate::decision::calibration::{CalibrationRow, GroupRates};
use crate::decision::ledger::{CalibrationConfig, FeedbackLedger};
pub use crate::domain::calendar::Clock;
use crate::domain::ids::DeviceKey;
use crate::domain::taxonomy::Taxonomy;
use crate::index::profile::{Day, UserProfile};
use crate::index::{UserId, UserIndex};
use crate::strategy::experiment::{self, Arm};
use crate::strategy::frequency::CapState;
use crate::strategy::score::{Fallback, Prediction, Shift};
use crate::strategy::{EvalContext, Strategy, StrategySet};
use crate::telemetry::{self, Outcome, Refusal};

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
    refused: Option<Refusal>,
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
                // a listing is counted and logged by the blacklist itself
                self.blacklist.note_request(d, now);
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
                outcome: Outcome::Blacklisted,
            });
        }
        let today = self.clock.today();
        let only = restriction(set, req);
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
                            media_ids: a.media_ids,
                            variant: None,
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
                                if let Some(first) = c.refused {
                                    row.add(first + r as u32);
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
                (Outcome::Take, set.cache.matched_seconds)
            } else if usable == 0 {
                // never let a placeholder id key the media's cache
                (Outcome::NoUsableId, 0)
            } else if capped {
                (Outcome::Capped, set.cache.unmatched_seconds)
            } else if known {
                (Outcome::NoMatch, set.cache.unmatched_seconds)
            } else {
                (Outcome::UnknownDevice, set.cache.unknown_device_seconds)
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
                out.refused = Some(Refusal::Cap);
                return out;
            }
        }
        if let (Some(score), Some(model)) = (&s.score, &set.model) {
            match score.predict(profile.vector(), model, shift) {
                Some(p) => {
                    out.score = Some(p);
                    if score.passes(&p).is_err() {
                        out.refused = Some(Refusal::Score);
                        return out;
                    }
                }
                None => {
                    out.missing_vector = true;
                    if score.fallback == Fallback::Refuse {
                        out.refused = Some(Refusal::NoVector);
                        return out;
                    }
                }
            }
        }
        let mut base = s.bid_factor;
        let mut target_id = &*s.target_id;
        let mut variant = None;
        if let Some(e) = &s.experiment
            && let Some(subject) = subject_of(who.0, who.1)
        {
            let arm = e.assign(subject, buckets);
            out.arm = Some(arm);
            match arm {
                Arm::Holdout => {
                    out.refused = Some(Refusal::Holdout);
                    return out;
                }
                Arm::Variant(i) => {
                    variant = u16::try_from(i).ok();
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
            media_ids: s.media_ids,
            variant,
            bid_factor,
            pctr: out.score.and_then(|p| p.pctr),
            pcvr: out.score.and_then(|p| p.pcvr),
        });
        out
    }
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

/// Sorted strategy indexes a request is restricted to, by strategy id
/// and by media; `None` when unrestricted.
fn restriction<'s>(set: &'s StrategySet, req: &DecisionRequest<'_>) -> Option<Cow<'s, [u32]>> {
    let by_id = (!req.only_strategies.is_empty()).then(|| {
        let mut idx: Vec<u32> = req
            .only_strategies
            .iter()
            .filter_map(|id| set.index_of(id))
            .collect();
        idx.sort_unstable();
        idx.dedup();
        idx
    });
    let by_media: Option<Cow<'s, [u32]>> = req.media.and_then(|scope| {
        let known = set.on_media(scope.media)?;
        if scope.ids.is_empty() {
            return Some(Cow::Borrowed(known));
        }
        let mut idx: Vec<u32> = scope
            .ids
            .iter()
            .flat_map(|id| set.with_media_id(scope.media, *id))
            .copied()
            .collect();
        idx.sort_unstable();
        idx.dedup();
        Some(Cow::Owned(idx))
    });
    match (by_id, by_media) {
        (None, m) => m,
        (Some(ids), None) => Some(Cow::Owned(ids)),
        (Some(ids), Some(m)) => Some(Cow::Owned(
            ids.into_iter()
                .filter(|i| m.binary_search(i).is_ok())
                .collect(),
        )),
    }
}

#[cfg(test)]
mod tests;
