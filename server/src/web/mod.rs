//! The technicians' dashboard: server-rendered French HTML (askama templates in
//! `server/templates/`, checked at compile time), readable without JavaScript; a few
//! lines of JS only for the live totals (Server-Sent Events).
//!
//! Handlers wire the store's scoped reads into templates. They must never query
//! outside the logged-in principal's scope (every read takes `principal.scope()`), never
//! print text a device sent unescaped, and never accept a form without its CSRF token.

pub mod charts;
pub mod i18n;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use crate::auth::Scope;
use crate::http::ApiError;
use crate::http_auth::{
    AppState, LOGIN_CSRF_COOKIE, LoginOutcome, SESSION_COOKIE, WebSession, cookie_value, set_cookie,
};
use crate::procurement::{DeviceWarranty, device_warranty, today_in_france};
use crate::store::{
    CartRow, DeviceState, EventRow, FleetDevice, FleetFilter, FleetPage, GroupCounts,
    InventoryChangeRow, Overview, Reconciliation, Usage,
};
use i18n::{FR, Tr};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", axum::routing::post(logout))
        .route("/", get(overview))
        .route("/devices/{id}", get(device))
        .route("/warranties", get(warranties))
        .route("/carts", get(carts))
        .route("/usage", get(usage))
        .route("/reconciliation", get(reconciliation))
        .route("/lots", get(lots))
        .route("/tickets", get(tickets))
        .route(
            "/tickets/{reference}/status",
            axum::routing::post(ticket_status),
        )
        .route("/live/overview", get(live_overview))
}

/// A date and time for the pages, in French wall-clock time (the schools' and the
/// technicians' own; GTI/GTR deadlines are counted in it too).
pub fn dt<T: Instant>(t: T) -> String {
    crate::procurement::france_local_time(t.instant())
        .format("%d/%m/%Y %H:%M")
        .to_string()
}

/// A date and time however deeply the template borrowed it.
pub trait Instant {
    fn instant(&self) -> DateTime<Utc>;
}

impl Instant for DateTime<Utc> {
    fn instant(&self) -> DateTime<Utc> {
        *self
    }
}

impl<T: Instant> Instant for &T {
    fn instant(&self) -> DateTime<Utc> {
        (**self).instant()
    }
}

/// Cents however deeply the template borrowed them.
pub trait Cents {
    fn cents(&self) -> i64;
}

impl Cents for i64 {
    fn cents(&self) -> i64 {
        *self
    }
}

impl<T: Cents> Cents for &T {
    fn cents(&self) -> i64 {
        (**self).cents()
    }
}

/// Euros for the pages.
pub fn eur<C: Cents>(c: C) -> String {
    crate::scorecard::euros(c.cents())
}

/// The header's view of the logged-in user.
pub struct UserView {
    pub name: String,
    pub role: &'static str,
    pub csrf: String,
    pub all_scope: bool,
}

impl UserView {
    fn of(s: &WebSession) -> Option<Self> {
        Some(Self {
            name: s.principal.display_name.clone(),
            role: FR.role(&s.principal.role),
            csrf: s.csrf.clone(),
            all_scope: s.principal.scope() == Scope::All,
        })
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage {
    t: &'static Tr,
    user: Option<UserView>,
    heading: String,
    message: String,
}

/// A failure rendered as a page (the JSON API's errors stay JSON).
pub struct PageError {
    status: StatusCode,
    page: Box<ErrorPage>,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        (self.status, *self.page).into_response()
    }
}

impl PageError {
    fn new(session: &WebSession, status: StatusCode, heading: &str, message: String) -> Self {
        Self {
            status,
            page: Box::new(ErrorPage {
                t: &FR,
                user: UserView::of(session),
                heading: heading.to_string(),
                message,
            }),
        }
    }

