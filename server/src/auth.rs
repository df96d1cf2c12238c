//! Who is asking, and what they may see: roles, the [`Principal`] every dashboard and API
//! request carries, the data [`Scope`] derived from it (which the store applies in its
//! queries), password hashing (argon2id), session and API-token secrets, and login
//! throttling.
//!
//! Pure apart from the operating system's random numbers: no SQL, no HTTP. It must never
//! log or return a secret other than to the one caller that just generated it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use serde::Serialize;

/// What an account may do. Parsed from and stored as its `as_str` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The coordinator's administrators: every organisation, imports, accounts.
    Admin,
    /// An authority's technician: its organisation's sites, devices and tickets (a
    /// coordinator's technician also sees its members').
    Technician,
    /// A contract holder: the devices and tickets of its lots.
    Holder,
    /// Read-only; scoped like a technician when it has an organisation.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Technician, Role::Holder, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::Holder => "holder",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The rows a principal may read. The store turns it into a `WHERE` clause, so a
/// device, site or ticket outside it does not exist for that principal (404, never 403:
/// ids of other tenants are not confirmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    /// Sites owned by this organisation or by a member of the groupement it coordinates.
    Organisation(String),
    /// Deliveries (and so devices and tickets) under lots held by this contract holder.
    Holder(String),
}

/// An authenticated caller, from a session cookie or an API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub login: String,
    pub display_name: String,
    pub role: Role,
    pub organisation_id: Option<String>,
    pub holder_id: Option<String>,
}

/// Why an account's role and attachments do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("a technician account needs --organisation")]
    TechnicianWithoutOrganisation,
    #[error("a holder account needs --holder (a contract holder id)")]
    HolderWithoutHolder,
    #[error("only a holder account takes --holder")]
    HolderOnNonHolder,
    #[error("an admin or holder account takes no --organisation")]
    OrganisationNotAllowed,
    #[error("unknown role `{0}`: use admin, technician, holder or viewer")]
    UnknownRole(String),
    #[error("the login must be 1 to 64 characters among a-z, 0-9, '.', '-', '_' and '@'")]
    BadLogin,
    #[error("the password must have at least 12 characters")]
    WeakPassword,
}

/// Checks that `role` has exactly the attachment it needs.
pub fn check_account(
    login: &str,
    role: Role,
    organisation: Option<&str>,
    holder: Option<&str>,
) -> Result<(), AccountError> {
    let login_ok = !login.is_empty()
        && login.len() <= 64
        && login
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_@".contains(c));
    if !login_ok {
        return Err(AccountError::BadLogin);
    }
    match role {
        Role::Technician if organisation.is_none() => {
            Err(AccountError::TechnicianWithoutOrganisation)
        }
        Role::Holder if holder.is_none() => Err(AccountError::HolderWithoutHolder),
        Role::Admin | Role::Holder if organisation.is_some() => {
            Err(AccountError::OrganisationNotAllowed)
        }
        r if r != Role::Holder && holder.is_some() => Err(AccountError::HolderOnNonHolder),
        _ => Ok(()),
    }
}

impl Principal {
    pub fn scope(&self) -> Scope {
        match (self.role, &self.organisation_id, &self.holder_id) {
            (Role::Admin, _, _) => Scope::All,
            (Role::Holder, _, Some(h)) => Scope::Holder(h.clone()),
            (Role::Technician | Role::Viewer, Some(o), _) => Scope::Organisation(o.clone()),
            (Role::Viewer, None, _) => Scope::All,
            // An account whose attachment is missing (refused at creation) sees nothing
            // rather than everything.
            (Role::Technician, None, _) | (Role::Holder, _, None) => {
                Scope::Organisation(String::new())
            }
        }
    }

    /// Imports and other fleet-wide writes.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the caller may change a ticket's status (within its scope).
    pub fn may_update_tickets(&self) -> bool {
        self.role != Role::Viewer
    }
}

/// argon2id with the RFC 9106 "second recommended" memory cost lowered to 19 MiB (the
/// OWASP minimum): a login costs about 20 ms on this class of machine.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("static argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string (`$argon2id$v=19$…`) for `password`.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the operating system's random source");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2id hashing with valid parameters")
        .to_string()
}

/// Whether `password` matches the stored PHC string. An unreadable hash never matches.
pub fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A PHC hash of a random password: verifying against it costs what a real check
/// costs, so an unknown login answers as slowly as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&new_secret()))
}

/// 32 random bytes, URL-safe base64 without padding (43 characters).
pub fn new_secret() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A new API token: its public id and the whole token (`pat_<id>.<secret>`), which is
/// shown once; the store keeps the id and the secret's SHA-256.
pub fn new_api_token() -> (String, String, String) {
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).expect("the operating system's random source");
    let id = format!("pat_{}", hex::encode(id));
    let secret = new_secret();
    let token = format!("{id}.{secret}");
    (id, secret, token)
}

