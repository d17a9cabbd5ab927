//! An index over strategies, so that matching one user costs what the user
//! can possibly match, not the number of live strategies.
//!
//! The idea is the one of boolean-expression indexes (Whang et al., "Indexing
//! Boolean Expressions", VLDB 2009) and of RTBKit's filter pipeline, reduced to
//! what our audiences need: an audience is a conjunction of clauses, and most
//! clauses can only hold if the user *has* something — a tag, a demographic
//! value, a behaviour on an item, a state with an item, a request OS. Such a
//! clause names a set of [`Feature`]s, at least one of which the user must
//! have. At build time each strategy is filed under the features of its most
//! selective such clause (its *access clause*, chosen by estimated share of
//! users having any of its features), and under those of up to six more
//! selective clauses. At match time the user's own features (a few dozen)
//! are looked up in a hash table of postings; the strategies one of whose
//! access features the user has are found first, then narrowed by the
//! postings of their other clauses (the counting step below); those left,
//! plus the few with no access clause at all (which the postings of their
//! negated clauses exclude too), are the candidates, and each
//! candidate is then evaluated as [`super::LinearMatcher`] would, less the
//! clauses that finding it has already settled (a tag, demographic, OS or
//! state clause holds exactly when the user has one of its features, a
//! state's feature being an item, a field and a code, and "did it within d
//! days" when the user did it fewer than d days ago: behaviour postings
//! carry their clause's window; a larger count says more, and is always
//! evaluated). Negated clauses of that kind (`not
//! buy(sku 1, 7d)`) are filed too, and a user having their feature is no
//! candidate. Candidates are a superset of the matches, so the answer is the
//! linear scan's answer; the property tests in this module check that
//! against randomised strategies and users.
//!
//! Cost per user: one hash probe per user feature, the access postings of
//! the user's features, at most as many of the narrowing postings as
//! [`POSTINGS_PER_EVALUATION`] times the strategies found (beyond that they
//! are not walked: evaluating those strategies costs less), and one evaluation
//! of the unsettled clauses per candidate. Narrowing postings are what grows with the set
//! when strategies narrow by platform-wide features: with 1,000 advertisers
//! each on its own items, a user's items reach a few dozen strategies while
//! a target group or an age narrows tens of thousands of them, and walking
//! those would cost O(strategies). With narrow strategies spread over many
//! features the candidates are a small share of the set, which is what makes
//! 100,000 strategies cost little more than 1,000.

use std::cell::RefCell;
use std::collections::HashMap;

use super::{EvalContext, Expr, LinearMatcher, Matcher, Strategy};
use crate::index::profile::{Action, Attr, Day, ItemKey, StateField, UserProfile};

/// Something a user has that a clause can require: the unit of the postings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    /// Holds this tag.
    Tag(u32),
    /// Has this (known, non-zero) value of a demographic attribute.
    Attr(Attr, u8),
    /// The request comes from this OS (the [`super::Os`] code).
    Os(u8),
    /// Has this (non-zero) code of this field of its state with this item
    /// (4A, RFM, CLV): exactly what a state clause that does not accept
    /// code 0 asks, so that such a clause is settled by its postings.
    State(ItemKey, StateField, u8),
    /// Did this action on this item on some day up to today. A behaviour
    /// clause's postings under it carry the clause's window, and hold only
    /// for a user who did it within the window (see [`Age`]).
    Did(ItemKey, Action),
}

/// Days since a user last did a [`Feature::Did`] (a positive count on a day
/// up to today; 0 for every other feature). A behaviour count of at least
/// one over days-ago `[from, to)` needs such a day less than `to` days ago,
/// so a posting filed with window `to` holds only for an age below it.
type Age = u16;

/// The window of postings of features other than [`Feature::Did`]: never read.
const NO_WINDOW: u16 = u16::MAX;

impl Feature {
    /// A compact hash key: kind in the top byte, payload below.
    fn key(self) -> u64 {
        let item = |i: ItemKey| ((i.scope() as u64) << 30) | u64::from(i.id());
        match self {
            Self::Tag(t) => (1 << 56) | u64::from(t),
            Self::Attr(a, v) => (2 << 56) | ((a as u64) << 8) | u64::from(v),
            Self::Os(o) => (3 << 56) | u64::from(o),
            Self::State(i, field, code) => {
                (4 << 56) | ((field as u64) << 44) | (u64::from(code) << 36) | item(i)
            }
            Self::Did(i, a) => (5 << 56) | ((a as u64) << 32) | item(i),
        }
    }

    /// A prior guess of the share of users having this feature, used to pick
    /// access clauses when no measured [`FeatureShares`] are given.
    fn prior_share(self) -> f64 {
        match self {
            Self::Tag(_) => 0.05,
            Self::Attr(a, _) => match a {
                Attr::Gender | Attr::Marital | Attr::Children => 0.5,
                Attr::CityTier => 0.17,
                Attr::Education => 0.15,
                Attr::Age => 0.02,
                Attr::Occupation => 0.05,
                Attr::PurchasingPower => 0.02,
            },
            Self::Os(_) => 0.5,
            Self::State(..) => 0.01,
            Self::Did(_, Action::Browse) => 0.03,
            Self::Did(..) => 0.01,
        }
    }

    /// Calls `f` with every feature the context has and its [`Age`], of
    /// states only the fields in `state_fields` (bit per [`StateField`]).
    fn each_of(ctx: &EvalContext<'_>, state_fields: u8, mut f: impl FnMut(Feature, Age)) {
        f(Self::Os(ctx.os as u8), 0);
        each_profile_feature(ctx.profile, ctx.today, state_fields, &mut f);
    }
}

/// Every feature a profile has on day `today` (all but the request's OS),
/// with its [`Age`]; of states, only the fields in `state_fields`.
fn each_profile_feature(
    p: &UserProfile,
    today: Day,
    state_fields: u8,
    f: &mut impl FnMut(Feature, Age),
) {
    for &t in p.tags() {
        f(Feature::Tag(t), 0);
    }
    for a in Attr::ALL {
        let v = p.attr(a);
        if v != 0 {
            f(Feature::Attr(a, v), 0);
        }
    }
    for (item, state) in p.items() {
        for field in StateField::ALL {
            let code = state.get(field);
            if code != 0 && state_fields & (1 << field as u8) != 0 {
                f(Feature::State(item, field, code), 0);
            }
        }
    }
    // behaviour is sorted by item, action, day: one feature per run, aged
    // by its last positive count up to today (later days count in no window)
    let (mut run, mut latest): (Option<(ItemKey, Action)>, Option<Day>) = (None, None);
    for b in p.behaviour() {
        let here = (b.item, b.action);
        if run != Some(here) {
            if let (Some((item, action)), Some(day)) = (run, latest) {
                f(Feature::Did(item, action), today - day);
            }
            (run, latest) = (Some(here), None);
        }
        if b.count > 0 && b.day <= today {
            latest = Some(b.day);
        }
    }
    if let (Some((item, action)), Some(day)) = (run, latest) {
        f(Feature::Did(item, action), today - day);
    }
}