    fn from_api(session: &WebSession, e: ApiError) -> Self {
        let (status, heading) = match &e {
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "Introuvable"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Requête incorrecte"),
            ApiError::Refused { status, .. } => (*status, "Refusé"),
            ApiError::Store(err) => {
                tracing::error!(error = %err, "page failed on storage");
                return Self::new(
                    session,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Indisponible",
                    "La base de données ne répond pas ; réessayez dans un instant.".into(),
                );
            }
        };
        Self::new(session, status, heading, e.to_string())
    }
}

trait OrPage<T> {
    fn or_page(self, s: &WebSession) -> Result<T, PageError>;
}

impl<T, E: Into<ApiError>> OrPage<T> for Result<T, E> {
    fn or_page(self, s: &WebSession) -> Result<T, PageError> {
        self.map_err(|e| PageError::from_api(s, e.into()))
    }
}

// --- Login -------------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    t: &'static Tr,
    user: Option<UserView>,
    csrf: String,
    error: Option<&'static str>,
}

fn login_page_with(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&'static str>,
) -> Response {
    let csrf = crate::auth::new_secret();
    let cookie = set_cookie(&state.web, headers, LOGIN_CSRF_COOKIE, &csrf, None);
    (
        status,
        [(header::SET_COOKIE, cookie)],
        LoginPage {
            t: &FR,
            user: None,
            csrf,
            error,
        },
    )
        .into_response()
}

async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    login_page_with(&state, &headers, StatusCode::OK, None)
}

#[derive(Deserialize)]
struct LoginForm {
    login: String,
    password: String,
    csrf: String,
}

async fn login_submit(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, ApiError> {
    let expected = cookie_value(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !crate::auth::same_secret(&expected, &f.csrf) {
        return Ok(login_page_with(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            Some("Formulaire expiré : recommencez."),
        ));
    }
    if f.login.len() > 200 || f.password.len() > 1024 {
        return Ok(login_page_with(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some(FR.login_wrong),
        ));
    }
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| *a);
    Ok(
        match crate::http_auth::login(&state, peer, &f.login, &f.password).await? {
            LoginOutcome::Ok(secret) => {
                let session = set_cookie(
                    &state.web,
                    &headers,
                    SESSION_COOKIE,
                    &secret,
                    Some(state.web.session_ttl),
                );
                let clear = set_cookie(
                    &state.web,
                    &headers,
                    LOGIN_CSRF_COOKIE,
                    "",
                    Some(chrono::Duration::zero()),
                );
                let mut r = Redirect::to("/").into_response();
                *r.status_mut() = StatusCode::SEE_OTHER;
                r.headers_mut().append(header::SET_COOKIE, session);
                r.headers_mut().append(header::SET_COOKIE, clear);
                r
            }
            LoginOutcome::Wrong => login_page_with(
                &state,
                &headers,
                StatusCode::UNAUTHORIZED,
                Some(FR.login_wrong),
            ),
            LoginOutcome::Throttled(_) => login_page_with(
                &state,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                Some(FR.login_throttled),
            ),
        },
    )
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    session: WebSession,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Result<Response, ApiError> {
    session.check_csrf(&f.csrf)?;
    crate::http_auth::logout(State(state.clone()), &headers).await?;
    let clear = set_cookie(
        &state.web,
        &headers,
        SESSION_COOKIE,
        "",
        Some(chrono::Duration::zero()),
    );
    let mut r = Redirect::to("/login").into_response();
    *r.status_mut() = StatusCode::SEE_OTHER;
    r.headers_mut().append(header::SET_COOKIE, clear);
    Ok(r)
}

// --- Fleet overview ----------------------------------------------------------------

/// The overview's query string, kept as text to re-render the form and links.
#[derive(Debug, Default, Deserialize)]
struct OverviewQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    organisation: String,
    #[serde(default)]
    site: String,
    #[serde(default)]
    lot: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    after: String,
}

impl OverviewQuery {
    fn filter(&self) -> Result<FleetFilter, ApiError> {
        let opt = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        Ok(FleetFilter {
            q: opt(&self.q),
            state: match opt(&self.state) {
                None => None,
                Some(s) => Some(
                    DeviceState::parse(&s)
                        .ok_or_else(|| ApiError::BadRequest(format!("unknown state {s:?}")))?,
                ),
            },
            organisation: opt(&self.organisation),
            site: opt(&self.site),
            lot: opt(&self.lot),
            model: opt(&self.model),
            after: opt(&self.after),
        })
    }

    /// The query string without `after`, then with `after` if given.
    fn encode(&self, after: Option<&str>) -> String {
        let mut s = url_pairs(&[
            ("q", &self.q),
            ("state", &self.state),
            ("organisation", &self.organisation),
            ("site", &self.site),
            ("lot", &self.lot),
            ("model", &self.model),
        ]);
        if let Some(a) = after {
            if !s.is_empty() {
                s.push('&');
            }
            s.push_str(&url_pairs(&[("after", a)]));
        }
        s
    }
}

fn url_pairs(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Template, WebTemplate)]
#[template(path = "overview.html")]
struct OverviewPage<'a> {
    t: &'static Tr,
    user: Option<UserView>,
    o: &'a Overview,
    q: &'a OverviewQuery,
    states: Vec<(&'static str, &'static str)>,
    page: &'a FleetPage,
    query_string: String,
    first_query: String,
    next_query: Option<String>,
    has_after: bool,
    tables: Vec<(&'static str, &'static str, &'a Vec<GroupCounts>)>,
}

