//! The Meituan adapter's translation, request to decision and back.

use md5::{Digest, Md5};

use super::*;
use crate::decision::MatchedStrategy;
use crate::domain::media::MediaIds;
use crate::telemetry::Outcome;

fn md5_of(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn with_device(device: pb::rta_request::Device) -> pb::RtaRequest {
    pb::RtaRequest {
        id: Some("m".into()),
        device: Some(device),
        ..Default::default()
    }
}

#[test]
fn meituan_numbers_its_operating_systems_its_own_way() {
    for (os, expected) in [
        (OperatingSystem::OsIos, Os::Ios),
        (OperatingSystem::OsAndroid, Os::Android),
        (OperatingSystem::OsJava, Os::Other),
        (OperatingSystem::OsUnknown, Os::Unknown),
    ] {
        let req = with_device(pb::rta_request::Device {
            os: Some(os as i32),
            ..Default::default()
        });
        assert_eq!(translate(&req, API).os, expected, "{os:?}");
    }
    // Tencent's OS_IOS is 2: here it is Android
    let req = with_device(pb::rta_request::Device {
        os: Some(2),
        ..Default::default()
    });
    assert_eq!(translate(&req, API).os, Os::Android);
    let req = with_device(pb::rta_request::Device {
        os: Some(77),
        ..Default::default()
    });
    assert_eq!(translate(&req, API).os, Os::Unknown);
}

#[test]
fn md5_ids_are_read_the_raw_oaid_hashed_and_bad_ones_dropped() {
    let req = with_device(pb::rta_request::Device {
        imei_md5sum: Some(md5_of("860000000000001")),
        oaid_md5sum: Some("zz".into()),
        oaid: Some("oaid-raw".into()),
        idfa_md5sum: Some(String::new()),
        android_id_md5sum: Some(md5_of("860000000000001")),
        ..Default::default()
    });
    let hex: Vec<String> = translate(&req, API)
        .devices
        .iter()
        .map(DeviceKey::to_hex)
        .collect();
    // the same key twice is looked up once
    assert_eq!(hex, [md5_of("860000000000001"), md5_of("oaid-raw")]);
}

#[test]
fn a_take_lists_each_meituan_id_once_and_refuses_without_one() {
    let m = |id: Option<i64>| MatchedStrategy {
        strategy_id: "s",
        target_id: "t",
        media_ids: MediaIds {
            oceanengine: None,
            meituan: id,
        },
        variant: None,
        bid_factor: 1.0,
        pctr: None,
        pcvr: None,
    };
    let reply = Reply {
        elapsed: std::time::Duration::from_millis(3),
        cache_seconds: None,
    };
    let decision = |matches| Decision {
        take: true,
        matches,
        cache_seconds: 300,
        outcome: Outcome::Take,
    };
    let req = with_device(Default::default());
    let r = pb::RtaResponse::decode(
        &Meituan.answer(
            &req,
            &decision(vec![m(Some(7)), m(Some(7)), m(Some(9))]),
            reply,
        )[..],
    )
    .unwrap();
    assert_eq!(r.code, Some(code::TAKE));
    assert_eq!(r.promotion_target_id, [7, 9]);
    assert_eq!(r.request_id.as_deref(), Some("m"));
    assert_eq!(r.processing_time_ms, Some(3));
    let r = pb::RtaResponse::decode(&Meituan.answer(&req, &decision(vec![m(None)]), reply)[..])
        .unwrap();
    assert_eq!(r.code, Some(code::NO_MATCH));
}

#[test]
fn a_device_of_many_fields_is_refused_before_decoding() {
    let req = with_device(pb::rta_request::Device {
        ..Default::default()
    });
    let mut body = req.encode_to_vec();
    // 100 more device fields: a device of 100 ip fields
    let device = pb::rta_request::Device {
        ip: Some("1".into()),
        ..Default::default()
    }
    .encode_to_vec();
    let mut many = Vec::new();
    for _ in 0..100 {
        many.extend_from_slice(&device);
    }
    body.push(0x22); // field 4, length-delimited
    prost::encoding::encode_varint(many.len() as u64, &mut body);
    body.extend_from_slice(&many);
    let e = read_request(&body).unwrap_err();
    assert_eq!(e.field, "device");
}
