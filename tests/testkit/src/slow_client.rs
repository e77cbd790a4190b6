//! Clients that send a request very slowly (a byte or a header line at a time), to prove a
//! server closes them instead of holding a connection open for as long as they trickle.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What part of a request the client trickles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trickle {
    /// The request line, then one header line per step, never ending the head.
    Headers,
    /// A complete head announcing a 1 MB body, then one body byte per step.
    Body,
}

/// How a slow connection ended.
#[derive(Debug)]
pub struct SlowEnd {
    /// The server closed the connection (EOF or reset) before `limit` passed.
    pub closed_by_server: bool,
    /// Everything the server sent (e.g. a 408 response), lossy UTF-8.
    pub received: String,
}

/// Connects to `addr` and trickles `what` of a POST to `path`, one step every `every`, until
/// the server closes the connection or `limit` passes. `headers` (e.g. `"Authorization: Bearer k\r\n"`) are
/// sent with the head, so the server gets as far as reading the body.
pub async fn trickle(
    addr: SocketAddr,
    what: Trickle,
    path: &str,
    headers: &str,
    every: Duration,
    limit: Duration,
) -> SlowEnd {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return SlowEnd { closed_by_server: true, received: String::new() };
    };
    let (mut reader, mut writer) = stream.into_split();
    let head = match what {
        Trickle::Headers => format!("POST {path} HTTP/1.1\r\nHost: slow\r\n{headers}"),
        Trickle::Body => format!(
            "POST {path} HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n{headers}\
             Content-Length: 1000000\r\n\r\n{{"
        ),
    };
    let writing = async move {
        if writer.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for n in 0u64.. {
            tokio::time::sleep(every).await;
            let step = match what {
                Trickle::Headers => format!("X-Slow-{n}: 1\r\n"),
                Trickle::Body => " ".to_string(),
            };
            if writer.write_all(step.as_bytes()).await.is_err() {
                return;
            }
        }
    };
    let reading = async move {
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return received,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    let writer_task = tokio::spawn(writing);
    let ended = tokio::time::timeout(limit, reading).await;
    writer_task.abort();
    match ended {
        Ok(received) => {
            SlowEnd { closed_by_server: true, received: String::from_utf8_lossy(&received).into_owned() }
        }
        Err(_) => SlowEnd { closed_by_server: false, received: String::new() },
    }
}
