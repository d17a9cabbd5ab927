//! What a user has that a clause can require ([`Feature`]), the features of a
//! profile and their measured shares, and the choice of the clauses a
//! strategy is filed under (its access clause and the other selective ones).

use std::collections::HashMap;

use crate::index::profile::{Action, Attr, Day, ItemKey, StateField, UserProfile};
use crate::strategy::{EvalContext, Expr};

/// Something a user has that a clause can require: the unit of the postings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    /// Holds this tag.
    Tag(u32),
    /// Has this (known, non-zero) value of a demographic attribute.
    Attr(Attr, u8),
    /// The request comes from this OS (the [`Os`](crate::strategy::Os) code).
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
    pub(super) fn key(self) -> u64 {
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
    pub(super) fn each_of(
        ctx: &EvalContext<'_>,
        state_fields: u8,
        mut f: impl FnMut(Feature, Age),
    ) {
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
pub(super) fn access(
    expr: &Expr,
    shares: &FeatureShares,
    out: &mut Vec<(Feature, u16)>,
) -> Option<f64> {
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
pub(super) fn settled_by_access(expr: &Expr) -> bool {
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
pub(super) type WindowedKey = (u64, u16);

/// A clause's features as keys, by key, once each with its widest window
/// (an `or` may name one feature under several windows).
pub(super) fn keyed(features: &[(Feature, u16)]) -> Vec<WindowedKey> {
    let mut keys: Vec<WindowedKey> = features.iter().map(|&(f, w)| (f.key(), w)).collect();
    keys.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    keys.dedup_by_key(|k| k.0);
    keys
}
