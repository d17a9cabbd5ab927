//! Type-checks an audience syntax tree against the taxonomy and compiles it to
//! [`Expr`], a tree that evaluates against a profile without allocating and
//! without failing: every name is resolved and every comparison normalised to
//! a range, a set or a bitmask here, at load time.

pub use crate::domain::os::Os;
use crate::domain::taxonomy::{TagCode, Taxonomy};
use crate::index::profile::{Action, Attr, ItemKey, Scope, StateField, UserProfile};
use crate::strategy::lang::{Ast, CmpOp, LangError, Pos, Test, Value};

/// The longest window, in days, a behaviour predicate may look back.
pub const MAX_WINDOW_DAYS: u32 = 3650;

/// Everything an audience reads: the user's profile and the request.
#[derive(Debug, Clone, Copy)]
pub struct EvalContext<'a> {
    /// The user's profile (empty for an unknown device).
    pub profile: &'a UserProfile,
    /// Whether the device resolved to a known user.
    pub known_user: bool,
    /// Today, in the business time zone.
    pub today: crate::index::profile::Day,
    /// The request's operating system.
    pub os: Os,
}

/// A compiled audience.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// All hold.
    And(Box<[Expr]>),
    /// One holds.
    Or(Box<[Expr]>),
    /// Does not hold.
    Not(Box<Expr>),
    /// The user holds one of these tags (sorted).
    Tag(Box<[TagCode]>),
    /// A known attribute value within `lo..=hi` (unknown, 0, never matches).
    Attr {
        /// Which attribute.
        attr: Attr,
        /// Lowest accepted value.
        lo: u8,
        /// Highest accepted value.
        hi: u8,
    },
    /// A known attribute value in a set (bit `v` of a 256-bit mask).
    AttrIn {
        /// Which attribute.
        attr: Attr,
        /// Accepted values.
        mask: [u64; 4],
    },
    /// The request's OS is in the mask (bit per [`Os`] code).
    Os(u8),
    /// The count of `action` on `item` over days-ago `[from_ago, to_ago)` is in `lo..=hi`.
    Count {
        /// The item.
        item: ItemKey,
        /// The action.
        action: Action,
        /// First day ago counted (0 = today).
        from_ago: u16,
        /// First day ago not counted.
        to_ago: u16,
        /// Lowest accepted count.
        lo: u32,
        /// Highest accepted count.
        hi: u32,
    },
    /// The item-state field's code is in the mask.
    State {
        /// The item.
        item: ItemKey,
        /// The field.
        field: StateField,
        /// Accepted codes, bit per code.
        mask: u16,
    },
}

impl Expr {
    /// Evaluates against a context. Never fails, never allocates.
    pub fn eval(&self, ctx: &EvalContext<'_>) -> bool {
        match self {
            Self::And(items) => items.iter().all(|e| e.eval(ctx)),
            Self::Or(items) => items.iter().any(|e| e.eval(ctx)),
            Self::Not(e) => !e.eval(ctx),
            Self::Tag(codes) => ctx.profile.has_any_tag(codes),
            Self::Attr { attr, lo, hi } => {
                let v = ctx.profile.attr(*attr);
                v != 0 && (*lo..=*hi).contains(&v)
            }
            Self::AttrIn { attr, mask } => {
                let v = ctx.profile.attr(*attr);
                v != 0 && mask[usize::from(v >> 6)] & (1 << (v & 63)) != 0
            }
            Self::Os(mask) => mask & (1 << ctx.os as u8) != 0,
            Self::Count {
                item,
                action,
                from_ago,
                to_ago,
                lo,
                hi,
            } => {
                let n = match ctx.today.checked_sub(*from_ago) {
                    Some(to_day) => {
                        let from_day = ctx.today.saturating_sub(to_ago - 1);
                        ctx.profile.count(*item, *action, from_day, to_day)
                    }
                    None => 0,
                };
                (*lo..=*hi).contains(&n)
            }
            Self::State { item, field, mask } => {
                let code = ctx
                    .profile
                    .item_state(*item)
                    .map(|s| s.get(*field))
                    .unwrap_or(0);
                mask & (1 << code) != 0
            }
        }
    }
}

