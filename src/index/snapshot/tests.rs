//! Tests of writing, restoring, checking and rotating snapshots.

use super::*;
use crate::demo::population::populate;
use crate::domain::taxonomy::Taxonomy;
use crate::index::record::UserRecord;

fn dump(index: &UserIndex, t: &Taxonomy) -> Vec<String> {
    let mut v = Vec::new();
    index.for_each(|u, p| {
        v.push(serde_json::to_string(&UserRecord::from_profile(u, p, t, 2000)).unwrap())
    });
    v.sort();
    v
}

#[test]
fn a_snapshot_restores_the_same_index_and_offsets() {
    let t = Taxonomy::default_taxonomy();
    let idx = UserIndex::default();
    populate(&idx, 2_000, 5, 2000, &t);
    idx.delete_user(17, 123);
    let dir = tempfile::tempdir().unwrap();
    let offsets: Offsets = [
        (("tags".to_string(), 0), 42),
        (("behaviour".to_string(), 3), 7),
    ]
    .into();
    write(dir.path(), &idx, &offsets, 2).unwrap();
    let back = UserIndex::default();
    let r = restore_newest(dir.path(), &back, |_| {}).unwrap().unwrap();
    assert_eq!(r.offsets, offsets);
    assert_eq!(r.users, 1_999);
    assert_eq!(dump(&back, &t), dump(&idx, &t));
    assert!(back.deleted_after(17, 100));
    assert_eq!(back.devices(), idx.devices());
}

#[test]
fn a_corrupt_or_truncated_newest_snapshot_falls_back_to_the_previous_one() {
    let t = Taxonomy::default_taxonomy();
    let idx = UserIndex::default();
    populate(&idx, 300, 1, 2000, &t);
    let dir = tempfile::tempdir().unwrap();
    let old = write(dir.path(), &idx, &[(("t".to_string(), 0), 1)].into(), 5).unwrap();
    let newest = write(dir.path(), &idx, &[(("t".to_string(), 0), 2)].into(), 5).unwrap();
    // flip one byte in the middle of the newest
    let mut bytes = fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&newest, &bytes).unwrap();
    let back = UserIndex::default();
    let r = restore_newest(dir.path(), &back, |_| {}).unwrap().unwrap();
    assert_eq!(r.path, old);
    assert_eq!(r.offsets[&("t".to_string(), 0)], 1);
    assert_eq!(r.skipped.len(), 1);
    assert!(r.skipped[0].contains("corrupt snapshot"), "{:?}", r.skipped);
    // nothing of the corrupt file's contents is left behind
    assert_eq!(back.users(), idx.users());
    // truncation is detected too
    fs::write(&newest, &bytes[..bytes.len() / 3]).unwrap();
    assert!(matches!(
        verify(&newest),
        Err(SnapshotError::Corrupt { .. })
    ));
}

/// 40,000 users and one profile of the largest size a snapshot holds
/// (4 MiB of words): a snapshot of several blocks.
fn index_of_many_blocks(t: &Taxonomy) -> UserIndex {
    use crate::index::profile::{Action, BehaviourCount, ItemKey, ProfileBuilder, Scope};
    let idx = UserIndex::default();
    populate(&idx, 40_000, 3, 2000, t);
    let huge = ProfileBuilder {
        devices: vec![crate::domain::ids::DeviceKey([0x5a; 16])],
        behaviour: (0..(MAX_WORDS / 2 - 4) as u32)
            .map(|i| BehaviourCount {
                item: ItemKey::new(Scope::Sku, u64::from(i / 1000 + 1)).unwrap(),
                action: Action::Browse,
                day: (i % 1000) as u16,
                count: 1,
            })
            .collect(),
        ..Default::default()
    }
    .build()
    .unwrap();
    idx.upsert(u64::from(u32::MAX) + 7, huge).unwrap();
    idx
}

#[test]
fn a_snapshot_of_many_blocks_and_a_profile_larger_than_one_restores_whole() {
    let t = Taxonomy::default_taxonomy();
    let idx = index_of_many_blocks(&t);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &idx, &Offsets::new(), 1).unwrap();
    assert!(fs::metadata(&path).unwrap().len() > 2 * BLOCK as u64);
    let (users, devices) = newest_counts(dir.path()).unwrap();
    let back = UserIndex::with_capacities(users as usize, devices as usize);
    let mut progress = Vec::new();
    let r = restore_newest(dir.path(), &back, |n| progress.push(n))
        .unwrap()
        .unwrap();
    assert_eq!(r.users, 40_001);
    assert_eq!(dump(&back, &t), dump(&idx, &t));
    assert_eq!(back.devices(), idx.devices());
    assert_eq!(back.profile_heap_bytes(), idx.profile_heap_bytes());
    assert!(progress.is_empty()); // called every million users
}

