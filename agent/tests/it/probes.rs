//! Connectivity probes against real local sockets: a tiny HTTP server answering 204, a
//! port nobody listens on, a server that never answers, and a name that does not
//! resolve.

use std::time::Instant;

use parc_agent::collect::probe_all;
use parc_agent::config::ProbeConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

fn probe(name: &str, url: String, timeout_ms: u32) -> ProbeConfig {
    ProbeConfig {
        name: name.to_string(),
        url,
        timeout_ms,
    }
}

/// Answers every connection with `status` once it has read the request head.
async fn server(status: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let answer =
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = sock.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

/// Writes a plain HTTP answer as soon as a connection opens, before any request.
async fn eager_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let _ = sock
                .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                .await;
            let _ = sock.shutdown().await;
        }
    });
    port
}

/// Accepts connections and never answers.
async fn silent_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    port
}

/// A port that was free a moment ago: connecting is refused.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn probes_report_status_and_latency_or_a_stable_error() {
    let ok = server("204 No Content").await;
    let moved = server("302 Found").await;
    let silent = silent_server().await;
    let closed = closed_port().await;
    let probes = [
        probe("ENT", format!("http://127.0.0.1:{ok}/"), 2000),
        probe("login", format!("http://127.0.0.1:{moved}/cas/login"), 2000),
        probe("closed", format!("http://127.0.0.1:{closed}/"), 2000),
        probe("silent", format!("http://127.0.0.1:{silent}/"), 300),
        probe(
            "nowhere",
            "http://parc-probe-test.invalid/".to_string(),
            3000,
        ),
    ];
    let start = Instant::now();
    let results = probe_all(&probes).await;
    // Concurrent: the whole run is bounded by the largest timeout, not their sum.
    assert!(
        start.elapsed().as_millis() < 3000 + 2000,
        "{:?}",
        start.elapsed()
    );

    let names: Vec<_> = results.iter().map(|p| p.target.as_str()).collect();
    assert_eq!(names, ["ENT", "login", "closed", "silent", "nowhere"]);

    assert_eq!(results[0].status_code, Some(204));
    assert_eq!(results[0].error, None);
    let latency = results[0].latency_ms.unwrap();
    assert!((0.0..2000.0).contains(&latency), "{latency}");

    // Redirects are not followed: the 302 is the answer.
    assert_eq!(results[1].status_code, Some(302));

    assert_eq!(results[2].error.as_deref(), Some("connection refused"));
    assert_eq!(results[2].status_code, None);
    assert_eq!(results[2].latency_ms, None);

    assert_eq!(results[3].error.as_deref(), Some("timeout"));
    assert_eq!(results[3].status_code, None);

    // .invalid never resolves (RFC 6761); without any resolver it is still a lookup
    // failure.
    assert_eq!(results[4].error.as_deref(), Some("dns"), "{:?}", results[4]);
}

#[tokio::test]
async fn no_probes_configured_is_an_empty_list() {
    assert!(probe_all(&[]).await.is_empty());
}

#[tokio::test]
async fn a_tls_failure_is_reported_as_tls() {
    // A plain-HTTP server spoken to over https: the handshake fails.
    let port = eager_server().await;
    let results = probe_all(&[probe("tls", format!("https://127.0.0.1:{port}/"), 2000)]).await;
    assert_eq!(results[0].error.as_deref(), Some("tls"), "{:?}", results[0]);
}
