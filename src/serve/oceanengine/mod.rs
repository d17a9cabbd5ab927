//! Ocean Engine RTA (ByteDance's Douyin and Toutiao, and Pangle traffic):
//! `POST /rta/oceanengine`, protobuf (proto3, proto/oceanengine/rta.proto).
//! One [`MediaProtocol`] of the media adapter layer.
//!
//! A request asks about several `rta_ids` at once; each is answered on its own
//! `UserInfo`: interested when a strategy carrying that id
//! (`media_ids.oceanengine`) takes the device, with its bid factor as a
//! `PRICE_COEF` score and its experiment variant as `cus_vid`. An id no
//! strategy carries is answered not interested. Raw ids (`did` by `did_type`,
//! `device.oaid`, `device.idfa`, `device.gaid`) are hashed with the media
//! conventions; md5 ids are read as they come. `docs/media.md` has the rest.

use prost::Message;

use super::InvalidRequest;
use super::limits::MAX_EXPERIMENTS;
use super::media::shape::{Nested, Shape};
use super::media::{
    Call, MediaConfig, MediaFields, MediaProtocol, Reply, SEVEN_DAYS, Translated, clamp_factor,
    ignore, md5_key, raw_key,
};
use crate::decision::Decision;
use crate::domain::ids::{DeviceIdKind as Kind, DeviceKey};
use crate::domain::media::Media;
use crate::strategy::Os;
use crate::telemetry::{IgnoredId, Outcome};

/// Generated types of the Ocean Engine protocol (proto/oceanengine/rta.proto).
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("oceanengine.rta");
}

use pb::user_info::{UserQuality, UserType};
use pb::{DeviceOsType, DidType, PlatformType};

/// Where the endpoint is served by default.
pub const PATH: &str = "/rta/oceanengine";
/// The `api` label.
pub const API: &str = "oceanengine";

/// Most `rta_ids` one request may ask about: an advertiser has a handful;
/// more is answered 400 rather than partly.
pub const MAX_RTA_IDS: usize = 64;

/// `Rsp.bid_type`: bid, with the interest per `rta_id`.
pub const BID: i32 = 0;
/// `Rsp.bid_type`: the device takes no part (for the cache time): sent for
/// blacklisted devices, whatever the strategies.
pub const SKIP_DEVICE: i32 = 1;

/// How many fields a request may carry on the wire.
pub const SHAPE: Shape = Shape {
    max_fields: 1024,
    nested: &[Nested {
        tag: 17,
        name: "device",
        max_fields: Some(128),
    }],
};

/// An Ocean Engine field that can carry a strategy's bid factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorField {
    /// A `user_scores` entry of type `PRICE_COEF`: the bid is multiplied by it.
    PriceCoef,
}

impl MediaFields for FactorField {
    const SECTION: &'static str = API;
    const PATH: &'static str = PATH;
    const MAX_CACHE_SECONDS: u32 = SEVEN_DAYS;
    fn default_fields() -> Vec<Self> {
        vec![FactorField::PriceCoef]
    }
}

/// The `[oceanengine]` section.
pub type OceanEngineConfig = MediaConfig<FactorField>;

/// The Ocean Engine adapter.
pub struct OceanEngine {
    price_coef: bool,
    factor_bounds: (f64, f64),
}

impl MediaProtocol for OceanEngine {
    const MEDIA: Media = Media::OceanEngine;
    // the protocol has no test flag
    const TEST_API: &'static str = API;
    type Fields = FactorField;
    type Request = pb::Req;

    fn new(cfg: &OceanEngineConfig) -> Self {
        Self {
            price_coef: cfg.bid_factor_fields.contains(&FactorField::PriceCoef),
            factor_bounds: (cfg.min_bid_factor, cfg.max_bid_factor),
        }
    }

    fn decode(&self, body: &[u8]) -> Result<pb::Req, InvalidRequest> {
        read_request(body)
    }

    fn call(&self, _req: &pb::Req) -> Call {
        Call::Live
    }

    fn translate(&self, req: &pb::Req, api: &'static str) -> Result<Translated, InvalidRequest> {
        Ok(translate(req, api))
    }

