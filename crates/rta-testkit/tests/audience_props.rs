//! Property tests of the audience language on text no generator of ours
//! would write: whatever an operator puts in a strategy file, loading it
//! answers with the strategies or with an error pointing inside the text,
//! never a panic; and every audience that compiles, however its `and`, `or`,
//! `not`, windows, ranges and sets nest, is matched by the index exactly as
//! by evaluating it strategy by strategy.

use proptest::prelude::*;

use rta_engine::demo::population::generate_user;
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::index::profile::{Action, Attr, Day, StateField, UserProfile};
use rta_engine::strategy::{
    EvalContext, IndexedMatcher, LinearMatcher, Matcher, Os, StrategyError, StrategySet, lang,
};

const TODAY: Day = 2518;
const OSES: [Os; 5] = [Os::Unknown, Os::Android, Os::Ios, Os::Harmony, Os::Other];
const OPS: [&str; 7] = ["==", "=", "!=", ">=", "<=", ">", "<"];

/// A strategy file of `audiences`, one strategy each, as an operator writes it.
fn file_of(audiences: &[String]) -> String {
    audiences
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!("[[strategy]]\nid = \"s{i}\"\ntarget_id = \"{i}\"\naudience = '''{a}'''\n")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn load(audiences: &[String]) -> Result<StrategySet, StrategyError> {
    StrategySet::from_toml(
        &file_of(audiences),
        "props.toml",
        &Taxonomy::default_taxonomy(),
    )
}

/// One of `names`, or a name no table knows.
fn name_of(names: Vec<&'static str>) -> BoxedStrategy<String> {
    prop_oneof![
        8 => proptest::sample::select(names).prop_map(str::to_string),
        1 => Just("bogus".to_string()),
    ]
    .boxed()
}

/// `== v`, `!= v`, `>= v`, ... or `in {a, b}` over values drawn from `value`.
fn test_of(value: BoxedStrategy<String>) -> BoxedStrategy<String> {
    prop_oneof![
        (proptest::sample::select(OPS.to_vec()), value.clone())
            .prop_map(|(op, v)| format!("{op} {v}")),
        proptest::collection::vec(value, 1..4).prop_map(|vs| format!("in {{{}}}", vs.join(", "))),
    ]
    .boxed()
}

/// A predicate of the language, names and numbers mostly valid: tag
/// systems, demographics, OS, behaviour counts over windows and item states,
/// on the items in `items` ("category 1319") that the test users have.
fn predicate(items: Vec<String>) -> impl proptest::strategy::Strategy<Value = String> {
    let t = Taxonomy::default_taxonomy();
    let systems: Vec<(String, Vec<String>)> = t
        .systems()
        .iter()
        .map(|s| (s.name.clone(), s.values.clone()))
        .collect();
    let tag = proptest::sample::select(systems).prop_flat_map(|(name, values)| {
        let value = prop_oneof![
            8 => proptest::sample::select(values),
            1 => Just("bogus".to_string()),
        ];
        test_of(value.boxed()).prop_map(move |t| format!("{name} {t}"))
    });
    let numbered = (
        proptest::sample::select(vec!["age", "city_tier", "purchasing_power"]),
        prop_oneof![
            test_of((0u32..300).prop_map(|n| n.to_string()).boxed()),
            (0u32..120, 0u32..120).prop_map(|(a, b)| format!("in {a}..{b}")),
        ],
    )
        .prop_map(|(a, t)| format!("{a} {t}"));
    let named = proptest::sample::select(
        Attr::ALL
            .iter()
            .filter_map(|a| Some((a.name(), a.value_names()?.to_vec())))
            .collect::<Vec<_>>(),
    )
    .prop_flat_map(|(a, names)| test_of(name_of(names)).prop_map(move |t| format!("{a} {t}")));
    let os = test_of(name_of(vec!["android", "ios", "harmony", "other"]))
        .prop_map(|t| format!("os {t}"));
    let item = prop_oneof![
        8 => proptest::sample::select(items),
        1 => (0u64..3000).prop_map(|id| format!("sku {id}")),
    ];
    let window = proptest::sample::select(vec![
        "",
        ", 1d",
        ", 7d",
        ", 30d",
        ", 3d..10d",
        ", 0d..2d",
        ", 400d",
    ]);
    let count = proptest::sample::select(vec![
        "", " >= 2", " == 1", " != 0", " < 3", " <= 1", " > 0", " in 2..5", " in 0..0",
    ]);
    let behaviour = (
        proptest::sample::select(Action::ON_SITE.iter().map(|a| a.name()).collect::<Vec<_>>()),
        item.clone(),
        window,
        count,
    )
        .prop_map(|(f, i, w, c)| format!("{f}({i}{w}){c}"));
    let state =
        (proptest::sample::select(StateField::ALL.to_vec()), item).prop_flat_map(|(field, i)| {
            test_of(name_of(field.value_names().to_vec()))
                .prop_map(move |t| format!("{}({i}) {t}", field.name()))
        });
    prop_oneof![tag, numbered, named, os, behaviour, state]
}

/// Predicates nested under `and`, `or`, `not` and parentheses.
fn audience(items: Vec<String>) -> impl proptest::strategy::Strategy<Value = String> {
    predicate(items).prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(|xs| xs.join(" and ")),
            proptest::collection::vec(inner.clone(), 2..4)
                .prop_map(|xs| format!("({})", xs.join(" or "))),
            inner.clone().prop_map(|x| format!("not ({x})")),
            inner.prop_map(|x| format!("not {x}")),
        ]
    })
}

