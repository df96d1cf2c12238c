//! HTTP surface: liveness, readiness, metrics, and the read API over what was stored.
//!
//! The listener is bound by the caller and passed in. Handlers never expose internal
//! errors to clients: [`ApiError`] maps each failure to a status and a stable code,
//! and logs the detail server-side.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use parc_protocol::DeviceId;
use parc_protocol::enroll::{ApiError as WireError, ApiErrorDetail};
use serde::Deserialize;

use crate::enroll;
use crate::ingest::Ingest;
use crate::store::{EnrolmentRefused, EnrolmentRequest, StoreError};
use parc_protocol::enroll::{EnrollRequest, EnrollResponse};

/// Every failure an HTTP handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Refused {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    #[error("storage unavailable")]
    Store(#[from] StoreError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Refused { status, code, .. } => (*status, *code),
            ApiError::Store(e) => {
                tracing::error!(error = %e, "request failed on storage");
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
            }
        };
        let body = WireError {
            error: ApiErrorDetail {
                code: code.to_string(),
                message: self.to_string(),
            },
        };
        (status, Json(body)).into_response()
    }
}

pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            parc_protocol::enroll::ENROLL_PATH,
            axum::routing::post(enroll),
        )
        .route("/api/v1/summary", get(summary))
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/devices/{id}/health", get(health))
        .route("/api/v1/devices/{id}/health/hourly", get(hourly))
        .route("/api/v1/devices/{id}/inventory", get(inventory))
        .route("/api/v1/devices/{id}/changes", get(changes))
        .route("/api/v1/quarantine", get(quarantine))
        .merge(crate::http_procurement::routes())
        .merge(crate::http_releases::routes())
        .with_state(ingest)
}

fn check_len(field: &str, value: Option<&str>, max: usize) -> Result<(), ApiError> {
    match value {
        Some(v) if v.len() > max => Err(ApiError::BadRequest(format!(
            "`{field}` is longer than {max} bytes"
        ))),
        _ => Ok(()),
    }
}

/// `POST /api/v1/enroll`: a device presents an enrolment token and its identity, and
/// receives its id, signing key and broker credentials.
async fn enroll(
    State(ingest): State<Arc<Ingest>>,
    body: Result<Json<EnrollRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    check_len("agent_version", Some(&req.agent_version), 64)?;
    check_len("serial", req.serial.as_deref(), 128)?;
    check_len("manufacturer", req.manufacturer.as_deref(), 128)?;
    check_len("product_name", req.product_name.as_deref(), 128)?;
    check_len("hostname", req.hostname.as_deref(), 255)?;
    if req.agent_version.is_empty() {
        return Err(ApiError::BadRequest("`agent_version` is empty".into()));
    }
    if req.macs.len() > 64 {
        return Err(ApiError::BadRequest("more than 64 `macs`".into()));
    }
    let refused = |code, message: String| ApiError::Refused {
        status: StatusCode::UNAUTHORIZED,
        code,
        message,
    };
    let Some((token_id, secret)) = enroll::split_token(&req.token) else {
        return Err(refused(
            "token_invalid",
            EnrolmentRefused::InvalidToken.to_string(),
        ));
    };
    let serial = req
        .serial
        .as_deref()
        .and_then(parc_protocol::normalize_serial);
    let macs = enroll::normalize_macs(&req.macs);
    let key = enroll::new_device_key();
    let password = enroll::new_mqtt_password();
    let new_id = enroll::new_device_id();
    let line_password = password.clone();
    let line = move |id: &DeviceId| enroll::mosquitto_password_line(id.as_str(), &line_password);
    let request = EnrolmentRequest {
        token_id,
        token_secret_sha256: &enroll::sha256_hex(secret),
        serial: serial.as_deref(),
        manufacturer: req.manufacturer.as_deref(),
        product_name: req.product_name.as_deref(),
        hostname: req.hostname.as_deref(),
        agent_version: &req.agent_version,
        macs: &macs,
        new_device_id: &new_id,
        key: &key,
        mqtt_password_sha256: &enroll::sha256_hex(&password),
        mosquitto_line_for: &line,
    };
    match ingest.store.enroll(&request, Utc::now()).await? {
        Ok(done) => {
            ingest.keys.invalidate(&done.device_id);
            tracing::info!(device = %done.device_id, token = token_id, reenrolled = done.reenrolled, "device enrolled");
            Ok(Json(EnrollResponse {
                mqtt_username: done.device_id.to_string(),
                device_id: done.device_id,
                device_key: key.to_base64(),
                mqtt_password: password,
                reenrolled: done.reenrolled,
            }))
        }
        Err(r) => {
            tracing::warn!(token = token_id, reason = %r, "enrolment refused");
            Err(match r {
                EnrolmentRefused::InvalidToken => refused("token_invalid", r.to_string()),
                EnrolmentRefused::Expired(_) => refused("token_expired", r.to_string()),
                EnrolmentRefused::Revoked => refused("token_revoked", r.to_string()),
                EnrolmentRefused::UsedUp(_) => refused("token_used_up", r.to_string()),
                EnrolmentRefused::DeviceRevoked => ApiError::Refused {
                    status: StatusCode::FORBIDDEN,
                    code: "device_revoked",
                    message: r.to_string(),
                },
            })
        }
    }
}

