//! Unary gRPC `Decide` calls straight on HTTP/2 ([`GrpcConnection`]), and
//! the error kinds of gRPC status codes.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use prost::Message;
use tokio::net::TcpStream;
use tonic::codegen::http;

use rta_engine::serve::pb;

use crate::client::CallError;

/// The gRPC path of `Decide`.
const DECIDE_PATH: &str = "/rta.v1.RtaService/Decide";

/// One HTTP/2 connection that makes unary gRPC calls straight on the `h2`
/// crate: a call is a HEADERS frame, one DATA frame with the length-prefixed
/// request, and an answer of HEADERS, DATA and trailers carrying
/// `grpc-status`, as the gRPC-over-HTTP/2 protocol defines it. tonic's
/// generated client over hyper spawned a task per call and moved its future
/// into it (memmove was 14 % of the generator's CPU), and on a machine the
/// generator shares with the server that CPU comes out of the server's share.
/// The server is the same tonic server either way. No reconnecting: a broken
/// connection fails its calls, and they are counted as errors.
#[derive(Clone)]
pub(crate) struct GrpcConnection {
    send: h2::client::SendRequest<Bytes>,
    /// `http://host:port/rta.v1.RtaService/Decide`.
    uri: http::Uri,
}

impl GrpcConnection {
    /// Connects to `addr` (`http://host:port`) with TCP_NODELAY and drives the
    /// connection on a task of its own.
    pub(crate) async fn connect(addr: &str) -> Result<Self> {
        let uri: http::Uri = addr.parse().with_context(|| format!("bad --addr {addr}"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            bail!("--addr {addr}: expected http://host:port");
        };
        let port = authority.port_u16().unwrap_or(80);
        let tcp = TcpStream::connect((authority.host(), port))
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let (send, connection) = h2::client::handshake(tcp)
            .await
            .with_context(|| format!("HTTP/2 handshake with {addr}"))?;
        tokio::spawn(async move {
            // its calls see the error; nothing else to do with it here
            let _ = connection.await;
        });
        let uri = http::Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(DECIDE_PATH)
            .build()
            .context("building the Decide URI")?;
        Ok(Self { send, uri })
    }

    /// One `Decide` call; errors are named by kind (`grpc_<code>` for a gRPC
    /// status other than OK).
    pub(crate) async fn decide(
        &mut self,
        req: &pb::DecideRequest,
    ) -> Result<pb::DecideResponse, CallError> {
        let len = req.encoded_len();
        let mut frame = Vec::with_capacity(5 + len);
        frame.push(0); // not compressed
        frame.extend_from_slice(
            &u32::try_from(len)
                .map_err(|_| "grpc_too_large")?
                .to_be_bytes(),
        );
        req.encode(&mut frame).map_err(|_| "grpc_encode")?;
        let request = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(())
            .map_err(|_| "grpc_bad_request")?;
        std::future::poll_fn(|cx| self.send.poll_ready(cx))
            .await
            .map_err(|_| "h2_closed")?;
        let (response, mut body_out) = self
            .send
            .send_request(request, false)
            .map_err(|_| "h2_send")?;
        body_out
            .send_data(Bytes::from(frame), true)
            .map_err(|_| "h2_send")?;
        let response = response.await.map_err(|_| "h2_response")?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("http_{}", response.status().as_u16()));
        }
        // an error may come as headers only, its status among them
        let in_headers = grpc_status(response.headers());
        if let Some(code) = in_headers.filter(|&c| c != 0) {
            return Err(grpc_error(code));
        }
        let mut body = response.into_body();
        let mut message = Bytes::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|_| "h2_read")?;
            let _ = body.flow_control().release_capacity(chunk.len());
            message = if message.is_empty() {
                chunk
            } else {
                [message, chunk].concat().into()
            };
        }
        let trailers = body.trailers().await.map_err(|_| "h2_read")?;
        match trailers.as_ref().and_then(grpc_status).or(in_headers) {
            Some(0) => {}
            Some(code) => return Err(grpc_error(code)),
            None => return Err("grpc_no_status".into()),
        }
        // one message: not compressed, then its length (big-endian), then it
        let payload = match message.get(..5) {
            Some(&[0, a, b, c, d])
                if message.len() == 5 + u32::from_be_bytes([a, b, c, d]) as usize =>
            {
                message.slice(5..)
            }
            _ => return Err("grpc_bad_frame".into()),
        };
        pb::DecideResponse::decode(payload).map_err(|_| "grpc_undecodable".into())
    }
}