async fn overview(
    State(state): State<AppState>,
    session: WebSession,
    Query(q): Query<OverviewQuery>,
) -> Result<Response, PageError> {
    let scope = session.principal.scope();
    let filter = q.filter().or_page(&session)?;
    let now = Utc::now();
    let store = &state.ingest.store;
    let t = &state.web.thresholds;
    let o = store
        .fleet_overview(&scope, t, now)
        .await
        .or_page(&session)?;
    let page = store
        .fleet_page(&scope, &filter, 50, t, now)
        .await
        .or_page(&session)?;
    let states = DeviceState::ALL
        .iter()
        .map(|s| (s.as_str(), FR.state(*s)))
        .collect();
    let tables = vec![
        (FR.by_authority, "organisation", &o.by_authority),
        (FR.by_site, "site", &o.by_site),
        (FR.by_lot, "lot", &o.by_lot),
        (FR.by_model, "model", &o.by_model),
    ];
    Ok(OverviewPage {
        t: &FR,
        user: UserView::of(&session),
        o: &o,
        q: &q,
        states,
        page: &page,
        query_string: q.encode(None),
        first_query: q.encode(None),
        next_query: page.next_after.as_deref().map(|a| q.encode(Some(a))),
        has_after: !q.after.is_empty(),
        tables,
    }
    .into_response())
}

/// Pushes the scope's totals every 10 s while the overview is open.
async fn live_overview(
    State(state): State<AppState>,
    session: WebSession,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let scope = session.principal.scope();
    let stream = async_stream(state, scope);
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn async_stream(
    state: AppState,
    scope: Scope,
) -> impl futures_util::Stream<Item = Result<Event, Infallible>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(1);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            let totals = match state
                .ingest
                .store
                .fleet_overview(&scope, &state.web.thresholds, Utc::now())
                .await
            {
                Ok(o) => o.totals,
                Err(e) => {
                    tracing::warn!(error = %e, "live overview could not read the store");
                    continue;
                }
            };
            let event = Event::default()
                .event("totals")
                .json_data(totals)
                .expect("counts serialise");
            // The browser went away: stop polling for it.
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    tokio_stream_from(rx)
}

/// A receiver as a stream, without pulling in tokio-stream.
fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

