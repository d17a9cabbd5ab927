//! HTTP/1.1 by hand over a real socket, for what clients do not let a test
//! do: send a request head and only part of its body, then wait.

use std::net::SocketAddr;

use tokio::net::TcpStream;

/// One connection written and read by hand.
pub struct RawHttp(pub TcpStream);

impl RawHttp {
    /// Sends the head of a POST to `path` with `body`, and the first `sent` bytes of it.
    pub async fn post_partially(addr: SocketAddr, path: &str, body: &[u8], sent: usize) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut raw = RawHttp(stream);
        let head = format!(
            "POST {} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
            path,
            body.len()
        );
        raw.write(head.as_bytes()).await;
        raw.write(&body[..sent]).await;
        raw
    }

    /// Writes all of `bytes`.
    pub async fn write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            self.0.writable().await.unwrap();
            match self.0.try_write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("write: {e}"),
            }
        }
    }

    /// Reads one response: status and body (by content-length).
    pub async fn response(&mut self) -> (u16, Vec<u8>) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let status: u16 = head[9..12].parse().unwrap();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .expect("content-length");
                if buf.len() >= end + 4 + len {
                    return (status, buf[end + 4..end + 4 + len].to_vec());
                }
            }
            self.0.readable().await.unwrap();
            match self.0.try_read(&mut chunk) {
                Ok(0) => panic!("connection closed before a full response"),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }
}
