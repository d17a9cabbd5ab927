//! The Tencent endpoint's client: a keep-alive HTTP/1.1 connection
//! ([`Http1`]) that reconnects after errors.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use rta_engine::serve::tencent;

use crate::client::CallError;

/// A keep-alive HTTP/1.1 connection (hyper's client) for `POST /rta/tencent`:
/// one request at a time, as the media's callers send them; reconnects after
/// an error or when the server closes the connection.
pub(crate) struct Http1 {
    addr: SocketAddr,
    /// The open connection; `None` before the first request and after an error.
    pub(crate) conn: Option<SendRequest<Full<Bytes>>>,
}

impl Http1 {
    /// Not connected yet: the first request connects.
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self { addr, conn: None }
    }

    /// `POST /rta/tencent` with `body`; the answer's body, or the error's kind.
    pub(crate) async fn post(&mut self, body: Vec<u8>) -> Result<Bytes, CallError> {
        let result = self.exchange(body).await;
        if result.is_err() {
            self.conn = None; // the connection's state is unknown: start afresh
        }
        result
    }

    /// One request and its answer, connecting first when there is no open connection.
    async fn exchange(&mut self, body: Vec<u8>) -> Result<Bytes, CallError> {
        let sender = match &mut self.conn {
            Some(s) if !s.is_closed() => s,
            _ => {
                let stream = TcpStream::connect(self.addr)
                    .await
                    .map_err(|_| "http_connect".to_string())?;
                let _ = stream.set_nodelay(true);
                let (sender, connection) = http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|_| "http_connect".to_string())?;
                tokio::spawn(connection);
                self.conn.insert(sender)
            }
        };
        sender
            .ready()
            .await
            .map_err(|_| "http_closed".to_string())?;
        let request = hyper::Request::post(tencent::PATH)
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::CONTENT_TYPE, tencent::CONTENT_TYPE)
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| "http_bad_request".to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| "http_exchange".to_string())?;
        if response.status() != hyper::StatusCode::OK {
            return Err(format!("http_{}", response.status().as_u16()));
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| "http_read".to_string())?;
        Ok(body.to_bytes())
    }
}