    fn ping(&self, req: &pb::Req) -> Vec<u8> {
        pb::Rsp {
            req_id: req.req_id.clone(),
            ts: now_ms(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn answer(&self, req: &pb::Req, d: &Decision<&str>, reply: Reply) -> Vec<u8> {
        self.to_response(req, d, reply).encode_to_vec()
    }

    fn default_answer(&self, req: Option<&pb::Req>, take: bool, _reply: Reply) -> Vec<u8> {
        let Some(req) = req else {
            // the body was not read: the asked ids are unknown, none is named
            return pb::Rsp {
                bid_type: Some(BID),
                ts: now_ms(),
                ..Default::default()
            }
            .encode_to_vec();
        };
        pb::Rsp {
            req_id: req.req_id.clone(),
            user_infos: asked(req)
                .map(|rta_id| pb::UserInfo {
                    rta_id,
                    is_interested: take,
                    ..Default::default()
                })
                .collect(),
            bid_type: Some(BID),
            ts: now_ms(),
            ..Default::default()
        }
        .encode_to_vec()
    }
}

impl OceanEngine {
    /// The answer to a decision: one `UserInfo` per asked `rta_id` (per
    /// matched strategy's id when the request names none).
    fn to_response(&self, req: &pb::Req, d: &Decision<&str>, reply: Reply) -> pb::Rsp {
        let info = |rta_id: i64| {
            let taken = d
                .matches
                .iter()
                .find(|m| m.media_ids.oceanengine == Some(rta_id));
            let Some(m) = taken else {
                return pb::UserInfo {
                    rta_id,
                    is_interested: false,
                    ..Default::default()
                };
            };
            let quality = clamp_factor(m.bid_factor, self.factor_bounds);
            pb::UserInfo {
                rta_id,
                is_interested: true,
                user_scores: if self.price_coef {
                    vec![UserQuality {
                        user_type: UserType::PriceCoef as i32,
                        quality,
                        pricing_type: 0,
                    }]
                } else {
                    Vec::new()
                },
                cus_vid: m.variant.map_or(0, cus_vid),
                ..Default::default()
            }
        };
        let user_infos = if req.rta_ids.is_empty() {
            let mut ids: Vec<i64> = Vec::with_capacity(d.matches.len());
            for id in d.matches.iter().filter_map(|m| m.media_ids.oceanengine) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            ids.into_iter().map(info).collect()
        } else {
            asked(req).map(info).collect()
        };
        pb::Rsp {
            status_code: 0,
            req_id: req.req_id.clone(),
            user_infos,
            ts: now_ms(),
            bid_type: Some(if d.outcome == Outcome::Blacklisted {
                SKIP_DEVICE
            } else {
                BID
            }),
            cache_time_secs: reply
                .cache_seconds
                .map_or(0, |s| i32::try_from(s).unwrap_or(i32::MAX)),
            ..Default::default()
        }
    }
}

/// The experiment variant as Ocean Engine's tag: variant 0 is `CUS_VID_1`,
/// up to `CUS_VID_10`; later variants carry none.
fn cus_vid(variant: u16) -> i32 {
    if variant < 10 {
        i32::from(variant) + 1
    } else {
        0
    }
}

/// The request's `rta_ids`, first occurrence of each, in request order.
fn asked(req: &pb::Req) -> impl Iterator<Item = i64> + '_ {
    req.rta_ids
        .iter()
        .enumerate()
        .filter(|(i, id)| !req.rta_ids[..*i].contains(id))
        .map(|(_, id)| *id)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Decodes a request body after bounding its wire shape ([`SHAPE`]) and its
/// `rta_ids` ([`MAX_RTA_IDS`]); the endpoint's first step, and a fuzz target's.
pub fn read_request(body: &[u8]) -> Result<pb::Req, InvalidRequest> {
    SHAPE.check(body)?;
    let req = pb::Req::decode(body).map_err(|e| {
        InvalidRequest::new("body", "body", format!("not an Ocean Engine Req: {e}"))
    })?;
    if req.rta_ids.len() > MAX_RTA_IDS {
        return Err(InvalidRequest::new(
            "rta_ids",
            "rta_ids",
            format!(
                "asks about {} rta_ids; at most {MAX_RTA_IDS} are answered",
                req.rta_ids.len()
            ),
        ));
    }
    Ok(req)
}

/// A decoded request as the decision sees it: `did` first, then the
/// device block's ids, each key once; ids dropped on the way are counted
/// under `api`.
pub fn translate(req: &pb::Req, api: &'static str) -> Translated {
    let mut devices: Vec<DeviceKey> = Vec::with_capacity(8);
    let mut push = |key: Option<DeviceKey>| {
        if let Some(k) = key
            && !devices.contains(&k)
        {
            devices.push(k);
        }
    };
    push(did_key(req, api));
    if let Some(d) = &req.device {
        push(md5_key(api, "device.imei_md5", &d.imei_md5));
        push(md5_key(api, "device.android_id_md5", &d.android_id_md5));
        push(raw_key(api, "device.oaid", Kind::Oaid, &d.oaid));
        push(raw_key(api, "device.idfa", Kind::Idfa, &d.idfa));
        push(md5_key(api, "device.caid", &d.caid));
        push(md5_key(api, "device.caid1", &d.caid1));
        push(md5_key(api, "device.caid2", &d.caid2));
        push(raw_key(api, "device.gaid", Kind::Oaid, &d.gaid));
    }
    let device_os = req.device.as_ref().map_or(0, |d| d.device_os_type);
    let os = match PlatformType::try_from(req.platform) {
        Ok(PlatformType::Android) => Os::Android,
        Ok(PlatformType::Ios) => Os::Ios,
        _ => match DeviceOsType::try_from(device_os) {
            Ok(DeviceOsType::DeviceAndroid) => Os::Android,
            Ok(DeviceOsType::DeviceIos) => Os::Ios,
            Ok(DeviceOsType::DeviceWindows) => Os::Other,
            // unknown and future enum values: tolerated, not guessed
            _ => Os::Unknown,
        },
    };
    Translated {
        devices,
        flagged: Vec::new(),
        os,
        experiments: req
            .vids
            .iter()
            .filter_map(|v| u64::try_from(*v).ok())
            .take(MAX_EXPERIMENTS)
            .collect(),
        asked: asked(req).collect(),
    }
}

/// `did` read by its `did_type`: raw ids hashed, md5 ids parsed.
fn did_key(req: &pb::Req, api: &'static str) -> Option<DeviceKey> {
    const FIELD: &str = "did";
    let raw = |kind| raw_key(api, FIELD, kind, &req.did);
    match DidType::try_from(req.did_type) {
        Ok(DidType::Imei) => raw(Kind::Imei),
        Ok(DidType::AndroidId) => raw(Kind::AndroidId),
        Ok(DidType::Idfa) => raw(Kind::Idfa),
        Ok(DidType::Oaid | DidType::Gaid) => raw(Kind::Oaid),
        Ok(
            DidType::ImeiMd5
            | DidType::AndroidIdMd5
            | DidType::IdfaMd5
            | DidType::OaidMd5
            | DidType::GaidMd5,
        ) => md5_key(api, FIELD, &req.did),
        Err(_) => {
            if !req.did.is_empty() {
                ignore(api, FIELD, IgnoredId::Malformed);
            }
            None
        }
    }
}

#[cfg(test)]
mod tests;