// --- Device page ---------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "device.html")]
struct DevicePage {
    t: &'static Tr,
    user: Option<UserView>,
    d: FleetDevice,
    warranty: Option<DeviceWarranty>,
    charts: Vec<(&'static str, Option<String>)>,
    changes: Vec<InventoryChangeRow>,
    events: Vec<EventRow>,
    tickets: Vec<TicketLine>,
}

async fn device(
    State(state): State<AppState>,
    session: WebSession,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let d = crate::http::visible(&state, &session.principal, &id)
        .await
        .or_page(&session)?;
    let store = &state.ingest.store;
    let device_id = crate::http::device_id(&d.device_id).or_page(&session)?;
    let now = Utc::now();
    let warranty = store
        .delivered_device(&d.device_id)
        .await
        .or_page(&session)?
        .map(|dd| device_warranty(&dd, today_in_france(now)));
    // Hourly aggregates over 90 days once there are enough of them; until then the raw
    // samples of the last 7 days show more than a dot.
    let hourly = store
        .hourly_series(&device_id, now - chrono::Duration::days(90), now)
        .await
        .or_page(&session)?;
    let (battery, temperature): (Vec<_>, Vec<_>) = if hourly.len() >= 24 {
        (
            hourly
                .iter()
                .filter_map(|h| Some((h.hour, h.battery_health_min?)))
                .collect(),
            hourly
                .iter()
                .filter_map(|h| Some((h.hour, h.temperature_max_celsius?)))
                .collect(),
        )
    } else {
        let raw = store
            .health_series(&device_id, now - chrono::Duration::days(7), now)
            .await
            .or_page(&session)?;
        (
            raw.iter()
                .filter_map(|h| Some((h.collected_at, h.battery_health_percent?)))
                .collect(),
            raw.iter()
                .filter_map(|h| Some((h.collected_at, h.temperature_max_celsius?)))
                .collect(),
        )
    };
    let disk = disk_wear(
        &store
            .health_bodies_with(
                &device_id,
                now - chrono::Duration::days(30),
                now,
                "\"storage\"",
            )
            .await
            .or_page(&session)?,
    );
    let charts = vec![
        (
            FR.chart_battery,
            charts::line_chart(FR.chart_battery, &battery, (0.0, 100.0)),
        ),
        (
            FR.chart_temperature,
            charts::line_chart(FR.chart_temperature, &temperature, (0.0, 120.0)),
        ),
        (
            FR.chart_disk,
            charts::line_chart(FR.chart_disk, &disk, (0.0, 100.0)),
        ),
    ];
    let tickets = crate::http_tickets::board(
        &state,
        &session.principal,
        &crate::store::TicketFilter {
            device: Some(d.device_id.clone()),
            ..Default::default()
        },
        100,
    )
    .await
    .or_page(&session)?
    .iter()
    .map(|b| ticket_line(b, &session.principal))
    .collect();
    Ok(DevicePage {
        t: &FR,
        user: UserView::of(&session),
        tickets,
        changes: store
            .inventory_changes(&device_id)
            .await
            .or_page(&session)?,
        events: store
            .device_events(&d.device_id, 50)
            .await
            .or_page(&session)?,
        d,
        warranty,
        charts,
    }
    .into_response())
}

/// Disk wear over time: the highest NVMe "percentage used" (or, for SATA disks without
/// it, nothing) among the device's disks in each sample carrying SMART data.
fn disk_wear(bodies: &[(DateTime<Utc>, String)]) -> Vec<(DateTime<Utc>, f64)> {
    bodies
        .iter()
        .filter_map(|(at, body)| {
            let h: parc_protocol::Health = serde_json::from_str(body).ok()?;
            let worst = h
                .storage
                .iter()
                .filter_map(|s| s.nvme_percentage_used_percent)
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))?;
            Some((*at, worst))
        })
        .collect()
}

// --- Warranties ---------------------------------------------------------------------

#[derive(Deserialize)]
struct WarrantyQuery {
    within_days: Option<i64>,
}