/// Compiles a syntax tree against a taxonomy.
pub fn compile(ast: &Ast, taxonomy: &Taxonomy) -> Result<Expr, LangError> {
    Ok(match ast {
        Ast::And(items) => Expr::And(
            items
                .iter()
                .map(|a| compile(&a.ast, taxonomy))
                .collect::<Result<_, _>>()?,
        ),
        Ast::Or(items) => Expr::Or(
            items
                .iter()
                .map(|a| compile(a, taxonomy))
                .collect::<Result<_, _>>()?,
        ),
        Ast::Not(inner, _) => Expr::Not(Box::new(compile(inner, taxonomy)?)),
        Ast::Field { name, pos, test } => field(name, *pos, test, taxonomy)?,
        Ast::Call {
            func,
            pos,
            scope,
            scope_pos,
            id,
            window,
            test,
        } => {
            let scope = Scope::from_name(scope).ok_or_else(|| {
                LangError::at(
                    *scope_pos,
                    format!("unknown scope `{scope}`; use category, brand or sku"),
                )
            })?;
            let item =
                ItemKey::new(scope, *id).map_err(|e| LangError::at(*scope_pos, e.to_string()))?;
            if let Some(action) = Action::on_site_from_name(func) {
                let (from, to) = match window {
                    Some(w) => {
                        if w.to > MAX_WINDOW_DAYS {
                            return Err(LangError::at(
                                w.pos,
                                format!("window longer than {MAX_WINDOW_DAYS} days"),
                            ));
                        }
                        (w.from, w.to)
                    }
                    None => (0, u32::from(u16::MAX)),
                };
                let (lo, hi, negate) = match test {
                    None => (1, u32::MAX, false),
                    Some(t) => count_range(t)?,
                };
                let e = Expr::Count {
                    item,
                    action,
                    from_ago: from as u16,
                    to_ago: to as u16,
                    lo,
                    hi,
                };
                if negate { Expr::Not(Box::new(e)) } else { e }
            } else if let Some(field) = StateField::ALL.into_iter().find(|f| f.name() == func) {
                if let Some(w) = window {
                    return Err(LangError::at(
                        w.pos,
                        format!("`{func}` is a state, it takes no window"),
                    ));
                }
                let Some(test) = test else {
                    return Err(LangError::at(
                        *pos,
                        format!(
                            "`{func}(...)` needs a comparison, e.g. `{func}(brand 1) >= {}`",
                            field.value_names()[2]
                        ),
                    ));
                };
                let names = field.value_names();
                let mask = code_mask(test, names.len(), |v| match v {
                    Value::Name(n, p) => names
                        .iter()
                        .position(|x| x == n)
                        .map(|i| i as u8)
                        .ok_or_else(|| {
                            LangError::at(
                                *p,
                                format!(
                                    "`{n}` is not a {func} value; use one of {}",
                                    names.join(", ")
                                ),
                            )
                        }),
                    Value::Number(_, p) => Err(LangError::at(
                        *p,
                        format!("{func} takes a name: one of {}", names.join(", ")),
                    )),
                })?;
                Expr::State {
                    item,
                    field,
                    mask: mask as u16,
                }
            } else {
                let actions: Vec<_> = Action::ON_SITE.iter().map(|a| a.name()).collect();
                let states: Vec<_> = StateField::ALL.iter().map(|f| f.name()).collect();
                return Err(LangError::at(
                    *pos,
                    format!(
                        "unknown function `{func}`; behaviour: {}; states: {}",
                        actions.join(", "),
                        states.join(", ")
                    ),
                ));
            }
        }
    })
}

