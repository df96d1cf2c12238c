//! HTTP surface: liveness, readiness, metrics, enrolment, and the authenticated JSON API
//! over the fleet (every read scoped to the caller; see `http_auth`).
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

use crate::auth::Principal;
use crate::enroll;
use crate::http_auth::{AppState, Web};
use crate::ingest::Ingest;
use crate::store::{DeviceState, FleetDevice, FleetFilter, FleetPage, Overview, Usage};
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

/// The whole HTTP surface. `/healthz`, `/readyz`, `/metrics`, the enrolment POST, the
/// login page and the OpenAPI document are open; every other route needs a
/// [`Principal`] and reads through its scope.
pub fn router(ingest: Arc<Ingest>, web: Arc<Web>) -> Router {
    let state = AppState { ingest, web };
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            parc_protocol::enroll::ENROLL_PATH,
            axum::routing::post(enroll),
        )
        .route("/api/v1/me", get(me))
        .route("/api/v1/summary", get(summary))
        .route("/api/v1/fleet/overview", get(overview))
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/devices.csv", get(devices_csv))
        .route("/api/v1/devices/{id}", get(device))
        .route("/api/v1/devices/{id}/health", get(health))
        .route("/api/v1/devices/{id}/health/hourly", get(hourly))
        .route("/api/v1/devices/{id}/inventory", get(inventory))
        .route("/api/v1/devices/{id}/changes", get(changes))
        .route("/api/v1/devices/{id}/events", get(events))
        .route("/api/v1/usage", get(usage))
        .route("/api/v1/quarantine", get(quarantine))
        .merge(crate::http_procurement::routes())
        .merge(crate::http_releases::routes())
        .merge(crate::http_tickets::routes())
        .merge(crate::web::routes())
        .route("/api/openapi.json", get(crate::openapi::serve))
        .with_state(state)
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

/// `GET /api/v1/me`: who the credentials belong to and what they may see.
#[utoipa::path(get, path = "/api/v1/me", tag = "access",
    responses((status = 200, description = "The caller's login, role and attachments")))]
async fn me(p: Principal) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "login": p.login,
        "display_name": p.display_name,
        "role": p.role,
        "organisation_id": p.organisation_id,
        "holder_id": p.holder_id,
    }))
}

/// Fleet-wide storage counters: administrators only.
#[utoipa::path(get, path = "/api/v1/summary", tag = "operations",
    responses((status = 200, description = "What was stored and quarantined, by kind"),
        (status = 403, description = "Not an administrator")))]
async fn summary(
    State(ingest): State<Arc<Ingest>>,
    p: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&p)?;
    let counts = ingest.store.counts().await?;
    Ok(Json(serde_json::json!({
        "engine": ingest.store.engine().as_str(),
        "counts": counts,
    })))
}

pub(crate) fn require_admin(p: &Principal) -> Result<(), ApiError> {
    if p.is_admin() {
        Ok(())
    } else {
        Err(crate::http_auth::forbidden())
    }
}

#[utoipa::path(get, path = "/api/v1/fleet/overview", tag = "fleet",
    responses((status = 200, description = "Devices by state, overall and per authority, site, lot and model", body = Overview)))]
async fn overview(State(s): State<AppState>, p: Principal) -> Result<Json<Overview>, ApiError> {
    Ok(Json(
        s.ingest
            .store
            .fleet_overview(&p.scope(), &s.web.thresholds, Utc::now())
            .await?,
    ))
}

/// Query of the device list: the filters and `limit` (default 50, at most 500).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct DevicesQuery {
    /// Serial or host name prefix, or part of a school's name, or its UAI.
    q: Option<String>,
    /// healthy, warning, faulty or silent.
    state: Option<String>,
    organisation: Option<String>,
    site: Option<String>,
    /// `CONTRACT#NUMBER`.
    lot: Option<String>,
    model: Option<String>,
    /// The `next_after` of the previous page.
    after: Option<String>,
    limit: Option<i64>,
}

