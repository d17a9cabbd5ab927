//! Tests of the blacklist: entries and TTLs, the request-rate rule, the
//! config, the wire forms and persistence.

use std::collections::HashMap;

use proptest::prelude::*;

use super::rate::RateSlot;
use super::*;

/// Some wall-clock second, far from a 16-bit epoch boundary.
const BASE_SECOND: i64 = 65_536 * 26_000 + 1_000;
const T0: i64 = BASE_SECOND * 1000;

fn device(n: u64) -> DeviceKey {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    bytes[8] = 0xA5;
    DeviceKey(bytes)
}

fn rated(limit: u32) -> Blacklist {
    Blacklist::new(BlacklistConfig {
        max_requests_per_second: limit,
        rate_slots: 1024,
        ..BlacklistConfig::default()
    })
}

/// Two devices of `bl` that land in the same slot with different fingerprints.
fn colliding_pair(bl: &Blacklist) -> (DeviceKey, DeviceKey) {
    let mut seen: HashMap<usize, (DeviceKey, u32)> = HashMap::new();
    for n in 0..100_000 {
        let d = device(n);
        let (slot, fp) = bl.rate_slot(&d, BASE_SECOND);
        match seen.get(&slot) {
            Some(&(other, other_fp)) if other_fp != fp => return (other, d),
            Some(_) => {}
            None => {
                seen.insert(slot, (d, fp));
            }
        }
    }
    panic!("no collision among 100000 devices in 1024 slots");
}

/// Two devices of `bl` that land in different slots.
fn separate_pair(bl: &Blacklist) -> (DeviceKey, DeviceKey) {
    let a = device(1);
    let slot_a = bl.rate_slot(&a, BASE_SECOND).0;
    let b = (2..1000)
        .map(device)
        .find(|d| bl.rate_slot(d, BASE_SECOND).0 != slot_a)
        .expect("some device in another slot");
    (a, b)
}

#[test]
fn empty_list_refuses_nothing() {
    let bl = Blacklist::new(BlacklistConfig::default());
    assert!(bl.is_empty());
    assert_eq!(bl.check(&[device(1)], Some(7), T0), None);
    assert_eq!(bl.get(Listed::User(7), T0), None);
    assert!(bl.list(T0, 10).is_empty());
}

#[test]
fn device_listed_refuses_requests_carrying_it() {
    let bl = Blacklist::new(BlacklistConfig::default());
    let bad = device(1);
    let entry = bl
        .add(Listed::Device(bad), Reason::MediaFraud, T0, None)
        .unwrap();
    assert_eq!(entry.since_ms, T0);
    assert_eq!(entry.until_ms, T0 + 86_400_000);
    assert_eq!(bl.len(), 1);

    assert_eq!(bl.check(&[bad], None, T0 + 1), Some(Reason::MediaFraud));
    assert_eq!(
        bl.check(&[device(2), bad, device(3)], Some(9), T0 + 1),
        Some(Reason::MediaFraud)
    );
    assert_eq!(bl.check(&[device(2), device(3)], Some(9), T0 + 1), None);
    assert_eq!(bl.check(&[], None, T0 + 1), None);
    assert_eq!(bl.get(Listed::Device(bad), T0 + 1), Some(entry));
    assert_eq!(bl.get(Listed::Device(device(2)), T0 + 1), None);

    assert!(bl.remove(Listed::Device(bad)));
    assert!(!bl.remove(Listed::Device(bad)));
    assert_eq!(bl.check(&[bad], None, T0 + 1), None);
    assert!(bl.is_empty());
}

#[test]
fn user_listed_refuses_its_requests() {
    let bl = Blacklist::new(BlacklistConfig::default());
    bl.add(Listed::User(42), Reason::ClicksWithoutConversion, T0, None)
        .unwrap();
    assert_eq!(
        bl.check(&[device(1)], Some(42), T0),
        Some(Reason::ClicksWithoutConversion)
    );
    assert_eq!(bl.check(&[device(1)], Some(43), T0), None);
    assert_eq!(bl.check(&[device(1)], None, T0), None);
    // A user id and a device are different keys.
    assert_eq!(bl.get(Listed::Device(device(42)), T0), None);
    assert!(bl.get(Listed::User(42), T0).is_some());
    assert!(bl.remove(Listed::User(42)));
    assert_eq!(bl.check(&[], Some(42), T0), None);
}