/// Splits `pat_<id>.<secret>` into its id and secret.
pub fn split_api_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    (id.starts_with("pat_") && id.len() <= 40 && !secret.is_empty() && secret.len() <= 128)
        .then_some((id, secret))
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Counts failed logins per key (login name, client address) in a sliding window and
/// refuses further attempts once `max_failures` is reached, until the window passes.
/// In memory: each replica throttles on its own, which still bounds guessing to
/// `replicas × max_failures` per window.
#[derive(Debug)]
pub struct LoginThrottle {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(wait)` when any of `keys` is locked out at `now`.
    pub fn locked(&self, keys: &[&str], now: Instant) -> Option<Duration> {
        let map = self.failures.lock().expect("throttle lock");
        keys.iter()
            .filter_map(|k| map.get(*k))
            .filter(|(n, since)| *n >= self.max_failures && now < *since + self.window)
            .map(|(_, since)| *since + self.window - now)
            .max()
    }

    pub fn failed(&self, keys: &[&str], now: Instant) {
        let mut map = self.failures.lock().expect("throttle lock");
        // Bounded memory: an attacker rotating names cannot grow the map for ever.
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, (_, since)| now < *since + window);
        }
        for k in keys {
            let e = map.entry((*k).to_string()).or_insert((0, now));
            if now >= e.1 + self.window {
                *e = (0, now);
            }
            e.0 += 1;
        }
    }

    pub fn succeeded(&self, keys: &[&str]) {
        let mut map = self.failures.lock().expect("throttle lock");
        for k in keys {
            map.remove(*k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse batterx"));
        assert!(!verify_password("not a hash", "x"));
        assert_ne!(h, hash_password("correct horse battery"), "salted");
    }

    #[test]
    fn scopes_follow_roles() {
        let p = |role, org: Option<&str>, holder: Option<&str>| Principal {
            login: "x".into(),
            display_name: "x".into(),
            role,
            organisation_id: org.map(str::to_string),
            holder_id: holder.map(str::to_string),
        };
        assert_eq!(p(Role::Admin, None, None).scope(), Scope::All);
        assert_eq!(
            p(Role::Technician, Some("metz"), None).scope(),
            Scope::Organisation("metz".into())
        );
        assert_eq!(
            p(Role::Holder, None, Some("h1")).scope(),
            Scope::Holder("h1".into())
        );
        assert_eq!(p(Role::Viewer, None, None).scope(), Scope::All);
        assert_eq!(
            p(Role::Technician, None, None).scope(),
            Scope::Organisation(String::new())
        );
    }

    #[test]
    fn accounts_need_the_right_attachment() {
        use AccountError::*;
        let c = check_account;
        assert_eq!(c("a", Role::Admin, None, None), Ok(()));
        assert_eq!(
            c("a", Role::Technician, None, None),
            Err(TechnicianWithoutOrganisation)
        );
        assert_eq!(c("a", Role::Holder, None, None), Err(HolderWithoutHolder));
        assert_eq!(
            c("a", Role::Holder, Some("o"), Some("h")),
            Err(OrganisationNotAllowed)
        );
        assert_eq!(
            c("a", Role::Viewer, None, Some("h")),
            Err(HolderOnNonHolder)
        );
        assert_eq!(c("A b", Role::Viewer, None, None), Err(BadLogin));
        assert_eq!(c("tech@metz", Role::Viewer, Some("o"), None), Ok(()));
    }

    #[test]
    fn api_tokens_split_and_compare() {
        let (id, secret, token) = new_api_token();
        assert_eq!(
            split_api_token(&token),
            Some((id.as_str(), secret.as_str()))
        );
        assert_eq!(split_api_token("tok_x.y"), None);
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }

    #[test]
    fn throttle_locks_after_failures_and_releases_after_the_window() {
        let t = LoginThrottle::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..2 {
            t.failed(&["u:alice", "ip:1"], t0);
        }
        assert_eq!(t.locked(&["u:alice"], t0), None);
        t.failed(&["u:alice", "ip:1"], t0);
        assert!(t.locked(&["u:alice"], t0).is_some());
        assert!(t.locked(&["ip:1"], t0).is_some());
        assert_eq!(t.locked(&["u:bob"], t0), None);
        assert_eq!(t.locked(&["u:alice"], t0 + Duration::from_secs(61)), None);
        t.failed(&["u:bob"], t0);
        t.succeeded(&["u:bob"]);
        assert_eq!(t.locked(&["u:bob"], t0), None);
    }
}
