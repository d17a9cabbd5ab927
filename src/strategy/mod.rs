//! Strategies: who to target and how much more they are worth.
//!
//! A strategy file (TOML) lists strategies, each with an audience written in
//! the audience language (see [`lang`]). Loading parses and type-checks every
//! audience, compiles it ([`compile`]) and builds a [`Matcher`] over the set.
//! The result, a [`StrategySet`], is immutable: reloads build a new set beside
//! the serving one and swap it in atomically, so a bad file never replaces a
//! good set. The `rta-testkit` crate writes random but realistic strategy
//! files, for benchmarks and for testing matchers against each other.

pub mod compile;
pub mod experiment;
pub mod frequency;
pub mod indexed;
pub mod lang;
pub mod matcher;
pub mod score;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

pub use compile::{EvalContext, Expr, Os};
pub use indexed::{FeatureShares, IndexedMatcher};
pub use matcher::{LinearMatcher, Matcher};

use crate::domain::media::{Media, MediaIds};
use crate::domain::taxonomy::Taxonomy;
use crate::index::profile::ItemKey;
use crate::strategy::experiment::{Experiment, ExperimentSpec};
use crate::strategy::frequency::FrequencyCap;
use crate::strategy::score::{ModelInfo, Scoring};

pub use crate::domain::limits::BID_FACTOR_RANGE;

/// The most strategies one file may hold.
pub const MAX_STRATEGIES: usize = 100_000;

/// Sets of at least this many strategies are matched through an
/// [`IndexedMatcher`]; smaller ones are scanned, which is cheaper than
/// probing a user's few dozen features (see `benches/matching.rs`).
pub const INDEX_FROM: usize = 64;