#[derive(Template, WebTemplate)]
#[template(path = "warranties.html")]
struct WarrantiesPage {
    t: &'static Tr,
    user: Option<UserView>,
    within: i64,
    buckets: Vec<(i64, usize)>,
    groupings: Vec<(&'static str, Vec<Ending>)>,
    rows: Vec<DeviceWarranty>,
}

/// A group's count of warranties ending within 30, 60 and 90 days.
type Ending = (String, [usize; 3]);

/// Days until the earlier of the warranty and battery warranty ends still ahead.
fn days_left(w: &DeviceWarranty, today: NaiveDate) -> Option<i64> {
    [w.warranty.end, w.warranty.battery_end]
        .into_iter()
        .flatten()
        .filter(|e| *e > today)
        .map(|e| (e - today).num_days())
        .min()
}

async fn warranties(
    State(state): State<AppState>,
    session: WebSession,
    Query(q): Query<WarrantyQuery>,
) -> Result<Response, PageError> {
    let within = match q.within_days.unwrap_or(90) {
        n @ (30 | 60 | 90) => n,
        _ => 90,
    };
    let today = today_in_france(Utc::now());
    let all = state
        .ingest
        .store
        .delivered_devices_in(&session.principal.scope())
        .await
        .or_page(&session)?;
    let soon: Vec<(i64, DeviceWarranty)> = all
        .iter()
        .map(|d| device_warranty(d, today))
        .filter_map(|w| Some((days_left(&w, today).filter(|d| *d <= 90)?, w)))
        .collect();
    let bucket = |d: i64| [d <= 30, d <= 60, d <= 90];
    let mut by_lot: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    let mut by_site: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    for (d, w) in &soon {
        for (map, key) in [
            (
                &mut by_lot,
                format!("{} n°{} — {}", w.contract, w.lot, w.lot_title),
            ),
            (&mut by_site, w.site.clone()),
        ] {
            let e = map.entry(key).or_default();
            for (i, hit) in bucket(*d).into_iter().enumerate() {
                e[i] += usize::from(hit);
            }
        }
    }
    let buckets = [30, 60, 90]
        .into_iter()
        .map(|n| (n, soon.iter().filter(|(d, _)| *d <= n).count()))
        .collect();
    let mut rows: Vec<(i64, DeviceWarranty)> =
        soon.into_iter().filter(|(d, _)| *d <= within).collect();
    rows.sort_by_key(|(d, w)| (*d, w.serial.clone()));
    Ok(WarrantiesPage {
        t: &FR,
        user: UserView::of(&session),
        within,
        buckets,
        groupings: vec![
            (FR.by_lot, by_lot.into_iter().collect()),
            (FR.by_site, by_site.into_iter().collect()),
        ],
        rows: rows.into_iter().map(|(_, w)| w).collect(),
    }
    .into_response())
}

// --- Carts -------------------------------------------------------------------------

struct CartDeviceView {
    serial: String,
    model: String,
    device_id: Option<String>,
    last_seen: Option<DateTime<Utc>>,
    battery: Option<f64>,
}

struct CartView {
    name: String,
    site_name: String,
    home_classroom: Option<String>,
    last_seen: Option<DateTime<Utc>>,
    /// Battery health: min, median, max over the cart's devices that report one.
    spread: Option<(f64, f64, f64)>,
    devices: Vec<CartDeviceView>,
}

#[derive(Template, WebTemplate)]
#[template(path = "carts.html")]
struct CartsPage {
    t: &'static Tr,
    user: Option<UserView>,
    carts: Vec<CartView>,
}

/// Min, median and max of `values` (`None` when empty).
pub fn spread(values: &mut [f64]) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    Some((values[0], median, values[n - 1]))
}

async fn carts(State(state): State<AppState>, session: WebSession) -> Result<Response, PageError> {
    let scope = session.principal.scope();
    let store = &state.ingest.store;
    let rows: Vec<CartRow> = store.carts_in(&scope).await.or_page(&session)?;
    let mut carts = Vec::new();
    for c in rows {
        let ids: Vec<String> = c
            .devices
            .iter()
            .filter_map(|d| d.device_id.clone())
            .collect();
        let latest = store.latest_battery(&ids).await.or_page(&session)?;
        let devices: Vec<CartDeviceView> = c
            .devices
            .into_iter()
            .map(|d| CartDeviceView {
                battery: d.device_id.as_ref().and_then(|id| latest.get(id).copied()),
                serial: d.serial,
                model: d.model,
                device_id: d.device_id,
                last_seen: d.last_seen,
            })
            .collect();
        let mut values: Vec<f64> = devices.iter().filter_map(|d| d.battery).collect();
        carts.push(CartView {
            name: c.name,
            site_name: c.site_name,
            home_classroom: c.home_classroom,
            last_seen: c.last_seen,
            spread: spread(&mut values),
            devices,
        });
    }
    Ok(CartsPage {
        t: &FR,
        user: UserView::of(&session),
        carts,
    }
    .into_response())
}

// --- Usage ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct UsageQuery {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
}

#[derive(Template, WebTemplate)]
#[template(path = "usage.html")]
struct UsagePage {
    t: &'static Tr,
    user: Option<UserView>,
    from: NaiveDate,
    to: NaiveDate,
    u: Usage,
}

