//! The index's tests: lookups, linking, deletion, expiry, widening, sizing and
//! bulk loading through [`UserIndex`], and the slot layout the prefetches assume.

use super::slots::{LOOKUP_SLOTS, Slots};
use super::*;
use crate::index::profile::ProfileBuilder;

fn profile(devices: &[u8]) -> UserProfile {
    ProfileBuilder {
        devices: devices.iter().map(|d| DeviceKey([*d; 16])).collect(),
        ..Default::default()
    }
    .build()
    .unwrap()
}

/// The prefetches assume hashbrown's layout (bucket i's slot at
/// `ctrl - (i + 1) * size`, probing from `hash & mask`). Were that to
/// change they would go astray without a sound: this pins it.
#[test]
fn prefetched_lines_hold_the_slots_that_lookups_read() {
    let mut table: HashTable<(u64, u32), TableAlloc> =
        HashTable::with_capacity_in(7_000, TableAlloc::default());
    let hash = |k: u64| {
        let z = k
            .wrapping_add(0x9e37_79b9_7f4a_7c15)
            .wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (z ^ (z >> 31)).wrapping_mul(0x94d0_49bb_1331_11eb)
    };
    for k in 0..7_000u64 {
        table.insert_unique(hash(k), (k, 0), |e| hash(e.0));
    }
    let slots = Slots::of(&table).unwrap();
    let mut near = 0;
    for k in 0..7_000u64 {
        let i = table.find_bucket_index(hash(k), |e| e.0 == k).unwrap();
        let at = std::ptr::from_ref(table.get_bucket(i).unwrap()) as usize;
        assert_eq!(at, slots.ctrl - (i + 1) * slots.size, "bucket {i}");
        let home = hash(k) as usize & slots.mask;
        near += usize::from(i.wrapping_sub(home) & slots.mask < LOOKUP_SLOTS);
    }
    // 85 % full: most entries sit within the buckets prefetched
    assert!(
        near * 10 >= 7_000 * 8,
        "{near} of 7000 near their first bucket"
    );
}

#[test]
fn any_linked_device_resolves_the_user() {
    let idx = UserIndex::default();
    idx.upsert(1, profile(&[1, 2])).unwrap();
    assert_eq!(
        idx.resolve(&[DeviceKey([9; 16]), DeviceKey([2; 16])]),
        Some(1)
    );
    assert_eq!(idx.resolve(&[DeviceKey([9; 16])]), None);
}

#[test]
fn a_device_moves_to_the_user_that_claims_it_last() {
    let idx = UserIndex::default();
    idx.upsert(1, profile(&[1, 2])).unwrap();
    idx.upsert(2, profile(&[2, 3])).unwrap();
    assert_eq!(idx.resolve(&[DeviceKey([2; 16])]), Some(2));
    let devices_of_1 = idx.with_profile(1, |p| p.devices().count()).unwrap();
    assert_eq!(devices_of_1, 1);
    // re-upserting user 2 without device 3 unlinks it
    idx.upsert(2, profile(&[2])).unwrap();
    assert_eq!(idx.resolve(&[DeviceKey([3; 16])]), None);
}

#[test]
fn deleting_a_user_unlinks_every_device_at_once() {
    let idx = UserIndex::default();
    idx.upsert(5, profile(&[1, 2, 3])).unwrap();
    assert!(idx.delete(5));
    assert_eq!(idx.users(), 0);
    assert_eq!(idx.devices(), 0);
    assert_eq!(idx.resolve(&[DeviceKey([1; 16])]), None);
    assert_eq!(idx.profile_heap_bytes(), 0);
    assert!(!idx.delete(5));
}

#[test]
fn a_deletion_tombstone_rejects_older_events_only() {
    let idx = UserIndex::default();
    idx.upsert(9, profile(&[1])).unwrap();
    assert!(idx.delete_user(9, 1_000));
    assert!(idx.deleted_after(9, 999));
    assert!(idx.deleted_after(9, 1_000));
    assert!(!idx.deleted_after(9, 1_001));
    assert!(!idx.deleted_after(8, 0));
}

#[test]
fn link_and_unlink_move_devices_between_users() {
    let idx = UserIndex::default();
    idx.link(DeviceKey([1; 16]), 1).unwrap();
    idx.link(DeviceKey([2; 16]), 1).unwrap();
    assert_eq!(idx.resolve(&[DeviceKey([2; 16])]), Some(1));
    idx.link(DeviceKey([2; 16]), 2).unwrap();
    assert_eq!(idx.resolve(&[DeviceKey([2; 16])]), Some(2));
    assert_eq!(idx.with_profile(1, |p| p.devices().count()), Some(1));
    assert!(idx.unlink(DeviceKey([2; 16])).unwrap());
    assert_eq!(idx.with_profile(2, |p| p.devices().count()), Some(0));
    assert!(!idx.unlink(DeviceKey([2; 16])).unwrap());
}