/// Tokens of the language and some that are not, to be strung together.
fn token() -> impl proptest::strategy::Strategy<Value = String> {
    let words = vec![
        "and",
        "or",
        "not",
        "in",
        "(",
        ")",
        "{",
        "}",
        ",",
        "..",
        "==",
        "=",
        "!=",
        ">=",
        "<=",
        ">",
        "<",
        "#c\n",
        "\n",
        "target_group",
        "urban_family",
        "age",
        "gender",
        "female",
        "os",
        "ios",
        "browse",
        "cart",
        "buy",
        "four_a",
        "clv",
        "aware",
        "high",
        "category",
        "brand",
        "sku",
        "1319",
        "0",
        "7d",
        "30d..90d",
        "99999999999999999999",
        "18446744073709551616",
        "-1",
        "1.5",
        "€",
        "\u{0}",
        "'",
        "\"",
        "\\",
        "d",
        "..d",
        "7",
        "1d..",
        "(((",
    ];
    prop_oneof![
        9 => proptest::sample::select(words).prop_map(str::to_string),
        1 => "[ -~]{0,6}",
    ]
}

/// The items `users` have states or behaviour on, as the language names them.
fn items_of(users: &[UserProfile]) -> Vec<String> {
    let mut items: Vec<String> = users
        .iter()
        .flat_map(|p| {
            p.items()
                .map(|(k, _)| k)
                .chain(p.behaviour().map(|b| b.item))
                .collect::<Vec<_>>()
        })
        .filter(|k| k.scope() != rta_engine::index::profile::Scope::Strategy)
        .map(|k| format!("{} {}", k.scope().name(), k.id()))
        .collect();
    items.sort();
    items.dedup();
    if items.is_empty() {
        items.push("category 1".to_string());
    }
    items
}

fn users(seed: u64) -> Vec<UserProfile> {
    let t = Taxonomy::default_taxonomy();
    (1..=30)
        .map(|id| generate_user(seed, id, TODAY, &t))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_text_loads_or_is_an_error_inside_it(tokens in proptest::collection::vec(token(), 0..40), glue in any::<bool>()) {
        let text = tokens.join(if glue { "" } else { " " });
        if let Err(e) = lang::parse(&text) {
            prop_assert!(e.pos.offset <= text.len(), "{e} outside {text:?}");
            prop_assert!(!e.message.is_empty());
        }
        // a quote or backslash may end the TOML string early: an error, never a panic
        let _ = load(std::slice::from_ref(&text));
    }

    #[test]
    fn every_audience_that_compiles_is_matched_by_the_index_as_by_the_scan(
        seed in any::<u64>(),
        texts in proptest::collection::vec(audience(items_of(&users(7))), 1..40),
    ) {
        // each audience on its own: one that does not compile is an
        // audience error pointing into its text, which starts at column 15
        // of the file's fourth line (`audience = '''`)
        let mut kept = Vec::new();
        for text in texts {
            match load(std::slice::from_ref(&text)) {
                Ok(_) => kept.push(text),
                Err(StrategyError::Audience { line, col, .. }) => {
                    let end = 15 + text.chars().count() as u32;
                    prop_assert!(line == 4 && (15..=end).contains(&col), "{line}:{col} outside {text:?}");
                }
                Err(e) => prop_assert!(false, "{e} for {text:?}"),
            }
        }
        prop_assume!(!kept.is_empty());
        let set = load(&kept).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let indexed = IndexedMatcher::new(set.strategies());
        let mut people = users(7);
        people.extend(users(seed));
        let empty = UserProfile::empty();
        for (k, p) in people.iter().chain(std::iter::once(&empty)).enumerate() {
            for known_user in [true, false] {
                let ctx = EvalContext {
                    profile: p,
                    known_user,
                    today: TODAY - (k as Day % 12),
                    os: OSES[k % OSES.len()],
                };
                let (mut lin, mut idx) = (Vec::new(), Vec::new());
                LinearMatcher.matching(set.strategies(), &ctx, None, &mut lin);
                indexed.matching(set.strategies(), &ctx, None, &mut idx);
                prop_assert_eq!(&lin, &idx, "user {} known {}: {:?}", k, known_user, kept);
            }
        }
    }
}
