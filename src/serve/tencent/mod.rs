//! Tencent Ads RTA over HTTP/protobuf: `POST /rta/tencent`, wire-compatible with
//! the media's own `tencent.ad.rta` protocol (proto2), so that Tencent's RTA can
//! call the engine without an adapter. One [`MediaProtocol`] of the media
//! adapter layer ([`crate::serve::media`]), which does admission, limits and
//! metrics for every media; this module only translates.
//!
//! What each request gets (pings, decisions, test traffic on the uncounted
//! path, the default answer when shed or late, 400/413), how device ids are
//! read (the cached id first, doubtful ids dropped, a malformed id ignored and
//! counted rather than failing the request) and why: `docs/tencent.md`.

use md5::{Digest, Md5};
use prost::Message;

use super::InvalidRequest;
use super::limits::MAX_EXPERIMENTS;
use super::media::shape::{Nested, Shape};
use super::media::{
    Call, MediaConfig, MediaFields, MediaProtocol, Reply, SEVEN_DAYS, Translated, clamp_factor,
};
mod config;

pub use super::media::{CONTENT_TYPE, FailMode};
use crate::decision::Decision;
use crate::domain::ids::{DeviceIdKind as Kind, DeviceKey};
use crate::domain::media::Media;
use crate::strategy::{BID_FACTOR_RANGE, Os};
use crate::telemetry::IgnoredId;
pub use config::FactorField;

/// The `[tencent]` section.
pub type TencentConfig = MediaConfig<FactorField>;

/// Tencent's ceiling for `response_cache_time`: 7 days.
pub const TENCENT_MAX_CACHE_SECONDS: u32 = SEVEN_DAYS;

/// Generated types of the `tencent.ad.rta` protocol (proto/tencent/rta.proto).
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("tencent.ad.rta");
}

use pb::rta_request::device::{CacheDeviceIdType, DeviceIdTag};
use pb::rta_request::{Device, OperatingSystem};

/// Where the endpoint is served by default.
pub const PATH: &str = "/rta/tencent";

/// `RtaResponse.code` values. The media reads 0 as "take" and anything else as
/// "refuse all"; distinct non-zero codes tell the media's debugging tools why.
pub mod code {
    /// Take the traffic (restricted to `out_target_id` when any are given).
    pub const TAKE: u32 = 0;
    /// No strategy matched the device.
    pub const NO_MATCH: u32 = 1;
    /// Not decided (shed or out of time) and the default answer is `fail_closed`.
    pub const DEFAULT_REFUSE: u32 = 2;
}

/// The `api` label of live traffic.
pub const API: &str = "tencent";
/// The `api` label of `is_test` traffic.
pub const API_TEST: &str = "tencent_test";

/// Longest `dsp_tag_str` the media accepts, bytes.
pub const MAX_DSP_TAG: usize = 20;

/// CAID entries looked at per request (each gives at most two keys), so that one
/// request resolves at most 5 + 2 * 4 device keys.
pub const MAX_QAID_INFOS: usize = 4;

/// How many fields a request may carry on the wire: a real request has a few
/// dozen, a second-round request with many ads a few hundred; a real device
/// about twenty (ids, doubtful-id tags, CAIDs, openids).
pub const SHAPE: Shape = Shape {
    max_fields: 4096,
    nested: &[
        Nested {
            tag: 5,
            name: "device",
            max_fields: Some(128),
        },
        Nested {
            tag: 11,
            name: "ad_infos",
            max_fields: None,
        },
    ],
};

/// The Tencent adapter: which `TargetInfo` fields carry the bid factor.
pub struct Tencent {
    user_weight_factor: bool,
    cpc_factor: bool,
    factor_bounds: (f64, f64),
}

impl MediaProtocol for Tencent {
    const MEDIA: Media = Media::Tencent;
    const TEST_API: &'static str = API_TEST;
    type Fields = FactorField;
    type Request = pb::RtaRequest;

    fn new(cfg: &TencentConfig) -> Self {
        Self {
            user_weight_factor: cfg
                .bid_factor_fields
                .contains(&FactorField::UserWeightFactor),
            cpc_factor: cfg.bid_factor_fields.contains(&FactorField::CpcFactor),
            factor_bounds: (cfg.min_bid_factor, cfg.max_bid_factor),
        }
    }

    fn decode(&self, body: &[u8]) -> Result<pb::RtaRequest, InvalidRequest> {
        read_request(body)
    }

    fn call(&self, req: &pb::RtaRequest) -> Call {
        if req.is_ping() {
            Call::Ping
        } else if req.is_test() {
            Call::Test
        } else {
            Call::Live
        }
    }

    fn translate(
        &self,
        req: &pb::RtaRequest,
        api: &'static str,
    ) -> Result<Translated, InvalidRequest> {
        Ok(translate(req, api))
    }

