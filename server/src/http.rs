//! HTTP surface: liveness and the ingest summary as JSON.
//!
//! The listener is bound by the caller and passed in. Handlers never expose internal
//! errors to clients.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::ingest::Stats;

pub fn router(stats: Arc<Mutex<Stats>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/summary", get(summary))
        .with_state(stats)
}

async fn summary(State(stats): State<Arc<Mutex<Stats>>>) -> Json<serde_json::Value> {
    let stats = stats.lock().expect("stats lock");
    Json(serde_json::to_value(&*stats).expect("stats serialize"))
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
