//! Tests of the packed profile: layout size, counting, the builder, in-place
//! changes, user vectors and the snapshot encoding.

use super::*;

fn item(scope: Scope, id: u64) -> ItemKey {
    ItemKey::new(scope, id).unwrap()
}

#[test]
fn a_profile_is_one_thin_pointer_to_a_28_byte_header_and_its_words() {
    assert_eq!(size_of::<UserProfile>(), 8);
    assert_eq!(size_of::<(u32, UserProfile)>(), 12);
    assert_eq!(size_of::<Header>(), 28);
    assert_eq!(UserProfile::empty().heap_bytes(), 0);
    let p = ProfileBuilder {
        tags: vec![1, 2, 3],
        ..Default::default()
    }
    .build()
    .unwrap();
    assert_eq!(p.heap_bytes(), 28 + 3 * 4);
}

#[test]
fn counts_sum_only_the_requested_window_action_and_item() {
    let c = item(Scope::Category, 1319);
    let other = item(Scope::Brand, 1319);
    let mut b = ProfileBuilder::default();
    for (it, action, day, count) in [
        (c, Action::Browse, 100, 2),
        (c, Action::Browse, 103, 5),
        (c, Action::Browse, 106, 1),
        (c, Action::Cart, 104, 1),
        (other, Action::Browse, 104, 9),
    ] {
        b.behaviour.push(BehaviourCount {
            item: it,
            action,
            day,
            count,
        });
    }
    let p = b.build().unwrap();
    assert_eq!(p.count(c, Action::Browse, 100, 106), 8);
    assert_eq!(p.count(c, Action::Browse, 101, 105), 5);
    assert_eq!(p.count(c, Action::Browse, 107, 200), 0);
    assert_eq!(p.count(c, Action::Cart, 0, 200), 1);
    assert_eq!(p.count(c, Action::Buy, 0, 200), 0);
    assert_eq!(p.count(other, Action::Browse, 0, 200), 9);
}

proptest::proptest! {
    /// Counting from a binary search sums exactly the records a plain
    /// filter over all of them picks, in short and long profiles.
    #[test]
    fn counts_equal_a_plain_filter_over_the_records(
        records in proptest::collection::vec(
            (0u64..4, 0usize..3, 0u16..60, 1u16..9),
            0..120,
        ),
        (id, action, from, len) in (0u64..5, 0usize..4, 0u16..70, 0u16..40),
    ) {
        const ACTIONS: [Action; 4] =
            [Action::Browse, Action::Cart, Action::Buy, Action::Click];
        let key = |id: u64| item(Scope::Sku, id + 1);
        let mut b = ProfileBuilder::default();
        for (id, action, day, count) in records {
            b.behaviour.push(BehaviourCount {
                item: key(id),
                action: ACTIONS[action],
                day,
                count,
            });
        }
        let p = b.build().unwrap();
        let (it, action, to) = (key(id), ACTIONS[action], from + len);
        let expected: u32 = p
            .behaviour()
            .filter(|r| r.item == it && r.action == action && (from..=to).contains(&r.day))
            .map(|r| u32::from(r.count))
            .sum();
        proptest::prop_assert_eq!(p.count(it, action, from, to), expected);
    }
}

#[test]
fn same_day_counts_merge_and_saturate() {
    let c = item(Scope::Sku, 7);
    let mut b = ProfileBuilder::default();
    for n in [4000, 50, 100] {
        b.behaviour.push(BehaviourCount {
            item: c,
            action: Action::Browse,
            day: 9,
            count: n,
        });
    }
    let p = b.build().unwrap();
    assert_eq!(p.behaviour().count(), 1);
    assert_eq!(p.count(c, Action::Browse, 9, 9), 4095);
}