/// The `grpc-status` code in `headers`, if there is a valid one.
fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// The error kind of a gRPC status code other than OK: `grpc_unimplemented`.
fn grpc_error(code: i32) -> CallError {
    format!("grpc_{:?}", tonic::Code::from(code)).to_lowercase()
}

#[cfg(test)]
mod tests {
    use rta_engine::decision::DecisionRequest;
    use rta_engine::domain::os::Os;
    use rta_engine::domain::taxonomy::Taxonomy;
    use rta_engine::serve::node::Running;

    use super::*;
    use crate::devices::{Draw, known_device};
    use crate::tests::{SEED, TODAY, USERS, start};

    async fn connect(running: &Running) -> GrpcConnection {
        GrpcConnection::connect(&format!("http://{}", running.grpc_addr))
            .await
            .expect("connects")
    }

    fn request(draw: &Draw, id: &str) -> pb::DecideRequest {
        let (kind, os) = if draw.android {
            (pb::DeviceIdType::ImeiMd5, pb::Os::Android)
        } else {
            (pb::DeviceIdType::IdfaMd5, pb::Os::Ios)
        };
        pb::DecideRequest {
            request_id: id.into(),
            device_ids: vec![pb::DeviceId {
                r#type: kind as i32,
                value: draw.key.to_hex(),
            }],
            os: os as i32,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn grpc_calls_answer_what_the_engine_decides() {
        let (running, engine) = start().await;
        let mut conn = connect(&running).await;
        let taxonomy = Taxonomy::default_taxonomy();
        let mut takes = 0;
        for id in (1..=USERS).step_by(7) {
            let d = known_device(SEED, id, TODAY, &taxonomy);
            let draw = Draw {
                key: d.key,
                android: d.android,
            };
            let answer = conn
                .decide(&request(&draw, &format!("r{id}")))
                .await
                .unwrap();
            let expected = engine.decide_uncounted(&DecisionRequest {
                devices: std::slice::from_ref(&draw.key),
                os: if draw.android { Os::Android } else { Os::Ios },
                experiments: &[],
                only_strategies: &[],
                media: None,
            });
            assert_eq!(answer.request_id, format!("r{id}"));
            assert_eq!(answer.take, expected.take, "user {id}");
            let ids: Vec<&str> = answer
                .matches
                .iter()
                .map(|m| m.strategy_id.as_str())
                .collect();
            let expected: Vec<&str> = expected.matches.iter().map(|m| &*m.strategy_id).collect();
            assert_eq!(ids, expected, "user {id}");
            takes += u32::from(answer.take);
        }
        assert!(takes > 0, "some of the demo users match a demo strategy");
        running.shutdown().await;
    }

    #[tokio::test]
    async fn a_grpc_error_is_named_by_its_status_code() {
        let (running, _) = start().await;
        let mut conn = connect(&running).await;
        let bad = pb::DecideRequest {
            device_ids: vec![pb::DeviceId {
                r#type: pb::DeviceIdType::ImeiMd5 as i32,
                value: "not hex".into(),
            }],
            ..Default::default()
        };
        assert_eq!(conn.decide(&bad).await.unwrap_err(), "grpc_invalidargument");
        // a method the server does not have (tonic answers errors headers-only)
        conn.uri = format!(
            "http://{}/rta.v1.RtaService/NoSuchMethod",
            running.grpc_addr
        )
        .parse()
        .unwrap();
        assert_eq!(
            conn.decide(&pb::DecideRequest::default())
                .await
                .unwrap_err(),
            "grpc_unimplemented"
        );
        running.shutdown().await;
    }
}
