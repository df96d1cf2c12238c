//! The tickets API: the board (open tickets with their GTI/GTR countdowns and
//! penalties), one ticket with its devices and history, and status changes — by the
//! authority's technicians, and by contract holders with their lot-scoped tokens.
//!
//! Handlers wire: which transitions are allowed is `crate::tickets::check_transition`'s,
//! deadlines and penalties `crate::scorecard::ticket_sla`'s, the scope the store's. A
//! ticket outside the caller's scope answers 404.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::auth::{Principal, Role};
use crate::http::ApiError;
use crate::http_auth::{AppState, forbidden};
use crate::scorecard::{TicketSla, ticket_sla};
use crate::store::{TicketEventRow, TicketFilter, TicketView};
use crate::tickets::{Actor, Status, check_transition};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tickets", get(list))
        .route("/api/v1/tickets/{reference}", get(one))
        .route("/api/v1/tickets/{reference}/status", post(change_status))
}

/// A ticket on the board: the ticket, where it stands against its deadlines.
#[derive(Debug, Clone, Serialize)]
pub struct BoardTicket {
    #[serde(flatten)]
    pub view: TicketView,
    pub sla: TicketSla,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub(crate) struct ListQuery {
    /// Only tickets neither closed nor rejected (default true).
    open_only: Option<bool>,
    /// `CONTRACT#NUMBER`.
    lot: Option<String>,
    /// Contract holder id.
    holder: Option<String>,
    /// Site UAI.
    site: Option<String>,
    /// Device id.
    device: Option<String>,
    limit: Option<i64>,
}

impl ListQuery {
    pub(crate) fn filter(&self) -> TicketFilter {
        let opt = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        TicketFilter {
            open_only: self.open_only.unwrap_or(true),
            lot: opt(&self.lot),
            holder: opt(&self.holder),
            site: opt(&self.site),
            device: opt(&self.device),
            reference: None,
        }
    }
}

/// The tickets `p` may see, with their deadlines at `now`.
pub(crate) async fn board(
    s: &AppState,
    p: &Principal,
    f: &TicketFilter,
    limit: i64,
) -> Result<Vec<BoardTicket>, ApiError> {
    let now = Utc::now();
    Ok(s.ingest
        .store
        .tickets_in(&p.scope(), f, limit)
        .await?
        .into_iter()
        .map(|view| BoardTicket {
            sla: ticket_sla(&view, now),
            view,
        })
        .collect())
}

#[utoipa::path(get, path = "/api/v1/tickets", tag = "tickets", params(ListQuery),
    responses((status = 200, description = "Tickets in scope, newest first, with GTI/GTR minutes left, breaches and penalties")))]
pub(crate) async fn list(
    State(s): State<AppState>,
    p: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<BoardTicket>>, ApiError> {
    Ok(Json(
        board(&s, &p, &q.filter(), q.limit.unwrap_or(500)).await?,
    ))
}

#[derive(Debug, Serialize)]
pub struct TicketDetail {
    #[serde(flatten)]
    pub ticket: BoardTicket,
    pub devices: Vec<String>,
    pub events: Vec<TicketEventRow>,
}

async fn find(s: &AppState, p: &Principal, reference: &str) -> Result<BoardTicket, ApiError> {
    if reference.len() > 64 {
        return Err(ApiError::BadRequest("ticket reference too long".into()));
    }
    let f = TicketFilter {
        reference: Some(reference.to_string()),
        ..Default::default()
    };
    board(s, p, &f, 1)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("no ticket {reference}")))
}

#[utoipa::path(get, path = "/api/v1/tickets/{reference}", tag = "tickets",
    params(("reference" = String, Path, description = "e.g. PARC-2026-000042")),
    responses((status = 200, description = "The ticket, its devices and history"),
        (status = 404, description = "Unknown, or outside the caller's scope")))]