/// Every [`StateField`]'s bit.
const ALL_STATE_FIELDS: u8 = (1 << StateField::ALL.len()) - 1;

/// Measured shares of users having each feature, from a sample of profiles:
/// lets access clauses be chosen by what the population really looks like.
#[derive(Debug, Default, Clone)]
pub struct FeatureShares {
    counts: HashMap<u64, u32, ahash::RandomState>,
    users: u32,
}

impl FeatureShares {
    /// Counts the features of `profiles` (OS shares stay at their prior).
    pub fn measure<'a>(profiles: impl IntoIterator<Item = &'a UserProfile>) -> Self {
        let mut s = Self::default();
        for p in profiles {
            s.users += 1;
            // any day: a share of users who ever did it
            each_profile_feature(p, Day::MAX, ALL_STATE_FIELDS, &mut |f, _| {
                *s.counts.entry(f.key()).or_default() += 1;
            });
        }
        s
    }

    /// The users sampled.
    pub fn users(&self) -> u32 {
        self.users
    }

    fn share(&self, f: Feature) -> f64 {
        if self.users == 0 || matches!(f, Feature::Os(_)) {
            return f.prior_share();
        }
        // half a user for features never seen: rare, but not free
        let n = self.counts.get(&f.key()).map_or(0.5, |&n| f64::from(n));
        n / f64::from(self.users)
    }
}

/// The features one of which a clause requires, each with the window its
/// [`Age`] must be below ([`NO_WINDOW`] but for [`Feature::Did`]), and their
/// estimated share of users; `None` when the clause can hold for a user
/// having none of them.
fn access(expr: &Expr, shares: &FeatureShares, out: &mut Vec<(Feature, u16)>) -> Option<f64> {
    let mut add = |fs: &mut dyn Iterator<Item = Feature>| {
        let mut cost = 0.0;
        for f in fs {
            cost += shares.share(f);
            out.push((f, NO_WINDOW));
        }
        Some(cost)
    };
    match expr {
        Expr::Tag(codes) => add(&mut codes.iter().map(|&t| Feature::Tag(t))),
        Expr::Attr { attr, lo, hi } => {
            add(&mut ((*lo).max(1)..=*hi).map(|v| Feature::Attr(*attr, v)))
        }
        Expr::AttrIn { attr, mask } => add(&mut (1..=255u8)
            .filter(|v| mask[usize::from(v >> 6)] & (1 << (v & 63)) != 0)
            .map(|v| Feature::Attr(*attr, v))),
        Expr::Os(mask) => add(&mut (0..8u8).filter(|o| mask & (1 << o) != 0).map(Feature::Os)),
        // a count of at least one needs a positive count in the window,
        // so a last one fewer than `to_ago` days ago
        Expr::Count {
            item,
            action,
            lo,
            to_ago,
            ..
        } if *lo >= 1 => {
            let f = Feature::Did(*item, *action);
            out.push((f, *to_ago));
            Some(shares.share(f))
        }
        // code 0 (no state with the item) not accepted: a state must exist
        Expr::State { item, field, mask } if mask & 1 == 0 => add(&mut (1..16u8)
            .filter(|c| mask & (1 << c) != 0)
            .map(|c| Feature::State(*item, *field, c))),
        Expr::Or(items) => {
            let mark = out.len();
            let mut cost = 0.0;
            for e in items.iter() {
                match access(e, shares, out) {
                    Some(c) => cost += c,
                    None => {
                        out.truncate(mark);
                        return None;
                    }
                }
            }
            Some(cost)
        }
        Expr::And(items) => best_of(items.iter(), shares, out),
        Expr::Count { .. } | Expr::State { .. } | Expr::Not(_) => None,
    }
}

/// Whether a clause holds exactly when the user has one of the features
/// [`access`] names for it within its window, so that finding the feature
/// settles the clause and evaluating it again would only repeat the answer.
/// "Did it within `d` days" (`buy(sku 1, 7d)`) is settled; a count over a
/// window not ending today, or of more than one, says more than the feature
/// does. A state clause is settled unless it accepts code 0 (no state),
/// which no feature stands for.
fn settled_by_access(expr: &Expr) -> bool {
    match expr {
        Expr::Tag(_) | Expr::Attr { .. } | Expr::AttrIn { .. } | Expr::Os(_) => true,
        // a state clause not accepting code 0 asks for one of its codes
        Expr::State { mask, .. } => mask & 1 == 0,
        Expr::Count {
            from_ago: 0,
            lo: 1,
            hi: u32::MAX,
            ..
        } => true,
        Expr::Or(items) => items.iter().all(settled_by_access),
        Expr::And(_) | Expr::Not(_) | Expr::Count { .. } => false,
    }
}

/// The cheapest access among conjuncts, appended to `out`.
fn best_of<'e>(
    items: impl Iterator<Item = &'e Expr>,
    shares: &FeatureShares,
    out: &mut Vec<(Feature, u16)>,
) -> Option<f64> {
    let mark = out.len();
    let mut best: Option<(f64, Vec<(Feature, u16)>)> = None;
    let mut scratch = Vec::new();
    for e in items {
        scratch.clear();
        if let Some(c) = access(e, shares, &mut scratch)
            && best.as_ref().is_none_or(|(b, _)| c < *b)
        {
            best = Some((c, scratch.clone()));
        }
    }
    let (cost, fs) = best?;
    out.truncate(mark);
    out.extend(fs);
    Some(cost)
}

/// A feature's hash key and the window of its postings.
type WindowedKey = (u64, u16);

/// A clause's features as keys, by key, once each with its widest window
/// (an `or` may name one feature under several windows).
fn keyed(features: &[(Feature, u16)]) -> Vec<WindowedKey> {
    let mut keys: Vec<WindowedKey> = features.iter().map(|&(f, w)| (f.key(), w)).collect();
    keys.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    keys.dedup_by_key(|k| k.0);
    keys
}

/// Candidates up to which sorting them costs less than draining them from
/// the bitmap in [`Scratch`] (an unknown device's few, a customer's handful);
/// above, marking and draining wins (a shared catalogue's ~50 at 1,000
/// strategies, thousands at 100,000).
const SORT_UP_TO: usize = 32;

/// Clauses of one strategy indexed at most (bits 0 to 6 of a `u8` mask).
const MAX_INDEXED_CLAUSES: usize = 7;

/// The clause bit of a posting filed under a feature of a negated clause
/// (`not buy(sku 1, 7d)`): no strategy requires it, so setting it leaves the
/// strategy out of the candidates, and a strategy that is kept has every
/// such clause settled. Any number of clauses share it.
const EXCLUDED: u32 = 7;

