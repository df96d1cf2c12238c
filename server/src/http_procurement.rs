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

use crate::auth::{Principal, Scope};
use crate::domain::WarrantyStatus;
use crate::http::{ApiError, Limit, require_admin, visible};
use crate::http_auth::{AppState, forbidden};
use crate::ingest::Ingest;
use crate::procurement::{
    DeviceWarranty, ImportReport, device_warranty, parse_manifest, today_in_france,
};
use crate::store::{CartRow, LotRow, OrderRow, Reconciliation, SiteRow};

/// Manifests of a few hundred thousand lines fit; axum's 2 MB default does not.
const MAX_MANIFEST_BYTES: usize = 64 << 20;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/deliveries/import",
            post(import_deliveries).layer(DefaultBodyLimit::max(MAX_MANIFEST_BYTES)),
        )
        .route("/api/v1/reconciliation", get(reconciliation))
        .route("/api/v1/devices/{id}/warranty", get(warranty))
        .route("/api/v1/warranties", get(warranties))
        .route("/api/v1/warranties.csv", get(warranties_csv))
        .route("/api/v1/lots", get(lots))
        .route("/api/v1/lots/scorecard", get(scorecard))
        .route("/api/v1/lots/scorecard.csv", get(scorecard_csv))
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
#[utoipa::path(post, path = "/api/v1/deliveries/import", tag = "procurement",
    params(("dry_run" = Option<bool>, Query, description = "Check without storing")),
    request_body(content = String, content_type = "text/csv", description = "Delivery manifest"),
    responses((status = 200, description = "Import report, refused lines included"),
        (status = 400, description = "Unusable file"), (status = 403, description = "Not an administrator")))]
async fn import_deliveries(
    State(ingest): State<Arc<Ingest>>,
    principal: Principal,
    Query(p): Query<ImportParams>,
    body: String,
) -> Result<Json<ImportReport>, ApiError> {
    require_admin(&principal)?;
    let parsed = parse_manifest(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let report = ingest
        .store
        .import_deliveries(&parsed, p.dry_run, Utc::now(), &|_, _| {})
        .await?;
    Ok(Json(report))
}

/// Fleet-wide: devices no delivery lists have no organisation yet, so only callers who
/// see everything may list them.
#[utoipa::path(get, path = "/api/v1/reconciliation", tag = "procurement",
    responses((status = 200, description = "Unmatched devices and never-seen deliveries"),
        (status = 403, description = "Needs a fleet-wide scope")))]
async fn reconciliation(
    State(ingest): State<Arc<Ingest>>,
    principal: Principal,
    Query(p): Query<Limit>,
) -> Result<Json<Reconciliation>, ApiError> {
    if principal.scope() != Scope::All {
        return Err(forbidden());
    }
    let limit = p.limit.unwrap_or(1000).clamp(0, 10_000);
    Ok(Json(ingest.store.reconciliation(limit).await?))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}/warranty", tag = "procurement",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, description = "Warranty from the lot's terms"), (status = 404, description = "Not delivered, unknown or out of scope")))]