/// `(lo, hi, negate)` of a count test; `!= n` is compiled as not `n..=n`.
fn count_range(t: &Test) -> Result<(u32, u32, bool), LangError> {
    let num = |v: &Value| match v {
        Value::Number(n, p) => u32::try_from(*n).map_err(|_| LangError::at(*p, "count too large")),
        Value::Name(n, p) => Err(LangError::at(
            *p,
            format!("a behaviour count is compared with a number, not `{n}`"),
        )),
    };
    Ok(match t {
        Test::Cmp(op, v) => {
            let n = num(v)?;
            let (lo, hi, neg) = match op {
                CmpOp::Eq => (n, n, false),
                CmpOp::Ne => (n, n, true),
                CmpOp::Ge => (n, u32::MAX, false),
                CmpOp::Gt => (n.saturating_add(1), u32::MAX, false),
                CmpOp::Le => (0, n, false),
                CmpOp::Lt => {
                    if n == 0 {
                        return Err(LangError::at(v.pos(), "a count is never < 0"));
                    }
                    (0, n - 1, false)
                }
            };
            (lo, hi, neg)
        }
        Test::InRange(lo, hi) => {
            let lo = u32::try_from(*lo).unwrap_or(u32::MAX);
            let hi = u32::try_from(*hi).unwrap_or(u32::MAX);
            (lo, hi, false)
        }
        Test::InSet(vals) => {
            return Err(LangError::at(
                vals.first().map(Value::pos).unwrap_or(Pos {
                    line: 1,
                    col: 1,
                    offset: 0,
                }),
                "compare a behaviour count with a number or a range `in 2..5`",
            ));
        }
    })
}

/// Bitmask over value codes `0..n` accepted by a test; ordered comparisons use code order.
fn code_mask(
    test: &Test,
    n: usize,
    resolve: impl Fn(&Value) -> Result<u8, LangError>,
) -> Result<u64, LangError> {
    let all: u64 = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    let bit = |c: u8| 1u64 << c;
    Ok(match test {
        Test::Cmp(op, v) => {
            let c = resolve(v)?;
            let le = if c >= 63 {
                u64::MAX
            } else {
                (1u64 << (c + 1)) - 1
            };
            let lt = (1u64 << c) - 1;
            all & match op {
                CmpOp::Eq => bit(c),
                CmpOp::Ne => !bit(c),
                CmpOp::Le => le,
                CmpOp::Lt => lt,
                CmpOp::Ge => !lt,
                CmpOp::Gt => !le,
            }
        }
        Test::InSet(vals) => {
            let mut m = 0;
            for v in vals {
                m |= bit(resolve(v)?);
            }
            m
        }
        Test::InRange(_, _) => {
            return Err(LangError::at(
                Pos {
                    line: 1,
                    col: 1,
                    offset: 0,
                },
                "use a comparison or `in {...}` with names here",
            ));
        }
    })
}