impl DevicesQuery {
    pub(crate) fn filter(&self) -> Result<FleetFilter, ApiError> {
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        for (name, v) in [("q", &self.q), ("after", &self.after), ("site", &self.site)] {
            check_len(name, v.as_deref(), 200)?;
        }
        Ok(FleetFilter {
            q: nonempty(&self.q),
            state: match nonempty(&self.state) {
                None => None,
                Some(s) => Some(DeviceState::parse(&s).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "`state` must be healthy, warning, faulty or silent, not {s:?}"
                    ))
                })?),
            },
            organisation: nonempty(&self.organisation),
            site: nonempty(&self.site),
            lot: nonempty(&self.lot),
            model: nonempty(&self.model),
            after: nonempty(&self.after),
        })
    }
}

#[utoipa::path(get, path = "/api/v1/devices", tag = "fleet", params(DevicesQuery),
    responses((status = 200, description = "One page of devices, by id", body = FleetPage)))]
async fn devices(
    State(s): State<AppState>,
    p: Principal,
    Query(q): Query<DevicesQuery>,
) -> Result<Json<FleetPage>, ApiError> {
    let filter = q.filter()?;
    Ok(Json(
        s.ingest
            .store
            .fleet_page(
                &p.scope(),
                &filter,
                q.limit.unwrap_or(50),
                &s.web.thresholds,
                Utc::now(),
            )
            .await?,
    ))
}

/// Every matching device as CSV (pages of 500 read in turn).
#[utoipa::path(get, path = "/api/v1/devices.csv", tag = "fleet", params(DevicesQuery),
    responses((status = 200, description = "CSV, formulas neutralised", content_type = "text/csv")))]
async fn devices_csv(
    State(s): State<AppState>,
    p: Principal,
    Query(q): Query<DevicesQuery>,
) -> Result<Response, ApiError> {
    let mut filter = q.filter()?;
    let mut out = crate::csv_export::Writer::new(&[
        "device_id",
        "serial",
        "hostname",
        "model",
        "organisation",
        "site_uai",
        "site",
        "contract",
        "lot",
        "cart",
        "state",
        "last_seen",
        "battery_health_percent",
    ]);
    loop {
        let page = s
            .ingest
            .store
            .fleet_page(&p.scope(), &filter, 500, &s.web.thresholds, Utc::now())
            .await?;
        for d in &page.devices {
            out.row(&[
                d.device_id.as_str(),
                d.serial.as_deref().unwrap_or(""),
                d.hostname.as_deref().unwrap_or(""),
                d.model.as_deref().unwrap_or(""),
                d.organisation.as_deref().unwrap_or(""),
                d.site_uai.as_deref().unwrap_or(""),
                d.site.as_deref().unwrap_or(""),
                d.contract.as_deref().unwrap_or(""),
                &d.lot.map(|l| l.to_string()).unwrap_or_default(),
                d.cart.as_deref().unwrap_or(""),
                d.state.as_str(),
                &d.last_seen.map(|t| t.to_rfc3339()).unwrap_or_default(),
                &d.battery_health_percent
                    .map(|b| format!("{b:.1}"))
                    .unwrap_or_default(),
            ]);
        }
        match page.next_after {
            Some(a) => filter.after = Some(a),
            None => break,
        }
    }
    Ok(out.into_response("appareils.csv"))
}

/// The device if the principal may see it, else 404 (never 403: ids of other tenants
/// are not confirmed).
pub(crate) async fn visible(
    s: &AppState,
    p: &Principal,
    id: &str,
) -> Result<FleetDevice, ApiError> {
    let id = device_id(id)?;
    s.ingest
        .store
        .fleet_device(&p.scope(), id.as_str(), &s.web.thresholds, Utc::now())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no device {id}")))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "fleet",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, description = "The device, its place and state", body = FleetDevice),
        (status = 404, description = "Unknown, or outside the caller's scope")))]
