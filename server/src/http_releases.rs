//! HTTP routes for agent releases: each channel's manifest (per device, following the
//! staged rollout), the archives, the list of releases with their rollout, and the
//! agent versions in the fleet. `http` merges [`routes`] into the server's router.
//!
//! Releases are public: a manifest or an archive reveals nothing about the fleet (an
//! agent trusts an archive for its signature, not for where it came from). Handlers
//! only wire: rollout decisions are `crate::releases`', SQL the store's. Errors go
//! through [`ApiError`] and never expose internals.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use parc_protocol::release::Manifest;
use serde::Deserialize;

use crate::http::{ApiError, device_id};
use crate::ingest::Ingest;
use crate::releases::{ReleaseInfo, check_channel, manifest_for};
use crate::store::{UpdateEventRow, VersionCount};

/// Manifests and archives are fetched by agents without an account (they are signed
/// and checked on the device); the release list, fleet versions and update events are
/// fleet-wide, so for administrators only.
pub fn routes() -> Router<crate::http_auth::AppState> {
    Router::new()
        .route("/api/v1/releases", get(list))
        .route("/api/v1/releases/{channel}/manifest.json", get(manifest))
        .route("/api/v1/releases/{channel}/files/{file}", get(archive))
        .route("/api/v1/fleet/versions", get(versions))
        .route("/api/v1/releases/events", get(events))
}

fn channel(c: &str) -> Result<(), ApiError> {
    check_channel(c).map_err(|e| ApiError::NotFound(e.to_string()))
}

async fn list(
    State(ingest): State<Arc<Ingest>>,
    p: crate::auth::Principal,
) -> Result<Json<Vec<ReleaseInfo>>, ApiError> {
    crate::http::require_admin(&p)?;
    Ok(Json(ingest.store.releases(None).await?))
}

#[derive(Debug, Deserialize)]
struct ManifestParams {
    device: Option<String>,
}

/// The releases of the channel that reach the asking device (`?device=d-…`); without
/// a device, only the releases rolled out to everyone.
async fn manifest(
    State(ingest): State<Arc<Ingest>>,
    Path(c): Path<String>,
    Query(p): Query<ManifestParams>,
) -> Result<Json<Manifest>, ApiError> {
    channel(&c)?;
    let device = p.device.as_deref().map(device_id).transpose()?;
    let site = match &device {
        Some(d) => ingest.store.device_site(d.as_str()).await?,
        None => None,
    };
    let releases = ingest.store.releases(Some(&c)).await?;
    Ok(Json(manifest_for(
        &releases,
        device.as_ref().map(|d| d.as_str()),
        site.as_deref(),
    )))
}

async fn archive(
    State(ingest): State<Arc<Ingest>>,
    Path((c, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    channel(&c)?;
    match ingest.store.release_archive(&c, &file).await? {
        Some(bytes) => Ok((
            [
                (header::CONTENT_TYPE, "application/gzip".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{}\"", file.replace('"', "")),
                ),
            ],
            bytes,
        )
            .into_response()),
        None => Err(ApiError::NotFound(format!(
            "no archive {file:?} on channel {c}"
        ))),
    }
}

async fn versions(
    State(ingest): State<Arc<Ingest>>,
    p: crate::auth::Principal,
) -> Result<Json<Vec<VersionCount>>, ApiError> {
    crate::http::require_admin(&p)?;
    Ok(Json(ingest.store.fleet_versions().await?))
}

#[derive(Debug, Deserialize)]
struct EventParams {
    device: Option<String>,
    limit: Option<i64>,
}

/// Updates applied, refused (with their reason) and rolled back, newest first.
async fn events(
    State(ingest): State<Arc<Ingest>>,
    principal: crate::auth::Principal,
    Query(p): Query<EventParams>,
) -> Result<Json<Vec<UpdateEventRow>>, ApiError> {
    crate::http::require_admin(&principal)?;
    let device = p.device.as_deref().map(device_id).transpose()?;
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(
        ingest
            .store
            .update_events(device.as_ref().map(|d| d.as_str()), limit)
            .await?,
    ))
}