#[test]
fn devices_tags_and_states_round_trip_through_the_builder() {
    let mut b = ProfileBuilder {
        devices: vec![DeviceKey([7; 16]), DeviceKey([1; 16]), DeviceKey([7; 16])],
        tags: vec![(2 << 24) | 3, (1 << 24) | 1],
        ..Default::default()
    };
    let brand = item(Scope::Brand, 8557);
    b.items
        .push((brand, ItemState::default().with(StateField::FourA, 1)));
    b.items
        .push((brand, ItemState::default().with(StateField::FourA, 3)));
    b.attr(Attr::Age, 31);
    let p = b.build().unwrap();
    assert_eq!(
        p.devices().collect::<Vec<_>>(),
        vec![DeviceKey([1; 16]), DeviceKey([7; 16])]
    );
    assert_eq!(p.tags(), &[(1 << 24) | 1, (2 << 24) | 3]);
    assert_eq!(p.item_state(brand).unwrap().get(StateField::FourA), 3);
    assert_eq!(p.attr(Attr::Age), 31);
    assert_eq!(p.to_builder().build().unwrap(), p);
    assert!(p.has_any_tag(&[(2 << 24) | 3]));
    assert!(!p.has_any_tag(&[(2 << 24) | 4]));
}

#[test]
fn profiles_round_trip_through_the_snapshot_encoding() {
    let mut b = ProfileBuilder {
        devices: vec![DeviceKey([3; 16])],
        tags: vec![5, 9],
        tag_version: 77,
        touched: 12,
        ..Default::default()
    };
    b.attr(Attr::Age, 40);
    b.behaviour.push(BehaviourCount {
        item: item(Scope::Brand, 1),
        action: Action::Buy,
        day: 3,
        count: 2,
    });
    let p = b.build().unwrap();
    let mut bytes = Vec::new();
    p.write_to(&mut bytes).unwrap();
    assert_eq!(UserProfile::read_from(&mut bytes.as_slice()).unwrap(), p);
    // a truncated or inconsistent encoding is an error
    assert!(UserProfile::read_from(&mut &bytes[..bytes.len() - 1]).is_err());
    let mut bad = bytes.clone();
    bad[18] = 200; // n_tags larger than the words
    assert!(UserProfile::read_from(&mut bad.as_slice()).is_err());
    // the previous format is the same without the 4 bytes of vector fields
    let mut v2 = bytes[..22].to_vec();
    v2.extend_from_slice(&bytes[26..]);
    assert_eq!(UserProfile::read_from_v2(&mut v2.as_slice()).unwrap(), p);
}

#[test]
fn a_user_vector_round_trips_through_builds_in_place_changes_and_snapshots() {
    let mut b = ProfileBuilder {
        tags: vec![5, 9],
        ..Default::default()
    };
    b.behaviour.push(BehaviourCount {
        item: item(Scope::Brand, 1),
        action: Action::Buy,
        day: 3,
        count: 2,
    });
    let mut p = b.build().unwrap();
    assert!(p.vector().is_none());
    let v = UserVector::quantise(model_tag("m"), &[1.0, -0.5, 0.25, 0.0, 2.0]).unwrap();
    p.set_vector(&v).unwrap();
    let got = p.vector().unwrap();
    assert_eq!((got.model, got.dims()), (model_tag("m"), 5));
    assert_eq!(got.to_owned(), v);
    // the sections around it are intact
    assert_eq!(p.tags(), &[5, 9]);
    assert_eq!(p.count(item(Scope::Brand, 1), Action::Buy, 0, 10), 2);
    p.add_count(item(Scope::Brand, 1), Action::Buy, 3, 1)
        .unwrap();
    assert_eq!(p.count(item(Scope::Brand, 1), Action::Buy, 0, 10), 3);
    assert_eq!(p.vector().unwrap().to_owned(), v);
    // same size: in place; another size: rebuilt
    let w = UserVector::quantise(model_tag("m2"), &[0.0, 0.0, 0.0, 0.0, -1.0]).unwrap();
    p.set_vector(&w).unwrap();
    assert_eq!(p.vector().unwrap().to_owned(), w);
    let x = UserVector::quantise(model_tag("m3"), &[0.5; 9]).unwrap();
    p.set_vector(&x).unwrap();
    assert_eq!(p.vector().unwrap().to_owned(), x);
    assert_eq!(p.count(item(Scope::Brand, 1), Action::Buy, 0, 10), 3);
    let mut bytes = Vec::new();
    p.write_to(&mut bytes).unwrap();
    assert_eq!(UserProfile::read_from(&mut bytes.as_slice()).unwrap(), p);
    assert_eq!(p.to_builder().build().unwrap(), p);
    // dot products stay within quantisation error
    let dot = p.vector().unwrap().dot(&[1.0; 9]);
    assert!((dot - 4.5).abs() < 0.05, "{dot}");
    assert!(UserVector::quantise(1, &[f32::NAN]).is_err());
    assert!(UserVector::quantise(1, &[]).is_err());
    assert!(UserVector::quantise(1, &[0.0; MAX_VECTOR_DIMS + 1]).is_err());
}

