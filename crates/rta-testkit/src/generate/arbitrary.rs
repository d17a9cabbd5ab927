//! [`Template::Arbitrary`](super::Template::Arbitrary): random `and` / `or`
//! / `not` trees over every kind of predicate, operator and window of the
//! audience language, for property tests.

use rand::Rng;
use rand::seq::IndexedRandom;

use super::draw::Draw;

const FOUR_A: &[&str] = &["none", "aware", "appeal", "act", "advocate"];
const LEVELS: &[&str] = &["unknown", "low", "mid", "high"];
const STATES: &[&str] = &["four_a", "rfm_r", "rfm_f", "rfm_m", "clv"];
const ACTIONS: &[&str] = &["browse", "search", "favorite", "cart", "buy", "share"];
const OPS: &[&str] = &["==", "!=", ">=", "<=", ">", "<"];

impl Draw<'_> {
    /// A random tree of depth at most `depth` over every kind of predicate.
    pub(super) fn arbitrary(&mut self, depth: u32) -> String {
        if depth == 0 || self.chance(0.35) {
            return self.leaf();
        }
        match self.rng.random_range(0..3) {
            0 | 1 => {
                let op = if self.chance(0.5) { " and " } else { " or " };
                let n = self.range(2, 3);
                let parts: Vec<String> = (0..n)
                    .map(|_| format!("({})", self.arbitrary(depth - 1)))
                    .collect();
                parts.join(op)
            }
            _ => format!("not ({})", self.arbitrary(depth - 1)),
        }
    }

    /// One predicate of any kind, operator and window.
    fn leaf(&mut self) -> String {
        match self.rng.random_range(0..6) {
            0 => {
                let systems = self.taxonomy.systems();
                if systems.is_empty() {
                    return self.demographic();
                }
                let name = systems[self.rng.random_range(0..systems.len())]
                    .name
                    .clone();
                let k = self.range(1, 3) as usize;
                match self.tag(&name, k) {
                    Some(t) if self.chance(0.2) => match t.split_once(" == ") {
                        Some((s, v)) => format!("{s} != {v}"),
                        None => t,
                    },
                    Some(t) => t,
                    None => self.demographic(),
                }
            }
            1 => self.demographic(),
            2 | 3 => {
                let action = self.pick(ACTIONS);
                let item = match self.rng.random_range(0..5) {
                    0 => format!("sku {}", self.sku()),
                    1 | 2 => self.item(0.0),
                    _ => self.item(1.0),
                };
                let window = match self.rng.random_range(0..4) {
                    0 => String::new(),
                    1 => {
                        let from = self.range(1, 30);
                        format!(", {from}d..{}d", from + self.range(1, 60))
                    }
                    _ => format!(", {}d", self.pick(&[1, 3, 7, 14, 30, 90, 180])),
                };
                let n = self.range(1, 4);
                let test = match self.rng.random_range(0..4) {
                    0 => String::new(),
                    1 => format!(" in {}..{}", n - 1, n + self.range(0, 5)),
                    _ => format!(" {} {n}", self.pick(OPS)),
                };
                format!("{action}({item}{window}){test}")
            }
            4 => {
                let field = self.pick(STATES);
                let names = if field == "four_a" { FOUR_A } else { LEVELS };
                let brand = if self.chance(0.8) {
                    format!("brand {}", self.brand())
                } else {
                    self.item(0.0)
                };
                if self.chance(0.3) {
                    let two: Vec<&str> = names.choose_multiple(&mut self.rng, 2).copied().collect();
                    format!("{field}({brand}) in {{{}}}", two.join(", "))
                } else {
                    format!("{field}({brand}) {} {}", self.pick(OPS), self.pick(names))
                }
            }
            _ => format!(
                "os {} {}",
                self.pick(&["==", "!="]),
                self.pick(&["android", "ios", "harmony", "other"])
            ),
        }
    }
}
