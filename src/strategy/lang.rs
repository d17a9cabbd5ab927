//! The audience language: text -> syntax tree, with line/column positions.
//!
//! ```text
//! expr      := or
//! or        := and ("or" and)*
//! and       := unary ("and" unary)*
//! unary     := "not" unary | "(" expr ")" | predicate
//! predicate := NAME op value                      target_group == urban_family, age >= 26
//!            | NAME "in" "{" value ("," value)* "}" target_group in {urban_family, town_family}
//!            | NAME "in" NUMBER ".." NUMBER        age in 26..55
//!            | FUNC "(" SCOPE NUMBER ["," window] ")" [op value | "in" "{" ... "}"]
//!                                                 cart(category 1319, 7d), browse(brand 8557, 3d) >= 3,
//!                                                 four_a(brand 8557) in {aware, appeal}
//! window    := DAYS | DAYS ".." DAYS              7d (the last 7 days, today included), 30d..90d
//! op        := "==" | "=" | "!=" | ">=" | "<=" | ">" | "<"
//! ```
//! `#` starts a comment that runs to the end of the line. This module knows
//! only syntax; names are resolved against the taxonomy in `compile`.

use std::fmt;

/// A position in the audience text, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub col: u32,
    /// Byte offset, from 0.
    pub offset: usize,
}

/// A syntax or type error at a position of the audience text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {}, column {}: {message}", pos.line, pos.col)]
pub struct LangError {
    /// Where the problem is.
    pub pos: Pos,
    /// What is wrong, for an operator.
    pub message: String,
}

impl LangError {
    pub(crate) fn at(pos: Pos, message: impl Into<String>) -> Self {
        Self {
            pos,
            message: message.into(),
        }
    }
}

const START: Pos = Pos {
    line: 1,
    col: 1,
    offset: 0,
};