#[test]
fn the_shared_empty_profile_is_copied_before_it_changes() {
    let mut p = UserProfile::empty();
    assert_eq!(p, UserProfile::empty());
    assert_eq!(p.clone(), p);
    p.touch(7);
    p.add_count(item(Scope::Brand, 1), Action::Buy, 7, 2)
        .unwrap();
    p.set_state(item(Scope::Brand, 1), StateField::Clv, 3)
        .unwrap();
    assert_eq!(p.touched(), 7);
    assert_eq!(p.count(item(Scope::Brand, 1), Action::Buy, 0, 9), 2);
    // the shared block is untouched
    let e = UserProfile::empty();
    assert_eq!(
        (e.touched(), e.behaviour().count(), e.items().count()),
        (0, 0, 0)
    );
    assert_eq!(e.heap_bytes(), 0);
    assert_ne!(p, e);
}

#[test]
fn profiles_of_65535_words_or_more_keep_their_count_in_a_word() {
    let it = item(Scope::Sku, 3);
    let mut b = ProfileBuilder {
        devices: vec![DeviceKey([5; 16])],
        tags: vec![1, 2, 3],
        ..Default::default()
    };
    // 4 + 3 + 2 * 32764 = 65535 words: just long
    for day in 0..32764 {
        b.behaviour.push(BehaviourCount {
            item: it,
            action: Action::Browse,
            day,
            count: 1,
        });
    }
    let mut p = b.clone().build().unwrap();
    assert_eq!(p.words().len(), 65535);
    assert_eq!(p.heap_bytes(), 28 + 4 + 4 * 65535);
    assert_eq!(p.devices().collect::<Vec<_>>(), vec![DeviceKey([5; 16])]);
    assert_eq!(p.tags(), &[1, 2, 3]);
    assert_eq!(p.count(it, Action::Browse, 100, 199), 100);
    assert_eq!(p.clone(), p);
    assert_eq!(p.to_builder().build().unwrap(), p);
    let mut bytes = Vec::new();
    p.write_to(&mut bytes).unwrap();
    assert_eq!(UserProfile::read_from(&mut bytes.as_slice()).unwrap(), p);
    p.add_count(it, Action::Buy, 1, 1).unwrap();
    assert_eq!(p.words().len(), 65537);
    assert_eq!(p.count(it, Action::Buy, 0, 9), 1);
    // and one word less is short again
    b.behaviour.pop();
    b.tags.pop();
    let short = b.build().unwrap();
    assert_eq!(short.words().len(), 65532);
    assert_eq!(short.heap_bytes(), 28 + 4 * 65532);
    assert_eq!(short.count(it, Action::Browse, 0, 40000), 32763);
}