async fn warranty(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<DeviceWarranty>, ApiError> {
    let id = visible(&s, &p, &id).await?.device_id;
    let delivered = s
        .ingest
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
pub(crate) struct WarrantiesParams {
    status: Option<WarrantyStatus>,
    /// Only warranties (or battery warranties) ending within this many days from today.
    within_days: Option<i64>,
}

/// The warranties `p` may see, filtered.
pub(crate) async fn scoped_warranties(
    ingest: &Ingest,
    p: &Principal,
    q: &WarrantiesParams,
) -> Result<Vec<DeviceWarranty>, ApiError> {
    let today = today_in_france(Utc::now());
    let all = ingest.store.delivered_devices_in(&p.scope()).await?;
    let horizon = q
        .within_days
        .map(|d| today + chrono::Days::new(d.clamp(0, 3650) as u64));
    let ends_soon = |w: &DeviceWarranty| match horizon {
        None => true,
        Some(h) => [w.warranty.end, w.warranty.battery_end]
            .into_iter()
            .flatten()
            .any(|end| end > today && end <= h),
    };
    Ok(all
        .iter()
        .map(|d| device_warranty(d, today))
        .filter(|w| q.status.is_none_or(|s| w.warranty.status == s))
        .filter(ends_soon)
        .collect())
}

/// Every delivered device's warranty within the caller's scope, optionally only those
/// with `status` (e.g. `ending_soon`, to plan budgets) or ending within `within_days`,
/// by serial.
#[utoipa::path(get, path = "/api/v1/warranties", tag = "procurement",
    params(("status" = Option<String>, Query, description = "active, ending_soon, expired, unknown"),
        ("within_days" = Option<i64>, Query, description = "Warranty or battery warranty ends within N days")),
    responses((status = 200, description = "Warranties by serial")))]
async fn warranties(
    State(ingest): State<Arc<Ingest>>,
    principal: Principal,
    Query(p): Query<WarrantiesParams>,
) -> Result<Json<Vec<DeviceWarranty>>, ApiError> {
    Ok(Json(scoped_warranties(&ingest, &principal, &p).await?))
}

#[utoipa::path(get, path = "/api/v1/warranties.csv", tag = "procurement",
    params(("status" = Option<String>, Query, description = "As /api/v1/warranties"),
        ("within_days" = Option<i64>, Query, description = "As /api/v1/warranties")),
    responses((status = 200, description = "CSV, formulas neutralised", content_type = "text/csv")))]
async fn warranties_csv(
    State(ingest): State<Arc<Ingest>>,
    principal: Principal,
    Query(p): Query<WarrantiesParams>,
) -> Result<axum::response::Response, ApiError> {
    let mut out = crate::csv_export::Writer::new(&[
        "serial",
        "device_id",
        "model",
        "contract",
        "lot",
        "holder",
        "site",
        "order",
        "warranty_end",
        "battery_warranty_end",
        "status",
    ]);
    for w in scoped_warranties(&ingest, &principal, &p).await? {
        out.row(&[
            w.serial.as_str(),
            w.device_id.as_deref().unwrap_or(""),
            &w.model,
            &w.contract,
            &w.lot.to_string(),
            &w.holder,
            &w.site,
            &w.order_reference,
            &w.warranty.end.map(|d| d.to_string()).unwrap_or_default(),
            &w.warranty
                .battery_end
                .map(|d| d.to_string())
                .unwrap_or_default(),
            &serde_json::to_value(w.warranty.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        ]);
    }
    Ok(out.into_response("garanties.csv"))
}

/// Lots are public procurement data; a contract holder sees only its own.
#[utoipa::path(get, path = "/api/v1/lots", tag = "procurement",
    responses((status = 200, description = "Lots with holder and terms")))]
pub(crate) async fn lots(
    State(ingest): State<Arc<Ingest>>,
    p: Principal,
) -> Result<Json<Vec<LotRow>>, ApiError> {
    Ok(Json(ingest.store.lots_in(&p.scope()).await?))
}

#[utoipa::path(get, path = "/api/v1/carts", tag = "procurement",
    responses((status = 200, description = "Mobile carts in scope with their devices")))]
async fn carts(
    State(ingest): State<Arc<Ingest>>,
    p: Principal,
) -> Result<Json<Vec<CartRow>>, ApiError> {
    Ok(Json(ingest.store.carts_in(&p.scope()).await?))
}

#[utoipa::path(get, path = "/api/v1/orders", tag = "procurement",
    responses((status = 200, description = "Purchase orders in scope")))]
async fn orders(
    State(ingest): State<Arc<Ingest>>,
    p: Principal,
) -> Result<Json<Vec<OrderRow>>, ApiError> {
    Ok(Json(ingest.store.orders_in(&p.scope()).await?))
}