pub(crate) async fn one(
    State(s): State<AppState>,
    p: Principal,
    Path(reference): Path<String>,
) -> Result<Json<TicketDetail>, ApiError> {
    let ticket = find(&s, &p, &reference).await?;
    let id = ticket.view.ticket.id;
    Ok(Json(TicketDetail {
        devices: s.ingest.store.ticket_devices(id).await?,
        events: s.ingest.store.ticket_events(id).await?,
        ticket,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct StatusChange {
    /// acknowledged, in_progress, resolved, rejected, closed, reopened.
    status: String,
    note: Option<String>,
}

/// Moves a ticket the caller may see. Contract holders may acknowledge, start, resolve
/// or reject the tickets of their queue; technicians and administrators the rest;
/// viewers nothing. A technician's change to a holder's ticket is sent to the holder.
#[utoipa::path(post, path = "/api/v1/tickets/{reference}/status", tag = "tickets",
    params(("reference" = String, Path, description = "Ticket reference")),
    request_body = StatusChange,
    responses((status = 200, description = "The ticket after the change"),
        (status = 403, description = "Read-only role"), (status = 404, description = "Unknown or out of scope"),
        (status = 409, description = "Not allowed from its status, or changed meanwhile")))]
pub(crate) async fn change_status(
    State(s): State<AppState>,
    p: Principal,
    Path(reference): Path<String>,
    body: Result<Json<StatusChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<TicketDetail>, ApiError> {
    let Json(change) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    apply_status_change(&s, &p, &reference, &change.status, change.note.as_deref()).await?;
    one(State(s), p, Path(reference)).await
}

/// The statuses `p` may move a ticket in `from` to (none for a read-only role): what the
/// dashboard offers next to each ticket.
pub(crate) fn next_statuses(p: &Principal, from: &str) -> Vec<Status> {
    let Some(from) = Status::parse(from) else {
        return Vec::new();
    };
    if !p.may_update_tickets() {
        return Vec::new();
    }
    let actor = if p.role == Role::Holder {
        Actor::Holder
    } else {
        Actor::Technician
    };
    Status::ALL
        .into_iter()
        .filter(|&to| check_transition(from, to, actor).is_ok())
        .collect()
}

/// Moves ticket `reference`, as seen by `p`, to `to` (the API's and the dashboard's
/// form's common path): scope, role, lifecycle and a concurrent change are all checked.
pub(crate) async fn apply_status_change(
    s: &AppState,
    p: &Principal,
    reference: &str,
    to: &str,
    note: Option<&str>,
) -> Result<(), ApiError> {
    let ticket = find(s, p, reference).await?;
    if !p.may_update_tickets() {
        return Err(forbidden());
    }
    let to =
        Status::parse(to).ok_or_else(|| ApiError::BadRequest(format!("unknown status {to:?}")))?;
    let t = &ticket.view.ticket;
    let from = Status::parse(&t.status).ok_or_else(|| {
        ApiError::BadRequest(format!("the ticket's status {:?} is unknown", t.status))
    })?;
    let actor = if p.role == Role::Holder {
        Actor::Holder
    } else {
        Actor::Technician
    };
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.len() > 2000) {
        return Err(ApiError::BadRequest(
            "`note` is longer than 2000 bytes".into(),
        ));
    }
    check_transition(from, to, actor).map_err(|e| ApiError::Refused {
        status: StatusCode::CONFLICT,
        code: "transition_refused",
        message: e.to_string(),
    })?;
    let notify = match (&t.holder_id, actor, t.queue.as_str()) {
        (Some(h), Actor::Technician, "holder") => {
            s.ingest
                .store
                .holder_channels(h, s.web.email_enabled)
                .await?
        }
        _ => Vec::new(),
    };
    let actor_label = format!("{} ({})", actor.as_str(), p.login);
    let moved = s
        .ingest
        .store
        .change_ticket_status(
            t.id,
            from.as_str(),
            to.as_str(),
            &actor_label,
            note,
            &notify,
            Utc::now(),
        )
        .await?;
    if !moved {
        return Err(ApiError::Refused {
            status: StatusCode::CONFLICT,
            code: "changed_meanwhile",
            message: "the ticket changed meanwhile: read it again".into(),
        });
    }
    if !notify.is_empty() {
        s.web.dispatch_wakeup.notify_one();
    }
    tracing::info!(ticket = %reference, from = from.as_str(), to = to.as_str(), login = %p.login, "ticket status changed");
    Ok(())
}
