//! HTTP routes for procurement: importing delivery manifests, and reading lots, orders,
//! schools, carts, warranties and the reconciliation of deliveries with reporting
//! devices. `http`
//! merges [`routes`] into the server's router.
//!
//! Handlers only wire: the checks are `crate::procurement`'s, the SQL the store's, and
//! warranties are computed here on every read from the lot's current terms. Errors go
//! through [`ApiError`] and never expose internals.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;

use crate::domain::WarrantyStatus;
use crate::http::{ApiError, Limit, device_id};
use crate::ingest::Ingest;
use crate::procurement::{
    DeviceWarranty, ImportReport, device_warranty, parse_manifest, today_in_france,
};
use crate::store::{CartRow, LotRow, OrderRow, Reconciliation, SiteRow};

/// Manifests of a few hundred thousand lines fit; axum's 2 MB default does not.
const MAX_MANIFEST_BYTES: usize = 64 << 20;

pub fn routes() -> Router<Arc<Ingest>> {
    Router::new()
        .route(
            "/api/v1/deliveries/import",
            post(import_deliveries).layer(DefaultBodyLimit::max(MAX_MANIFEST_BYTES)),
        )
        .route("/api/v1/reconciliation", get(reconciliation))
        .route("/api/v1/devices/{id}/warranty", get(warranty))
        .route("/api/v1/warranties", get(warranties))
        .route("/api/v1/lots", get(lots))
        .route("/api/v1/carts", get(carts))
        .route("/api/v1/orders", get(orders))
        .route("/api/v1/sites", get(sites))
}

#[derive(Debug, Deserialize)]
struct ImportParams {
    #[serde(default)]
    dry_run: bool,
}

/// Body: the manifest CSV. 200 with the report (refused lines included); 400 when the
/// file as a whole is unusable (header).
async fn import_deliveries(
    State(ingest): State<Arc<Ingest>>,
    Query(p): Query<ImportParams>,
    body: String,
) -> Result<Json<ImportReport>, ApiError> {
    let parsed = parse_manifest(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let report = ingest
        .store
        .import_deliveries(&parsed, p.dry_run, Utc::now(), &|_, _| {})
        .await?;
    Ok(Json(report))
}

async fn reconciliation(
    State(ingest): State<Arc<Ingest>>,
    Query(p): Query<Limit>,
) -> Result<Json<Reconciliation>, ApiError> {
    let limit = p.limit.unwrap_or(1000).clamp(0, 10_000);
    Ok(Json(ingest.store.reconciliation(limit).await?))
}

async fn warranty(
    State(ingest): State<Arc<Ingest>>,
    Path(id): Path<String>,
) -> Result<Json<DeviceWarranty>, ApiError> {
    let id = device_id(&id)?;
    let delivered = ingest
        .store
        .delivered_device(id.as_str())
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "device {id} is unknown or its serial is on no delivery"
            ))
        })?;
    Ok(Json(device_warranty(
        &delivered,
        today_in_france(Utc::now()),
    )))
}

#[derive(Debug, Deserialize)]
struct WarrantiesParams {
    status: Option<WarrantyStatus>,
}

/// Every delivered device's warranty, optionally only those with `status` (e.g.
/// `ending_soon`, to plan budgets), by serial.
async fn warranties(
    State(ingest): State<Arc<Ingest>>,
    Query(p): Query<WarrantiesParams>,
) -> Result<Json<Vec<DeviceWarranty>>, ApiError> {
    let today = today_in_france(Utc::now());
    let all = ingest.store.delivered_devices().await?;
    Ok(Json(
        all.iter()
            .map(|d| device_warranty(d, today))
            .filter(|w| p.status.is_none_or(|s| w.warranty.status == s))
            .collect(),
    ))
}

async fn lots(State(ingest): State<Arc<Ingest>>) -> Result<Json<Vec<LotRow>>, ApiError> {
    Ok(Json(ingest.store.lots().await?))
}

async fn carts(State(ingest): State<Arc<Ingest>>) -> Result<Json<Vec<CartRow>>, ApiError> {
    Ok(Json(ingest.store.carts().await?))
}

async fn orders(State(ingest): State<Arc<Ingest>>) -> Result<Json<Vec<OrderRow>>, ApiError> {
    Ok(Json(ingest.store.orders().await?))
}

async fn sites(State(ingest): State<Arc<Ingest>>) -> Result<Json<Vec<SiteRow>>, ApiError> {
    Ok(Json(ingest.store.sites().await?))
}
