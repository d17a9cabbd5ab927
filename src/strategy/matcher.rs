//! Matching one user against every live strategy.
//!
//! [`Matcher`] is the one interface callers use, so that an indexed matcher
//! (boolean-expression index / bitset filters) can replace the linear scan
//! without touching the decision path.

use super::{EvalContext, Strategy};

/// Finds the strategies a user satisfies.
pub trait Matcher: Send + Sync {
    /// Appends to `out`, ascending, the indexes of the strategies in
    /// `strategies` that `ctx` satisfies; when `only` is given (sorted
    /// indexes), no other strategy is considered. Must not allocate beyond
    /// growing `out`.
    fn matching(
        &self,
        strategies: &[Strategy],
        ctx: &EvalContext<'_>,
        only: Option<&[u32]>,
        out: &mut Vec<u32>,
    );
}

/// Evaluates every strategy in order: O(#strategies) per user, the reference
/// behaviour any indexed matcher must reproduce.
#[derive(Debug, Default)]
pub struct LinearMatcher;

impl LinearMatcher {
    /// A matcher for this set of strategies.
    pub fn new(_strategies: &[Strategy]) -> Self {
        Self
    }
}

impl Matcher for LinearMatcher {
    fn matching(
        &self,
        strategies: &[Strategy],
        ctx: &EvalContext<'_>,
        only: Option<&[u32]>,
        out: &mut Vec<u32>,
    ) {
        match only {
            Some(only) => {
                for &i in only {
                    if strategies.get(i as usize).is_some_and(|s| s.matches(ctx)) {
                        out.push(i);
                    }
                }
            }
            None => {
                for (i, s) in strategies.iter().enumerate() {
                    if s.matches(ctx) {
                        out.push(i as u32);
                    }
                }
            }
        }
    }
}
