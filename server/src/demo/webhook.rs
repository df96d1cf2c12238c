//! The demo's own webhook receiver: a small HTTP server standing in for a contract
//! holder's ticketing system, so the demo shows tickets leaving Parc. It records every
//! POST it receives (time, path, content type, Parc's headers, body) and lists them at
//! `GET /deliveries` as JSON.
//!
//! It keeps at most [`MAX_KEPT`] deliveries (the oldest go first, and are counted) and
//! bodies up to 256 KiB; it must never answer anything but 2xx to a well-formed POST,
//! since a demo receiver that refuses would only show retries.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Serialize;

pub const MAX_KEPT: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub received_at: DateTime<Utc>,
    pub path: String,
    pub content_type: Option<String>,
    /// Headers whose name starts with `x-parc-` (event id, signature…).
    pub parc_headers: Vec<(String, String)>,
    /// The body as JSON when it is JSON, else as text.
    pub body: serde_json::Value,
}

#[derive(Debug, Default)]
struct Inner {
    kept: VecDeque<Delivery>,
    total: u64,
}

/// The receiver's shared record of deliveries.
#[derive(Debug, Clone, Default)]
pub struct Deliveries(Arc<Mutex<Inner>>);

#[derive(Debug, Serialize)]
struct Listing {
    total: u64,
    deliveries: Vec<Delivery>,
}

impl Deliveries {
    pub fn record(&self, d: Delivery) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.total += 1;
        if g.kept.len() == MAX_KEPT {
            g.kept.pop_front();
        }
        g.kept.push_back(d);
    }

    pub fn total(&self) -> u64 {
        self.0.lock().map(|g| g.total).unwrap_or(0)
    }

    pub fn list(&self) -> Vec<Delivery> {
        self.0
            .lock()
            .map(|g| g.kept.iter().cloned().collect())
            .unwrap_or_default()
    }
}

async fn receive(
    State(d): State<Deliveries>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let text = String::from_utf8_lossy(&body);
    d.record(Delivery {
        received_at: Utc::now(),
        path: uri.path().to_string(),
        content_type: headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        parc_headers: headers
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-parc-"))
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: serde_json::from_slice(&body)
            .unwrap_or_else(|_| serde_json::Value::String(text.into_owned())),
    });
    "received\n"
}

async fn list(State(d): State<Deliveries>) -> Json<Listing> {
    Json(Listing {
        total: d.total(),
        deliveries: d.list(),
    })
}

/// The receiver's routes: `POST /` or `POST /anything` records, `GET /deliveries` lists.
pub fn router(d: Deliveries) -> axum::Router {
    axum::Router::new()
        .route("/deliveries", get(list))
        .route("/", post(receive))
        .route("/{*path}", post(receive))
        .layer(axum::extract::DefaultBodyLimit::max(256 * 1024))
        .with_state(d)
}

/// Serves the receiver on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    d: Deliveries,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(d))
        .with_graceful_shutdown(shutdown)
        .await
}
