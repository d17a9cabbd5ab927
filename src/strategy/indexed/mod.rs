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

mod features;
mod gate;

pub use features::{Feature, FeatureShares};
use features::{WindowedKey, access, keyed, settled_by_access};
use gate::Gate;

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
    /// The state fields any posting is filed under (bit per
    /// [`StateField`](crate::index::profile::StateField)):
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

/// What [`IndexedMatcher::work`] reports for one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Work {
    /// Postings walked (access and narrowing).
    pub postings_walked: usize,
    /// Strategies found as candidates.
    pub candidates: usize,
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

    /// What finding `ctx`'s candidates costs: postings walked and strategies
    /// found, before any is evaluated. Observable state for benchmarks and
    /// tests; the served path counts the same in its own scratch.
    pub fn work(&self, ctx: &EvalContext<'_>) -> Work {
        let mut scratch = Scratch::default();
        self.candidates(ctx, &mut scratch);
        Work {
            postings_walked: scratch.walked,
            candidates: scratch.candidates.len(),
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

    /// Walks narrowing postings up to `n` per strategy found instead of
    /// [`POSTINGS_PER_EVALUATION`] (0: never, unless there are none;
    /// `usize::MAX`: always). The answer is the same either way; tests force
    /// each path with it.
    pub fn with_postings_per_evaluation(mut self, n: usize) -> Self {
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
mod tests;
