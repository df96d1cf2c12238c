//! Authentication at the HTTP edge: the router's shared state, the [`Principal`]
//! extractor (an `Authorization: Bearer pat_…` API token, or the `parc_session` cookie),
//! the dashboard's [`WebSession`] extractor (redirects to the login page), login and
//! logout, session cookies and CSRF checks.
//!
//! It decides who is asking, never what they may see: scopes are applied by the store.
//! It must never log a password, a session secret or a token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use cookie::{Cookie, SameSite};

use crate::auth::{LoginThrottle, Principal};
use crate::enroll::sha256_hex;
use crate::http::ApiError;
use crate::ingest::Ingest;
use crate::store::StateThresholds;

pub const SESSION_COOKIE: &str = "parc_session";
/// Double-submit token of the login form (there is no session yet to hold it).
pub const LOGIN_CSRF_COOKIE: &str = "parc_login_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Settings and shared state of the dashboard and API.
#[derive(Debug)]
pub struct Web {
    /// Mark cookies `Secure` (HTTPS, usually through a reverse proxy). Requests forwarded
    /// with `X-Forwarded-Proto: https` get it anyway.
    pub secure_cookies: bool,
    pub session_ttl: chrono::Duration,
    pub throttle: LoginThrottle,
    pub thresholds: StateThresholds,
    /// Whether tickets also go out by e-mail (an SMTP server is configured).
    pub email_enabled: bool,
    /// Wakes the outbox dispatcher when a status change queued a notice.
    pub dispatch_wakeup: Arc<tokio::sync::Notify>,
}