/// Clauses beyond the access clause are indexed only when at most this share
/// of users could satisfy them: a clause most users pass filters little and
/// costs a posting walk for most users.
const SELECTIVE_SHARE: f64 = 0.25;

/// A full evaluation of a candidate costs about as much as walking this many
/// postings (tens of nanoseconds against one or two): the user's narrowing
/// postings are walked only when there are at most this many per strategy
/// found through access postings; otherwise those strategies are all
/// evaluated (measured on `benches/matching.rs`: 30 ns per evaluation when
/// few, 200 ns among 100,000 strategies, 2-3 ns per posting).
pub const POSTINGS_PER_EVALUATION: usize = 32;

/// A matcher that finds candidates through postings of features and
/// evaluates only those; answers exactly as [`super::LinearMatcher`].
///
/// Each strategy is filed under the features of up to seven of its clauses
/// (the access clause and other selective ones), each posting carrying the
/// clause's bit, and under those of its selective negated clauses (see
/// [`EXCLUDED`]). A user's access postings find the strategies that may
/// match; its other postings then set bits of those strategies, and only a
/// strategy with every indexed clause's bit set and no negated clause's
/// (the counting step of Whang et al., with its ∉ postings) is evaluated in
/// full, unless walking those postings would cost more than evaluating every
/// strategy found (see [`POSTINGS_PER_EVALUATION`]). Postings of behaviour
/// carry their clause's window and hold only for users who did it within
/// it; they are ordered by window, widest first, so that those holding for a
/// user are a prefix.
#[derive(Debug)]
pub struct IndexedMatcher {
    /// Feature key -> its postings.
    table: HashMap<u64, Postings, ahash::RandomState>,
    /// Strategies filed under a feature by their access clause (bit 0),
    /// grouped by feature, widest window first within it.
    access: Vec<u32>,
    /// The window of each of `access`.
    access_within: Vec<u16>,
    /// `strategy << 3 | clause bit` of the other indexed clauses (bits 1 to
    /// 6) and of negated ones ([`EXCLUDED`]), grouped by feature, widest
    /// window first within it.
    narrowing: Vec<u32>,
    /// The window of each of `narrowing`.
    narrowing_within: Vec<u16>,
    /// Postings walked per strategy found before evaluating instead.
    postings_per_evaluation: usize,
    /// Per strategy, the bits of its indexed clauses (0: not indexed).
    required: Vec<u8>,
    /// Per strategy, whether finding it through every indexed clause leaves
    /// none of its audience to evaluate (see [`found::SETTLED`]): read with
    /// `required`, so a known user's settled match never loads the audience.
    settled_when_found: Vec<bool>,
    /// Strategies with no access clause and no filed negated clause:
    /// candidates for every known user, evaluated in full.
    unindexed: Vec<u32>,
    /// Of those, the ones evaluated for unknown devices.
    unindexed_unknown: Vec<u32>,
    /// Strategies with no access clause but some filed negated clause: found
    /// for every user before the counting step (their `required` is bit 0),
    /// so that a user having an excluding feature skips them and one not
    /// having any skips those clauses.
    seeded: Vec<u32>,
    /// Of those, the ones found for unknown devices.
    seeded_unknown: Vec<u32>,
    /// The state fields any posting is filed under (bit per [`StateField`]):
    /// a user's codes of other fields are not looked up.
    state_fields: u8,
    /// Estimated candidates per user, by the shares used to build (negated
    /// clauses not counted).
    expected_candidates: f64,
    /// Every strategy's audience, copied in strategy order so that evaluating
    /// ascending candidates walks memory forward instead of chasing pointers
    /// allocated all over the heap while the file was parsed.
    audiences: Vec<Audience>,
}

/// Where a feature's postings are: `(start, length)` in
/// [`IndexedMatcher::access`] and in [`IndexedMatcher::narrowing`].
#[derive(Debug, Clone, Copy)]
struct Postings {
    access: (u32, u32),
    narrowing: (u32, u32),
}

/// A strategy's audience: what the matcher evaluates.
///
/// Its clauses are ordered so that those a candidate's postings have already
/// settled (see [`settled_by_access`]) come last and can be left out: first
/// the clauses always evaluated, then the settled narrowing and negated
/// clauses, then the settled access clause.
#[derive(Debug)]
struct Audience {
    match_unknown_devices: bool,
    /// The attribute and OS clauses among those always evaluated, checked
    /// together first.
    gate: Gate,
    clauses: Box<[Expr]>,
    /// Clauses to evaluate when every indexed clause was found.
    unsettled_by_all: u32,
    /// Clauses to evaluate when only the access clause was found.
    unsettled_by_access: u32,
}

/// How a candidate was found, in the low bits of its entry in
/// [`Scratch::candidates`]: which of its clauses are settled.
mod found {
    /// Through its access postings and the counting step: every indexed clause.
    pub const BY_ALL: u32 = 0;
    /// Through its access postings only.
    pub const BY_ACCESS: u32 = 1;
    /// Not through postings (no access clause): none.
    pub const UNINDEXED: u32 = 2;
    /// Through every indexed clause, which settles the whole audience: a
    /// known user matches without the audience being read at all.
    pub const SETTLED: u32 = 3;
    /// Bits the tag takes.
    pub const BITS: u32 = 2;
    /// The tag's bits.
    pub const MASK: u32 = (1 << BITS) - 1;
}

/// A conjunction of attribute ranges and request OSes, checked without a
/// branch per clause.
///
/// A shared catalogue's audiences are mostly such clauses (an age band, a
/// gender, a city tier) that postings do not settle, because their features
/// are too common to be worth filing; evaluated one by one, each is a
/// mispredicted dispatch and an early exit, costing more than checking all
/// eight attributes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gate {
    /// Per [`Attr`], the lowest accepted value (0 when any value is).
    lo: [u8; 8],
    /// Per [`Attr`], how far above `lo` values are accepted (255: any).
    span: [u8; 8],
    /// Accepted OS codes, bit per [`Os`](super::Os) code.
    os: u8,
}

impl Gate {
    /// The gate every user passes.
    const OPEN: Self = Self {
        lo: [0; 8],
        span: [u8::MAX; 8],
        os: u8::MAX,
    };

    /// Narrows the gate by `e` when it is an attribute range or an OS
    /// clause; whether it was.
    fn fold(&mut self, e: &Expr) -> bool {
        match *e {
            Expr::Attr { attr, lo, hi } => {
                let a = attr as usize;
                // an unknown value (0) never matches
                let (from, to) = (
                    lo.max(1).max(self.lo[a]),
                    hi.min(self.lo[a].saturating_add(self.span[a])),
                );
                if from > to {
                    // no value is in both: nobody passes
                    self.os = 0;
                } else {
                    (self.lo[a], self.span[a]) = (from, to - from);
                }
                true
            }
            Expr::Os(mask) => {
                self.os &= mask;
                true
            }
            _ => false,
        }
    }