fn field(name: &str, pos: Pos, test: &Test, taxonomy: &Taxonomy) -> Result<Expr, LangError> {
    if name == "os" {
        let mask = code_mask(test, Os::NAMES.len(), |v| match v {
            Value::Name(n, p) => Os::NAMES
                .iter()
                .find(|(x, _)| x == n)
                .map(|(_, os)| *os as u8)
                .ok_or_else(|| {
                    LangError::at(
                        *p,
                        format!("unknown os `{n}`; use android, ios, harmony or other"),
                    )
                }),
            Value::Number(_, p) => Err(LangError::at(*p, "os takes a name, e.g. `os == ios`")),
        })?;
        return Ok(Expr::Os(mask as u8));
    }
    if let Some(system) = taxonomy.system(name) {
        let resolve = |v: &Value| match v {
            Value::Name(n, p) => taxonomy.value_code(system, n).ok_or_else(|| {
                LangError::at(*p, format!("`{n}` is not a value of tag system `{name}`"))
            }),
            Value::Number(n, p) => Err(LangError::at(
                *p,
                format!("tag system `{name}` takes value names, not `{n}`"),
            )),
        };
        return Ok(match test {
            Test::Cmp(CmpOp::Eq, v) => Expr::Tag(Box::new([resolve(v)?])),
            Test::Cmp(CmpOp::Ne, v) => Expr::Not(Box::new(Expr::Tag(Box::new([resolve(v)?])))),
            Test::InSet(vals) => {
                let mut codes = vals.iter().map(resolve).collect::<Result<Vec<_>, _>>()?;
                codes.sort_unstable();
                codes.dedup();
                Expr::Tag(codes.into_boxed_slice())
            }
            Test::Cmp(op, _) => {
                return Err(LangError::at(
                    pos,
                    format!(
                        "`{op}` is not defined for tag system `{name}`; use ==, != or in {{...}}"
                    ),
                ));
            }
            Test::InRange(..) => {
                return Err(LangError::at(
                    pos,
                    format!("tag system `{name}` takes a set of names, `in {{a, b}}`"),
                ));
            }
        });
    }
    if let Some(attr) = Attr::from_name(name) {
        let names = attr.value_names();
        let resolve = |v: &Value| -> Result<u8, LangError> {
            match (v, names) {
                (Value::Number(n, p), None) => u8::try_from(*n)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| LangError::at(*p, format!("`{name}` values are 1..255"))),
                (Value::Name(n, p), Some(names)) => names
                    .iter()
                    .position(|x| x == n)
                    .map(|i| i as u8 + 1)
                    .ok_or_else(|| {
                        LangError::at(
                            *p,
                            format!("`{n}` is not a {name}; use one of {}", names.join(", ")),
                        )
                    }),
                (Value::Name(n, p), None) => Err(LangError::at(
                    *p,
                    format!("`{name}` takes a number, not `{n}`"),
                )),
                (Value::Number(n, p), Some(names)) => Err(LangError::at(
                    *p,
                    format!("`{name}` takes a name ({}), not `{n}`", names.join(", ")),
                )),
            }
        };
        return Ok(match test {
            Test::Cmp(op, v) => {
                let c = resolve(v)?;
                let (lo, hi) = match op {
                    CmpOp::Eq | CmpOp::Ne => (c, c),
                    CmpOp::Ge => (c, u8::MAX),
                    CmpOp::Gt => (c.saturating_add(1), u8::MAX),
                    CmpOp::Le => (1, c),
                    CmpOp::Lt => (1, c - 1),
                };
                let e = Expr::Attr { attr, lo, hi };
                if *op == CmpOp::Ne {
                    Expr::And(Box::new([
                        Expr::Attr {
                            attr,
                            lo: 1,
                            hi: u8::MAX,
                        },
                        Expr::Not(Box::new(e)),
                    ]))
                } else {
                    e
                }
            }
            Test::InRange(lo, hi) => {
                if names.is_some() {
                    return Err(LangError::at(
                        pos,
                        format!("`{name}` takes names, use `in {{...}}`"),
                    ));
                }
                let lo = u8::try_from(*lo).unwrap_or(u8::MAX).max(1);
                let hi = u8::try_from(*hi).unwrap_or(u8::MAX);
                Expr::Attr { attr, lo, hi }
            }
            Test::InSet(vals) => {
                let mut mask = [0u64; 4];
                for v in vals {
                    let c = resolve(v)?;
                    mask[usize::from(c >> 6)] |= 1 << (c & 63);
                }
                Expr::AttrIn { attr, mask }
            }
        });
    }
    let systems: Vec<_> = taxonomy.systems().iter().map(|s| s.name.as_str()).collect();
    let attrs: Vec<_> = Attr::ALL.iter().map(|a| a.name()).collect();
    Err(LangError::at(
        pos,
        format!(
            "unknown name `{name}`; tag systems: {}; attributes: {}; request: os",
            systems.join(", "),
            attrs.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::profile::{BehaviourCount, ItemState, ProfileBuilder};
    use crate::strategy::lang::parse;

    fn compile_src(src: &str) -> Result<Expr, LangError> {
        compile(&parse(src)?, &Taxonomy::default_taxonomy())
    }

    fn ctx(p: &UserProfile) -> EvalContext<'_> {
        EvalContext {
            profile: p,
            known_user: true,
            today: 1000,
            os: Os::Android,
        }
    }

    #[test]
    fn unknown_names_and_values_are_type_errors_at_their_position() {
        let e = compile_src("target_group == urban_famly").unwrap_err();
        assert_eq!(e.pos.col, 17);
        assert!(e.message.contains("urban_famly"));
        let e = compile_src("tribe == x").unwrap_err();
        assert!(e.message.contains("unknown name `tribe`"));
        let e = compile_src("target_group >= urban_family").unwrap_err();
        assert!(e.message.contains("not defined"));
        let e = compile_src("age >= old").unwrap_err();
        assert!(e.message.contains("takes a number"));
        let e = compile_src("carted(category 1, 7d)").unwrap_err();
        assert!(e.message.contains("unknown function"));
        let e = compile_src("four_a(brand 1, 7d) >= act").unwrap_err();
        assert!(e.message.contains("no window"));
        let e = compile_src("cart(shop 1, 7d)").unwrap_err();
        assert!(e.message.contains("scope"));
        let e = compile_src("buy(sku 1, 5000d)").unwrap_err();
        assert!(e.message.contains("longer"));
    }

    #[test]
    fn windows_count_whole_days_including_today() {
        let item = ItemKey::new(Scope::Category, 1319).unwrap();
        let mut b = ProfileBuilder::default();
        for (day, count) in [(1000, 1), (994, 2), (993, 4)] {
            b.behaviour.push(BehaviourCount {
                item,
                action: Action::Browse,
                day,
                count,
            });
        }
        let p = b.build().unwrap();
        let c = ctx(&p);
        // 7d = today and the 6 days before: 1000 + 994 = 3
        assert!(
            compile_src("browse(category 1319, 7d) == 3")
                .unwrap()
                .eval(&c)
        );
        assert!(
            compile_src("browse(category 1319, 8d) == 7")
                .unwrap()
                .eval(&c)
        );
        assert!(
            compile_src("browse(category 1319, 1d..7d) == 2")
                .unwrap()
                .eval(&c)
        );
        assert!(compile_src("browse(category 1319) >= 7").unwrap().eval(&c));
        assert!(
            !compile_src("browse(category 1319, 1d)  > 1")
                .unwrap()
                .eval(&c)
        );
        assert!(
            compile_src("browse(category 1319, 7d) != 4")
                .unwrap()
                .eval(&c)
        );
        assert!(!compile_src("cart(category 1319)").unwrap().eval(&c));
    }

    #[test]
    fn unknown_attributes_never_satisfy_comparisons() {
        let p = ProfileBuilder::default().build().unwrap();
        let c = ctx(&p);
        assert!(!compile_src("age <= 30").unwrap().eval(&c));
        assert!(!compile_src("age != 30").unwrap().eval(&c));
        assert!(!compile_src("gender in {male, female}").unwrap().eval(&c));
        let mut b = ProfileBuilder::default();
        b.attr(Attr::Age, 30).attr(Attr::Education, 4);
        let p = b.build().unwrap();
        let c = ctx(&p);
        assert!(
            compile_src("age in 26..35 and education >= bachelor")
                .unwrap()
                .eval(&c)
        );
        assert!(!compile_src("age > 30").unwrap().eval(&c));
        assert!(compile_src("age != 31").unwrap().eval(&c));
    }

    #[test]
    fn states_compare_in_their_order() {
        let brand = ItemKey::new(Scope::Brand, 8557).unwrap();
        let mut b = ProfileBuilder::default();
        b.items.push((
            brand,
            ItemState::default()
                .with(StateField::FourA, 2)
                .with(StateField::Clv, 3),
        ));
        let p = b.build().unwrap();
        let c = ctx(&p);
        assert!(
            compile_src("four_a(brand 8557) >= appeal")
                .unwrap()
                .eval(&c)
        );
        assert!(!compile_src("four_a(brand 8557) >= act").unwrap().eval(&c));
        assert!(
            compile_src("four_a(brand 8557) in {aware, appeal}")
                .unwrap()
                .eval(&c)
        );
        assert!(compile_src("clv(brand 8557) == high").unwrap().eval(&c));
        // no state known for another brand = none / unknown
        assert!(compile_src("four_a(brand 1) == none").unwrap().eval(&c));
        assert!(
            compile_src("rfm_r(brand 8557) == unknown")
                .unwrap()
                .eval(&c)
        );
    }

    #[test]
    fn os_is_read_from_the_request() {
        let p = UserProfile::empty();
        assert!(compile_src("os == android").unwrap().eval(&ctx(&p)));
        assert!(!compile_src("os in {ios, harmony}").unwrap().eval(&ctx(&p)));
    }
}