impl Web {
    pub fn new(secure_cookies: bool) -> Self {
        Self {
            secure_cookies,
            session_ttl: chrono::Duration::hours(10),
            // Five wrong passwords per login name or client address per 15 minutes.
            throttle: LoginThrottle::new(5, Duration::from_secs(15 * 60)),
            thresholds: StateThresholds::default(),
            email_enabled: false,
            dispatch_wakeup: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Notices queued by status changes go out through this dispatcher.
    pub fn with_dispatch(mut self, wakeup: Arc<tokio::sync::Notify>, email_enabled: bool) -> Self {
        self.dispatch_wakeup = wakeup;
        self.email_enabled = email_enabled;
        self
    }
}

/// The router's state. Handlers that only need the ingest side take `State<Arc<Ingest>>`.
#[derive(Clone)]
pub struct AppState {
    pub ingest: Arc<Ingest>,
    pub web: Arc<Web>,
}

impl FromRef<AppState> for Arc<Ingest> {
    fn from_ref(s: &AppState) -> Self {
        s.ingest.clone()
    }
}

impl FromRef<AppState> for Arc<Web> {
    fn from_ref(s: &AppState) -> Self {
        s.web.clone()
    }
}

/// How a request authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Token,
    /// A browser session and its CSRF token.
    Session {
        csrf: String,
    },
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::Refused {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthenticated",
        message: message.to_string(),
    }
}

pub fn forbidden() -> ApiError {
    ApiError::Refused {
        status: StatusCode::FORBIDDEN,
        code: "forbidden",
        message: "your role does not allow this".into(),
    }
}

pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| Cookie::split_parse(v.to_string()))
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// Authenticates `parts`: a bearer token first, then the session cookie.
pub async fn authenticate(
    parts: &Parts,
    state: &AppState,
) -> Result<Option<(Principal, Credential)>, ApiError> {
    let store = &state.ingest.store;
    let now = Utc::now();
    if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer pat_…`"))?;
        let (id, secret) = crate::auth::split_api_token(token.trim())
            .ok_or_else(|| unauthenticated("malformed API token"))?;
        return match store.api_token(id, now).await? {
            Some((p, hash)) if crate::auth::same_secret(&hash, &sha256_hex(secret)) => {
                Ok(Some((p, Credential::Token)))
            }
            _ => Err(unauthenticated(
                "unknown, revoked or expired API token, or disabled account",
            )),
        };
    }
    let Some(secret) = cookie_value(&parts.headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    Ok(store
        .session(&sha256_hex(&secret), now)
        .await?
        .map(|(p, csrf)| (p, Credential::Session { csrf })))
}

/// API extractor: 401 without valid credentials; for state-changing methods with a
/// session cookie, 403 unless the `X-CSRF-Token` header carries the session's token.
impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some((p, cred)) = authenticate(parts, state).await? else {
            return Err(unauthenticated(
                "log in, or send `Authorization: Bearer pat_…` (parc-server user token)",
            ));
        };
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if let (false, Credential::Session { csrf }) = (safe, &cred) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !crate::auth::same_secret(sent, csrf) {
                return Err(ApiError::Refused {
                    status: StatusCode::FORBIDDEN,
                    code: "csrf",
                    message: "missing or wrong X-CSRF-Token header".into(),
                });
            }
        }
        Ok(p)
    }
}

/// A logged-in dashboard user (session cookie only) and the CSRF token its forms carry.
/// Without a session the request is redirected to the login page.
pub struct WebSession {
    pub principal: Principal,
    pub csrf: String,
}

pub enum WebRejection {
    Login,
    Error(ApiError),
}

impl IntoResponse for WebRejection {
    fn into_response(self) -> Response {
        match self {
            WebRejection::Login => Redirect::to("/login").into_response(),
            WebRejection::Error(e) => e.into_response(),
        }
    }
}

impl FromRequestParts<AppState> for WebSession {
    type Rejection = WebRejection;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebRejection> {
        if parts.headers.contains_key(header::AUTHORIZATION) {
            // API tokens are for the API: the dashboard's forms rely on the session's
            // CSRF token.
            return Err(WebRejection::Login);
        }
        match authenticate(parts, state)
            .await
            .map_err(WebRejection::Error)?
        {
            Some((principal, Credential::Session { csrf })) => Ok(WebSession { principal, csrf }),
            _ => Err(WebRejection::Login),
        }
    }
}

impl WebSession {
    /// Checks the `csrf` field of a submitted form.
    pub fn check_csrf(&self, sent: &str) -> Result<(), ApiError> {
        if crate::auth::same_secret(sent, &self.csrf) {
            Ok(())
        } else {
            Err(ApiError::Refused {
                status: StatusCode::FORBIDDEN,
                code: "csrf",
                message: "the form is stale: reload the page".into(),
            })
        }
    }
}

fn secure(web: &Web, headers: &HeaderMap) -> bool {
    web.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, path `/`, Secure under TLS.
pub fn set_cookie(
    web: &Web,
    headers: &HeaderMap,
    name: &str,
    value: &str,
    max_age: Option<chrono::Duration>,
) -> HeaderValue {
    let mut c = Cookie::build((name.to_string(), value.to_string()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .secure(secure(web, headers));
    if let Some(age) = max_age {
        c = c.max_age(cookie::time::Duration::seconds(age.num_seconds()));
    }
    HeaderValue::from_str(&c.build().to_string()).expect("cookie text is a valid header")
}

/// The outcome of a login attempt, for the page to render.
pub enum LoginOutcome {
    /// The session secret to set as cookie.
    Ok(String),
    Wrong,
    Throttled(Duration),
}

/// Checks a login and password (throttled per login and per client address) and opens a
/// session.
pub async fn login(
    state: &AppState,
    peer: Option<SocketAddr>,
    login: &str,
    password: &str,
) -> Result<LoginOutcome, ApiError> {
    let login = login.trim().to_lowercase();
    let user_key = format!("u:{login}");
    let ip_key = format!(
        "ip:{}",
        peer.map(|p| p.ip().to_string()).unwrap_or_default()
    );
    let keys = [user_key.as_str(), ip_key.as_str()];
    let throttle = &state.web.throttle;
    if let Some(wait) = throttle.locked(&keys, Instant::now()) {
        return Ok(LoginOutcome::Throttled(wait));
    }
    let account = state.ingest.store.account(&login).await?;
    let password = password.to_string();
    let hash = account
        .as_ref()
        .filter(|a| !a.disabled)
        .map(|a| a.password_hash.clone());
    // argon2 takes tens of milliseconds of CPU: off the async workers. Unknown logins
    // check a decoy so that timing does not tell which logins exist.
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(h) => crate::auth::verify_password(&h, &password),
        None => {
            crate::auth::verify_password(crate::auth::decoy_hash(), &password);
            false
        }
    })
    .await
    .unwrap_or(false);
    if !ok {
        throttle.failed(&keys, Instant::now());
        tracing::warn!(login = %login.chars().take(64).collect::<String>(), "login refused");
        return Ok(LoginOutcome::Wrong);
    }
    throttle.succeeded(&[user_key.as_str()]);
    let secret = crate::auth::new_secret();
    let now = Utc::now();
    state
        .ingest
        .store
        .create_session(
            &sha256_hex(&secret),
            &login,
            &crate::auth::new_secret(),
            now,
            now + state.web.session_ttl,
        )
        .await?;
    tracing::info!(login = %login, "logged in");
    Ok(LoginOutcome::Ok(secret))
}

/// Ends the session named by the request's cookie, if any.
pub async fn logout(State(state): State<AppState>, headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(secret) = cookie_value(headers, SESSION_COOKIE) {
        state
            .ingest
            .store
            .delete_session(&sha256_hex(&secret))
            .await?;
    }
    Ok(())
}