/// Deepest nesting of parentheses / `not` accepted (protects the stack).
pub const MAX_DEPTH: usize = 64;
/// Longest audience text accepted, in bytes.
pub const MAX_AUDIENCE_LEN: usize = 64 * 1024;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==` or `=`
    Eq,
    /// `!=`
    Ne,
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `<`
    Lt,
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Ge => ">=",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Lt => "<",
        })
    }
}

/// A literal on the right of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A name: a tag value, a level, an OS.
    Name(String, Pos),
    /// A non-negative integer.
    Number(u64, Pos),
}

impl Value {
    /// Where the literal is.
    pub fn pos(&self) -> Pos {
        match self {
            Self::Name(_, p) | Self::Number(_, p) => *p,
        }
    }
}

/// What a predicate compares its subject with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// `op value`
    Cmp(CmpOp, Value),
    /// `in {v, ...}`
    InSet(Vec<Value>),
    /// `in lo..hi` (inclusive)
    InRange(u64, u64),
}

/// A behaviour window in days ago: `[from, to)`; `None` on a call means all history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First day ago included (0 = today).
    pub from: u32,
    /// First day ago excluded.
    pub to: u32,
    /// Where the window is written.
    pub pos: Pos,
}

/// A clause of a conjunction with the byte range it was written at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned {
    /// The clause.
    pub ast: Ast,
    /// Its bytes in the audience text.
    pub span: std::ops::Range<usize>,
}

/// A node of the syntax tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ast {
    /// All must hold.
    And(Vec<Spanned>),
    /// At least one must hold.
    Or(Vec<Ast>),
    /// Must not hold.
    Not(Box<Ast>, Pos),
    /// `name test`: a tag system, attribute or request field.
    Field {
        /// The subject's name.
        name: String,
        /// Where the predicate starts.
        pos: Pos,
        /// What it is compared with.
        test: Test,
    },
    /// `func(scope id[, window]) [test]`: behaviour or item state.
    Call {
        /// The function name.
        func: String,
        /// Where the predicate starts.
        pos: Pos,
        /// `category`, `brand` or `sku`.
        scope: String,
        /// Where the scope is written.
        scope_pos: Pos,
        /// The item id.
        id: u64,
        /// The behaviour window, if given.
        window: Option<Window>,
        /// The comparison, if given.
        test: Option<Test>,
    },
}

impl Ast {
    /// Where this node starts in the text.
    pub fn pos(&self) -> Pos {
        match self {
            Self::And(v) => v.first().map(|s| s.ast.pos()).unwrap_or(START),
            Self::Or(v) => v.first().map(Ast::pos).unwrap_or(START),
            Self::Not(_, p) => *p,
            Self::Field { pos, .. } | Self::Call { pos, .. } => *pos,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Number(u64),
    Days(u32),
    Op(CmpOp),
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    DotDot,
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ident(s) => write!(f, "`{s}`"),
            Self::Number(n) => write!(f, "`{n}`"),
            Self::Days(n) => write!(f, "`{n}d`"),
            Self::Op(o) => write!(f, "`{o}`"),
            Self::LParen => f.write_str("`(`"),
            Self::RParen => f.write_str("`)`"),
            Self::LBrace => f.write_str("`{`"),
            Self::RBrace => f.write_str("`}`"),
            Self::Comma => f.write_str("`,`"),
            Self::DotDot => f.write_str("`..`"),
            Self::End => f.write_str("the end of the audience"),
        }
    }
}

fn lex(src: &str) -> Result<Vec<(Tok, Pos, usize)>, LangError> {
    let mut out = Vec::new();
    let mut line = 1u32;
    let mut col = 1u32;
    let mut it = src.char_indices().peekable();
    while let Some(&(off, c)) = it.peek() {
        let pos = Pos {
            line,
            col,
            offset: off,
        };
        if c == '\n' {
            it.next();
            line += 1;
            col = 1;
            continue;
        }
        if c.is_whitespace() {
            it.next();
            col += 1;
            continue;
        }
        if c == '#' {
            while let Some(&(_, c)) = it.peek() {
                if c == '\n' {
                    break;
                }
                it.next();
            }
            continue;
        }
        let mut take = |n: u32| {
            for _ in 0..n {
                it.next();
            }
            col += n;
        };
        let rest = &src[off..];
        let two = rest.get(..2).unwrap_or("");
        let tok = match two {
            "==" => Some((Tok::Op(CmpOp::Eq), 2)),
            "!=" => Some((Tok::Op(CmpOp::Ne), 2)),
            ">=" => Some((Tok::Op(CmpOp::Ge), 2)),
            "<=" => Some((Tok::Op(CmpOp::Le), 2)),
            ".." => Some((Tok::DotDot, 2)),
            _ => match c {
                '=' => Some((Tok::Op(CmpOp::Eq), 1)),
                '>' => Some((Tok::Op(CmpOp::Gt), 1)),
                '<' => Some((Tok::Op(CmpOp::Lt), 1)),
                '(' => Some((Tok::LParen, 1)),
                ')' => Some((Tok::RParen, 1)),
                '{' => Some((Tok::LBrace, 1)),
                '}' => Some((Tok::RBrace, 1)),
                ',' => Some((Tok::Comma, 1)),
                _ => None,
            },
        };
        if let Some((t, n)) = tok {
            take(n);
            out.push((t, pos, off + n as usize));
            continue;
        }
        if c.is_ascii_digit() {
            let len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let n: u64 = rest[..len]
                .parse()
                .map_err(|_| LangError::at(pos, "number too large"))?;
            let after = rest[len..].chars().next();
            take(len as u32);
            match after {
                Some('d') => {
                    take(1);
                    let days =
                        u32::try_from(n).map_err(|_| LangError::at(pos, "window too long"))?;
                    out.push((Tok::Days(days), pos, off + len + 1));
                }
                Some(u) if u.is_ascii_alphabetic() || u == '_' => {
                    return Err(LangError::at(
                        pos,
                        format!(
                            "unexpected `{u}` after a number (windows are written in days, like `7d`)"
                        ),
                    ));
                }
                _ => out.push((Tok::Number(n), pos, off + len)),
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let len = rest
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            take(len as u32);
            out.push((Tok::Ident(rest[..len].to_string()), pos, off + len));
            continue;
        }
        return Err(LangError::at(pos, format!("unexpected character `{c}`")));
    }
    out.push((
        Tok::End,
        Pos {
            line,
            col,
            offset: src.len(),
        },
        src.len(),
    ));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, Pos, usize)>,
    at: usize,
    depth: usize,
    /// End offset of the last token taken.
    prev_end: usize,
}

/// Parses an audience expression.
pub fn parse(src: &str) -> Result<Ast, LangError> {
    let start = Pos {
        line: 1,
        col: 1,
        offset: 0,
    };
    if src.len() > MAX_AUDIENCE_LEN {
        return Err(LangError::at(
            start,
            format!("audience longer than {MAX_AUDIENCE_LEN} bytes"),
        ));
    }
    let mut p = Parser {
        toks: lex(src)?,
        at: 0,
        depth: 0,
        prev_end: 0,
    };
    if p.peek() == &Tok::End {
        return Err(LangError::at(start, "empty audience"));
    }
    let ast = p.or()?;
    match p.peek() {
        Tok::End => Ok(ast),
        t => Err(LangError::at(
            p.pos(),
            format!("expected `and`, `or` or the end, found {t}"),
        )),
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at.min(self.toks.len() - 1)].0
    }
    fn pos(&self) -> Pos {
        self.toks[self.at.min(self.toks.len() - 1)].1
    }
    fn bump(&mut self) -> (Tok, Pos) {
        let (t, p, end) = self.toks[self.at.min(self.toks.len() - 1)].clone();
        if self.at < self.toks.len() - 1 {
            self.at += 1;
        }
        self.prev_end = end;
        (t, p)
    }
    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == kw)
    }
    fn expect(&mut self, want: Tok, what: &str) -> Result<Pos, LangError> {
        let (t, pos) = self.bump();
        if t == want {
            Ok(pos)
        } else {
            Err(LangError::at(pos, format!("expected {what}, found {t}")))
        }
    }

    fn or(&mut self) -> Result<Ast, LangError> {
        let mut items = vec![self.and()?];
        while self.is_keyword("or") {
            self.bump();
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Ast::Or(items)
        })
    }

    fn spanned_unary(&mut self) -> Result<Spanned, LangError> {
        let start = self.pos().offset;
        let ast = self.unary()?;
        Ok(Spanned {
            ast,
            span: start..self.prev_end,
        })
    }

    fn and(&mut self) -> Result<Ast, LangError> {
        let mut items = vec![self.spanned_unary()?];
        while self.is_keyword("and") {
            self.bump();
            items.push(self.spanned_unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0).ast
        } else {
            Ast::And(items)
        })
    }

    fn unary(&mut self) -> Result<Ast, LangError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(LangError::at(
                self.pos(),
                format!("nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        let r = self.unary_inner();
        self.depth -= 1;
        r
    }

    fn unary_inner(&mut self) -> Result<Ast, LangError> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Ident(s) if s == "not" => {
                self.bump();
                Ok(Ast::Not(Box::new(self.unary()?), pos))
            }
            Tok::LParen => {
                self.bump();
                let e = self.or()?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(e)
            }
            Tok::Ident(s) if s == "and" || s == "or" || s == "in" => Err(LangError::at(
                pos,
                format!("expected a condition, found `{s}`"),
            )),
            Tok::Ident(name) => {
                self.bump();
                if self.peek() == &Tok::LParen {
                    self.call(name, pos)
                } else {
                    let test = self.test()?.ok_or_else(|| {
                        LangError::at(
                            self.pos(),
                            format!(
                                "expected a comparison or `in` after `{name}`, found {}",
                                self.peek()
                            ),
                        )
                    })?;
                    Ok(Ast::Field { name, pos, test })
                }
            }
            t => Err(LangError::at(
                pos,
                format!("expected a condition, found {t}"),
            )),
        }
    }

    fn call(&mut self, func: String, pos: Pos) -> Result<Ast, LangError> {
        self.expect(Tok::LParen, "`(`")?;
        let (scope_tok, scope_pos) = self.bump();
        let Tok::Ident(scope) = scope_tok else {
            return Err(LangError::at(
                scope_pos,
                format!("expected `category`, `brand` or `sku`, found {scope_tok}"),
            ));
        };
        let (id_tok, id_pos) = self.bump();
        let Tok::Number(id) = id_tok else {
            return Err(LangError::at(
                id_pos,
                format!("expected the {scope} id (a number), found {id_tok}"),
            ));
        };
        let window = if self.peek() == &Tok::Comma {
            self.bump();
            Some(self.window()?)
        } else {
            None
        };
        self.expect(Tok::RParen, "`)` or `, <window>`")?;
        let test = self.test()?;
        Ok(Ast::Call {
            func,
            pos,
            scope,
            scope_pos,
            id,
            window,
            test,
        })
    }

    fn days(&mut self) -> Result<u32, LangError> {
        match self.bump() {
            (Tok::Days(d), _) => Ok(d),
            (t, p) => Err(LangError::at(
                p,
                format!("expected a window in days like `7d`, found {t}"),
            )),
        }
    }

    fn window(&mut self) -> Result<Window, LangError> {
        let pos = self.pos();
        let first = self.days()?;
        let (from, to) = if self.peek() == &Tok::DotDot {
            self.bump();
            (first, self.days()?)
        } else {
            (0, first)
        };
        if to == 0 || from >= to {
            return Err(LangError::at(
                pos,
                "window must be non-empty: `Nd` with N >= 1, or `Ad..Bd` with A < B",
            ));
        }
        Ok(Window { from, to, pos })
    }

    fn value(&mut self) -> Result<Value, LangError> {
        match self.bump() {
            (Tok::Ident(s), p) => Ok(Value::Name(s, p)),
            (Tok::Number(n), p) => Ok(Value::Number(n, p)),
            (t, p) => Err(LangError::at(
                p,
                format!("expected a name or a number, found {t}"),
            )),
        }
    }

    fn test(&mut self) -> Result<Option<Test>, LangError> {
        match self.peek().clone() {
            Tok::Op(op) => {
                self.bump();
                Ok(Some(Test::Cmp(op, self.value()?)))
            }
            Tok::Ident(s) if s == "in" => {
                self.bump();
                match self.peek().clone() {
                    Tok::LBrace => {
                        self.bump();
                        let mut values = vec![self.value()?];
                        while self.peek() == &Tok::Comma {
                            self.bump();
                            if self.peek() == &Tok::RBrace {
                                break; // trailing comma
                            }
                            values.push(self.value()?);
                        }
                        self.expect(Tok::RBrace, "`,` or `}`")?;
                        Ok(Some(Test::InSet(values)))
                    }
                    Tok::Number(lo) => {
                        self.bump();
                        self.expect(Tok::DotDot, "`..`")?;
                        let (t, p) = self.bump();
                        let Tok::Number(hi) = t else {
                            return Err(LangError::at(p, format!("expected a number, found {t}")));
                        };
                        if lo > hi {
                            return Err(LangError::at(p, format!("empty range {lo}..{hi}")));
                        }
                        Ok(Some(Test::InRange(lo, hi)))
                    }
                    t => Err(LangError::at(
                        self.pos(),
                        format!("expected `{{` or a number range after `in`, found {t}"),
                    )),
                }
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn and_binds_tighter_than_or() {
        let ast = parse("a == x or b == y and c == z").unwrap();
        let Ast::Or(items) = ast else {
            panic!("expected or, got {ast:?}")
        };
        assert_eq!(items.len(), 2);
        assert!(matches!(items[1], Ast::And(_)));
    }

    #[test]
    fn calls_take_scope_id_window_and_comparison() {
        let ast = parse("browse(brand 8557, 3d) >= 3").unwrap();
        let Ast::Call {
            func,
            scope,
            id,
            window,
            test,
            ..
        } = ast
        else {
            panic!("expected a call")
        };
        assert_eq!(
            (func.as_str(), scope.as_str(), id),
            ("browse", "brand", 8557)
        );
        let w = window.unwrap();
        assert_eq!((w.from, w.to), (0, 3));
        assert!(matches!(
            test,
            Some(Test::Cmp(CmpOp::Ge, Value::Number(3, _)))
        ));
    }

    #[test]
    fn ranged_windows_parse() {
        let Ast::Call { window, .. } = parse("buy(category 1525, 30d..90d)").unwrap() else {
            panic!()
        };
        let w = window.unwrap();
        assert_eq!((w.from, w.to), (30, 90));
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        let e = parse("target_group in {a, b}\n  and cart(category, 7d)").unwrap_err();
        assert_eq!((e.pos.line, e.pos.col), (2, 20));
        assert!(e.message.contains("id"), "{}", e.message);
        let e = parse("age >= ").unwrap_err();
        assert_eq!(e.pos.line, 1);
        let e = parse("(a == b").unwrap_err();
        assert!(e.message.contains("`)`"), "{}", e.message);
        let e = parse("cart(category 1, 7h)").unwrap_err();
        assert!(e.message.contains("days"), "{}", e.message);
        let e = parse("buy(category 1, 9d..3d)").unwrap_err();
        assert!(e.message.contains("non-empty"), "{}", e.message);
    }

    #[test]
    fn comments_and_trailing_commas_are_accepted() {
        parse("# families only\ntarget_group in {a, b,} # end").unwrap();
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let src = format!("{}a == b{}", "(".repeat(10_000), ")".repeat(10_000));
        let e = parse(&src).unwrap_err();
        assert!(e.message.contains("nested"), "{}", e.message);
        let src = format!("{}a == b", "not ".repeat(10_000));
        assert!(parse(&src).is_err());
    }

    #[test]
    fn empty_and_garbage_audiences_are_errors() {
        assert!(parse("").is_err());
        assert!(parse("   # nothing").is_err());
        assert!(parse("and").is_err());
        assert!(parse("a == €").is_err());
    }
}