#[test]
fn no_profile_grows_past_what_a_snapshot_reads_back() {
    let it = item(Scope::Sku, 9);
    let records = |n: u32| -> Vec<BehaviourCount> {
        (0..n)
            .map(|i| BehaviourCount {
                item: ItemKey::new(Scope::Sku, u64::from(i / 1000 + 1)).unwrap(),
                action: Action::Browse,
                day: (i % 1000) as Day,
                count: 1,
            })
            .collect()
    };
    // exactly MAX_WORDS: built, counted in place, written and read back
    let mut p = ProfileBuilder {
        behaviour: records((MAX_WORDS / 2) as u32),
        ..Default::default()
    }
    .build()
    .unwrap();
    assert_eq!(p.words().len(), MAX_WORDS);
    let first = ItemKey::new(Scope::Sku, 1).unwrap();
    p.add_count(first, Action::Browse, 0, 1).unwrap();
    assert_eq!(p.count(first, Action::Browse, 0, 0), 2);
    // a new record would not fit: refused, nothing changed
    assert_eq!(
        p.add_count(it, Action::Buy, 5, 1),
        Err(ProfileError::TooMany("behaviour counts"))
    );
    assert_eq!(p.words().len(), MAX_WORDS);
    let mut bytes = Vec::new();
    p.write_to(&mut bytes).unwrap();
    assert_eq!(UserProfile::read_from(&mut bytes.as_slice()).unwrap(), p);
    // and a builder cannot make a larger one
    let too_big = ProfileBuilder {
        behaviour: records((MAX_WORDS / 2) as u32 + 1),
        ..Default::default()
    };
    assert_eq!(
        too_big.build(),
        Err(ProfileError::TooMany("behaviour counts"))
    );
}

#[test]
fn in_place_counts_and_states_equal_a_rebuild() {
    let brand = item(Scope::Brand, 8557);
    let cat = item(Scope::Category, 1319);
    let mut b = ProfileBuilder {
        devices: vec![DeviceKey([1; 16])],
        tags: vec![3],
        ..Default::default()
    };
    b.behaviour.push(BehaviourCount {
        item: cat,
        action: Action::Browse,
        day: 10,
        count: 1,
    });
    let mut fast = b.clone().build().unwrap();
    for (it, action, day) in [
        (cat, Action::Browse, 10),
        (cat, Action::Cart, 10),
        (brand, Action::Browse, 9),
        (cat, Action::Browse, 11),
        (brand, Action::Browse, 9),
    ] {
        fast.add_count(it, action, day, 1).unwrap();
        b.behaviour.push(BehaviourCount {
            item: it,
            action,
            day,
            count: 1,
        });
    }
    fast.set_state(brand, StateField::FourA, 2).unwrap();
    fast.set_state(cat, StateField::Clv, 3).unwrap();
    fast.set_state(brand, StateField::FourA, 3).unwrap();
    b.items
        .push((brand, ItemState::default().with(StateField::FourA, 3)));
    b.items
        .push((cat, ItemState::default().with(StateField::Clv, 3)));
    assert_eq!(fast, b.build().unwrap());
    assert_eq!(fast.count(cat, Action::Browse, 10, 10), 2);
    assert_eq!(fast.count(brand, Action::Browse, 0, 99), 2);
}

#[test]
fn item_ids_beyond_30_bits_are_rejected() {
    assert!(ItemKey::new(Scope::Sku, 1 << 30).is_err());
    let k = ItemKey::new(Scope::Sku, (1 << 30) - 1).unwrap();
    assert_eq!((k.scope(), k.id()), (Scope::Sku, (1 << 30) - 1));
}

#[test]
fn days_count_from_2020_in_the_business_time_zone() {
    // 2020-01-01T00:00:00Z is day 0 in UTC; 2019-12-31T20:00Z is day 0 in UTC+8
    assert_eq!(day_of(1_577_836_800, 0), 0);
    assert_eq!(day_of(1_577_836_800 - 4 * 3600, 8 * 3600), 0);
    assert_eq!(day_of(1_577_836_800 + 86_400, 0), 1);
    assert_eq!(day_of(0, 0), 0);
}