/// Why a strategy file was rejected. Positions are lines and columns of the file.
#[derive(Debug, thiserror::Error)]
pub enum StrategyError {
    /// The file is not valid TOML of the expected shape.
    #[error("{source_name}: {message}")]
    File {
        /// The file's name.
        source_name: String,
        /// The TOML error.
        message: String,
    },
    /// An audience does not parse or does not type-check.
    #[error("{source_name}:{line}:{col}: strategy `{strategy}`: {message}")]
    Audience {
        /// The file's name.
        source_name: String,
        /// The strategy's id.
        strategy: String,
        /// Line in the file.
        line: u32,
        /// Column in the file.
        col: u32,
        /// What is wrong.
        message: String,
    },
    /// A strategy's other fields are invalid.
    #[error("{source_name}: strategy `{strategy}`: {message}")]
    Invalid {
        /// The file's name.
        source_name: String,
        /// The strategy's id.
        strategy: String,
        /// What is wrong.
        message: String,
    },
    /// The file could not be read.
    #[error("{source_name}: {source}")]
    Io {
        /// The file's name.
        source_name: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// How long media may cache answers (seconds), by kind of answer.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CachePolicy {
    /// When at least one strategy matched.
    pub matched_seconds: u32,
    /// When a known user matched nothing.
    pub unmatched_seconds: u32,
    /// When no id resolved to a known user (doubtful-only requests get 0).
    pub unknown_device_seconds: u32,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            matched_seconds: 300,
            unmatched_seconds: 600,
            unknown_device_seconds: 1800,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrategyFile {
    /// A label for this version of the file, shown by the admin API.
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    cache: CachePolicy,
    /// The dual-tower model the strategies' `score` vectors belong to.
    #[serde(default)]
    model: Option<ModelEntry>,
    /// A cap on a user's exposures over all strategies.
    #[serde(default)]
    user_cap: Option<FrequencyCap>,
    #[serde(rename = "strategy", default)]
    strategies: Vec<StrategyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    version: String,
    dims: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrategyEntry {
    id: String,
    target_id: String,
    #[serde(default = "one")]
    bid_factor: f64,
    #[serde(default)]
    description: String,
    audience: toml::Spanned<String>,
    #[serde(default)]
    match_unknown_devices: bool,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    score: Option<Scoring>,
    #[serde(default)]
    cap: Option<FrequencyCap>,
    #[serde(default)]
    experiment: Option<ExperimentSpec>,
    #[serde(default)]
    media_ids: MediaIds,
}

fn one() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}

/// One top-level condition of an audience (audiences are conjunctions of clauses).
#[derive(Debug, Clone)]
pub struct Clause {
    /// The clause as written, for explanations.
    pub text: String,
    /// The compiled clause.
    pub expr: Expr,
}

/// A compiled strategy.
#[derive(Debug, Clone)]
pub struct Strategy {
    /// Our id, unique in the set.
    pub id: Arc<str>,
    /// The id Tencent knows it by (`out_target_id`).
    pub target_id: Arc<str>,
    /// The ids the numbered media know it by; none = not offered there.
    pub media_ids: MediaIds,
    /// Bid factor for matched traffic, within [`BID_FACTOR_RANGE`].
    pub bid_factor: f64,
    /// What the strategy is for, for operators.
    pub description: String,
    /// The audience as written.
    pub audience: String,
    /// The audience's top-level clauses; all must hold.
    pub clauses: Box<[Clause]>,
    /// Whether devices with no profile are evaluated (against an empty profile).
    pub match_unknown_devices: bool,
    /// The key media feedback about this strategy is counted under.
    pub feedback_key: ItemKey,
    /// Dual-tower scoring: thresholds and a score-driven bid factor.
    pub score: Option<Scoring>,
    /// A cap on a user's exposures to this strategy.
    pub cap: Option<FrequencyCap>,
    /// Variants and holdout.
    pub experiment: Option<Experiment>,
}

impl Strategy {
    /// True when a match is the answer as is: no score, cap or experiment
    /// to settle (the fast path of `Decide`).
    #[inline]
    pub fn is_plain(&self) -> bool {
        self.score.is_none() && self.cap.is_none() && self.experiment.is_none()
    }
}

impl Strategy {
    /// Whether the context satisfies this strategy.
    #[inline]
    pub fn matches(&self, ctx: &EvalContext<'_>) -> bool {
        (ctx.known_user || self.match_unknown_devices)
            && self.clauses.iter().all(|c| c.expr.eval(ctx))
    }

    /// The first clause the context fails, or `None` when it matches.
    pub fn first_failing_clause(&self, ctx: &EvalContext<'_>) -> Option<&str> {
        if !ctx.known_user && !self.match_unknown_devices {
            return Some("(device unknown; strategy does not match unknown devices)");
        }
        self.clauses
            .iter()
            .find(|c| !c.expr.eval(ctx))
            .map(|c| c.text.as_str())
    }
}

/// What a match of a plain strategy answers (see [`Strategy::is_plain`]).
///
/// Kept apart from the strategies, in strategy order: a typical user's
/// twenty matches then read twenty small entries of one array instead of
/// twenty strategies spread over several cache lines each.
#[derive(Debug, Clone)]
pub(crate) struct PlainAnswer {
    /// The strategy's id.
    pub(crate) id: Arc<str>,
    /// The media-facing id.
    pub(crate) target_id: Arc<str>,
    /// The numbered media's ids.
    pub(crate) media_ids: MediaIds,
    /// The bid factor.
    pub(crate) bid_factor: f64,
}

/// An immutable, compiled set of strategies with its matcher.
pub struct StrategySet {
    /// The file's version label (or a content hash when it has none).
    pub version: String,
    /// Cache hints.
    pub cache: CachePolicy,
    /// The dual-tower model generation, when strategies are scored.
    pub model: Option<ModelInfo>,
    /// The cap on a user's exposures over all strategies.
    pub user_cap: Option<FrequencyCap>,
    strategies: Vec<Strategy>,
    /// Per strategy, its answer when it is plain (see [`Strategy::is_plain`]).
    plain: Vec<Option<PlainAnswer>>,
    /// Strategies whose answers are counted (their cap, or the user cap,
    /// counts decisions), by index.
    counted: Vec<bool>,
    /// Whether the user cap counts answers.
    counts_answers: bool,
    counts_any: bool,
    by_id: HashMap<Arc<str>, u32>,
    /// Per numbered media ([`Media::NUMBERED`] order), the strategies it
    /// knows, by index, sorted.
    on_media: [Vec<u32>; 2],
    /// Per numbered media, its id -> the strategies carrying it, sorted.
    by_media_id: [HashMap<i64, Vec<u32>>; 2],
    by_feedback_key: HashMap<ItemKey, u32>,
    matcher: Box<dyn Matcher>,
}

impl std::fmt::Debug for StrategySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrategySet")
            .field("version", &self.version)
            .field("strategies", &self.strategies.len())
            .finish()
    }
}