    /// Whether `ctx` passes every folded clause.
    #[inline]
    fn holds(&self, ctx: &EvalContext<'_>) -> bool {
        let values = ctx.profile.demographics();
        let mut ok = self.os & (1 << ctx.os as u8) != 0;
        for ((v, lo), span) in values.iter().zip(&self.lo).zip(&self.span) {
            ok &= v.wrapping_sub(*lo) <= *span;
        }
        ok
    }
}

impl Audience {
    /// `s`'s audience with its clauses in evaluation order, given the
    /// `(bit, position)` of its indexed clauses that finding them settles.
    fn ordered(s: &Strategy, settled: &[(usize, usize)]) -> Self {
        let is_settled = |at: usize| settled.iter().any(|&(_, a)| a == at);
        // the clauses always evaluated, but those the gate checks
        let mut gate = Gate::OPEN;
        let mut clauses: Vec<Expr> = (0..s.clauses.len())
            .filter(|&at| !is_settled(at))
            .map(|at| &s.clauses[at].expr)
            .filter(|e| !gate.fold(e))
            .cloned()
            .collect();
        let unsettled_by_all = clauses.len() as u32;
        let by_bit = |narrowing: bool| {
            settled
                .iter()
                .filter(move |&&(bit, _)| (bit > 0) == narrowing)
                .map(|&(_, at)| s.clauses[at].expr.clone())
        };
        clauses.extend(by_bit(true));
        let unsettled_by_access = clauses.len() as u32;
        clauses.extend(by_bit(false));
        Self {
            match_unknown_devices: s.match_unknown_devices,
            gate,
            clauses: clauses.into(),
            unsettled_by_all,
            unsettled_by_access,
        }
    }

    /// Whether the audience holds for `ctx`, given how it was found.
    #[inline]
    fn matches(&self, ctx: &EvalContext<'_>, how: u32) -> bool {
        let n = match how {
            found::BY_ALL | found::SETTLED => self.unsettled_by_all as usize,
            found::BY_ACCESS => self.unsettled_by_access as usize,
            _ => self.clauses.len(),
        };
        (ctx.known_user || self.match_unknown_devices)
            && self.gate.holds(ctx)
            && self.clauses[..n.min(self.clauses.len())]
                .iter()
                .all(|e| e.eval(ctx))
    }
}

