//! The Ocean Engine adapter's translation, request to decision and back.

use md5::{Digest, Md5};

use super::*;
use crate::decision::MatchedStrategy;
use crate::domain::media::MediaIds;

fn md5_of(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn matched(
    rta_id: Option<i64>,
    factor: f64,
    variant: Option<u16>,
) -> MatchedStrategy<&'static str> {
    MatchedStrategy {
        strategy_id: "s",
        target_id: "t",
        media_ids: MediaIds {
            oceanengine: rta_id,
            meituan: None,
        },
        variant,
        bid_factor: factor,
        pctr: None,
        pcvr: None,
    }
}

fn reply() -> Reply {
    Reply {
        elapsed: std::time::Duration::from_millis(2),
        cache_seconds: Some(300),
    }
}

#[test]
fn did_is_read_by_its_type_raw_ids_hashed_by_the_media_conventions() {
    let cases = [
        (DidType::Imei, "86000000000000A", md5_of("86000000000000a")),
        (DidType::Idfa, "ab-cd", md5_of("AB-CD")),
        (DidType::Oaid, "Oaid-1", md5_of("Oaid-1")),
        (DidType::ImeiMd5, &md5_of("x")[..], md5_of("x")),
        (DidType::GaidMd5, &md5_of("g")[..], md5_of("g")),
    ];
    for (kind, did, expected) in cases {
        let req = pb::Req {
            did: did.to_string(),
            did_type: kind as i32,
            ..Default::default()
        };
        let t = translate(&req, API);
        assert_eq!(t.devices.len(), 1, "{kind:?}");
        assert_eq!(t.devices[0].to_hex(), expected, "{kind:?}");
    }
}

#[test]
fn an_unknown_did_type_or_a_malformed_md5_is_ignored() {
    let req = pb::Req {
        did: "x".into(),
        did_type: 42,
        device: Some(pb::Device {
            imei_md5: "not hex".into(),
            oaid: "o".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let t = translate(&req, API);
    let hex: Vec<String> = t.devices.iter().map(DeviceKey::to_hex).collect();
    assert_eq!(hex, [md5_of("o")]);
}

#[test]
fn the_platform_states_the_os_and_the_device_block_backs_it_up() {
    let mut req = pb::Req {
        platform: PlatformType::Ios as i32,
        ..Default::default()
    };
    assert_eq!(translate(&req, API).os, Os::Ios);
    req.platform = 0;
    req.device = Some(pb::Device {
        device_os_type: DeviceOsType::DeviceAndroid as i32,
        ..Default::default()
    });
    assert_eq!(translate(&req, API).os, Os::Android);
    req.device = Some(pb::Device {
        device_os_type: 99,
        ..Default::default()
    });
    assert_eq!(translate(&req, API).os, Os::Unknown);
}

#[test]
fn every_asked_rta_id_is_answered_once_in_request_order() {
    let ep = OceanEngine::new(&OceanEngineConfig::default());
    let req = pb::Req {
        req_id: "q".into(),
        rta_ids: vec![5, 3, 5, 8],
        ..Default::default()
    };
    let d = Decision {
        take: true,
        matches: vec![matched(Some(3), 9.0, Some(1)), matched(Some(8), 1.5, None)],
        cache_seconds: 300,
        outcome: Outcome::Take,
    };
    let r = ep.to_response(&req, &d, reply());
    let ids: Vec<(i64, bool)> = r
        .user_infos
        .iter()
        .map(|u| (u.rta_id, u.is_interested))
        .collect();
    assert_eq!(ids, [(5, false), (3, true), (8, true)]);
    // clamped to the media's 5.0; variant 1 is CUS_VID_2
    assert_eq!(r.user_infos[1].user_scores[0].quality, 5.0);
    assert_eq!(
        r.user_infos[1].user_scores[0].user_type,
        UserType::PriceCoef as i32
    );
    assert_eq!(r.user_infos[1].cus_vid, 2);
    assert_eq!(r.user_infos[2].cus_vid, 0);
    assert!(r.user_infos[0].user_scores.is_empty());
    assert_eq!(r.req_id, "q");
    assert_eq!(r.cache_time_secs, 300);
    assert_eq!(r.bid_type, Some(BID));
}

#[test]
fn a_blacklisted_device_is_skipped_as_a_device() {
    let ep = OceanEngine::new(&OceanEngineConfig::default());
    let req = pb::Req {
        rta_ids: vec![1],
        ..Default::default()
    };
    let d = Decision {
        take: false,
        matches: Vec::new(),
        cache_seconds: 600,
        outcome: Outcome::Blacklisted,
    };
    let r = ep.to_response(&req, &d, reply());
    assert_eq!(r.bid_type, Some(SKIP_DEVICE));
    assert!(!r.user_infos[0].is_interested);
}

#[test]
fn more_rta_ids_than_the_limit_are_refused_naming_the_field() {
    let req = pb::Req {
        rta_ids: (0..10_000).collect(),
        ..Default::default()
    };
    let e = read_request(&req.encode_to_vec()).unwrap_err();
    assert_eq!(e.field, "rta_ids");
    let ok = pb::Req {
        rta_ids: (0..MAX_RTA_IDS as i64).collect(),
        ..Default::default()
    };
    read_request(&ok.encode_to_vec()).unwrap();
}

#[test]
fn variants_past_the_tenth_carry_no_experiment_tag() {
    assert_eq!(cus_vid(0), 1);
    assert_eq!(cus_vid(9), 10);
    assert_eq!(cus_vid(10), 0);
}