    fn ping(&self, req: &pb::RtaRequest) -> Vec<u8> {
        pb::RtaResponse {
            request_id: req.id.clone(),
            code: Some(code::TAKE),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn answer(&self, req: &pb::RtaRequest, d: &Decision<&str>, reply: Reply) -> Vec<u8> {
        self.to_response(req.id.clone(), d, reply).encode_to_vec()
    }

    fn default_answer(&self, req: Option<&pb::RtaRequest>, take: bool, reply: Reply) -> Vec<u8> {
        pb::RtaResponse {
            request_id: req.and_then(|r| r.id.clone()),
            code: Some(if take {
                code::TAKE
            } else {
                code::DEFAULT_REFUSE
            }),
            processing_time_ms: Some(reply.millis()),
            ..Default::default()
        }
        .encode_to_vec()
    }
}

impl Tencent {
    /// The answer to a decision.
    fn to_response(
        &self,
        request_id: Option<String>,
        d: &Decision<&str>,
        reply: Reply,
    ) -> pb::RtaResponse {
        let mut out = pb::RtaResponse {
            request_id,
            code: Some(if d.take { code::TAKE } else { code::NO_MATCH }),
            response_cache_time: reply.cache_seconds,
            ..Default::default()
        };
        for m in &d.matches {
            if out.out_target_id.iter().any(|t| t == m.target_id) {
                continue;
            }
            out.out_target_id.push(m.target_id.to_string());
            let factor = clamp_factor(m.bid_factor, self.factor_bounds) as f32;
            out.target_infos.push(pb::rta_response::TargetInfo {
                out_target_id: Some(m.target_id.to_string()),
                user_weight_factor: self.user_weight_factor.then_some(factor),
                cpc_factor: self.cpc_factor.then_some(factor),
                pcvr: m.pcvr.map(|p| p as f32),
                dsp_tag_str: Some(dsp_tag(m.strategy_id)),
                ..Default::default()
            });
        }
        out.processing_time_ms = Some(reply.millis());
        out
    }
}

impl MediaFields for FactorField {
    const SECTION: &'static str = API;
    const PATH: &'static str = PATH;
    const MAX_CACHE_SECONDS: u32 = SEVEN_DAYS;
    fn default_fields() -> Vec<Self> {
        vec![FactorField::UserWeightFactor]
    }
}

/// A bid factor as the media takes it. Tencent's `user_weight_factor` and
/// `cpc_factor` are plain multipliers (1.0 neutral, 0.8 = 20 % less, 1.2 = 20 %
/// more; its reports bucket them in steps of 0.5 from 0 to 5), bounded to 0.2 ..= 5
/// by default: the same scale as our bid factors, so the value is passed through,
/// clamped to those bounds (strategy files are already validated against them).
pub fn media_factor(bid_factor: f64) -> f32 {
    clamp_factor(
        bid_factor,
        (*BID_FACTOR_RANGE.start(), *BID_FACTOR_RANGE.end()),
    ) as f32
}

/// The `dsp_tag_str` of a strategy: the strategy id, which the media substitutes
/// into click and conversion reports (`__RTA_DSP_TAG__`) so that they can be joined
/// back to our strategies. The media takes at most 20 bytes; a longer id becomes its
/// first 11 bytes, `~`, and the first 8 hex characters of md5(id), e.g.
/// `new_customer_brand_cross_category` -> `new_custome~028dbeaf`: still readable,
/// and unique in practice.
pub fn dsp_tag(strategy_id: &str) -> String {
    if strategy_id.len() <= MAX_DSP_TAG {
        return strategy_id.to_string();
    }
    let mut cut = 11;
    while !strategy_id.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = hex::encode(Md5::digest(strategy_id.as_bytes()));
    format!("{}~{}", &strategy_id[..cut], &digest[..8])
}

/// Decodes a request body after bounding its element count on the wire
/// ([`SHAPE`]); the endpoint's first step, and a fuzz target's.
pub fn read_request(body: &[u8]) -> Result<pb::RtaRequest, InvalidRequest> {
    SHAPE.check(body)?;
    pb::RtaRequest::decode(body).map_err(|e| {
        InvalidRequest::new(
            "body",
            "body",
            format!("not a tencent.ad.rta.RtaRequest: {e}"),
        )
    })
}

/// A decoded request as the decision sees it: the cached kind of id first,
/// doubtful ids set apart; ids dropped on the way are counted under `api`.
pub fn translate(req: &pb::RtaRequest, api: &'static str) -> Translated {
    let Some(device) = req.device.as_ref() else {
        return Translated {
            experiments: experiments(req),
            ..Translated::default()
        };
    };
    let os = match device.os.map(OperatingSystem::try_from) {
        Some(Ok(OperatingSystem::OsAndroid)) => Os::Android,
        Some(Ok(OperatingSystem::OsIos)) => Os::Ios,
        Some(Ok(OperatingSystem::OsHarmony)) => Os::Harmony,
        Some(Ok(
            OperatingSystem::OsWindows
            | OperatingSystem::OsSymbian
            | OperatingSystem::OsJava
            | OperatingSystem::OsMac,
        )) => Os::Other,
        // unknown and future enum values: tolerated, not guessed
        _ => Os::Unknown,
    };
    let (mut keyed, flagged) = device_keys(device, api);
    let cached = cached_kind(device);
    // stable: the cached kind first, the rest keep their order
    keyed.sort_by_key(|(kind, _)| Some(*kind) != cached);
    Translated {
        devices: keyed.into_iter().map(|(_, k)| k).collect(),
        flagged,
        os,
        experiments: experiments(req),
        asked: Vec::new(),
    }
}

fn experiments(req: &pb::RtaRequest) -> Vec<u64> {
    req.exps
        .iter()
        .filter_map(|e| e.exp_id)
        .map(u64::from)
        .take(MAX_EXPERIMENTS)
        .collect()
}

fn cached_kind(device: &Device) -> Option<Kind> {
    match CacheDeviceIdType::try_from(device.cached_deviceid_type?).ok()? {
        CacheDeviceIdType::IdfaMd5 => Some(Kind::Idfa),
        CacheDeviceIdType::ImeiMd5 => Some(Kind::Imei),
        CacheDeviceIdType::Oaid | CacheDeviceIdType::OaidMd5 => Some(Kind::Oaid),
        CacheDeviceIdType::AndroididMd5 => Some(Kind::AndroidId),
        CacheDeviceIdType::MacMd5 => Some(Kind::Mac),
        CacheDeviceIdType::Qaid => Some(Kind::Caid),
        CacheDeviceIdType::Nil => None,
    }
}

use super::media::ignore;

/// The usable device keys of a request, with their kind, and the keys the
/// media flagged as doubtful (dropped; see the module docs for what else is
/// dropped and why).
fn device_keys(device: &Device, api: &'static str) -> (Vec<(Kind, DeviceKey)>, Vec<DeviceKey>) {
    let flagged = |tags: &[DeviceIdTag]| {
        device
            .doubtful_ids_list
            .iter()
            .any(|t| tags.iter().any(|tag| *tag as i32 == *t))
    };
    let mut keys = Vec::with_capacity(6);
    let mut doubtful_keys = Vec::new();
    let mut take = |kind: Kind, field: &'static str, value: Option<&str>, doubtful: bool| {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return;
        };
        if doubtful {
            ignore(api, field, IgnoredId::FlaggedDoubtful);
            if let Ok(key) = DeviceKey::from_md5_hex(value)
                && !key.is_doubtful()
            {
                doubtful_keys.push(key);
            }
            return;
        }
        match DeviceKey::from_md5_hex(value) {
            Ok(key) => keys.push((kind, key)),
            Err(_) => ignore(api, field, IgnoredId::Malformed),
        }
    };
    use DeviceIdTag as T;
    take(
        Kind::Imei,
        "imei_md5sum",
        device.imei_md5sum.as_deref(),
        flagged(&[T::ImeiMd5Doubtful]),
    );
    take(
        Kind::Oaid,
        "oaid_md5sum",
        device.oaid_md5sum.as_deref(),
        flagged(&[T::OaidMd5Doubtful, T::OaidDoubtful]),
    );
    take(
        Kind::Idfa,
        "idfa_md5sum",
        device.idfa_md5sum.as_deref(),
        flagged(&[T::IdfaMd5Doubtful]),
    );
    let caid_doubtful = flagged(&[T::QaidDoubtful]);
    for (i, info) in device.qaid_infos.iter().enumerate() {
        if i >= MAX_QAID_INFOS {
            ignore(api, "qaid_infos", IgnoredId::TooMany);
            continue;
        }
        take(
            Kind::Caid,
            "qaid_infos.qaid",
            info.qaid.as_deref(),
            caid_doubtful,
        );
        take(
            Kind::Caid,
            "qaid_infos.qaid_md5sum",
            info.qaid_md5sum.as_deref(),
            caid_doubtful,
        );
    }
    take(
        Kind::AndroidId,
        "android_id_md5sum",
        device.android_id_md5sum.as_deref(),
        flagged(&[T::AndroididMd5Doubtful]),
    );
    take(
        Kind::Mac,
        "mac_md5sum",
        device.mac_md5sum.as_deref(),
        flagged(&[T::MacMd5Doubtful]),
    );
    (keys, doubtful_keys)
}

#[cfg(test)]
mod tests;