/// Per-thread scratch of the counting step, reused across requests.
#[derive(Default)]
struct Scratch {
    /// Per strategy, the indexed clauses seen so far for this user.
    seen: Vec<u8>,
    /// Strategies found through access postings (non-zero `seen`), to reset them afterwards.
    touched: Vec<u32>,
    /// The user's features' narrowing postings, `(start, length)`.
    narrowing: Vec<(u32, u32)>,
    /// Strategies to evaluate, `strategy << found::BITS | found::*`.
    candidates: Vec<u32>,
    /// The candidates as a bitmap over strategies (one bit each), drained
    /// into `candidates` in ascending order: cheaper than sorting many.
    bits: Vec<u64>,
    /// One bit per non-zero word of `bits`, so that draining skips the
    /// empty ones (a 100,000-strategy set has 25 summary words).
    summary: Vec<u64>,
    /// Postings walked for the last user (access and narrowing).
    walked: usize,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl IndexedMatcher {
    /// Indexes `strategies`, choosing access clauses by prior feature shares.
    pub fn new(strategies: &[Strategy]) -> Self {
        Self::with_shares(strategies, &FeatureShares::default())
    }

    /// Indexes `strategies`, choosing access clauses by measured feature shares.
    pub fn with_shares(strategies: &[Strategy], shares: &FeatureShares) -> Self {
        // (feature key, window, strategy << 3 | clause bit)
        let mut filed: Vec<(u64, u16, u32)> = Vec::new();
        let mut required = vec![0u8; strategies.len()];
        let mut unindexed = Vec::new();
        let mut unindexed_unknown = Vec::new();
        let (mut seeded, mut seeded_unknown) = (Vec::new(), Vec::new());
        let mut expected_candidates = 0.0;
        let mut state_fields = 0u8;
        // the fields of the state features a clause may be filed under
        let mut note_fields = |features: &[(Feature, u16)]| {
            for (f, _) in features {
                if let Feature::State(_, field, _) = f {
                    state_fields |= 1 << *field as u8;
                }
            }
        };
        let mut features = Vec::new();
        // (estimated share, (feature key, window)s, the clause's position)
        let mut clauses: Vec<(f64, Vec<WindowedKey>, usize)> = Vec::new();
        let mut audiences = Vec::with_capacity(strategies.len());
        for (i, s) in strategies.iter().enumerate() {
            let i = i as u32;
            clauses.clear();
            for (at, c) in s.clauses.iter().enumerate() {
                features.clear();
                if let Some(cost) = access(&c.expr, shares, &mut features) {
                    note_fields(&features);
                    clauses.push((cost, keyed(&features), at));
                }
            }
            clauses.sort_by(|a, b| a.0.total_cmp(&b.0));
            // (bit, position) of the indexed clauses that finding settles
            let mut settled: Vec<(usize, usize)> = Vec::new();
            if clauses.is_empty() {
                expected_candidates += 1.0;
            } else {
                let mut share = 1.0;
                for (bit, (cost, keys, at)) in clauses.iter().take(MAX_INDEXED_CLAUSES).enumerate()
                {
                    if bit > 0 && *cost > SELECTIVE_SHARE {
                        break;
                    }
                    share *= cost.min(1.0);
                    required[i as usize] |= 1 << bit;
                    filed.extend(keys.iter().map(|&(k, w)| (k, w, (i << 3) | bit as u32)));
                    if settled_by_access(&s.clauses[*at].expr) {
                        settled.push((bit, *at));
                    }
                }
                expected_candidates += share;
            }
            // a negated clause whose features say exactly when it fails
            // excludes the users having them: few, when they are selective
            for (at, c) in s.clauses.iter().enumerate() {
                let Expr::Not(e) = &c.expr else { continue };
                features.clear();
                if settled_by_access(e)
                    && access(e, shares, &mut features).is_some_and(|c| c <= SELECTIVE_SHARE)
                {
                    note_fields(&features);
                    filed.extend(
                        keyed(&features)
                            .into_iter()
                            .map(|(k, w)| (k, w, (i << 3) | EXCLUDED)),
                    );
                    settled.push((EXCLUDED as usize, at));
                }
            }
            // with no access clause: a candidate for everyone, counted in
            // like a strategy found when some negated clause can exclude
            if clauses.is_empty() {
                let (all, unknown) = if settled.is_empty() {
                    (&mut unindexed, &mut unindexed_unknown)
                } else {
                    required[i as usize] = 1;
                    (&mut seeded, &mut seeded_unknown)
                };
                all.push(i);
                if s.match_unknown_devices {
                    unknown.push(i);
                }
            }
            audiences.push(Audience::ordered(s, &settled));
        }
        // by feature, then widest window first
        filed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        let mut table = HashMap::with_capacity_and_hasher(filed.len(), ahash::RandomState::new());
        let (mut access, mut access_within) = (Vec::new(), Vec::new());
        let (mut narrowing, mut narrowing_within) = (Vec::new(), Vec::new());
        for group in filed.chunk_by(|a, b| a.0 == b.0) {
            let (a0, n0) = (access.len() as u32, narrowing.len() as u32);
            for &(_, within, p) in group {
                if p & 7 == 0 {
                    access.push(p >> 3);
                    access_within.push(within);
                } else {
                    narrowing.push(p);
                    narrowing_within.push(within);
                }
            }
            let postings = Postings {
                access: (a0, access.len() as u32 - a0),
                narrowing: (n0, narrowing.len() as u32 - n0),
            };
            table.insert(group[0].0, postings);
        }
        table.shrink_to_fit();
        let settled_when_found = audiences
            .iter()
            .zip(&required)
            .map(|(a, &r)| r != 0 && a.unsettled_by_all == 0 && a.gate == Gate::OPEN)
            .collect();
        for v in [&mut access, &mut narrowing] {
            v.shrink_to_fit();
        }
        for v in [&mut access_within, &mut narrowing_within] {
            v.shrink_to_fit();
        }
        Self {
            audiences,
            table,
            access,
            access_within,
            narrowing,
            narrowing_within,
            postings_per_evaluation: POSTINGS_PER_EVALUATION,
            required,
            settled_when_found,
            unindexed,
            unindexed_unknown,
            seeded,
            seeded_unknown,
            expected_candidates,
            state_fields,
        }
    }

    /// How many strategies have no access clause: candidates for every
    /// user, but those a negated clause's postings exclude.
    pub fn unindexed(&self) -> usize {
        self.unindexed.len() + self.seeded.len()
    }

    /// The expected number of candidates per user, by the shares used to build.
    pub fn expected_candidates(&self) -> f64 {
        self.expected_candidates
    }

    /// Test hook: walk narrowing postings up to `n` per strategy found
    /// (0: never, unless there are none; `usize::MAX`: always).
    #[cfg(test)]
    fn with_postings_per_evaluation(mut self, n: usize) -> Self {
        self.postings_per_evaluation = n;
        self
    }

    /// Fills `scratch.candidates`, ascending: the unindexed strategies and
    /// those one of whose access features `ctx` has, narrowed to those whose
    /// indexed clauses all have a feature in `ctx` when the narrowing
    /// postings are few enough to be worth walking.
    fn candidates(&self, ctx: &EvalContext<'_>, scratch: &mut Scratch) {
        let Scratch {
            seen,
            touched,
            narrowing,
            candidates,
            bits,
            summary,
            walked,
        } = scratch;
        if seen.len() < self.required.len() {
            seen.resize(self.required.len(), 0);
        }
        // a slice held in a register: a byte stored through `seen` could
        // otherwise be the `Vec`'s own pointer as far as the compiler knows,
        // and every store in the loops below would reload it
        let seen = &mut seen[..];
        let words = self.required.len().div_ceil(64);
        if bits.len() < words {
            bits.resize(words, 0);
            summary.resize(words.div_ceil(64), 0);
        }
        touched.clear();
        narrowing.clear();
        candidates.clear();
        let mut to_walk = 0usize;
        *walked = 0;
        let seeded = if ctx.known_user {
            &self.seeded
        } else {
            &self.seeded_unknown
        };
        for &s in seeded {
            if let Some(v) = seen.get_mut(s as usize) {
                *v = 1;
                touched.push(s);
            }
        }
        Feature::each_of(ctx, self.state_fields, |f, age| {
            let Some(p) = self.table.get(&f.key()) else {
                return;
            };
            // behaviour postings hold up to the first window the age is not below
            let holding = |(at, len): (u32, u32), within: &[u16]| {
                let (at, len) = (at as usize, len as usize);
                let len = match f {
                    Feature::Did(..) => within[at..at + len].partition_point(|&w| w > age),
                    _ => len,
                };
                (at, len)
            };
            let (at, len) = holding(p.access, &self.access_within);
            *walked += len;
            // no branch: whether a strategy was already found is unpredictable
            // (only 0 and 1 are in `seen` before the counting step)
            let kept = touched.len();
            touched.resize(kept + len, 0);
            let (into, mut n) = (&mut touched[kept..], 0);
            for &s in &self.access[at..at + len] {
                let (Some(v), Some(slot)) = (seen.get_mut(s as usize), into.get_mut(n)) else {
                    continue;
                };
                *slot = s;
                n += usize::from(*v == 0);
                *v = 1;
            }
            touched.truncate(kept + n);
            let (at, len) = holding(p.narrowing, &self.narrowing_within);
            if len > 0 {
                narrowing.push((at as u32, len as u32));
                to_walk += len;
            }
        });
        let how = if to_walk <= touched.len().saturating_mul(self.postings_per_evaluation) {
            *walked += to_walk;
            // the counting step, for strategies found only: every indexed
            // clause must have a feature in `ctx`
            for &(at, len) in narrowing.iter() {
                let (at, len) = (at as usize, len as usize);
                for &p in &self.narrowing[at..at + len] {
                    // no branch: whether the strategy was found is unpredictable
                    if let Some(v) = seen.get_mut((p >> 3) as usize) {
                        *v |= u8::from(*v != 0) << (p & 7);
                    }
                }
            }
            // no branch either: about half the strategies found are kept
            let kept = candidates.len();
            candidates.resize(kept + touched.len(), 0);
            let (into, mut n) = (&mut candidates[kept..], 0);
            for &s in touched.iter() {
                let (Some(v), Some(&r), Some(&settled), Some(slot)) = (
                    seen.get_mut(s as usize),
                    self.required.get(s as usize),
                    self.settled_when_found.get(s as usize),
                    into.get_mut(n),
                ) else {
                    continue;
                };
                *slot = (s << found::BITS) | (u32::from(settled) * found::SETTLED);
                n += usize::from(*v == r);
                *v = 0;
            }
            candidates.truncate(kept + n);
            found::BY_ALL
        } else {
            // evaluating every strategy found costs less than narrowing them
            for &s in touched.iter() {
                seen[s as usize] = 0;
            }
            candidates.extend(
                touched
                    .iter()
                    .map(|&s| (s << found::BITS) | found::BY_ACCESS),
            );
            found::BY_ACCESS
        };
        let unindexed = if ctx.known_user {
            &self.unindexed
        } else {
            &self.unindexed_unknown
        };
        candidates.extend(
            unindexed
                .iter()
                .map(|&s| (s << found::BITS) | found::UNINDEXED),
        );
        if candidates.len() <= SORT_UP_TO {
            candidates.sort_unstable();
            return;
        }
        for &c in candidates.iter() {
            mark(bits, summary, c >> found::BITS);
        }
        candidates.clear();
        // drain the bitmap, ascending; unindexed strategies require no clause
        // (the scratch may be sized for a larger set: read this set's words only)
        let in_use = words.div_ceil(64).min(summary.len());
        for (at, word) in summary[..in_use].iter_mut().enumerate() {
            let mut nonzero = std::mem::take(word);
            while nonzero != 0 {
                let w = at * 64 + nonzero.trailing_zeros() as usize;
                nonzero &= nonzero - 1;
                let Some(bits) = bits.get_mut(w) else {
                    continue;
                };
                let mut b = std::mem::take(bits);
                while b != 0 {
                    let s = (w * 64) as u32 + b.trailing_zeros();
                    b &= b - 1;
                    let found = match self.required.get(s as usize) {
                        Some(&r) if r != 0 => match self.settled_when_found.get(s as usize) {
                            Some(true) if how == found::BY_ALL => found::SETTLED,
                            _ => how,
                        },
                        _ => found::UNINDEXED,
                    };
                    candidates.push((s << found::BITS) | found);
                }
            }
        }
    }
}

/// Marks strategy `s` in the two-level candidate bitmap of [`Scratch`].
#[inline]
fn mark(bits: &mut [u64], summary: &mut [u64], s: u32) {
    let w = (s >> 6) as usize;
    bits[w] |= 1 << (s & 63);
    summary[w >> 6] |= 1 << (w & 63);
}

impl Matcher for IndexedMatcher {
    fn matching(
        &self,
        strategies: &[Strategy],
        ctx: &EvalContext<'_>,
        only: Option<&[u32]>,
        out: &mut Vec<u32>,
    ) {
        if only.is_some() {
            // a short explicit list: evaluating it is cheaper than probing
            return LinearMatcher.matching(strategies, ctx, only, out);
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            self.candidates(ctx, &mut scratch);
            for &c in &scratch.candidates {
                let (i, how) = (c >> found::BITS, c & found::MASK);
                if (how == found::SETTLED && ctx.known_user)
                    || self
                        .audiences
                        .get(i as usize)
                        .is_some_and(|a| a.matches(ctx, how))
                {
                    out.push(i);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::demo::population::generate_user;
    use crate::domain::taxonomy::Taxonomy;
    use crate::index::profile::Day;
    use crate::strategy::generate::{self, Mix, StrategyGenerator, Workload, strategy_file};
    use crate::strategy::{LinearMatcher, Os, StrategySet};

    const TODAY: Day = 2518;
    const OSES: [Os; 5] = [Os::Unknown, Os::Android, Os::Ios, Os::Harmony, Os::Other];

    fn set(seed: u64, n: u64, mix: Mix, t: &Taxonomy) -> StrategySet {
        let g = StrategyGenerator::new(t, seed).with_mix(mix);
        let strategies: Vec<_> = (0..n).map(|i| g.strategy(i)).collect();
        StrategySet::from_toml(&strategy_file(&strategies, "prop"), "prop", t)
            .expect("generated strategies compile")
    }

    fn both(
        set: &StrategySet,
        indexed: &IndexedMatcher,
        ctx: &EvalContext<'_>,
        only: Option<&[u32]>,
    ) -> (Vec<u32>, Vec<u32>) {
        let (mut lin, mut idx) = (Vec::new(), Vec::new());
        LinearMatcher.matching(set.strategies(), ctx, only, &mut lin);
        indexed.matching(set.strategies(), ctx, only, &mut idx);
        (lin, idx)
    }

    /// The `k`-th user's context in the property tests: days and OSes vary
    /// with `k` so that windows and OS clauses are exercised.
    fn varied_context(profile: &UserProfile, known_user: bool, k: usize) -> EvalContext<'_> {
        EvalContext {
            profile,
            known_user,
            today: TODAY - (k as Day % 40),
            os: OSES[k % OSES.len()],
        }
    }

    fn mix(broad: f64, arbitrary: f64) -> Mix {
        Mix { broad, arbitrary }
    }

    /// An attribute range or OS clause, as the gate folds them.
    fn gate_clause() -> impl proptest::strategy::Strategy<Value = Expr> {
        use proptest::strategy::Strategy as _;
        prop_oneof![
            (0..Attr::ALL.len(), any::<u8>(), any::<u8>()).prop_map(|(a, lo, hi)| Expr::Attr {
                attr: Attr::ALL[a],
                lo,
                hi
            }),
            // small values too, so that ranges on one attribute overlap or not
            (0..Attr::ALL.len(), 0..6u8, 0..6u8).prop_map(|(a, lo, hi)| Expr::Attr {
                attr: Attr::ALL[a],
                lo,
                hi
            }),
            any::<u8>().prop_map(Expr::Os),
        ]
    }

    proptest! {
        #[test]
        fn the_gate_holds_exactly_when_every_folded_clause_does(
            clauses in proptest::collection::vec(gate_clause(), 0..6),
            values in proptest::collection::vec(prop_oneof![0..6u8, any::<u8>()], 8),
            os in 0..OSES.len(),
        ) {
            let mut gate = Gate::OPEN;
            for e in &clauses {
                prop_assert!(gate.fold(e), "{e:?} is folded");
            }
            let mut b = crate::index::profile::ProfileBuilder::default();
            for (a, &v) in Attr::ALL.iter().zip(&values) {
                b.attr(*a, v);
            }
            let profile = b.build().expect("a profile of attributes only fits");
            let ctx = EvalContext { profile: &profile, known_user: true, today: TODAY, os: OSES[os] };
            prop_assert_eq!(gate.holds(&ctx), clauses.iter().all(|e| e.eval(&ctx)));
        }
    }

    #[test]
    fn the_gate_folds_only_attribute_ranges_and_oses() {
        let mut gate = Gate::OPEN;
        let state = Expr::State {
            item: ItemKey::new(crate::index::profile::Scope::Brand, 1).expect("valid id"),
            field: StateField::FourA,
            mask: 0b10,
        };
        assert!(!gate.fold(&state));
        assert!(!gate.fold(&Expr::Not(Box::new(Expr::Os(1)))));
        assert_eq!(gate, Gate::OPEN);
    }

    /// Narrowing postings walked per strategy found: never, as served, always.
    const WALKS: [usize; 3] = [0, POSTINGS_PER_EVALUATION, usize::MAX];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// On random strategy sets (random and/or/not trees and realistic
        /// templates) and random users, known or not, with every OS, the index
        /// answers exactly what evaluating every strategy answers, whether it
        /// narrows by counting or evaluates every strategy found.
        #[test]
        fn indexed_matches_exactly_what_the_linear_scan_matches(
            strategy_seed in any::<u64>(),
            n in 1u64..300,
            broad in 0.0f64..0.3,
            arbitrary in 0.0f64..1.0,
            user_seed in any::<u64>(),
            measured in any::<bool>(),
            walk in 0..WALKS.len(),
        ) {
            let t = Taxonomy::default_taxonomy();
            let set = set(strategy_seed, n, mix(broad, arbitrary), &t);
            let users: Vec<UserProfile> =
                (1..=40).map(|id| generate_user(user_seed, id, TODAY, &t)).collect();
            let indexed = if measured {
                IndexedMatcher::with_shares(set.strategies(), &FeatureShares::measure(&users))
            } else {
                IndexedMatcher::new(set.strategies())
            }
            .with_postings_per_evaluation(WALKS[walk]);
            let empty = UserProfile::empty();
            for (k, p) in users.iter().chain(std::iter::once(&empty)).enumerate() {
                for known_user in [true, false] {
                    let ctx = varied_context(p, known_user, k);
                    let (lin, idx) = both(&set, &indexed, &ctx, None);
                    prop_assert_eq!(&lin, &idx, "user {} known {}", k, known_user);
                    // a restriction to every other strategy
                    let only: Vec<u32> = (0..n as u32).step_by(2).collect();
                    let (lin, idx) = both(&set, &indexed, &ctx, Some(&only));
                    prop_assert_eq!(lin, idx);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// The same on the per-advertiser workload (item ids offset by
        /// advertiser, first-party tags), from a random first strategy so that
        /// sets start at any advertiser, with customers of those advertisers.
        #[test]
        fn indexed_matches_the_linear_scan_on_the_per_advertiser_workload(
            strategy_seed in any::<u64>(),
            first in 0u64..100_000,
            n in 64u64..400,
            broad in 0.0f64..0.3,
            arbitrary in 0.0f64..0.5,
            user_seed in any::<u64>(),
            walk in 0..WALKS.len(),
        ) {
            let t = generate::advertiser_taxonomy();
            let g = StrategyGenerator::new(&t, strategy_seed)
                .with_mix(mix(broad, arbitrary))
                .with_workload(Workload::PerAdvertiser);
            let strategies: Vec<_> = (first..first + n).map(|i| g.strategy(i)).collect();
            let set = StrategySet::from_toml(&strategy_file(&strategies, "prop"), "prop", &t)
                .expect("generated strategies compile");
            let indexed =
                IndexedMatcher::new(set.strategies()).with_postings_per_evaluation(WALKS[walk]);
            // customers of the set's advertisers
            let among = generate::advertiser_of(first)..generate::advertiser_of(first + n - 1) + 1;
            for id in 1..=40 {
                let p = generate::advertiser_customer(user_seed, id, TODAY, &t, among.clone())
                    .expect("profile fits");
                for known_user in [true, false] {
                    let ctx = varied_context(&p, known_user, id as usize);
                    let (lin, idx) = both(&set, &indexed, &ctx, None);
                    prop_assert_eq!(lin, idx, "user {} known {}", id, known_user);
                }
            }
        }
    }

    #[test]
    fn narrow_strategies_are_filed_under_features_and_not_scanned() {
        let t = Taxonomy::default_taxonomy();
        let set = set(7, 2000, Mix::default(), &t);
        let indexed = IndexedMatcher::new(set.strategies());
        // realistic strategies nearly all have an access clause ...
        assert!(
            indexed.unindexed() * 50 < set.strategies().len(),
            "{} of {} unindexed",
            indexed.unindexed(),
            set.strategies().len()
        );
        // ... so a typical user is a candidate for a small share of them
        let users: Vec<UserProfile> = (1..=200)
            .map(|id| generate_user(42, id, TODAY, &t))
            .collect();
        let mut candidates = 0usize;
        let mut scratch = Scratch::default();
        for p in &users {
            let ctx = EvalContext {
                profile: p,
                known_user: true,
                today: TODAY,
                os: Os::Android,
            };
            indexed.candidates(&ctx, &mut scratch);
            candidates += scratch.candidates.len();
        }
        let mean = candidates as f64 / users.len() as f64;
        assert!(mean < 0.2 * 2000.0, "{mean} candidates per user of 2000");
    }

    /// Mean postings walked and candidates per user.
    fn work(indexed: &IndexedMatcher, users: &[UserProfile]) -> (f64, f64) {
        let mut scratch = Scratch::default();
        let (mut walked, mut candidates) = (0, 0);
        for p in users {
            let ctx = EvalContext {
                profile: p,
                known_user: true,
                today: TODAY,
                os: Os::Android,
            };
            indexed.candidates(&ctx, &mut scratch);
            walked += scratch.walked;
            candidates += scratch.candidates.len();
        }
        let n = users.len() as f64;
        (walked as f64 / n, candidates as f64 / n)
    }

    #[test]
    fn a_customers_work_stays_flat_as_advertisers_are_added() {
        let t = generate::advertiser_taxonomy();
        let all: Vec<_> = StrategyGenerator::new(&t, 7)
            .with_workload(Workload::PerAdvertiser)
            .take(10_000)
            .collect();
        let users: Vec<UserProfile> = (1..=200)
            .map(|id| {
                generate::advertiser_customer(42, id, TODAY, &t, 0..10).expect("profile fits")
            })
            .collect();
        let work_at = |n: usize| {
            let set = StrategySet::from_toml(&strategy_file(&all[..n], "w"), "w", &t)
                .expect("generated strategies compile");
            work(&IndexedMatcher::new(set.strategies()), &users)
        };
        let ((walked_1k, candidates_1k), (walked_10k, candidates_10k)) =
            (work_at(1_000), work_at(10_000));
        // the 9,000 strategies added narrow by the same target groups and
        // ages as the first 1,000, but belong to advertisers the users never
        // dealt with: neither postings walked nor candidates may grow with them
        assert!(
            walked_10k <= 2.0 * walked_1k + 10.0,
            "postings walked per user: {walked_1k} at 1,000, {walked_10k} at 10,000"
        );
        assert!(
            candidates_10k <= 2.0 * candidates_1k + 10.0,
            "candidates per user: {candidates_1k} at 1,000, {candidates_10k} at 10,000"
        );
    }

    /// A profile with these `(item, action, days before TODAY, count)`
    /// records (a negative number of days: a day after TODAY).
    fn with_behaviour(records: &[(ItemKey, Action, i32, u16)]) -> UserProfile {
        let mut b = crate::index::profile::ProfileBuilder::default();
        for &(item, action, ago, count) in records {
            b.behaviour.push(crate::index::profile::BehaviourCount {
                item,
                action,
                day: (i32::from(TODAY) - ago) as Day,
                count,
            });
        }
        b.build().expect("a small profile builds")
    }

    /// `indexed`'s candidates for known user `k` with profile `p` on `os`,
    /// as (strategy, how it was found), once both matchers are checked to
    /// match `expected`.
    fn candidates_checked(
        (set, indexed): (&StrategySet, &IndexedMatcher),
        (k, p): (usize, &UserProfile),
        os: Os,
        expected: &[u32],
    ) -> Vec<(u32, u32)> {
        let ctx = EvalContext {
            profile: p,
            known_user: true,
            today: TODAY,
            os,
        };
        let (lin, idx) = both(set, indexed, &ctx, None);
        assert_eq!(
            (&lin[..], &idx[..]),
            (expected, expected),
            "matches of user {k}"
        );
        let mut scratch = Scratch::default();
        indexed.candidates(&ctx, &mut scratch);
        scratch
            .candidates
            .iter()
            .map(|c| (c >> found::BITS, c & found::MASK))
            .collect()
    }

    #[test]
    fn recent_behaviour_and_negated_clauses_are_settled_by_postings() {
        use crate::index::profile::Scope;
        let t = Taxonomy::default_taxonomy();
        let src = "[[strategy]]\nid = \"carted\"\ntarget_id = \"1\"\naudience = \"cart(sku 1, 7d)\"\n\n\
                   [[strategy]]\nid = \"not_bought\"\ntarget_id = \"2\"\naudience = \"os == ios and not buy(sku 2, 7d)\"\n";
        let set = StrategySet::from_toml(src, "s", &t).expect("compiles");
        let indexed = IndexedMatcher::new(set.strategies());
        let (sku1, sku2) = (
            ItemKey::new(Scope::Sku, 1).expect("valid id"),
            ItemKey::new(Scope::Sku, 2).expect("valid id"),
        );
        let cases = [
            // carted 7 days ago (outside "7d": today and the 6 days before),
            // bought today: a candidate for neither
            (
                with_behaviour(&[(sku1, Action::Cart, 7, 1), (sku2, Action::Buy, 0, 1)]),
                vec![],
            ),
            // a zero count today and a cart 30 days ago; a purchase dated
            // tomorrow, which no window counts yet
            (
                with_behaviour(&[
                    (sku1, Action::Cart, 0, 0),
                    (sku1, Action::Cart, 30, 2),
                    (sku2, Action::Buy, -1, 1),
                ]),
                vec![1],
            ),
            // carted 6 days ago, never bought
            (with_behaviour(&[(sku1, Action::Cart, 6, 1)]), vec![0, 1]),
        ];
        for (k, (p, expected)) in cases.iter().enumerate() {
            let found = candidates_checked((&set, &indexed), (k, p), Os::Ios, expected);
            let ids: Vec<u32> = found.iter().map(|&(i, _)| i).collect();
            assert_eq!(&ids, expected, "candidates of user {k}");
            // found through every indexed clause: the windowed and negated
            // clauses are settled
            assert!(
                found
                    .iter()
                    .all(|&(_, how)| matches!(how, found::BY_ALL | found::SETTLED))
            );
        }
    }

    #[test]
    fn state_clauses_not_accepting_code_zero_are_settled_by_postings() {
        use crate::index::profile::{ItemState, Scope};
        let t = Taxonomy::default_taxonomy();
        let src = "[[strategy]]\nid = \"intent\"\ntarget_id = \"1\"\naudience = \"four_a(brand 5) in {appeal, act}\"\n\n\
                   [[strategy]]\nid = \"loyal\"\ntarget_id = \"2\"\naudience = \"clv(brand 5) == high and not rfm_r(brand 5) == low\"\n\n\
                   [[strategy]]\nid = \"unaware\"\ntarget_id = \"3\"\naudience = \"four_a(brand 5) in {none, aware}\"\n";
        let set = StrategySet::from_toml(src, "s", &t).expect("compiles");
        let indexed = IndexedMatcher::new(set.strategies());
        // accepting code 0 (no state) asks for no feature: scanned
        assert_eq!(indexed.unindexed(), 1);
        let brand = ItemKey::new(Scope::Brand, 5).expect("valid id");
        let with_state = |codes: &[(StateField, u8)]| {
            let mut b = crate::index::profile::ProfileBuilder::default();
            let state = codes
                .iter()
                .fold(ItemState::default(), |s, &(f, c)| s.with(f, c));
            b.items.push((brand, state));
            b.build().expect("fits")
        };
        let cases = [
            // aware, high CLV, low recency: "unaware" only, by evaluation
            (
                with_state(&[
                    (StateField::FourA, 1),
                    (StateField::Clv, 3),
                    (StateField::RfmR, 1),
                ]),
                vec![2],
                vec![2],
            ),
            // acting, high CLV, mid recency: all but "unaware" found and settled
            (
                with_state(&[
                    (StateField::FourA, 3),
                    (StateField::Clv, 3),
                    (StateField::RfmR, 2),
                ]),
                vec![0, 1, 2],
                vec![0, 1],
            ),
            // appealing, mid CLV: the CLV code is not the one asked for
            (
                with_state(&[(StateField::FourA, 2), (StateField::Clv, 2)]),
                vec![0, 2],
                vec![0],
            ),
        ];
        for (k, (p, candidates, expected)) in cases.iter().enumerate() {
            let found = candidates_checked((&set, &indexed), (k, p), Os::Android, expected);
            let ids: Vec<u32> = found.iter().map(|&(i, _)| i).collect();
            assert_eq!(&ids, candidates, "candidates of user {k}");
            // the indexed strategies' state clauses are settled: nothing left
            // to evaluate, and a match needs no look at the audience
            for (i, how) in found {
                let expected = if i == 2 {
                    found::UNINDEXED
                } else {
                    found::SETTLED
                };
                assert_eq!(how, expected, "candidate {i} of user {k}");
                assert!(
                    how != found::SETTLED || indexed.audiences[i as usize].unsettled_by_all == 0
                );
            }
        }
    }

    #[test]
    fn a_not_only_audience_is_evaluated_for_everyone() {
        let t = Taxonomy::default_taxonomy();
        let src = "[[strategy]]\nid = \"a\"\ntarget_id = \"1\"\naudience = \"not buy(category 1, 30d)\"\nmatch_unknown_devices = true\n\n[[strategy]]\nid = \"b\"\ntarget_id = \"2\"\naudience = \"buy(category 1, 30d) >= 1 or os == ios\"\n";
        let set = StrategySet::from_toml(src, "s", &t).expect("compiles");
        let indexed = IndexedMatcher::new(set.strategies());
        assert_eq!(indexed.unindexed(), 1);
        let empty = UserProfile::empty();
        let ctx = EvalContext {
            profile: &empty,
            known_user: false,
            today: TODAY,
            os: Os::Ios,
        };
        let mut out = Vec::new();
        indexed.matching(set.strategies(), &ctx, None, &mut out);
        assert_eq!(out, [0]);
        let ctx = EvalContext {
            known_user: true,
            ..ctx
        };
        out.clear();
        indexed.matching(set.strategies(), &ctx, None, &mut out);
        assert_eq!(out, [0, 1]);
    }
}