#[test]
fn expiry_drops_untouched_users_and_slides_behaviour_windows() {
    use crate::index::profile::{Action, BehaviourCount, ItemKey, Scope};
    let idx = UserIndex::default();
    let item = ItemKey::new(Scope::Category, 1).unwrap();
    for (user, touched) in [(1, 10), (2, 50)] {
        let mut b = ProfileBuilder {
            touched,
            ..Default::default()
        };
        for day in [5, 45] {
            b.behaviour.push(BehaviourCount {
                item,
                action: Action::Buy,
                day,
                count: 1,
            });
        }
        idx.upsert(user, b.build().unwrap()).unwrap();
    }
    assert_eq!(idx.expire(20, 40), 1);
    assert_eq!(idx.users(), 1);
    assert_eq!(
        idx.with_profile(2, |p| p.count(item, Action::Buy, 0, 100)),
        Some(1)
    );
}

#[test]
fn ids_beyond_32_bits_widen_a_shard_and_keep_its_entries() {
    let idx = UserIndex::default();
    let narrow: Vec<UserId> = (1..=200).collect();
    for &u in &narrow {
        idx.upsert(u, profile_of(u, u as u8)).unwrap();
    }
    let wide: Vec<UserId> = (0..200).map(|i| u64::MAX - i).collect();
    for &u in &wide {
        idx.upsert(u, profile_of(u, 7)).unwrap();
    }
    assert_eq!(idx.users(), 400);
    assert_eq!(idx.devices(), 400);
    for &u in narrow.iter().chain(&wide) {
        assert_eq!(idx.resolve(&[key_of(u)]), Some(u));
        assert_eq!(
            idx.with_profile(u, |p| p.devices().next()),
            Some(Some(key_of(u)))
        );
    }
    assert!(idx.delete(u64::MAX));
    assert!(idx.delete(1));
    assert_eq!(idx.resolve(&[key_of(u64::MAX)]), None);
    assert_eq!(idx.resolve(&[key_of(1)]), None);
    assert_eq!((idx.users(), idx.devices()), (398, 398));
    // a device moves from a narrow id to a wide one and back
    idx.link(key_of(2), u64::MAX - 1).unwrap();
    assert_eq!(idx.resolve(&[key_of(2)]), Some(u64::MAX - 1));
    assert_eq!(idx.with_profile(2, |p| p.devices().count()), Some(0));
    idx.link(key_of(2), 2).unwrap();
    assert_eq!(idx.resolve(&[key_of(2)]), Some(2));
    let mut seen = 0;
    idx.for_each(|_, _| seen += 1);
    assert_eq!(seen, 398);
}

#[test]
fn heap_bytes_follow_every_change() {
    let idx = UserIndex::default();
    idx.upsert(1, profile(&[1, 2])).unwrap();
    idx.upsert(2, profile(&[3])).unwrap();
    let sum = || {
        let mut n = 0;
        idx.for_each(|_, p| n += p.heap_bytes() as u64);
        n
    };
    assert_eq!(idx.profile_heap_bytes(), sum());
    idx.link(DeviceKey([2; 16]), 2).unwrap();
    idx.update_in_place(1, |p| {
        p.add_count(
            crate::index::profile::ItemKey::new(crate::index::profile::Scope::Sku, 1).unwrap(),
            crate::index::profile::Action::Buy,
            3,
            1,
        )
        .unwrap()
    });
    assert_eq!(idx.profile_heap_bytes(), sum());
    idx.unlink(DeviceKey([3; 16])).unwrap();
    idx.delete(1);
    assert_eq!(idx.profile_heap_bytes(), sum());
    idx.clear();
    assert_eq!(
        (idx.users(), idx.devices(), idx.profile_heap_bytes()),
        (0, 0, 0)
    );
}

#[test]
fn pre_sized_tables_come_out_nearly_full_and_do_not_grow() {
    for items in [100_000, 1_000_000, 1_570_000, 10_000_000, 157_000_000] {
        let (shards, cap) = plan(items);
        let slots = shards * (cap * 8 / 7).next_power_of_two();
        let load = items as f64 / slots as f64;
        assert!(shards * cap >= items, "{items}: {shards} x {cap}");
        // small tables pay a larger margin for the uneven split
        let want = if items >= 1_000_000 { 0.8 } else { 0.7 };
        assert!(load > want, "{items} items: load {load:.3}");
    }
    let users = 50_000;
    let idx = UserIndex::with_capacities(users, users);
    let before = idx.table_bytes();
    for u in 1..=users as u64 {
        idx.upsert(u, profile_of(u, 0)).unwrap();
    }
    assert_eq!(idx.table_bytes(), before);
}

