//! Meituan RTA: `POST /rta/meituan`, protobuf (proto2,
//! proto/meituan/rta.proto). One [`MediaProtocol`] of the media adapter
//! layer, and what one more media costs: this file.
//!
//! Tencent-like: `code` 0 takes the traffic for the strategies listed in
//! `promotion_target_id` (their `media_ids.meituan`), anything else refuses
//! it. Only strategies carrying a Meituan id are offered. The protocol has
//! no cache time and no bid factor. Meituan numbers operating systems its own
//! way (`OS_IOS = 1`, `OS_ANDROID = 2`).

use prost::Message;

use super::InvalidRequest;
use super::media::shape::{Nested, Shape};
use super::media::{
    Call, MediaConfig, MediaFields, MediaProtocol, Reply, Translated, md5_key, raw_key,
};
use crate::decision::Decision;
use crate::domain::ids::{DeviceIdKind as Kind, DeviceKey};
use crate::domain::media::Media;
use crate::strategy::Os;

/// Generated types of the Meituan protocol (proto/meituan/rta.proto).
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("meituan.rta");
}

use pb::rta_request::OperatingSystem;

/// Where the endpoint is served by default.
pub const PATH: &str = "/rta/meituan";
/// The `api` label of live traffic.
pub const API: &str = "meituan";
/// The `api` label of `is_test` traffic.
pub const API_TEST: &str = "meituan_test";

/// `RtaResponse.code` values: 0 takes, anything else refuses.
pub mod code {
    /// Take the traffic for the listed strategies.
    pub const TAKE: u32 = 0;
    /// No strategy matched the device.
    pub const NO_MATCH: u32 = 1;
    /// Not decided (shed or out of time) and the default answer is `fail_closed`.
    pub const DEFAULT_REFUSE: u32 = 2;
}

/// How many fields a request may carry on the wire (a real one has about ten).
pub const SHAPE: Shape = Shape {
    max_fields: 256,
    nested: &[Nested {
        tag: 4,
        name: "device",
        max_fields: Some(64),
    }],
};

/// Meituan's answer has no field for a bid factor: the section's
/// `bid_factor_fields` can only be empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum FactorField {}

impl MediaFields for FactorField {
    const SECTION: &'static str = API;
    const PATH: &'static str = PATH;
    // the protocol carries no cache time
    const MAX_CACHE_SECONDS: u32 = 0;
    fn default_fields() -> Vec<Self> {
        Vec::new()
    }
}

/// The `[meituan]` section.
pub type MeituanConfig = MediaConfig<FactorField>;

/// The Meituan adapter.
pub struct Meituan;

impl MediaProtocol for Meituan {
    const MEDIA: Media = Media::Meituan;
    const TEST_API: &'static str = API_TEST;
    type Fields = FactorField;
    type Request = pb::RtaRequest;

    fn new(_cfg: &MeituanConfig) -> Self {
        Self
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
        let mut ids: Vec<i64> = Vec::with_capacity(d.matches.len());
        for id in d.matches.iter().filter_map(|m| m.media_ids.meituan) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        pb::RtaResponse {
            request_id: req.id.clone(),
            code: Some(if d.take && !ids.is_empty() {
                code::TAKE
            } else {
                code::NO_MATCH
            }),
            processing_time_ms: Some(reply.millis()),
            promotion_target_id: ids,
        }
        .encode_to_vec()
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
            promotion_target_id: Vec::new(),
        }
        .encode_to_vec()
    }
}

/// Decodes a request body after bounding its wire shape ([`SHAPE`]); the
/// endpoint's first step, and a fuzz target's.
pub fn read_request(body: &[u8]) -> Result<pb::RtaRequest, InvalidRequest> {
    SHAPE.check(body)?;
    pb::RtaRequest::decode(body)
        .map_err(|e| InvalidRequest::new("body", "body", format!("not a Meituan RtaRequest: {e}")))
}

/// A decoded request as the decision sees it; ids dropped on the way are
/// counted under `api`.
pub fn translate(req: &pb::RtaRequest, api: &'static str) -> Translated {
    let Some(d) = &req.device else {
        return Translated::default();
    };
    let mut devices: Vec<DeviceKey> = Vec::with_capacity(6);
    let mut push = |key: Option<DeviceKey>| {
        if let Some(k) = key
            && !devices.contains(&k)
        {
            devices.push(k);
        }
    };
    push(md5_key(api, "device.imei_md5sum", text(&d.imei_md5sum)));
    push(md5_key(api, "device.oaid_md5sum", text(&d.oaid_md5sum)));
    push(raw_key(api, "device.oaid", Kind::Oaid, text(&d.oaid)));
    push(md5_key(api, "device.idfa_md5sum", text(&d.idfa_md5sum)));
    push(md5_key(
        api,
        "device.android_id_md5sum",
        text(&d.android_id_md5sum),
    ));
    push(md5_key(api, "device.mac_md5sum", text(&d.mac_md5sum)));
    let os = match d.os.map(OperatingSystem::try_from) {
        Some(Ok(OperatingSystem::OsIos)) => Os::Ios,
        Some(Ok(OperatingSystem::OsAndroid)) => Os::Android,
        Some(Ok(
            OperatingSystem::OsWindows | OperatingSystem::OsSymbian | OperatingSystem::OsJava,
        )) => Os::Other,
        // unknown and future enum values: tolerated, not guessed
        _ => Os::Unknown,
    };
    Translated {
        devices,
        os,
        ..Translated::default()
    }
}

fn text(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

#[cfg(test)]
mod tests;