#[test]
fn devices_are_checked_before_the_user() {
    let bl = Blacklist::new(BlacklistConfig::default());
    bl.add(Listed::User(1), Reason::Operator, T0, None).unwrap();
    bl.add(Listed::Device(device(1)), Reason::DoubtfulId, T0, None)
        .unwrap();
    assert_eq!(
        bl.check(&[device(1)], Some(1), T0),
        Some(Reason::DoubtfulId)
    );
}

#[test]
fn entry_expires_at_until() {
    let bl = Blacklist::new(BlacklistConfig::default());
    let ttl = Duration::from_secs(60);
    let e = bl
        .add(Listed::User(1), Reason::Operator, T0, Some(ttl))
        .unwrap();
    assert_eq!(e.until_ms, T0 + 60_000);
    assert!(bl.get(Listed::User(1), e.until_ms - 1).is_some());
    assert_eq!(
        bl.check(&[], Some(1), e.until_ms - 1),
        Some(Reason::Operator)
    );
    assert!(bl.get(Listed::User(1), e.until_ms).is_none());
    assert_eq!(bl.check(&[], Some(1), e.until_ms), None);
    // Absent to readers, still held until purged.
    assert_eq!(bl.len(), 1);
    assert!(bl.remove(Listed::User(1)));
}

#[test]
fn purge_removes_exactly_the_expired() {
    let bl = Blacklist::new(BlacklistConfig::default());
    for user in 0..10u64 {
        let ttl = Duration::from_secs(user + 1);
        bl.add(Listed::User(user), Reason::Operator, T0, Some(ttl))
            .unwrap();
    }
    // At T0 + 4s, users 0..=3 (ttl 1..=4 s) have expired.
    assert_eq!(bl.purge_expired(T0 + 4_000), 4);
    assert_eq!(bl.len(), 6);
    for user in 0..10u64 {
        assert_eq!(bl.remove(Listed::User(user)), user >= 4, "user {user}");
    }
    assert!(bl.is_empty());
    assert_eq!(bl.purge_expired(T0 + 4_000), 0);
}