async fn usage(
    State(state): State<AppState>,
    session: WebSession,
    Query(q): Query<UsageQuery>,
) -> Result<Response, PageError> {
    let today = today_in_france(Utc::now());
    let to = q.to.unwrap_or(today);
    let from = q.from.unwrap_or(to - chrono::Days::new(30));
    if from > to {
        return Err(PageError::new(
            &session,
            StatusCode::BAD_REQUEST,
            "Période incorrecte",
            "La date de début doit précéder la date de fin.".into(),
        ));
    }
    let start = from.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    let end = (to + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let u = state
        .ingest
        .store
        .usage(&session.principal.scope(), start, end)
        .await
        .or_page(&session)?;
    Ok(UsagePage {
        t: &FR,
        user: UserView::of(&session),
        from,
        to,
        u,
    }
    .into_response())
}

// --- Tickets board -----------------------------------------------------------------

/// A ticket as the board prints it.
pub struct TicketLine {
    reference: String,
    rule: String,
    severity: String,
    device: Option<String>,
    site: String,
    lot: String,
    queue: &'static str,
    status: &'static str,
    opened: String,
    gti: String,
    gtr: String,
    penalty: String,
    breached: bool,
    /// (status, French label) the viewer may move it to; empty: read-only.
    choices: Vec<(&'static str, &'static str)>,
}

fn ticket_line(b: &crate::http_tickets::BoardTicket, p: &crate::auth::Principal) -> TicketLine {
    let t = &b.view.ticket;
    TicketLine {
        choices: crate::http_tickets::next_statuses(p, &t.status)
            .into_iter()
            .map(|s| (s.as_str(), FR.ticket_status(s.as_str())))
            .collect(),
        reference: t.reference.clone(),
        rule: t.rule_id.clone(),
        severity: t.severity.clone(),
        device: t.device_id.clone(),
        site: b.view.site.clone().unwrap_or_default(),
        lot: match (&t.contract_ref, t.lot_number) {
            (Some(c), Some(n)) => format!("{c} n°{n}"),
            _ => String::new(),
        },
        queue: FR.queue(&t.queue),
        status: FR.ticket_status(&t.status),
        opened: dt(t.opened_at),
        gti: FR.countdown(
            b.sla.gti_minutes_left,
            b.sla.gti_breached,
            t.gti_due.is_some(),
        ),
        gtr: FR.countdown(
            b.sla.gtr_minutes_left,
            b.sla.gtr_breached,
            t.gtr_due.is_some(),
        ),
        penalty: crate::scorecard::euros(b.sla.penalty_cents),
        breached: b.sla.gti_breached || b.sla.gtr_breached,
    }
}

#[derive(Deserialize, Default)]
struct BoardQuery {
    #[serde(default)]
    lot: String,
    #[serde(default)]
    holder: String,
    #[serde(default)]
    site: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "tickets.html")]
struct TicketsPage {
    t: &'static Tr,
    user: Option<UserView>,
    rows: Vec<TicketLine>,
    breaches: usize,
    lots: Vec<(String, String)>,
    holders: Vec<(String, String)>,
    sites: Vec<(String, String)>,
    q_lot: String,
    q_holder: String,
    q_site: String,
    csrf: String,
}