fn key_of(u: UserId) -> DeviceKey {
    let mut k = [9; 16];
    k[..8].copy_from_slice(&u.to_le_bytes());
    DeviceKey(k)
}

fn profile_of(u: UserId, tag: u8) -> UserProfile {
    ProfileBuilder {
        devices: vec![key_of(u)],
        tags: vec![u32::from(tag)],
        ..Default::default()
    }
    .build()
    .unwrap()
}

#[test]
fn doubtful_devices_are_never_linked() {
    let idx = UserIndex::default();
    idx.upsert(1, profile(&[0, 4])).unwrap();
    assert_eq!(idx.devices(), 1);
    assert_eq!(idx.resolve(&[DeviceKey([0; 16])]), None);
}

/// Every linked device resolves to a user whose profile lists it, and
/// every device a profile lists resolves to that user.
fn assert_consistent(idx: &UserIndex) {
    let mut listed = 0;
    idx.for_each(|u, p| {
        for d in p.devices() {
            assert_eq!(idx.resolve(&[d]), Some(u), "{d:?} of {u}");
            listed += 1;
        }
    });
    assert_eq!(idx.devices(), listed);
    let mut heap = 0;
    idx.for_each(|_, p| heap += p.heap_bytes() as u64);
    assert_eq!(idx.profile_heap_bytes(), heap);
}

#[test]
fn bulk_loading_inserts_what_upserting_does() {
    let idx = UserIndex::with_capacity(3_000);
    let mut a = idx.bulk_loader(0, 2);
    let mut b = idx.bulk_loader(1, 2);
    for u in 1..=3_000u64 {
        let loader = if u % 3 == 0 { &mut a } else { &mut b };
        loader.push(u, profile_of(u, u as u8)).unwrap();
    }
    // a wide id widens its shards on the way
    a.push(u64::MAX, profile_of(u64::MAX, 1)).unwrap();
    let mut repairs = a.finish();
    repairs.merge(b.finish());
    idx.finish_bulk(repairs).unwrap();
    assert_eq!((idx.users(), idx.devices()), (3_001, 3_001));
    for u in (1..=3_000u64).chain([u64::MAX]) {
        assert_eq!(idx.resolve(&[key_of(u)]), Some(u));
    }
    assert_consistent(&idx);
}

#[test]
fn a_large_pre_sized_index_carves_its_tables_from_one_region_and_still_grows() {
    let users = 150_000;
    let idx = UserIndex::with_capacities(users, users);
    let in_region = |idx: &UserIndex| match &*idx.devices.shards[0].0.read().unwrap() {
        DeviceTable::Narrow(t) => t.allocator().has_region(),
        DeviceTable::Wide(t) => t.allocator().has_region(),
    };
    if !in_region(&idx) {
        return; // no mapping on this system
    }
    let before = idx.table_bytes();
    // three times the users it was sized for: every shard grows out of
    // the region (its block given back) into the global allocator
    let mut loader = idx.bulk_loader(0, 1);
    for u in 1..=3 * users as u64 {
        loader.push(u, profile_of(u, 0)).unwrap();
    }
    idx.finish_bulk(loader.finish()).unwrap();
    assert!(idx.table_bytes().0 > before.0 && idx.table_bytes().1 > before.1);
    assert_eq!(idx.users(), 3 * users);
    for u in (1..=3 * users as u64).step_by(997) {
        assert_eq!(idx.resolve(&[key_of(u)]), Some(u));
    }
    assert_consistent(&idx);
    idx.clear();
    assert_eq!(idx.users(), 0);
}

#[test]
fn bulk_loading_puts_right_a_user_twice_and_a_device_under_two_users() {
    let idx = UserIndex::default();
    let mut loader = idx.bulk_loader(0, 1);
    loader.push(1, profile(&[1, 2])).unwrap();
    loader.push(2, profile(&[2, 3])).unwrap(); // claims device 2 as well
    loader.push(3, profile(&[4, 5])).unwrap();
    loader.push(3, profile(&[5, 6, 0])).unwrap(); // user 3 again; 0 is doubtful
    idx.finish_bulk(loader.finish()).unwrap();
    assert_eq!(idx.users(), 3);
    // the later claim and the later profile win, as with upserts in file order
    assert_eq!(idx.resolve(&[DeviceKey([2; 16])]), Some(2));
    assert_eq!(idx.with_profile(1, |p| p.devices().count()), Some(1));
    assert_eq!(idx.resolve(&[DeviceKey([4; 16])]), None);
    assert_eq!(idx.resolve(&[DeviceKey([6; 16])]), Some(3));
    assert_eq!(idx.resolve(&[DeviceKey([0; 16])]), None);
    assert_eq!(idx.with_profile(3, |p| p.devices().count()), Some(2));
    assert_consistent(&idx);
}