impl StrategySet {
    /// Parses, checks and compiles a strategy file. `source_name` appears in errors.
    pub fn from_toml(
        src: &str,
        source_name: &str,
        taxonomy: &Taxonomy,
    ) -> Result<Self, StrategyError> {
        let file: StrategyFile = toml::from_str(src).map_err(|e| StrategyError::File {
            source_name: source_name.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        if file.strategies.len() > MAX_STRATEGIES {
            return Err(StrategyError::File {
                source_name: source_name.to_string(),
                message: format!("more than {MAX_STRATEGIES} strategies"),
            });
        }
        let file_error = |message: String| StrategyError::File {
            source_name: source_name.to_string(),
            message,
        };
        let model = match &file.model {
            None => None,
            Some(m) => {
                if m.version.is_empty() || m.version.len() > 64 {
                    return Err(file_error("`model.version` must be 1-64 characters".into()));
                }
                if m.dims == 0 || m.dims > crate::index::profile::MAX_VECTOR_DIMS {
                    return Err(file_error(format!(
                        "`model.dims` must be within 1..={}",
                        crate::index::profile::MAX_VECTOR_DIMS
                    )));
                }
                Some(ModelInfo {
                    version: m.version.clone(),
                    tag: crate::index::profile::model_tag(&m.version),
                    dims: m.dims,
                })
            }
        };
        if let Some(cap) = &file.user_cap {
            cap.validate()
                .map_err(|e| file_error(format!("user_cap: {e}")))?;
        }
        let mut strategies = Vec::with_capacity(file.strategies.len());
        let mut by_id = HashMap::new();
        let mut by_feedback_key = HashMap::new();
        for entry in file.strategies {
            let invalid = |message: String| StrategyError::Invalid {
                source_name: source_name.to_string(),
                strategy: entry.id.clone(),
                message,
            };
            if entry.id.is_empty()
                || entry.id.len() > 64
                || !entry
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            {
                return Err(invalid(
                    "id must be 1-64 characters of [A-Za-z0-9_.-]".to_string(),
                ));
            }
            if entry.target_id.is_empty() || entry.target_id.len() > 64 {
                return Err(invalid("target_id must be 1-64 characters".to_string()));
            }
            entry.media_ids.validate().map_err(invalid)?;
            if !BID_FACTOR_RANGE.contains(&entry.bid_factor) {
                return Err(invalid(format!(
                    "bid_factor {} is outside the media's range {}..={}",
                    entry.bid_factor,
                    BID_FACTOR_RANGE.start(),
                    BID_FACTOR_RANGE.end()
                )));
            }
            let text = entry.audience.get_ref();
            let to_file_pos = |e: lang::LangError| {
                let (line, col) = file_position(src, entry.audience.span(), e.pos);
                StrategyError::Audience {
                    source_name: source_name.to_string(),
                    strategy: entry.id.clone(),
                    line,
                    col,
                    message: e.message,
                }
            };
            let ast = lang::parse(text).map_err(to_file_pos)?;
            let clauses = split_clauses(&ast, text)
                .into_iter()
                .map(|(ast, text)| {
                    Ok(Clause {
                        text,
                        expr: compile::compile(ast, taxonomy)?,
                    })
                })
                .collect::<Result<Box<[Clause]>, lang::LangError>>()
                .map_err(to_file_pos)?;
            if let Some(score) = &entry.score {
                score.validate(model.as_ref()).map_err(invalid)?;
            }
            if let Some(cap) = &entry.cap {
                cap.validate().map_err(invalid)?;
            }
            let experiment = entry
                .experiment
                .as_ref()
                .map(|e| e.compile(&entry.id, &BID_FACTOR_RANGE))
                .transpose()
                .map_err(invalid)?;
            if !entry.enabled {
                continue;
            }
            let id: Arc<str> = Arc::from(entry.id.as_str());
            if by_id.insert(id.clone(), strategies.len() as u32).is_some() {
                return Err(invalid("duplicate strategy id".to_string()));
            }
            // feedback is counted in profiles under a 30-bit hash of the id;
            // two strategies sharing one would see each other's exposures,
            // which matters (and is refused) only where feedback decides
            let feedback_key = ItemKey::strategy(&entry.id);
            if feedback_key == ItemKey::answers() {
                return Err(invalid(
                    "its feedback key is the one reserved for counting answers; rename it"
                        .to_string(),
                ));
            }
            let uses_feedback = entry.cap.is_some() || entry.score.is_some();
            match by_feedback_key.entry(feedback_key) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(strategies.len() as u32);
                }
                std::collections::hash_map::Entry::Occupied(o) => {
                    let other: &Strategy = &strategies[*o.get() as usize];
                    if uses_feedback || other.cap.is_some() || other.score.is_some() {
                        return Err(invalid(format!(
                            "its feedback key collides with strategy `{}`'s, and one of them \
                             uses feedback (cap or score); rename one of them",
                            other.id
                        )));
                    }
                }
            }
            strategies.push(Strategy {
                id,
                target_id: Arc::from(entry.target_id.as_str()),
                media_ids: entry.media_ids,
                bid_factor: entry.bid_factor,
                description: entry.description,
                audience: text.trim().to_string(),
                clauses,
                match_unknown_devices: entry.match_unknown_devices,
                feedback_key,
                score: entry.score,
                cap: entry.cap,
                experiment,
            });
        }
        let version = file
            .version
            .unwrap_or_else(|| format!("sha-{:016x}", fnv1a(src.as_bytes())));
        let matcher: Box<dyn Matcher> = if strategies.len() < INDEX_FROM {
            Box::new(LinearMatcher::new(&strategies))
        } else {
            Box::new(IndexedMatcher::new(&strategies))
        };
        let counts_answers = file
            .user_cap
            .is_some_and(|c| c.count == crate::strategy::frequency::CapCount::Decisions);
        let counted = strategies
            .iter()
            .map(|s| {
                s.cap
                    .is_some_and(|c| c.count == crate::strategy::frequency::CapCount::Decisions)
            })
            .collect::<Vec<bool>>();
        let plain = strategies
            .iter()
            .map(|s| {
                s.is_plain().then(|| PlainAnswer {
                    id: s.id.clone(),
                    target_id: s.target_id.clone(),
                    media_ids: s.media_ids,
                    bid_factor: s.bid_factor,
                })
            })
            .collect();
        let mut on_media: [Vec<u32>; 2] = Default::default();
        let mut by_media_id: [HashMap<i64, Vec<u32>>; 2] = Default::default();
        for (i, s) in strategies.iter().enumerate() {
            for (m, media) in Media::NUMBERED.into_iter().enumerate() {
                if let Some(id) = s.media_ids.on(media) {
                    on_media[m].push(i as u32);
                    by_media_id[m].entry(id).or_default().push(i as u32);
                }
            }
        }
        Ok(Self {
            version,
            on_media,
            by_media_id,
            cache: file.cache,
            model,
            user_cap: file.user_cap,
            counts_any: counts_answers || counted.iter().any(|c| *c),
            counts_answers,
            counted,
            strategies,
            plain,
            by_id,
            by_feedback_key,
            matcher,
        })
    }

