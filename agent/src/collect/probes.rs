//! Connectivity probes: for each `[[probes]]` of the configuration (the school's ENT,
//! the timetable service…), one HTTP(S) GET that reports the status code and the time
//! to the response headers, or why it failed in a few stable words ("timeout", "dns",
//! "tls", "connection refused"…) that the server can count.
//!
//! A probe reads nothing but the status line: no body, no cookies, no credentials, and
//! redirects are not followed (a login page's 302 already shows the service answers).
//! It must never send anything about the device or its users beyond the GET itself.
//! Probes are async and run concurrently, each bounded by its own `timeout_ms`, so a
//! dead service delays a health sample by at most the largest timeout.

use std::error::Error as _;
use std::time::{Duration, Instant};

use parc_protocol::health::Probe;

use crate::config::ProbeConfig;

/// Runs every probe concurrently and returns their results in configuration order.
/// Needs a tokio runtime with the time and net drivers enabled.
pub async fn probe_all(probes: &[ProbeConfig]) -> Vec<Probe> {
    if probes.is_empty() {
        return Vec::new();
    }
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("parc-agent/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            let error = format!("client: {}", first_line(&e.to_string()));
            return probes
                .iter()
                .map(|p| failed(&p.name, error.clone()))
                .collect();
        }
    };
    let handles: Vec<_> = probes
        .iter()
        .cloned()
        .map(|p| {
            let client = client.clone();
            tokio::spawn(async move { probe(&client, &p).await })
        })
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for (handle, p) in handles.into_iter().zip(probes) {
        out.push(match handle.await {
            Ok(result) => result,
            Err(e) => failed(&p.name, format!("probe task failed: {e}")),
        });
    }
    out
}

async fn probe(client: &reqwest::Client, p: &ProbeConfig) -> Probe {
    let timeout = Duration::from_millis(u64::from(p.timeout_ms.max(1)));
    let start = Instant::now();
    match client.get(&p.url).timeout(timeout).send().await {
        Ok(response) => {
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            Probe {
                target: p.name.clone(),
                status_code: Some(response.status().as_u16()),
                latency_ms: Some((ms * 10.0).round() / 10.0),
                error: None,
            }
        }
        Err(e) => failed(&p.name, classify(&e)),
    }
}

fn failed(target: &str, error: String) -> Probe {
    Probe {
        target: target.to_string(),
        status_code: None,
        latency_ms: None,
        error: Some(error),
    }
}

/// The failure in stable words, from the error and its causes.
pub(crate) fn classify(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timeout".into();
    }
    if e.is_builder() {
        return format!("invalid url: {}", first_line(&e.to_string()));
    }
    let mut messages = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionRefused => return "connection refused".into(),
                K::ConnectionReset | K::ConnectionAborted => return "connection reset".into(),
                K::TimedOut => return "timeout".into(),
                K::HostUnreachable | K::NetworkUnreachable => return "unreachable".into(),
                _ => {}
            }
        }
        messages.push(s.to_string().to_lowercase());
        source = s.source();
    }
    if messages.is_empty() {
        messages.push("request failed".to_string());
    }
    let all = messages.join(": ");
    if all.contains("dns error") || all.contains("failed to lookup") || all.contains("resolve") {
        "dns".into()
    } else if all.contains("certificate")
        || all.contains("tls")
        || all.contains("handshake")
        || all.contains("invalidcontenttype")
    {
        "tls".into()
    } else if e.is_connect() {
        format!("connect: {}", first_line(&all))
    } else {
        format!("error: {}", first_line(&all))
    }
}

/// Error texts go on the wire: one short line.
fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(120)
        .collect()
}