async fn tickets(
    State(state): State<AppState>,
    session: WebSession,
    Query(q): Query<BoardQuery>,
) -> Result<Response, PageError> {
    let opt = |v: &str| Some(v.to_string()).filter(|v| !v.is_empty());
    let f = crate::store::TicketFilter {
        open_only: true,
        lot: opt(&q.lot),
        holder: opt(&q.holder),
        site: opt(&q.site),
        ..Default::default()
    };
    let board = crate::http_tickets::board(&state, &session.principal, &f, 1000)
        .await
        .or_page(&session)?;
    // The filter choices: what the caller's scope holds.
    let all = crate::http_tickets::board(
        &state,
        &session.principal,
        &crate::store::TicketFilter {
            open_only: true,
            ..Default::default()
        },
        1000,
    )
    .await
    .or_page(&session)?;
    let mut lots = BTreeMap::new();
    let mut holders = BTreeMap::new();
    let mut sites = BTreeMap::new();
    for b in &all {
        let t = &b.view.ticket;
        if let (Some(c), Some(n)) = (&t.contract_ref, t.lot_number) {
            lots.insert(format!("{c}#{n}"), format!("{c} n°{n}"));
        }
        if let (Some(h), Some(name)) = (&t.holder_id, &b.view.holder) {
            holders.insert(h.clone(), name.clone());
        }
        if let (Some(u), Some(name)) = (&t.site_uai, &b.view.site) {
            sites.insert(u.clone(), name.clone());
        }
    }
    let rows: Vec<TicketLine> = board
        .iter()
        .map(|b| ticket_line(b, &session.principal))
        .collect();
    Ok(TicketsPage {
        t: &FR,
        user: UserView::of(&session),
        breaches: rows.iter().filter(|r| r.breached).count(),
        rows,
        lots: lots.into_iter().collect(),
        holders: holders.into_iter().collect(),
        sites: sites.into_iter().collect(),
        q_lot: q.lot,
        q_holder: q.holder,
        q_site: q.site,
        csrf: session.csrf.clone(),
    }
    .into_response())
}

#[derive(Deserialize)]
struct StatusForm {
    csrf: String,
    status: String,
    #[serde(default)]
    note: String,
}

/// The board's form: the same checks as `POST /api/v1/tickets/{ref}/status` (scope,
/// role, lifecycle), then back to the board.
async fn ticket_status(
    State(state): State<AppState>,
    session: WebSession,
    Path(reference): Path<String>,
    Form(f): Form<StatusForm>,
) -> Result<Response, PageError> {
    session.check_csrf(&f.csrf).or_page(&session)?;
    crate::http_tickets::apply_status_change(
        &state,
        &session.principal,
        &reference,
        &f.status,
        Some(f.note.as_str()),
    )
    .await
    .or_page(&session)?;
    let mut r = Redirect::to("/tickets").into_response();
    *r.status_mut() = StatusCode::SEE_OTHER;
    Ok(r)
}

// --- Lot scorecard --------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "lots.html")]
struct LotsPage {
    t: &'static Tr,
    user: Option<UserView>,
    cards: Vec<crate::scorecard::LotScorecard>,
}

async fn lots(State(state): State<AppState>, session: WebSession) -> Result<Response, PageError> {
    let cards = crate::http_procurement::scoped_scorecards(&state, &session.principal)
        .await
        .or_page(&session)?;
    Ok(LotsPage {
        t: &FR,
        user: UserView::of(&session),
        cards,
    }
    .into_response())
}

// --- Reconciliation ------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "reconciliation.html")]
struct ReconciliationPage {
    t: &'static Tr,
    user: Option<UserView>,
    r: Reconciliation,
}

async fn reconciliation(
    State(state): State<AppState>,
    session: WebSession,
) -> Result<Response, PageError> {
    if session.principal.scope() != Scope::All {
        return Err(PageError::new(
            &session,
            StatusCode::FORBIDDEN,
            "Refusé",
            FR.forbidden.into(),
        ));
    }
    let r = state
        .ingest
        .store
        .reconciliation(500)
        .await
        .or_page(&session)?;
    Ok(ReconciliationPage {
        t: &FR,
        user: UserView::of(&session),
        r,
    }
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_gives_min_median_max() {
        assert_eq!(spread(&mut []), None);
        assert_eq!(spread(&mut [80.0]), Some((80.0, 80.0, 80.0)));
        assert_eq!(spread(&mut [90.0, 50.0, 70.0]), Some((50.0, 70.0, 90.0)));
        assert_eq!(
            spread(&mut [90.0, 50.0, 70.0, 60.0]),
            Some((50.0, 65.0, 90.0))
        );
    }

    #[test]
    fn query_strings_are_percent_encoded() {
        let q = OverviewQuery {
            q: "é <b>&x".into(),
            lot: "M-2024#2".into(),
            ..Default::default()
        };
        assert_eq!(
            q.encode(Some("d-1")),
            "q=%C3%A9%20%3Cb%3E%26x&lot=M-2024%232&after=d-1"
        );
    }
}