    /// Reads and compiles a strategy file from disk.
    pub fn from_path(path: &std::path::Path, taxonomy: &Taxonomy) -> Result<Self, StrategyError> {
        let name = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|source| StrategyError::Io {
            source_name: name.clone(),
            source,
        })?;
        Self::from_toml(&src, &name, taxonomy)
    }

    /// The strategies, in file order.
    pub fn strategies(&self) -> &[Strategy] {
        &self.strategies
    }

    /// The answer of strategy `i` (by position) when it is plain; `None`
    /// when it has something to settle or there is no such strategy.
    #[inline]
    pub(crate) fn plain_answer(&self, i: usize) -> Option<&PlainAnswer> {
        self.plain.get(i).and_then(Option::as_ref)
    }

    /// The strategies `media` knows (carrying an id there), by position,
    /// sorted; `None` for Tencent, which knows every strategy by `target_id`.
    pub fn on_media(&self, media: Media) -> Option<&[u32]> {
        let m = Media::NUMBERED.iter().position(|n| *n == media)?;
        Some(&self.on_media[m])
    }

    /// The strategies carrying `id` on `media`, by position, sorted.
    pub fn with_media_id(&self, media: Media, id: i64) -> &[u32] {
        Media::NUMBERED
            .iter()
            .position(|n| *n == media)
            .and_then(|m| self.by_media_id[m].get(&id))
            .map_or(&[], Vec::as_slice)
    }

    /// The position of a strategy id in [`StrategySet::strategies`].
    pub fn index_of(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// Whether answers taking strategy `i` are counted in the user's profile
    /// (its cap counts decisions).
    #[inline]
    pub fn counts_strategy_answers(&self, i: usize) -> bool {
        self.counted.get(i).copied().unwrap_or(false)
    }

    /// Whether every answer taken is counted once (the user cap counts decisions).
    #[inline]
    pub fn counts_every_answer(&self) -> bool {
        self.counts_answers
    }

    /// Whether any strategy's answers are counted.
    #[inline]
    pub fn counts_any_answers(&self) -> bool {
        self.counts_any
    }

    /// The position of the strategy media feedback under `key` is about.
    pub fn index_of_feedback_key(&self, key: ItemKey) -> Option<u32> {
        self.by_feedback_key.get(&key).copied()
    }

    /// Appends to `out` the indexes of matching strategies, ascending; when
    /// `only` is given (sorted indexes), only those are considered.
    #[inline]
    pub fn matching(&self, ctx: &EvalContext<'_>, only: Option<&[u32]>, out: &mut Vec<u32>) {
        self.matcher.matching(&self.strategies, ctx, only, out);
    }
}

