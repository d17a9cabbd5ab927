//! The gate of an audience: its attribute ranges and request OSes folded
//! into one check without a branch per clause.

use crate::strategy::{EvalContext, Expr};

/// A conjunction of attribute ranges and request OSes, checked without a
/// branch per clause.
///
/// A shared catalogue's audiences are mostly such clauses (an age band, a
/// gender, a city tier) that postings do not settle, because their features
/// are too common to be worth filing; evaluated one by one, each is a
/// mispredicted dispatch and an early exit, costing more than checking all
/// eight attributes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gate {
    /// Per [`Attr`](crate::index::profile::Attr), the lowest accepted value (0 when any value is).
    lo: [u8; 8],
    /// Per attribute, how far above `lo` values are accepted (255: any).
    span: [u8; 8],
    /// Accepted OS codes, bit per [`Os`](crate::strategy::Os) code.
    os: u8,
}

impl Gate {
    /// The gate every user passes.
    pub(super) const OPEN: Self = Self {
        lo: [0; 8],
        span: [u8::MAX; 8],
        os: u8::MAX,
    };

    /// Narrows the gate by `e` when it is an attribute range or an OS
    /// clause; whether it was.
    pub(super) fn fold(&mut self, e: &Expr) -> bool {
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
    pub(super) fn holds(&self, ctx: &EvalContext<'_>) -> bool {
        let values = ctx.profile.demographics();
        let mut ok = self.os & (1 << ctx.os as u8) != 0;
        for ((v, lo), span) in values.iter().zip(&self.lo).zip(&self.span) {
            ok &= v.wrapping_sub(*lo) <= *span;
        }
        ok
    }
}