#[test]
fn a_byte_flipped_anywhere_in_a_snapshot_of_many_blocks_restores_nothing() {
    // decoding threads meet the damage while the reader is blocks ahead
    // (or it decodes, and only the checksum at the end tells): either way
    // the file is skipped, with no hang, no panic and no user left behind
    let t = Taxonomy::default_taxonomy();
    let idx = index_of_many_blocks(&t);
    let src = tempfile::tempdir().unwrap();
    let path = write(src.path(), &idx, &Offsets::new(), 1).unwrap();
    let bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    for at in (1..12).map(|k| k * n / 12).chain([40, 41, 48, n - 30]) {
        let mut bad = bytes.clone();
        bad[at] ^= 0x81;
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(path.file_name().unwrap()), &bad).unwrap();
        let back = UserIndex::default();
        let r = restore_newest(dir.path(), &back, |_| {}).unwrap();
        assert!(r.is_none(), "byte {at} of {n}");
        assert_eq!((back.users(), back.devices()), (0, 0), "byte {at}");
    }
}

#[test]
fn an_rtasnap2_snapshot_still_restores() {
    use crate::index::profile::ProfileBuilder;
    let idx = UserIndex::default();
    for u in 1..=500u64 {
        let mut key = [3u8; 16];
        key[..8].copy_from_slice(&u.to_le_bytes());
        let p = ProfileBuilder {
            devices: vec![crate::domain::ids::DeviceKey(key)],
            tags: vec![u as u32 % 7, 100],
            touched: 9,
            ..Default::default()
        }
        .build()
        .unwrap();
        idx.upsert(u, p).unwrap();
    }
    // the same users in the previous format: profiles without the 4
    // bytes of vector fields (none of these has a vector)
    let mut body = MAGIC_V2.to_vec();
    body.extend_from_slice(&1u64.to_le_bytes()); // created
    body.extend_from_slice(&500u64.to_le_bytes());
    body.extend_from_slice(&500u64.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes()); // one offset
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(b"t");
    body.extend_from_slice(&0i32.to_le_bytes());
    body.extend_from_slice(&5i64.to_le_bytes());
    body.extend_from_slice(&0u64.to_le_bytes()); // no tombstones
    idx.for_each(|u, p| {
        let mut v3 = Vec::new();
        p.write_to(&mut v3).unwrap();
        body.push(1);
        body.extend_from_slice(&u.to_le_bytes());
        body.extend_from_slice(&v3[..22]);
        body.extend_from_slice(&v3[26..]);
    });
    body.push(0);
    body.extend_from_slice(&500u64.to_le_bytes());
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body.extend_from_slice(END);
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(format!("{PREFIX}1{SUFFIX}")), &body).unwrap();
    let back = UserIndex::default();
    let r = restore_newest(dir.path(), &back, |_| {}).unwrap().unwrap();
    assert_eq!((r.users, back.devices()), (500, 500));
    assert_eq!(r.offsets[&("t".to_string(), 0)], 5);
    let t = Taxonomy::default_taxonomy();
    assert_eq!(dump(&back, &t), dump(&idx, &t));
}

#[test]
fn a_snapshot_cut_short_anywhere_restores_nothing() {
    let t = Taxonomy::default_taxonomy();
    let idx = UserIndex::default();
    populate(&idx, 3_000, 2, 2000, &t);
    idx.delete_user(5, 1);
    let src = tempfile::tempdir().unwrap();
    let path = write(src.path(), &idx, &[(("t".to_string(), 0), 1)].into(), 1).unwrap();
    let bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    for cut in [
        0,
        7,
        30,
        50,
        61,
        62,
        100,
        n / 3,
        n / 2,
        n - 21,
        n - 13,
        n - 12,
        n - 1,
    ] {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(path.file_name().unwrap()), &bytes[..cut]).unwrap();
        let back = UserIndex::default();
        let r = restore_newest(dir.path(), &back, |_| {}).unwrap();
        assert!(r.is_none(), "cut at {cut} of {n}");
        assert_eq!((back.users(), back.devices()), (0, 0), "cut at {cut}");
        assert!(!back.deleted_after(5, 0), "cut at {cut}");
    }
    // and so does one with bytes added before the trailer
    let mut longer = bytes[..n - 12].to_vec();
    longer.extend_from_slice(&[0; 5]);
    longer.extend_from_slice(&bytes[n - 12..]);
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(path.file_name().unwrap()), &longer).unwrap();
    let back = UserIndex::default();
    assert!(restore_newest(dir.path(), &back, |_| {}).unwrap().is_none());
    assert_eq!(back.users(), 0);
}

#[test]
fn only_the_newest_snapshots_are_kept() {
    let idx = UserIndex::default();
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..4 {
        write(dir.path(), &idx, &Offsets::new(), 2).unwrap();
    }
    assert_eq!(list(dir.path()).len(), 2);
}