#[utoipa::path(get, path = "/api/v1/sites", tag = "procurement",
    responses((status = 200, description = "Schools in scope")))]
async fn sites(
    State(ingest): State<Arc<Ingest>>,
    p: Principal,
) -> Result<Json<Vec<SiteRow>>, ApiError> {
    Ok(Json(ingest.store.sites_in(&p.scope()).await?))
}

/// The scorecards the caller may see: a technician's cover its own organisation's
/// orders, a holder's its own lots.
pub(crate) async fn scoped_scorecards(
    s: &AppState,
    p: &Principal,
) -> Result<Vec<crate::scorecard::LotScorecard>, ApiError> {
    let scope = p.scope();
    let store = &s.ingest.store;
    let lots = store.lots_in(&scope).await?;
    let orders = store.orders_in(&scope).await?;
    let models = store
        .lot_model_health(&scope, &s.web.thresholds, Utc::now())
        .await?;
    let tickets = store
        .tickets_in(&scope, &crate::store::TicketFilter::default(), 10_000)
        .await?;
    let figures = crate::scorecard::lot_ticket_figures(&tickets, Utc::now());
    Ok(crate::scorecard::scorecards(
        &lots,
        &orders,
        &models,
        Some(&figures),
    ))
}

#[utoipa::path(get, path = "/api/v1/lots/scorecard", tag = "procurement",
    responses((status = 200, description = "Per lot: failure rate per model, tickets, MTTR, SLA compliance, penalties, cost per device and funding", body = [crate::scorecard::LotScorecard])))]
pub(crate) async fn scorecard(
    State(s): State<AppState>,
    p: Principal,
) -> Result<Json<Vec<crate::scorecard::LotScorecard>>, ApiError> {
    Ok(Json(scoped_scorecards(&s, &p).await?))
}

#[utoipa::path(get, path = "/api/v1/lots/scorecard.csv", tag = "procurement",
    responses((status = 200, description = "One line per lot and model, formulas neutralised", content_type = "text/csv")))]
pub(crate) async fn scorecard_csv(
    State(s): State<AppState>,
    p: Principal,
) -> Result<axum::response::Response, ApiError> {
    let mut out = crate::csv_export::Writer::new(&[
        "contract",
        "lot",
        "title",
        "holder",
        "model",
        "delivered",
        "reporting",
        "faulty",
        "failure_rate_percent",
        "lot_tickets",
        "lot_mttr_hours",
        "lot_sla_compliance_percent",
        "lot_penalties_eur",
        "lot_purchase_incl_vat_eur",
        "lot_cost_per_device_eur",
        "lot_funding",
    ]);
    let eur = |c: i64| format!("{:.2}", c as f64 / 100.0);
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_default();
    for c in scoped_scorecards(&s, &p).await? {
        let t = c.tickets.clone();
        let funding = c
            .funding
            .iter()
            .map(|f| format!("{}: {}", f.source, eur(f.amount_cents)))
            .collect::<Vec<_>>()
            .join("; ");
        for m in &c.models {
            out.row(&[
                c.contract.as_str(),
                &c.lot.to_string(),
                &c.title,
                &c.holder,
                &m.model,
                &m.delivered.to_string(),
                &m.reporting.to_string(),
                &m.faulty.to_string(),
                &opt(m.failure_rate_percent),
                &t.as_ref()
                    .map(|t| t.tickets.to_string())
                    .unwrap_or_default(),
                &opt(t.as_ref().and_then(|t| t.mean_time_to_restore_hours)),
                &opt(t.as_ref().and_then(|t| t.sla_compliance_percent)),
                &t.as_ref()
                    .map(|t| eur(t.penalties_cents))
                    .unwrap_or_default(),
                &eur(c.purchase_incl_vat_cents),
                &c.cost_per_device_cents.map(eur).unwrap_or_default(),
                &funding,
            ]);
        }
    }
    Ok(out.into_response("bilan-des-lots.csv"))
}
