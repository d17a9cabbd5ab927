//! One worker's client of the engine ([`Client`]): a `Decide` for a drawn
//! device id, over gRPC or the Tencent endpoint, and what its answer said.

use prost::Message;

use rta_engine::serve::pb;
use rta_engine::serve::tencent::{self, pb as tpb};

use crate::devices::Draw;
use crate::grpc::GrpcConnection;
use crate::http1::Http1;

/// What one answer said.
pub(crate) struct Answer {
    pub(crate) take: bool,
    /// The server's own time for the decision, when the protocol reports it in µs.
    pub(crate) server_us: Option<u64>,
}

/// A failed request, by kind (gRPC status code, transport, protocol).
pub(crate) type CallError = String;

/// One worker's connection to the engine.
pub(crate) enum Client {
    /// A clone of one of the shared HTTP/2 connections.
    Grpc(GrpcConnection),
    /// The worker's own HTTP/1.1 connection.
    Tencent(Http1),
}

impl Client {
    /// One `Decide` for `draw`'s device, in the client's protocol.
    pub(crate) async fn decide(
        &mut self,
        draw: &Draw,
        request_id: String,
    ) -> Result<Answer, CallError> {
        let md5 = draw.key.to_hex();
        match self {
            Client::Grpc(client) => {
                let kind = if draw.android {
                    pb::DeviceIdType::ImeiMd5
                } else {
                    pb::DeviceIdType::IdfaMd5
                };
                let os = if draw.android {
                    pb::Os::Android
                } else {
                    pb::Os::Ios
                };
                let req = pb::DecideRequest {
                    request_id,
                    device_ids: vec![pb::DeviceId {
                        r#type: kind as i32,
                        value: md5,
                    }],
                    os: os as i32,
                    media_id: "rta-load".into(),
                    ..Default::default()
                };
                let resp = client.decide(&req).await?;
                Ok(Answer {
                    take: resp.take,
                    server_us: Some(u64::from(resp.processing_time_us)),
                })
            }
            Client::Tencent(http) => {
                use tpb::rta_request::device::CacheDeviceIdType as Cache;
                use tpb::rta_request::{Device, OperatingSystem};
                let mut device = Device::default();
                if draw.android {
                    device.os = Some(OperatingSystem::OsAndroid as i32);
                    device.imei_md5sum = Some(md5);
                    device.cached_deviceid_type = Some(Cache::ImeiMd5 as i32);
                } else {
                    device.os = Some(OperatingSystem::OsIos as i32);
                    device.idfa_md5sum = Some(md5);
                    device.cached_deviceid_type = Some(Cache::IdfaMd5 as i32);
                }
                let req = tpb::RtaRequest {
                    id: Some(request_id),
                    device: Some(device),
                    ..Default::default()
                };
                let body = http.post(req.encode_to_vec()).await?;
                let resp = tpb::RtaResponse::decode(body)
                    .map_err(|_| "tencent_undecodable".to_string())?;
                match resp.code.unwrap_or(tencent::code::TAKE) {
                    tencent::code::TAKE => Ok(Answer {
                        take: true,
                        server_us: None,
                    }),
                    tencent::code::NO_MATCH => Ok(Answer {
                        take: false,
                        server_us: None,
                    }),
                    // shed or out of time: the server's default answer, not a decision
                    other => Err(format!("tencent_code_{other}")),
                }
            }
        }
    }
}
