use super::*;
use crate::decision::blacklist::Listed;
use crate::decision::observer::{ControlEvent, EventObserver, FeedbackEvent, Subject};
use crate::domain::os::Os;
use crate::domain::taxonomy::Taxonomy;
use crate::index::profile::Action;
use crate::index::profile::ItemKey;
use crate::index::record::UserRecord;

const TODAY: Day = 2000;
const STRATEGIES: &str = include_str!("../../tests/fixtures/intel/strategies.toml");

fn engine(rules: BlacklistConfig) -> (DecisionEngine, DeviceKey) {
    engine_with(STRATEGIES, rules)
}

fn engine_with(strategies: &str, rules: BlacklistConfig) -> (DecisionEngine, DeviceKey) {
    let t = Taxonomy::default_taxonomy();
    let rec: UserRecord = serde_json::from_str(
        r#"{"user_id": 9, "devices": ["raw:imei:860000000000009"], "tags": {"target_group": ["urban_family"]}}"#,
    )
    .unwrap();
    let index = Arc::new(UserIndex::default());
    index.upsert(9, rec.to_profile(&t, TODAY).unwrap()).unwrap();
    let set = StrategySet::from_toml(strategies, "intel", &t).unwrap();
    let e = DecisionEngine::with_rules(
        index,
        set,
        Clock::Fixed(TODAY),
        rules,
        CalibrationConfig::default(),
    );
    let device = crate::index::record::parse_device("raw:imei:860000000000009").unwrap();
    (e, device)
}

fn req(d: &DeviceKey) -> DecisionRequest<'_> {
    DecisionRequest {
        devices: std::slice::from_ref(d),
        os: Os::Android,
        experiments: &[],
        only_strategies: &[],
        media: None,
    }
}

#[test]
fn the_request_rate_rule_lists_a_device_past_its_limit_and_only_traffic_counts() {
    let (e, d) = engine(BlacklistConfig {
        max_requests_per_second: 5,
        ..Default::default()
    });
    for _ in 0..20 {
        assert!(
            e.decide_uncounted(&req(&d)).take,
            "test traffic never counts"
        );
    }
    for i in 0..5 {
        assert!(e.decide(&req(&d)).take, "request {i} is within the limit");
    }
    let d6 = e.decide(&req(&d));
    assert_eq!(
        (d6.take, d6.outcome),
        (false, crate::telemetry::Outcome::Blacklisted)
    );
    assert_eq!(
        e.blacklist()
            .get(Listed::Device(d), e.clock().now_ms())
            .map(|x| x.reason),
        Some(Reason::RequestRate)
    );
}

#[test]
fn clicks_without_conversion_list_the_user_once_the_rule_is_passed() {
    let (e, d) = engine(BlacklistConfig {
        max_clicks_without_conversion: 2,
        ..Default::default()
    });
    let now = e.clock().now_ms();
    let click = |action| {
        let ev = FeedbackEvent {
            subject: Subject::User(9),
            time_ms: now,
            action,
            strategy: ItemKey::strategy("capped"),
        };
        // the index first (as ingestion applies it), then the observer
        e.index()
            .update_in_place(9, |p| p.add_count(ev.strategy, action, TODAY, 1))
            .unwrap()
            .unwrap();
        e.on_feedback(&ev);
    };
    click(Action::Click);
    click(Action::Click);
    assert!(e.decide(&req(&d)).take, "2 clicks: at the limit, not over");
    click(Action::Click);
    assert!(!e.decide(&req(&d)).take, "3 clicks, no conversion: listed");
    assert_eq!(
        e.blacklist().get(Listed::User(9), now).map(|x| x.reason),
        Some(Reason::ClicksWithoutConversion)
    );
    // a converting user is not a click bot
    let (e2, d2) = engine(BlacklistConfig {
        max_clicks_without_conversion: 2,
        ..Default::default()
    });
    e2.index()
        .update_in_place(9, |p| {
            p.add_count(ItemKey::strategy("capped"), Action::Conversion, TODAY, 1)
        })
        .unwrap()
        .unwrap();
    for _ in 0..5 {
        e2.index()
            .update_in_place(9, |p| {
                p.add_count(ItemKey::strategy("capped"), Action::Click, TODAY, 1)
            })
            .unwrap()
            .unwrap();
        e2.on_feedback(&FeedbackEvent {
            subject: Subject::User(9),
            time_ms: now,
            action: Action::Click,
            strategy: ItemKey::strategy("capped"),
        });
    }
    assert!(e2.decide(&req(&d2)).take);
}

#[test]
fn media_flagged_doubtful_ids_are_listed_only_when_the_rule_is_on() {
    let (off, d) = engine(BlacklistConfig::default());
    off.flag_doubtful_ids(&[d]);
    assert!(off.decide(&req(&d)).take);
    let (on, d) = engine(BlacklistConfig {
        list_flagged_doubtful_ids: true,
        ..Default::default()
    });
    on.flag_doubtful_ids(&[d]);
    let r = on.decide(&req(&d));
    assert_eq!(r.outcome, crate::telemetry::Outcome::Blacklisted);
}