/// Ready when the database answers and the broker subscription is up.
async fn readyz(State(ingest): State<Arc<Ingest>>) -> Response {
    let db = matches!(
        tokio::time::timeout(Duration::from_secs(2), ingest.store.ping()).await,
        Ok(Ok(()))
    );
    let mqtt = ingest.connected.load(Ordering::Relaxed);
    let writer = ingest.writer_ok.load(Ordering::Relaxed);
    let body = serde_json::json!({ "database": db, "mqtt": mqtt, "writer": writer });
    let status = if db && mqtt && writer {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(ingest): State<Arc<Ingest>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ingest.metrics.render(),
    )
        .into_response()
}

async fn summary(State(ingest): State<Arc<Ingest>>) -> Result<Json<serde_json::Value>, ApiError> {
    let counts = ingest.store.counts().await?;
    Ok(Json(serde_json::json!({
        "engine": ingest.store.engine().as_str(),
        "counts": counts,
    })))
}

async fn devices(
    State(ingest): State<Arc<Ingest>>,
) -> Result<Json<Vec<crate::store::DeviceRow>>, ApiError> {
    Ok(Json(ingest.store.devices().await?))
}

pub(crate) fn device_id(id: &str) -> Result<DeviceId, ApiError> {
    DeviceId::parse(id).map_err(|e| ApiError::BadRequest(format!("device id: {e}")))
}

#[derive(Debug, Deserialize)]
struct Range {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

impl Range {
    fn resolve(
        &self,
        default_span: chrono::Duration,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
        let to = self.to.unwrap_or_else(Utc::now);
        let from = self.from.unwrap_or(to - default_span);
        if from >= to {
            return Err(ApiError::BadRequest("`from` must be before `to`".into()));
        }
        Ok((from, to))
    }
}

async fn health(
    State(ingest): State<Arc<Ingest>>,
    Path(id): Path<String>,
    Query(range): Query<Range>,
) -> Result<Json<Vec<crate::store::HealthPoint>>, ApiError> {
    let (from, to) = range.resolve(chrono::Duration::days(7))?;
    Ok(Json(
        ingest
            .store
            .health_series(&device_id(&id)?, from, to)
            .await?,
    ))
}

async fn hourly(
    State(ingest): State<Arc<Ingest>>,
    Path(id): Path<String>,
    Query(range): Query<Range>,
) -> Result<Json<Vec<crate::store::HourlyPoint>>, ApiError> {
    let (from, to) = range.resolve(chrono::Duration::days(90))?;
    Ok(Json(
        ingest
            .store
            .hourly_series(&device_id(&id)?, from, to)
            .await?,
    ))
}

async fn inventory(
    State(ingest): State<Arc<Ingest>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = device_id(&id)?;
    match ingest.store.latest_inventory(&id).await? {
        Some(body) => Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response()),
        None => Err(ApiError::NotFound(format!("no inventory from device {id}"))),
    }
}

async fn changes(
    State(ingest): State<Arc<Ingest>>,
    Path(id): Path<String>,
) -> Result<Json<Vec<crate::store::InventoryChangeRow>>, ApiError> {
    Ok(Json(
        ingest.store.inventory_changes(&device_id(&id)?).await?,
    ))
}

/// `?limit=N` on list routes.
#[derive(Debug, Deserialize)]
pub(crate) struct Limit {
    pub(crate) limit: Option<i64>,
}

async fn quarantine(
    State(ingest): State<Arc<Ingest>>,
    Query(limit): Query<Limit>,
) -> Result<Json<Vec<crate::store::QuarantineRow>>, ApiError> {
    let limit = limit.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(ingest.store.quarantine(limit).await?))
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