/// Splits a top-level conjunction into its clauses with their source text.
fn split_clauses<'a>(ast: &'a lang::Ast, text: &str) -> Vec<(&'a lang::Ast, String)> {
    match ast {
        lang::Ast::And(items) => items
            .iter()
            .map(|c| (&c.ast, clean_clause(text.get(c.span.clone()).unwrap_or(""))))
            .collect(),
        _ => vec![(ast, clean_clause(text))],
    }
}

fn clean_clause(t: &str) -> String {
    t.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Maps a position inside an audience string to a line and column of the file.
fn file_position(src: &str, span: std::ops::Range<usize>, pos: lang::Pos) -> (u32, u32) {
    let raw = src.get(span.clone()).unwrap_or("");
    // where the string's content starts: after the quotes, and after the newline
    // that TOML drops right after an opening triple quote
    let (content_start, verbatim) = if let Some(r) = raw.strip_prefix("'''") {
        let nl = if r.starts_with("\r\n") {
            2
        } else {
            usize::from(r.starts_with('\n'))
        };
        (3 + nl, true)
    } else if let Some(r) = raw.strip_prefix("\"\"\"") {
        let nl = if r.starts_with("\r\n") {
            2
        } else {
            usize::from(r.starts_with('\n'))
        };
        (3 + nl, !raw.contains('\\'))
    } else {
        (1, raw.starts_with('\'') || !raw.contains('\\'))
    };
    let before = &src[..span.start.min(src.len())];
    let start_line = before.matches('\n').count() as u32 + 1;
    let start_col = before.rsplit('\n').next().unwrap_or("").chars().count() as u32 + 1;
    if !verbatim {
        // escapes shift offsets; point at the string's start instead of guessing
        return (start_line, start_col);
    }
    let abs = (span.start + content_start + pos.offset).min(src.len());
    let upto = &src[..abs];
    let line = upto.matches('\n').count() as u32 + 1;
    let col = upto.rsplit('\n').next().unwrap_or("").chars().count() as u32 + 1;
    (line, col)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::DEMO_STRATEGIES;

    fn load(src: &str) -> Result<StrategySet, StrategyError> {
        StrategySet::from_toml(src, "s.toml", &Taxonomy::default_taxonomy())
    }

    #[test]
    fn demo_strategies_compile() {
        let set = load(DEMO_STRATEGIES).unwrap();
        assert!(set.strategies().len() >= 6);
    }

    #[test]
    fn audience_errors_name_strategy_file_line_and_column() {
        let src = "[[strategy]]\nid = \"s1\"\ntarget_id = \"1\"\naudience = '''\ntarget_group in {urban_family}\n  and cart(category 1319, 7d) >= lots\n'''\n";
        let e = load(src).unwrap_err();
        let StrategyError::Audience {
            strategy,
            line,
            col,
            ..
        } = &e
        else {
            panic!("{e}")
        };
        assert_eq!(strategy, "s1");
        assert_eq!((*line, *col), (6, 34), "{e}");
        assert!(
            e.to_string().starts_with("s.toml:6:34: strategy `s1`:"),
            "{e}"
        );
    }

    #[test]
    fn single_line_audience_positions_are_exact() {
        let src = "[[strategy]]\nid = \"s2\"\ntarget_id = \"1\"\naudience = \"age >= old\"\n";
        let e = load(src).unwrap_err();
        assert!(e.to_string().starts_with("s.toml:4:20:"), "{e}");
    }

    #[test]
    fn bid_factor_outside_media_bounds_is_rejected() {
        let src = "[[strategy]]\nid = \"s\"\ntarget_id = \"1\"\nbid_factor = 9.0\naudience = \"age >= 1\"\n";
        assert!(matches!(load(src), Err(StrategyError::Invalid { .. })));
    }

    #[test]
    fn duplicate_ids_and_unknown_fields_are_rejected() {
        let one = "[[strategy]]\nid = \"s\"\ntarget_id = \"1\"\naudience = \"age >= 1\"\n";
        assert!(load(&format!("{one}{one}")).is_err());
        let typo = "[[strategy]]\nid = \"s\"\ntarget_id = \"1\"\naudiense = \"age >= 1\"\n";
        assert!(matches!(load(typo), Err(StrategyError::File { .. })));
    }

    #[test]
    fn clauses_keep_their_source_text() {
        let src = "[[strategy]]\nid = \"s\"\ntarget_id = \"1\"\naudience = '''\nage >= 26 # adults\n  and (os == ios or os == android)\n  and not buy(brand 1, 30d)\n'''\n";
        let set = load(src).unwrap();
        let texts: Vec<_> = set.strategies()[0]
            .clauses
            .iter()
            .map(|c| c.text.as_str())
            .collect();
        assert_eq!(
            texts,
            [
                "age >= 26",
                "(os == ios or os == android)",
                "not buy(brand 1, 30d)"
            ]
        );
    }
}