#[test]
fn control_events_list_and_unlist_and_expired_ones_are_skipped() {
    let (e, d) = engine(BlacklistConfig::default());
    let now = e.clock().now_ms();
    let list = |time_ms, ttl_seconds| ControlEvent::List {
        listed: Listed::Device(d),
        reason: Reason::Operator,
        time_ms,
        ttl_seconds,
    };
    // an hour-long listing from two hours ago: replayed, already over
    e.on_control(&list(now - 7_200_000, Some(3600)));
    assert!(e.decide(&req(&d)).take);
    e.on_control(&list(now - 1000, Some(3600)));
    assert!(!e.decide(&req(&d)).take);
    e.on_control(&ControlEvent::Unlist {
        listed: Listed::Device(d),
    });
    assert!(e.decide(&req(&d)).take);
}

#[test]
fn a_cap_counting_decisions_holds_without_feedback_and_ignores_test_traffic() {
    let src = "[[strategy]]\nid = \"c\"\ntarget_id = \"1\"\naudience = \"target_group in {urban_family}\"\ncap = { exposures = 2, days = 1, count = \"decisions\" }\n\n[[strategy]]\nid = \"free\"\ntarget_id = \"2\"\naudience = \"target_group in {urban_family}\"\n";
    let (e, d) = engine_with(src, BlacklistConfig::default());
    for _ in 0..5 {
        assert_eq!(e.decide_uncounted(&req(&d)).matches.len(), 2);
    }
    for _ in 0..2 {
        assert_eq!(e.decide(&req(&d)).matches.len(), 2);
    }
    let third = e.decide(&req(&d));
    let ids: Vec<&str> = third.matches.iter().map(|m| &*m.strategy_id).collect();
    assert_eq!(ids, ["free"], "the capped strategy answered twice today");
    let offers = e
        .index()
        .with_profile(9, |p| {
            p.count(ItemKey::strategy("c"), Action::Offer, TODAY, TODAY)
        })
        .unwrap();
    assert_eq!(offers, 2);
}

#[test]
fn a_user_cap_counting_decisions_counts_one_per_answer_however_many_matched() {
    let src = "[user_cap]\nexposures = 2\ncount = \"decisions\"\n\n[[strategy]]\nid = \"a\"\ntarget_id = \"1\"\naudience = \"target_group in {urban_family}\"\n\n[[strategy]]\nid = \"b\"\ntarget_id = \"2\"\naudience = \"target_group in {urban_family}\"\n";
    let (e, d) = engine_with(src, BlacklistConfig::default());
    for _ in 0..2 {
        assert_eq!(e.decide(&req(&d)).matches.len(), 2);
    }
    let third = e.decide(&req(&d));
    assert_eq!(
        (third.take, third.outcome),
        (false, crate::telemetry::Outcome::Capped)
    );
}

#[test]
fn a_media_scope_restricts_the_decision_to_the_strategies_that_media_knows() {
    use crate::domain::media::{Media, MediaScope};
    let src = "[[strategy]]\nid = \"a\"\ntarget_id = \"1\"\nmedia_ids = { oceanengine = 11, meituan = 21 }\naudience = \"target_group in {urban_family}\"\n\n\
               [[strategy]]\nid = \"b\"\ntarget_id = \"2\"\nmedia_ids = { oceanengine = 12 }\naudience = \"target_group in {urban_family}\"\n\n\
               [[strategy]]\nid = \"c\"\ntarget_id = \"3\"\naudience = \"target_group in {urban_family}\"\n";
    let (e, d) = engine_with(src, BlacklistConfig::default());
    let taken = |media: Option<MediaScope<'_>>| -> Vec<String> {
        let r = DecisionRequest { media, ..req(&d) };
        e.decide(&r)
            .matches
            .iter()
            .map(|m| m.strategy_id.to_string())
            .collect()
    };
    let scope = |media, ids| Some(MediaScope { media, ids });
    assert_eq!(taken(None), ["a", "b", "c"]);
    // Tencent knows every strategy by its target_id
    assert_eq!(taken(scope(Media::Tencent, &[])), ["a", "b", "c"]);
    assert_eq!(taken(scope(Media::OceanEngine, &[])), ["a", "b"]);
    assert_eq!(taken(scope(Media::OceanEngine, &[12, 99])), ["b"]);
    assert_eq!(taken(scope(Media::Meituan, &[])), ["a"]);
    // asking only about an id no strategy carries decides nothing
    let r = DecisionRequest {
        media: scope(Media::OceanEngine, &[99]),
        ..req(&d)
    };
    let none = e.decide(&r);
    assert!(!none.take);
    assert_eq!(none.outcome, crate::telemetry::Outcome::NoMatch);
    // the match carries the media's ids for the adapters to answer with
    let r = DecisionRequest {
        media: scope(Media::Meituan, &[]),
        ..req(&d)
    };
    assert_eq!(e.decide(&r).matches[0].media_ids.meituan, Some(21));
}
