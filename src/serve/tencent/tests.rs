//! The Tencent adapter's translation, request to decision and back.

use super::*;
use crate::decision::MatchedStrategy;
use crate::domain::ids::DeviceIdKind;
use crate::telemetry::Outcome;

fn md5_of(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn request(device: Device) -> pb::RtaRequest {
    pb::RtaRequest {
        id: Some("r".into()),
        device: Some(device),
        ..Default::default()
    }
}

fn matched(
    strategy: &'static str,
    target: &'static str,
    factor: f64,
) -> MatchedStrategy<&'static str> {
    MatchedStrategy {
        strategy_id: strategy,
        target_id: target,
        media_ids: Default::default(),
        variant: None,
        bid_factor: factor,
        pctr: None,
        pcvr: None,
    }
}

#[test]
fn exp_ids_reach_the_decision_request() {
    let mut req = request(Device::default());
    req.exps = vec![
        pb::rta_request::Experiment {
            exp_id: Some(32768),
        },
        pb::rta_request::Experiment { exp_id: None },
        pb::rta_request::Experiment {
            exp_id: Some(u32::MAX),
        },
    ];
    let t = translate(&req, API);
    assert_eq!(t.experiments, [32768, u64::from(u32::MAX)]);
}

#[test]
fn the_id_the_media_caches_by_is_looked_up_first() {
    let device = Device {
        imei_md5sum: Some(md5_of("imei")),
        oaid_md5sum: Some(md5_of("oaid")),
        cached_deviceid_type: Some(CacheDeviceIdType::OaidMd5 as i32),
        ..Default::default()
    };
    let t = translate(&request(device), API);
    let hex: Vec<String> = t.devices.iter().map(DeviceKey::to_hex).collect();
    assert_eq!(hex, [md5_of("oaid"), md5_of("imei")]);
}

#[test]
fn caid_is_looked_up_by_value_and_by_md5() {
    let caid = "0123456789abcdef0123456789abcdef";
    let device = Device {
        qaid_infos: vec![pb::rta_request::device::QaidInfo {
            version: Some(20230330),
            qaid: Some(caid.into()),
            qaid_md5sum: Some(md5_of(caid)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let t = translate(&request(device), API);
    assert_eq!(
        t.devices,
        [
            DeviceKey::from_md5_hex(caid).unwrap(),
            DeviceKey::from_raw(DeviceIdKind::Caid, caid).unwrap()
        ]
    );
}

#[test]
fn empty_malformed_and_flagged_ids_are_dropped_and_the_rest_kept() {
    let device = Device {
        imei_md5sum: Some(String::new()),
        oaid_md5sum: Some("not-hex".into()),
        idfa_md5sum: Some(md5_of("IDFA")),
        mac_md5sum: Some(md5_of("mac")),
        android_id_md5sum: Some(md5_of("aid")),
        doubtful_ids_list: vec![DeviceIdTag::MacMd5Doubtful as i32, 99],
        os: Some(OperatingSystem::OsIos as i32),
        ..Default::default()
    };
    let t = translate(&request(device), API);
    let hex: Vec<String> = t.devices.iter().map(DeviceKey::to_hex).collect();
    assert_eq!(hex, [md5_of("IDFA"), md5_of("aid")]);
    assert_eq!(t.os, Os::Ios);
}

#[test]
fn oaid_doubtful_also_drops_the_oaid_md5() {
    let device = Device {
        oaid_md5sum: Some(md5_of("oaid")),
        doubtful_ids_list: vec![DeviceIdTag::OaidDoubtful as i32],
        ..Default::default()
    };
    assert!(translate(&request(device), API).devices.is_empty());
}

#[test]
fn at_most_four_caid_entries_are_looked_at() {
    let device = Device {
        qaid_infos: (0..10)
            .map(|i| pb::rta_request::device::QaidInfo {
                qaid: Some(md5_of(&i.to_string())),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    assert_eq!(
        translate(&request(device), API).devices.len(),
        MAX_QAID_INFOS
    );
}

#[test]
fn unknown_os_values_are_tolerated_as_unknown() {
    let device = Device {
        os: Some(42),
        ..Default::default()
    };
    assert_eq!(translate(&request(device), API).os, Os::Unknown);
}

#[test]
fn factors_are_clamped_to_the_media_bounds_on_the_same_scale() {
    assert_eq!(media_factor(1.8), 1.8_f32);
    assert_eq!(media_factor(0.05), 0.2_f32);
    assert_eq!(media_factor(9.0), 5.0_f32);
    assert_eq!(media_factor(f64::NAN), 1.0_f32);
}

#[test]
fn dsp_tags_fit_the_media_limit_and_keep_short_ids() {
    assert_eq!(dsp_tag("goal_urban_fitness"), "goal_urban_fitness");
    let long = "new_customer_brand_cross_category";
    let tag = dsp_tag(long);
    assert_eq!(tag.len(), MAX_DSP_TAG);
    assert!(tag.starts_with("new_custome~"), "{tag}");
    assert_eq!(&tag[12..], &md5_of(long)[..8]);
    assert_ne!(dsp_tag("new_customer_diapers_to_formula"), tag);
}

#[test]
fn a_decision_becomes_target_ids_and_infos_once_per_target_id() {
    let ep = Tencent::new(&TencentConfig {
        bid_factor_fields: vec![FactorField::CpcFactor],
        ..Default::default()
    });
    let mut pcvr = matched("b", "2", 7.5);
    pcvr.pcvr = Some(0.25);
    let d = Decision {
        take: true,
        matches: vec![matched("a", "1", 1.5), pcvr, matched("c", "1", 2.0)],
        cache_seconds: 300,
        outcome: Outcome::Take,
    };
    let reply = Reply {
        elapsed: std::time::Duration::from_micros(1500),
        cache_seconds: Some(300),
    };
    let r = ep.to_response(Some("id".into()), &d, reply);
    assert_eq!(r.code, Some(code::TAKE));
    assert_eq!(r.out_target_id, ["1", "2"]);
    assert_eq!(r.target_infos.len(), 2);
    assert_eq!(r.target_infos[0].cpc_factor, Some(1.5));
    assert_eq!(r.target_infos[0].user_weight_factor, None);
    assert_eq!(r.target_infos[0].dsp_tag_str.as_deref(), Some("a"));
    assert_eq!(r.target_infos[1].cpc_factor, Some(5.0));
    assert_eq!(r.target_infos[1].pcvr, Some(0.25));
    assert_eq!(r.response_cache_time, Some(300));
    assert_eq!(r.processing_time_ms, Some(1));
}

#[test]
fn harmony_and_mac_devices_reach_strategies_as_their_platform() {
    for (os, expected) in [
        (OperatingSystem::OsHarmony, Os::Harmony),
        (OperatingSystem::OsMac, Os::Other),
        (OperatingSystem::OsAndroid, Os::Android),
    ] {
        let req = request(Device {
            os: Some(os as i32),
            imei_md5sum: Some(md5_of("860000000000001")),
            ..Default::default()
        });
        let t = translate(&req, API);
        assert_eq!(t.os, expected, "{os:?}");
        // a Harmony device's IMEI md5 is looked up as on Android
        assert_eq!(t.devices.len(), 1);
    }
}