async fn device(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<FleetDevice>, ApiError> {
    Ok(Json(visible(&s, &p, &id).await?))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}/events", tag = "fleet",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, description = "The 200 latest events"), (status = 404, description = "Unknown or out of scope")))]
async fn events(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Vec<crate::store::EventRow>>, ApiError> {
    let d = visible(&s, &p, &id).await?;
    Ok(Json(s.ingest.store.device_events(&d.device_id, 200).await?))
}

#[utoipa::path(get, path = "/api/v1/usage", tag = "fleet",
    params(("from" = Option<String>, Query, description = "RFC 3339, default 30 days ago"),
        ("to" = Option<String>, Query, description = "RFC 3339, default now")),
    responses((status = 200, description = "Hours in use per device and per school", body = Usage)))]
async fn usage(
    State(s): State<AppState>,
    p: Principal,
    Query(range): Query<Range>,
) -> Result<Json<Usage>, ApiError> {
    let (from, to) = range.resolve(chrono::Duration::days(30))?;
    Ok(Json(s.ingest.store.usage(&p.scope(), from, to).await?))
}

pub(crate) fn device_id(id: &str) -> Result<DeviceId, ApiError> {
    DeviceId::parse(id).map_err(|e| ApiError::BadRequest(format!("device id: {e}")))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Range {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

impl Range {
    pub(crate) fn resolve(
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

#[utoipa::path(get, path = "/api/v1/devices/{id}/health", tag = "fleet",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, description = "Raw health samples, default the last 7 days"), (status = 404, description = "Unknown or out of scope")))]
async fn health(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    Query(range): Query<Range>,
) -> Result<Json<Vec<crate::store::HealthPoint>>, ApiError> {
    let d = visible(&s, &p, &id).await?;
    let (from, to) = range.resolve(chrono::Duration::days(7))?;
    Ok(Json(
        s.ingest
            .store
            .health_series(&device_id(&d.device_id)?, from, to)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}/health/hourly", tag = "fleet",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, description = "Hourly aggregates, default the last 90 days"), (status = 404, description = "Unknown or out of scope")))]
async fn hourly(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    Query(range): Query<Range>,
) -> Result<Json<Vec<crate::store::HourlyPoint>>, ApiError> {
    let d = visible(&s, &p, &id).await?;
    let (from, to) = range.resolve(chrono::Duration::days(90))?;
    Ok(Json(
        s.ingest
            .store
            .hourly_series(&device_id(&d.device_id)?, from, to)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}/inventory", tag = "fleet",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, description = "The latest inventory as reported"), (status = 404, description = "None yet, unknown or out of scope")))]
async fn inventory(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = device_id(&visible(&s, &p, &id).await?.device_id)?;
    match s.ingest.store.latest_inventory(&id).await? {
        Some(body) => Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response()),
        None => Err(ApiError::NotFound(format!("no inventory from device {id}"))),
    }
}

#[utoipa::path(get, path = "/api/v1/devices/{id}/changes", tag = "fleet",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, description = "Component changes, oldest first"), (status = 404, description = "Unknown or out of scope")))]
async fn changes(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Vec<crate::store::InventoryChangeRow>>, ApiError> {
    let d = visible(&s, &p, &id).await?;
    Ok(Json(
        s.ingest
            .store
            .inventory_changes(&device_id(&d.device_id)?)
            .await?,
    ))
}

/// `?limit=N` on list routes.
#[derive(Debug, Deserialize)]
pub(crate) struct Limit {
    pub(crate) limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/quarantine", tag = "operations",
    responses((status = 200, description = "Refused publishes, newest first"), (status = 403, description = "Not an administrator")))]
async fn quarantine(
    State(ingest): State<Arc<Ingest>>,
    p: Principal,
    Query(limit): Query<Limit>,
) -> Result<Json<Vec<crate::store::QuarantineRow>>, ApiError> {
    require_admin(&p)?;
    let limit = limit.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(ingest.store.quarantine(limit).await?))
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