#[test]
fn re_adding_replaces_and_extends() {
    let bl = Blacklist::new(BlacklistConfig::default());
    let key = Listed::Device(device(5));
    bl.add(key, Reason::RequestRate, T0, Some(Duration::from_secs(10)))
        .unwrap();
    let later = T0 + 5_000;
    let e = bl
        .add(key, Reason::Operator, later, Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(e.reason, Reason::Operator);
    assert_eq!(e.since_ms, later);
    assert_eq!(e.until_ms, later + 10_000);
    assert_eq!(bl.len(), 1);
    assert_eq!(
        bl.get(key, T0 + 12_000).map(|e| e.reason),
        Some(Reason::Operator)
    );
    assert_eq!(bl.get(key, later + 10_000), None);
    // Re-adding after expiry lists it again, without a second slot.
    bl.add(key, Reason::MediaFraud, T0 + 100_000, None).unwrap();
    assert_eq!(bl.len(), 1);
    assert!(bl.get(key, T0 + 100_000).is_some());
}

#[test]
fn flag_keeps_a_longer_entry() {
    let bl = Blacklist::new(BlacklistConfig {
        ttl_seconds: 60,
        ..BlacklistConfig::default()
    });
    let key = Listed::User(3);
    let long = bl
        .add(key, Reason::Operator, T0, Some(Duration::from_secs(3_600)))
        .unwrap();
    assert_eq!(bl.flag(key, Reason::MediaFraud, T0 + 1).unwrap(), long);
    // A shorter one is extended.
    bl.add(key, Reason::Operator, T0, Some(Duration::from_secs(1)))
        .unwrap();
    let e = bl.flag(key, Reason::MediaFraud, T0 + 10).unwrap();
    assert_eq!(
        (e.reason, e.until_ms),
        (Reason::MediaFraud, T0 + 10 + 60_000)
    );
}

#[test]
fn absurd_times_saturate() {
    let bl = Blacklist::new(BlacklistConfig::default());
    let e = bl
        .add(
            Listed::User(1),
            Reason::Operator,
            i64::MAX - 5,
            Some(Duration::MAX),
        )
        .unwrap();
    assert_eq!(e.until_ms, i64::MAX);
    let e = bl
        .add(Listed::User(2), Reason::Operator, i64::MIN, None)
        .unwrap();
    assert_eq!(e.until_ms, i64::MIN + 86_400_000);
    assert!(bl.get(Listed::User(2), i64::MIN).is_some());
    let rated = rated(1);
    assert!(!rated.note_request(&device(1), i64::MIN));
    assert!(rated.note_request(&device(1), i64::MIN));
    assert!(!rated.note_request(&device(2), i64::MAX));
    assert!(rated.note_request(&device(2), i64::MAX));
}

#[test]
fn list_is_newest_first_limited_and_unexpired() {
    let bl = Blacklist::new(BlacklistConfig::default());
    let ttl = Some(Duration::from_secs(100));
    for user in 0..6u64 {
        let since = T0 + i64::try_from(user).unwrap() * 1_000;
        bl.add(Listed::User(user), Reason::Operator, since, ttl)
            .unwrap();
    }
    // User 0 (listed at T0) has expired at T0 + 100 s.
    let now = T0 + 100_000;
    let all = bl.list(now, 100);
    let users: Vec<Listed> = all.iter().map(|e| e.listed).collect();
    assert_eq!(users, [5, 4, 3, 2, 1].map(Listed::User));
    let top = bl.list(now, 2);
    assert_eq!(top, all[..2]);
    assert!(bl.list(now, 0).is_empty());
    assert!(bl.list(T0 + 1_000_000, 10).is_empty());
}

#[test]
fn count_by_reason_counts_unexpired() {
    let bl = Blacklist::new(BlacklistConfig::default());
    bl.add(Listed::User(1), Reason::Operator, T0, None).unwrap();
    bl.add(Listed::User(2), Reason::Operator, T0, None).unwrap();
    bl.add(Listed::User(3), Reason::MediaFraud, T0, None)
        .unwrap();
    bl.add(
        Listed::User(4),
        Reason::MediaFraud,
        T0,
        Some(Duration::from_secs(1)),
    )
    .unwrap();
    let counts = bl.count_by_reason(T0 + 1_000);
    assert_eq!(
        counts,
        [
            (Reason::RequestRate, 0),
            (Reason::ClicksWithoutConversion, 0),
            (Reason::DoubtfulId, 0),
            (Reason::MediaFraud, 1),
            (Reason::Operator, 2),
        ]
    );
}

#[test]
fn full_table_refuses_new_keys_and_stays_usable() {
    let bl = Blacklist::with_capacity_limit(BlacklistConfig::default(), 2);
    bl.add(Listed::User(1), Reason::Operator, T0, None).unwrap();
    bl.add(Listed::User(2), Reason::Operator, T0, None).unwrap();
    assert_eq!(
        bl.add(Listed::User(3), Reason::Operator, T0, None),
        Err(BlacklistError::Full)
    );
    assert_eq!(bl.len(), 2);
    // Replacing a held key is still allowed.
    assert!(
        bl.add(Listed::User(1), Reason::MediaFraud, T0 + 1, None)
            .is_ok()
    );
    assert_eq!(bl.check(&[], Some(1), T0 + 1), Some(Reason::MediaFraud));
    assert_eq!(bl.check(&[], Some(3), T0 + 1), None);
    assert!(bl.remove(Listed::User(2)));
    assert!(bl.add(Listed::User(3), Reason::Operator, T0, None).is_ok());
    assert_eq!(bl.list(T0 + 1, 10).len(), 2);
}

#[test]
fn full_table_stops_the_rate_rule_from_listing() {
    let bl = Blacklist::with_capacity_limit(
        BlacklistConfig {
            max_requests_per_second: 1,
            rate_slots: 1024,
            ..BlacklistConfig::default()
        },
        0,
    );
    assert!(!bl.note_request(&device(1), T0));
    assert!(!bl.note_request(&device(1), T0));
    assert!(bl.is_empty());
}

#[test]
fn rate_rule_lists_at_the_crossing_only() {
    let bl = rated(5);
    let d = device(1);
    for n in 1..=5 {
        assert!(!bl.note_request(&d, T0 + n * 10), "request {n}");
    }
    assert!(bl.check(&[d], None, T0 + 60).is_none());
    assert!(bl.note_request(&d, T0 + 999), "6th request lists");
    let e = bl.get(Listed::Device(d), T0 + 999).unwrap();
    assert_eq!((e.reason, e.since_ms), (Reason::RequestRate, T0 + 999));
    // Later requests of that second do not list again.
    for _ in 0..10 {
        assert!(!bl.note_request(&d, T0 + 999));
    }
    assert_eq!(bl.check(&[d], None, T0 + 999), Some(Reason::RequestRate));
}

#[test]
fn rate_rule_resets_each_second() {
    let bl = rated(5);
    let d = device(1);
    for second in 0..4 {
        for n in 0..5 {
            assert!(!bl.note_request(&d, T0 + second * 1_000 + n));
        }
    }
    assert!(bl.is_empty());
    // One request per second, then two in one second: the second of these
    // lists (limit 1 needs a count going 1 -> 2 after a takeover at 1).
    let bl1 = rated(1);
    for second in 0..3 {
        assert!(!bl1.note_request(&d, T0 + second * 1_000));
    }
    assert!(!bl1.note_request(&d, T0 + 3_000));
    assert!(bl1.note_request(&d, T0 + 3_001));
    // Straddling a second boundary: 3 + 3 is no more than 5 per second.
    for _ in 0..3 {
        assert!(!bl.note_request(&d, T0 + 10_999));
    }
    for _ in 0..3 {
        assert!(!bl.note_request(&d, T0 + 11_000));
    }
    assert!(bl.is_empty());
}

#[test]
fn rate_rule_off_never_lists() {
    let bl = Blacklist::new(BlacklistConfig::default());
    assert_eq!(bl.config().max_requests_per_second, 0);
    for _ in 0..100_000 {
        assert!(!bl.note_request(&device(1), T0));
    }
    assert!(bl.is_empty());
}

#[test]
fn devices_in_different_slots_do_not_share_counts() {
    let bl = rated(5);
    let (a, b) = separate_pair(&bl);
    for _ in 0..5 {
        assert!(!bl.note_request(&a, T0));
        assert!(!bl.note_request(&b, T0));
    }
    assert!(bl.is_empty());
    assert!(bl.note_request(&a, T0));
    assert!(bl.note_request(&b, T0));
}

#[test]
fn a_slot_collision_only_resets() {
    let bl = rated(3);
    let (a, b) = colliding_pair(&bl);
    // a: 3, b takes the slot over: 3, a takes it back: 3. a made 6 requests
    // in the second and escapes (an under-count, allowed); what must not
    // happen is either device counting the other's requests.
    for d in [a, b, a] {
        for _ in 0..3 {
            assert!(!bl.note_request(&d, T0));
        }
    }
    assert!(bl.is_empty());
    // b alone with 3 requests after a's: still not listed.
    for _ in 0..3 {
        assert!(!bl.note_request(&b, T0 + 1));
    }
    assert!(bl.get(Listed::Device(b), T0 + 1).is_none());
    // Uncontended, the fourth lists.
    assert!(bl.note_request(&b, T0 + 2));
}

#[test]
fn rate_slot_packing_round_trips() {
    let slot = RateSlot {
        fingerprint: 0xDEAD_BEEF,
        second: 0xABCD,
        count: 0xFFFF,
    };
    assert_eq!(slot.pack(), 0xDEAD_BEEF_ABCD_FFFF);
    assert_eq!(RateSlot::unpack(slot.pack()), slot);
}

#[test]
fn highest_limit_is_enforced_and_counts_saturate() {
    let bl = rated(MAX_RATE_LIMIT);
    let d = device(9);
    let listed: usize = (0..=u32::from(u16::MAX) + 10)
        .filter(|_| bl.note_request(&d, T0))
        .count();
    assert_eq!(listed, 1);
    // A limit the slot cannot represent never lists.
    let bl = rated(u32::from(u16::MAX));
    assert!((0..70_000).all(|_| !bl.note_request(&d, T0)));
}

#[test]
fn concurrent_requests_are_not_lost() {
    const THREADS: u32 = 4;
    const PER_THREAD: u32 = 2_000;
    let total = THREADS * PER_THREAD;
    for (limit, expected) in [(total - 1, 1usize), (total, 0), (100, 1)] {
        let bl = rated(limit);
        let d = device(77);
        let listed: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        (0..PER_THREAD)
                            .filter(|_| bl.note_request(&d, T0 + 500))
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(listed, expected, "limit {limit}");
        assert_eq!(bl.get(Listed::Device(d), T0 + 500).is_some(), expected == 1);
    }
}

#[test]
fn concurrent_adds_keep_the_count_in_step() {
    let bl = Blacklist::with_capacity_limit(BlacklistConfig::default(), 1_000);
    let added: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let bl = &bl;
                s.spawn(move || {
                    (0..500u64)
                        .filter(|n| {
                            bl.add(Listed::User(t * 1_000 + n), Reason::Operator, T0, None)
                                .is_ok()
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(added, 1_000);
    assert_eq!(bl.len(), 1_000);
    assert_eq!(bl.entries.len(), 1_000);
    assert_eq!(bl.purge_expired(i64::MAX), 1_000);
    assert!(bl.is_empty());
    assert_eq!(bl.entries.len(), 0);
}

proptest! {
    #[test]
    fn rate_rule_lists_only_real_excess(
        limit in 1u32..5,
        requests in proptest::collection::vec((0u64..8, 0i64..3, 0i64..1000), 0..200),
    ) {
        let bl = rated(limit);
        let mut model: HashMap<(u64, i64), u32> = HashMap::new();
        for &(dev, sec, ms) in &requests {
            let seen = model.entry((dev, sec)).or_insert(0);
            *seen += 1;
            let listed = bl.note_request(&device(dev), (BASE_SECOND + sec) * 1000 + ms);
            if listed {
                prop_assert!(*seen > limit, "device {dev} listed after {seen} requests");
            }
        }
        for dev in 0..8u64 {
            if bl.get(Listed::Device(device(dev)), T0).is_some() {
                prop_assert!((0..3).any(|sec| model.get(&(dev, sec)).is_some_and(|&n| n > limit)));
            }
        }
    }

    #[test]
    fn rate_rule_is_exact_without_collisions(
        limit in 1u32..5,
        mut requests in proptest::collection::vec((0u64..8, 0i64..3, 0i64..1000), 0..200),
    ) {
        // In time order and with the devices in distinct slots, the rule
        // lists exactly at each real crossing.
        requests.sort_by_key(|&(_, sec, ms)| (sec, ms));
        let bl = rated(limit);
        let slots: std::collections::HashSet<usize> =
            (0..8).map(|dev| bl.rate_slot(&device(dev), BASE_SECOND).0).collect();
        prop_assume!(slots.len() == 8);
        let mut model: HashMap<(u64, i64), u32> = HashMap::new();
        for &(dev, sec, ms) in &requests {
            let seen = model.entry((dev, sec)).or_insert(0);
            *seen += 1;
            let listed = bl.note_request(&device(dev), (BASE_SECOND + sec) * 1000 + ms);
            prop_assert_eq!(listed, *seen == limit + 1, "device {} request {}", dev, seen);
        }
        for dev in 0..8u64 {
            let over = (0..3).any(|sec| model.get(&(dev, sec)).is_some_and(|&n| n > limit));
            prop_assert_eq!(bl.get(Listed::Device(device(dev)), T0).is_some(), over);
        }
    }
}

#[test]
fn config_validation() {
    assert_eq!(BlacklistConfig::default().validate(), Ok(()));
    let bad = [
        BlacklistConfig {
            ttl_seconds: 0,
            ..BlacklistConfig::default()
        },
        BlacklistConfig {
            ttl_seconds: MAX_TTL_SECONDS + 1,
            ..BlacklistConfig::default()
        },
        BlacklistConfig {
            rate_slots: 1000,
            ..BlacklistConfig::default()
        },
        BlacklistConfig {
            rate_slots: 512,
            ..BlacklistConfig::default()
        },
        BlacklistConfig {
            rate_slots: 1 << 29,
            ..BlacklistConfig::default()
        },
        BlacklistConfig {
            max_requests_per_second: MAX_RATE_LIMIT + 1,
            ..BlacklistConfig::default()
        },
    ];
    for config in bad {
        assert!(config.validate().is_err(), "{config:?}");
    }
    let edge = BlacklistConfig {
        ttl_seconds: MAX_TTL_SECONDS,
        rate_slots: MIN_RATE_SLOTS,
        max_requests_per_second: MAX_RATE_LIMIT,
        ..BlacklistConfig::default()
    };
    assert_eq!(edge.validate(), Ok(()));
    // An invalid slot count is brought into range rather than panicking.
    let bl = Blacklist::new(BlacklistConfig {
        rate_slots: 3,
        max_requests_per_second: 1,
        ..BlacklistConfig::default()
    });
    assert_eq!(bl.rate.len(), MIN_RATE_SLOTS);
}

#[test]
fn config_from_toml() {
    let config: BlacklistConfig =
        toml::from_str("ttl_seconds = 3600\nmax_requests_per_second = 50").unwrap();
    assert_eq!(
        config,
        BlacklistConfig {
            ttl_seconds: 3600,
            max_requests_per_second: 50,
            ..BlacklistConfig::default()
        }
    );
    assert!(config.media_fraud);
    assert_eq!(config.rate_slots, 1 << 20);
    assert!(toml::from_str::<BlacklistConfig>("ttl_second = 3600").is_err());
    assert_eq!(
        toml::from_str::<BlacklistConfig>("").unwrap(),
        BlacklistConfig::default()
    );
}

#[test]
fn wire_forms() {
    let key = DeviceKey::from_md5_hex("0123456789abcdef0123456789ABCDEF").unwrap();
    let json = serde_json::to_string(&Listed::Device(key)).unwrap();
    assert_eq!(json, r#"{"device":"0123456789abcdef0123456789abcdef"}"#);
    assert_eq!(
        serde_json::to_string(&Listed::User(123)).unwrap(),
        r#"{"user":123}"#
    );
    assert_eq!(
        serde_json::from_str::<Listed>(&json).unwrap(),
        Listed::Device(key)
    );
    assert_eq!(
        serde_json::from_str::<Listed>(r#"{"user":123}"#).unwrap(),
        Listed::User(123)
    );
    assert!(serde_json::from_str::<Listed>(r#"{"device":"zz"}"#).is_err());
    assert!(serde_json::from_str::<Listed>(r#"{"phone":1}"#).is_err());

    let entry = Entry {
        listed: Listed::User(5),
        reason: Reason::ClicksWithoutConversion,
        since_ms: 1,
        until_ms: 2,
        added_by: None,
    };
    assert_eq!(
        serde_json::to_value(&entry).unwrap(),
        serde_json::json!({
            "listed": {"user": 5},
            "reason": "clicks_without_conversion",
            "since_ms": 1,
            "until_ms": 2,
        })
    );
}

#[test]
fn reason_labels_match_serde_and_parse_back() {
    for reason in Reason::ALL {
        let json = serde_json::to_string(&reason).unwrap();
        assert_eq!(json, format!("\"{}\"", reason.label()));
        assert_eq!(Reason::from_label(reason.label()), Some(reason));
        assert_eq!(reason.to_string(), reason.label());
    }
    assert_eq!(Reason::from_label("Operator"), None);
    assert_eq!(Reason::from_label(""), None);
}
#[test]
fn a_saved_list_loads_back_without_expired_entries_or_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blacklist.jsonl");
    let bl = Blacklist::new(BlacklistConfig::default());
    let now = 1_795_406_400_000;
    let dev = DeviceKey([7; 16]);
    let secs = Duration::from_secs;
    bl.add(
        Listed::Device(dev),
        Reason::Operator,
        now - 1000,
        Some(secs(3600)),
    )
    .unwrap();
    bl.add(
        Listed::User(42),
        Reason::MediaFraud,
        now - 5000,
        Some(secs(10)),
    )
    .unwrap();
    // already expired: not saved
    bl.add(
        Listed::User(7),
        Reason::RequestRate,
        now - 20_000,
        Some(secs(10)),
    )
    .unwrap();
    assert_eq!(bl.save_to(&path, now).unwrap(), 2);
    // a line someone broke by hand is skipped, not fatal
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{not json\n");
    std::fs::write(&path, text).unwrap();

    let back = Blacklist::new(BlacklistConfig::default());
    assert_eq!(back.load_from(&path, now).unwrap(), (2, 1));
    assert_eq!(
        back.get(Listed::Device(dev), now),
        bl.get(Listed::Device(dev), now)
    );
    assert_eq!(
        back.get(Listed::User(42), now).unwrap().reason,
        Reason::MediaFraud
    );
    // loaded later, what expired in between stays out
    let later = Blacklist::new(BlacklistConfig::default());
    assert_eq!(later.load_from(&path, now + 6000).unwrap(), (1, 2));
    let none = Blacklist::new(BlacklistConfig::default());
    assert_eq!(
        none.load_from(&dir.path().join("none"), now).unwrap(),
        (0, 0)
    );
}

#[test]
fn an_operator_past_its_cap_is_refused_and_frees_places_by_removing() {
    let bl = Blacklist::new(BlacklistConfig::default());
    let ttl = Duration::from_secs(60);
    bl.add_by("ops", 2, Listed::User(1), Reason::Operator, 0, ttl)
        .unwrap();
    bl.add_by("ops", 2, Listed::User(2), Reason::Operator, 0, ttl)
        .unwrap();
    // re-listing a key it holds is no new place
    bl.add_by("ops", 2, Listed::User(2), Reason::Operator, 10, ttl)
        .unwrap();
    assert_eq!(
        bl.add_by("ops", 2, Listed::User(3), Reason::Operator, 0, ttl),
        Err(BlacklistError::OperatorCap { limit: 2 })
    );
    assert!(bl.get(Listed::User(3), 0).is_none());
    // another operator has its own places
    bl.add_by("fraud-team", 2, Listed::User(3), Reason::MediaFraud, 0, ttl)
        .unwrap();
    assert!(bl.remove(Listed::User(1)));
    assert_eq!(bl.held_by("ops"), 1);
    bl.add_by("ops", 2, Listed::User(4), Reason::Operator, 0, ttl)
        .unwrap();
    // expiry frees places too
    assert_eq!(bl.purge_expired(61_000), 3);
    assert_eq!(bl.held_by("ops"), 0);
    assert_eq!(bl.held_by("fraud-team"), 0);
}

#[test]
fn an_operators_entries_survive_a_restart_with_their_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blacklist.jsonl");
    let bl = Blacklist::new(BlacklistConfig::default());
    bl.add_by(
        "ops",
        10,
        Listed::User(7),
        Reason::Operator,
        0,
        Duration::from_secs(60),
    )
    .unwrap();
    bl.save_to(&path, 0).unwrap();
    let restored = Blacklist::new(BlacklistConfig::default());
    restored.load_from(&path, 0).unwrap();
    assert_eq!(restored.held_by("ops"), 1);
    assert_eq!(
        restored
            .get(Listed::User(7), 0)
            .unwrap()
            .added_by
            .as_deref(),
        Some("ops")
    );
}
