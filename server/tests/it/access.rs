//! Access control over HTTP: the authorisation matrix (every API route × every role,
//! cross-tenant ids answering 404), sessions, CSRF, login throttling, API tokens, and
//! that every `/api/` route is in the OpenAPI document and in the matrix.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use parc_server::http_auth::Web;
use parc_server::store::{Store, load_demo_dataset};

use crate::support::TestDevice;

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.0 request with extra header lines.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: x\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A server on port 0 over `store` (no broker: only the HTTP side runs).
pub async fn serve(store: Store) -> SocketAddr {
    let cfg = parc_server::config::ServerConfig::defaults();
    let ingest = Arc::new(parc_server::ingest::Ingest::new(
        store,
        Arc::new(parc_server::metrics::Metrics::new()),
        parc_server::ingest::IngestOptions::from_config(&cfg),
    ));
    let app = parc_server::http::router(ingest, Arc::new(Web::new(false)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(parc_server::http::serve(
        listener,
        app,
        std::future::pending(),
    ));
    addr
}

pub const PASSWORD: &str = "correct horse battery staple";

/// The demo dataset, four devices and one account (with an API token) per role and
/// tenant. Returns (login, token) pairs.
pub async fn fixture(store: &Store) -> Vec<(&'static str, String)> {
    load_demo_dataset(store).await.unwrap();
    for (id, serial) in [
        ("d-valbois-lot2", "PARCDEMO0001"),
        ("d-valbois-lot1", "PARCDEMO0016"),
        ("d-frontiere-lot2", "PARCDEMO0015"),
        ("d-unmatched", "NOTDELIVERED01"),
    ] {
        let mut d = TestDevice::new(id, 3).enrolment();
        d.serial = Some(serial.to_string());
        d.hostname = Some(format!("host-{id}"));
        store.upsert_device(&d, Utc::now()).await.unwrap();
    }
    open_tickets(store).await;
    let mut tokens = Vec::new();
    for (login, role, org, holder) in [
        ("admin", "admin", None, None),
        ("tech-dep", "technician", Some("dep-haute-vallee"), None),
        ("tech-valbois", "technician", Some("commune-valbois"), None),
        ("holder-mobil", "holder", None, Some("mobil-edu")),
        ("holder-ecran", "holder", None, Some("ecran-plus")),
        ("viewer", "viewer", None, None),
        ("viewer-valbois", "viewer", Some("commune-valbois"), None),
    ] {
        parc_server::accounts_cli::add_account(store, login, None, role, org, holder, PASSWORD)
            .await
            .unwrap();
        let t = parc_server::accounts_cli::issue_token(store, login, "test", None)
            .await
            .unwrap();
        tokens.push((login, t));
    }
    tokens
}

/// The fixture's tickets: (device, queue, holder, organisation, lot, site); each opened
/// with a GTI already past (a breach) and a GTR ahead.
const TICKETS: [(&str, &str, &str, &str, u32, &str); 3] = [
    (
        "d-valbois-lot2",
        "holder",
        "mobil-edu",
        "commune-valbois",
        2,
        "0420101G",
    ),
    (
        "d-frontiere-lot2",
        "holder",
        "mobil-edu",
        "cc-pays-fictif",
        2,
        "0570301T",
    ),
    (
        "d-valbois-lot1",
        "holder",
        "ecran-plus",
        "commune-valbois",
        1,
        "0420101G",
    ),
];

/// Opens [`TICKETS`] through the store's maintenance transaction; references are
/// `TEST-<year>-00000N` in order.
pub async fn open_tickets(store: &Store) {
    let notice: parc_protocol::ticket::TicketNotice = serde_json::from_str(include_str!(
        "../../../protocol/tests/data/ticket-notice.json"
    ))
    .unwrap();
    let mut tx = store.begin_maintenance().await.unwrap();
    let now = Utc::now();
    for (device, queue, holder, org, lot, site) in TICKETS {
        let key = format!("device/{device}/battery_worn");
        tx.insert_ticket(
            &parc_server::store::NewTicket {
                kind: "device",
                open_key: &key,
                device_id: Some(device),
                rule_id: "battery_worn",
                category: "warranty_hardware",
                severity: "major",
                queue,
                route_reason: "test",
                holder_id: Some(holder),
                organisation_id: Some(org),
                contract_ref: Some("HV-2024-017"),
                lot_number: Some(lot),
                model: Some("ThinkPad X13 Gen 2i"),
                site_uai: Some(site),
                gti_due: Some(now - chrono::Duration::days(3)),
                gtr_due: Some(now + chrono::Duration::days(3)),
                penalty_per_day_cents: Some(5000),
                at: now - chrono::Duration::days(5),
            },
            "TEST",
            |r| {
                let mut d = notice.ticket.clone();
                d.reference = r.to_string();
                d
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

/// The reference of the fixture's ticket on `device`.
async fn reference_of(store: &Store, device: &str) -> String {
    let f = parc_server::store::TicketFilter {
        device: Some(device.to_string()),
        ..Default::default()
    };
    store
        .tickets_in(&parc_server::auth::Scope::All, &f, 1)
        .await
        .unwrap()[0]
        .ticket
        .reference
        .clone()
}

/// Which fixture tickets (by device) each login may see.
fn sees_ticket(login: &str, device: &str) -> bool {
    match login {
        "admin" | "viewer" | "tech-dep" => true,
        "tech-valbois" | "viewer-valbois" => device.starts_with("d-valbois"),
        "holder-mobil" => device.ends_with("lot2"),
        "holder-ecran" => device == "d-valbois-lot1",
        other => panic!("unknown login {other}"),
    }
}

const DEVICES: [&str; 4] = [
    "d-valbois-lot2",
    "d-valbois-lot1",
    "d-frontiere-lot2",
    "d-unmatched",
];

/// Which of [`DEVICES`] each login may see.
fn sees(login: &str, device: &str) -> bool {
    match login {
        "admin" | "viewer" => true,
        "tech-dep" => device != "d-unmatched",
        "tech-valbois" | "viewer-valbois" => device.starts_with("d-valbois"),
        "holder-mobil" => device.ends_with("lot2"),
        "holder-ecran" => device == "d-valbois-lot1",
        other => panic!("unknown login {other}"),
    }
}

/// Routes only a fleet-wide administrator may use.
fn admin_only(login: &str) -> u16 {
    if login == "admin" { 200 } else { 403 }
}

/// The matrix: (method, route template, expected status for a login). `{id}` routes are
/// run for every device.
type Expect = fn(&str, &str) -> u16;

fn matrix() -> Vec<(&'static str, &'static str, Expect)> {
    let all: Expect = |_, _| 200;
    let device: Expect = |login, d| if sees(login, d) { 200 } else { 404 };
    vec![
        ("GET", "/api/v1/me", all),
        ("GET", "/api/v1/summary", |l, _| admin_only(l)),
        ("GET", "/api/v1/quarantine", |l, _| admin_only(l)),
        ("GET", "/api/v1/reconciliation", |l, _| {
            if l == "admin" || l == "viewer" {
                200
            } else {
                403
            }
        }),
        ("POST", "/api/v1/deliveries/import?dry_run=true", |l, _| {
            admin_only(l)
        }),
        ("GET", "/api/v1/fleet/overview", all),
        ("GET", "/api/v1/devices", all),
        ("GET", "/api/v1/devices.csv", all),
        ("GET", "/api/v1/usage", all),
        ("GET", "/api/v1/warranties", all),
        ("GET", "/api/v1/warranties.csv", all),
        ("GET", "/api/v1/lots", all),
        ("GET", "/api/v1/lots/scorecard", all),
        ("GET", "/api/v1/lots/scorecard.csv", all),
        ("GET", "/api/v1/carts", all),
        ("GET", "/api/v1/orders", all),
        ("GET", "/api/v1/sites", all),
        ("GET", "/api/v1/devices/{id}", device),
        ("GET", "/api/v1/devices/{id}/health", device),
        ("GET", "/api/v1/devices/{id}/health/hourly", device),
        ("GET", "/api/v1/devices/{id}/changes", device),
        ("GET", "/api/v1/devices/{id}/events", device),
        // No inventory was reported: 404 for everyone, but only after the scope check
        // (the body says which).
        ("GET", "/api/v1/devices/{id}/inventory", |_, _| 404),
        ("GET", "/api/v1/devices/{id}/warranty", |l, d| {
            if d != "d-unmatched" && sees(l, d) {
                200
            } else {
                404
            }
        }),
        ("GET", "/api/v1/tickets", all),
        ("GET", "/api/v1/tickets/{reference}", |l, d| {
            if sees_ticket(l, d) { 200 } else { 404 }
        }),
        // Asking for `sent` is refused to people (409) once scope and role pass: the
        // matrix checks who gets that far without changing any ticket.
        ("POST", "/api/v1/tickets/{reference}/status", |l, d| match (
            sees_ticket(l, d),
            l.starts_with("viewer"),
        ) {
            (false, _) => 404,
            (true, true) => 403,
            (true, false) => 409,
        }),
    ]
}

async fn every_api_route_answers_every_role_as_the_matrix_says(store: Store) {
    let tokens = fixture(&store).await;
    let addr = serve(store.clone()).await;
    let manifest = "serial,model,order_reference,lot,site_uai,delivery_date\n";
    let mut failures = Vec::new();
    let mut checked = 0;
    for (method, route, expect) in matrix() {
        let ids: Vec<&str> = if route.contains("{id}") {
            DEVICES.to_vec()
        } else if route.contains("{reference}") {
            TICKETS.iter().map(|t| t.0).collect()
        } else {
            vec![""]
        };
        for id in ids {
            let path = if route.contains("{reference}") {
                route.replace("{reference}", &reference_of(&store, id).await)
            } else {
                route.replace("{id}", id)
            };
            let body = if route.ends_with("/status") {
                "{\"status\": \"sent\"}"
            } else if method == "POST" {
                manifest
            } else {
                ""
            };
            let anon = request(addr, method, &path, &[], body).await;
            if anon.status != 401 {
                failures.push(format!("anonymous {method} {path}: {}", anon.status));
            }
            for (login, token) in &tokens {
                let auth = format!("Bearer {token}");
                let r = request(
                    addr,
                    method,
                    &path,
                    &[
                        ("Authorization", &auth),
                        ("Content-Type", "application/json"),
                    ],
                    body,
                )
                .await;
                let want = expect(login, id);
                checked += 1;
                if r.status != want {
                    failures.push(format!(
                        "{login} {method} {path}: {} (expected {want}) {}",
                        r.status,
                        r.body.chars().take(200).collect::<String>()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 150, "{checked}");
}

async fn lists_hold_only_what_the_scope_allows(store: Store) {
    let tokens = fixture(&store).await;
    let addr = serve(store).await;
    for (login, token) in &tokens {
        let auth = format!("Bearer {token}");
        let h = [("Authorization", auth.as_str())];
        let page = request(addr, "GET", "/api/v1/devices?limit=500", &h, "")
            .await
            .json();
        let listed: BTreeSet<String> = page["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["device_id"].as_str().unwrap().to_string())
            .collect();
        let expected: BTreeSet<String> = DEVICES
            .iter()
            .filter(|d| sees(login, d))
            .map(|d| d.to_string())
            .collect();
        assert_eq!(listed, expected, "{login}");
        let o = request(addr, "GET", "/api/v1/fleet/overview", &h, "")
            .await
            .json();
        assert_eq!(o["totals"]["total"], expected.len(), "{login}: {o}");
        // Every device is silent (never seen): the states add up.
        assert_eq!(o["totals"]["silent"], expected.len(), "{login}");

        let csv = request(addr, "GET", "/api/v1/devices.csv", &h, "").await;
        assert_eq!(
            csv.body.lines().count(),
            expected.len() + 1,
            "{login}: {}",
            csv.body
        );

        let warranties = request(addr, "GET", "/api/v1/warranties", &h, "")
            .await
            .json();
        let sites: BTreeSet<String> = warranties
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["site"].as_str().unwrap().to_string())
            .collect();
        let lots = request(addr, "GET", "/api/v1/lots", &h, "").await.json();
        let holders: BTreeSet<String> = lots
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["holder_id"].as_str().unwrap().to_string())
            .collect();
        match *login {
            "tech-valbois" | "viewer-valbois" => {
                assert_eq!(sites, BTreeSet::from(["0420101G".to_string()]), "{login}")
            }
            "holder-mobil" => {
                assert_eq!(holders, BTreeSet::from(["mobil-edu".to_string()]));
                assert!(
                    warranties.as_array().unwrap().iter().all(|w| w["lot"] == 2),
                    "{warranties}"
                );
            }
            "admin" | "viewer" | "tech-dep" => {
                assert_eq!(warranties.as_array().unwrap().len(), 33, "{login}");
                assert_eq!(holders.len(), 2);
            }
            _ => {}
        }
    }
}

async fn every_api_route_is_documented_and_in_the_matrix(_store: Store) {
    let doc = serde_json::to_value(parc_server::openapi::document()).unwrap();
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let tested: BTreeSet<String> = matrix()
        .iter()
        .map(|(_, r, _)| r.split('?').next().unwrap().to_string())
        .collect();
    // The enrolment POST is the devices' (token-authenticated) route, tested in enrol.rs.
    let documented: BTreeSet<String> = documented
        .into_iter()
        .filter(|p| p != parc_protocol::enroll::ENROLL_PATH)
        .collect();
    assert_eq!(
        documented.difference(&tested).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "documented but not in the matrix"
    );
    assert_eq!(
        tested.difference(&documented).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "in the matrix but not documented"
    );
}

async fn the_openapi_document_is_served_without_login(store: Store) {
    let addr = serve(store).await;
    let r = request(addr, "GET", "/api/openapi.json", &[], "").await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/api/v1/fleet/overview"]["get"].is_object());
    assert!(doc["components"]["schemas"]["FleetDevice"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

/// Logs in through the form; returns the session cookie pair (`parc_session=…`).
pub async fn browser_login(addr: SocketAddr, login: &str, password: &str) -> Resp {
    let page = request(addr, "GET", "/login", &[], "").await;
    assert_eq!(page.status, 200);
    let set = page.header("set-cookie");
    let csrf_cookie = set
        .iter()
        .find(|c| c.starts_with("parc_login_csrf="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = form_csrf(&page.body);
    let form = format!(
        "login={login}&password={}&csrf={csrf}",
        password.replace(' ', "+")
    );
    request(
        addr,
        "POST",
        "/login",
        &[
            ("Cookie", &csrf_cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &form,
    )
    .await
}

fn session_cookie(r: &Resp) -> String {
    r.header("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("parc_session=") && !c.starts_with("parc_session=;"))
        .unwrap_or_else(|| panic!("no session cookie: {:?}", r.headers))
        .to_string()
}

async fn sessions_are_strict_httponly_cookies_and_forms_need_csrf(store: Store) {
    fixture(&store).await;
    let addr = serve(store).await;
    let anon = request(addr, "GET", "/", &[], "").await;
    assert_eq!(
        anon.status, 303,
        "the dashboard sends strangers to the login page"
    );
    assert_eq!(anon.header("location"), vec!["/login"]);

    let r = browser_login(addr, "tech-valbois", PASSWORD).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let set = session_cookie(&r);
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: not Secure");
    let cookie = set.split(';').next().unwrap().to_string();
    let page = request(addr, "GET", "/", &[("Cookie", &cookie)], "").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("host-d-valbois-lot2"), "{}", page.body);
    assert!(
        !page.body.contains("host-d-frontiere-lot2"),
        "other tenants' devices are not listed"
    );
    let other = request(
        addr,
        "GET",
        "/devices/d-frontiere-lot2",
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(other.status, 404);

    // The session works on the API; a write without the CSRF header is refused.
    let me = request(addr, "GET", "/api/v1/me", &[("Cookie", &cookie)], "").await;
    assert_eq!(me.json()["login"], "tech-valbois");
    let csrf = form_csrf(&page.body);
    let no_csrf = request(
        addr,
        "POST",
        "/logout",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        "csrf=wrong",
    )
    .await;
    assert_eq!(no_csrf.status, 403);
    let api_no_csrf = request(
        addr,
        "POST",
        "/api/v1/deliveries/import",
        &[("Cookie", &cookie)],
        "x",
    )
    .await;
    assert_eq!(api_no_csrf.status, 403);
    assert!(api_no_csrf.body.contains("csrf"), "{}", api_no_csrf.body);
    let out = request(
        addr,
        "POST",
        "/logout",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(out.status, 303);
    let after = request(addr, "GET", "/api/v1/me", &[("Cookie", &cookie)], "").await;
    assert_eq!(after.status, 401, "the session is gone after logout");

    // Behind a TLS proxy the cookie is Secure.
    let page = request(addr, "GET", "/login", &[("X-Forwarded-Proto", "https")], "").await;
    assert!(
        page.header("set-cookie")
            .iter()
            .all(|c| c.contains("Secure"))
    );
}

async fn logins_are_throttled_after_five_failures(store: Store) {
    fixture(&store).await;
    let addr = serve(store).await;
    for i in 0..5 {
        let r = browser_login(addr, "admin", "wrong password!").await;
        assert_eq!(r.status, 401, "attempt {i}");
        assert!(r.body.contains("incorrect"), "{}", r.body);
    }
    let r = browser_login(addr, "admin", PASSWORD).await;
    assert_eq!(r.status, 429, "even the right password waits: {}", r.body);
    assert!(r.body.contains("Trop d’essais"));
}

async fn api_tokens_are_hashed_revocable_and_checked(store: Store) {
    let tokens = fixture(&store).await;
    let addr = serve(store.clone()).await;
    let (_, token) = tokens.iter().find(|(l, _)| *l == "holder-mobil").unwrap();
    let (id, secret) = token.split_once('.').unwrap();
    let wrong = format!("Bearer {id}.{}x", &secret[..secret.len() - 1]);
    let r = request(addr, "GET", "/api/v1/me", &[("Authorization", &wrong)], "").await;
    assert_eq!(r.status, 401);
    let r = request(
        addr,
        "GET",
        "/api/v1/me",
        &[("Authorization", "Basic YTpi")],
        "",
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(store.revoke_api_token(id, Utc::now()).await.unwrap());
    let r = request(
        addr,
        "GET",
        "/api/v1/me",
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    )
    .await;
    assert_eq!(r.status, 401, "revoked");
    let accounts = store.accounts().await.unwrap();
    assert_eq!(accounts.len(), 7);
    let stored = store.account("admin").await.unwrap().unwrap();
    assert!(stored.password_hash.starts_with("$argon2id$"));
}

async fn a_holder_moves_its_own_tickets_and_cannot_reach_another_lots(store: Store) {
    let tokens = fixture(&store).await;
    let addr = serve(store.clone()).await;
    let token = |login: &str| {
        format!(
            "Bearer {}",
            tokens.iter().find(|(l, _)| *l == login).unwrap().1
        )
    };
    let mine = reference_of(&store, "d-valbois-lot2").await;
    let theirs = reference_of(&store, "d-valbois-lot1").await;
    let post = |path: String, who: String, body: &'static str| async move {
        request(
            addr,
            "POST",
            &path,
            &[
                ("Authorization", &who),
                ("Content-Type", "application/json"),
            ],
            body,
        )
        .await
    };
    let r = post(
        format!("/api/v1/tickets/{mine}/status"),
        token("holder-mobil"),
        r#"{"status": "acknowledged", "note": "technicien le 27"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["status"], "acknowledged");
    assert_eq!(
        v["sla"]["gti_breached"], true,
        "acknowledged three days late"
    );
    assert!(v["sla"]["penalty_cents"].as_i64().unwrap() >= 5000, "{v}");
    let last = v["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "contract holder (holder-mobil)");
    assert_eq!(last["note"], "technicien le 27");
    let r = post(
        format!("/api/v1/tickets/{theirs}/status"),
        token("holder-mobil"),
        r#"{"status": "acknowledged"}"#,
    )
    .await;
    assert_eq!(
        r.status, 404,
        "another lot's ticket does not exist for this holder"
    );
    let r = post(
        format!("/api/v1/tickets/{mine}/status"),
        token("holder-mobil"),
        r#"{"status": "closed"}"#,
    )
    .await;
    assert_eq!(r.status, 409, "closing is the authority's: {}", r.body);
    let r = post(
        format!("/api/v1/tickets/{mine}/status"),
        token("tech-valbois"),
        r#"{"status": "closed"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let board = request(
        addr,
        "GET",
        "/api/v1/tickets",
        &[("Authorization", &token("holder-mobil"))],
        "",
    )
    .await
    .json();
    let refs: Vec<&str> = board
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["reference"].as_str().unwrap())
        .collect();
    assert_eq!(
        refs.len(),
        1,
        "the closed one left the open board: {refs:?}"
    );
    let card = request(
        addr,
        "GET",
        "/api/v1/lots/scorecard",
        &[("Authorization", &token("admin"))],
        "",
    )
    .await
    .json();
    let lot2 = card
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["lot"] == 2)
        .unwrap()
        .clone();
    assert_eq!(lot2["tickets"]["tickets"], 2, "{lot2}");
    assert_eq!(lot2["tickets"]["open"], 1, "{lot2}");
    assert_eq!(
        lot2["tickets"]["sla_compliance_percent"], 0.0,
        "both missed their GTI"
    );
    assert!(
        lot2["tickets"]["mean_time_to_restore_hours"]
            .as_f64()
            .unwrap()
            > 100.0
    );
    assert!(
        lot2["tickets"]["penalties_cents"].as_i64().unwrap() >= 10_000,
        "{lot2}"
    );
}

/// The CSRF token a logged-in page's forms carry.
fn form_csrf(body: &str) -> String {
    body.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no csrf field in {body}"))
        .to_string()
}

/// Logs `login` in through the form and opens the tickets board: (session cookie, page).
async fn board_of(addr: SocketAddr, login: &str) -> (String, Resp) {
    let r = browser_login(addr, login, PASSWORD).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = session_cookie(&r).split(';').next().unwrap().to_string();
    let board = request(addr, "GET", "/tickets", &[("Cookie", &cookie)], "").await;
    assert_eq!(board.status, 200);
    (cookie, board)
}

async fn the_board_moves_a_ticket_through_its_form_only_with_the_csrf_token(store: Store) {
    let tokens = fixture(&store).await;
    let addr = serve(store.clone()).await;
    let mine = reference_of(&store, "d-valbois-lot2").await;
    let (cookie, board) = board_of(addr, "holder-mobil").await;
    let action = format!("action=\"/tickets/{mine}/status\"");
    assert!(board.body.contains(&action), "{}", board.body);
    assert!(
        board
            .body
            .contains("<option value=\"acknowledged\">pris en compte</option>"),
        "{}",
        board.body
    );
    assert!(
        !board.body.contains("<option value=\"closed\">"),
        "closing is the authority's, not offered to a holder"
    );
    let csrf = form_csrf(&board.body);
    let post = |form: String| {
        let cookie = cookie.clone();
        let path = format!("/tickets/{mine}/status");
        async move {
            request(
                addr,
                "POST",
                &path,
                &[
                    ("Cookie", &cookie),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
                &form,
            )
            .await
        }
    };
    let forged = post("csrf=forged&status=acknowledged".into()).await;
    assert_eq!(
        forged.status, 403,
        "a form without the session's token is refused"
    );
    let r = post(format!(
        "csrf={csrf}&status=acknowledged&note=passage+jeudi"
    ))
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), vec!["/tickets"]);
    let token = tokens
        .iter()
        .find(|(l, _)| *l == "holder-mobil")
        .unwrap()
        .1
        .clone();
    let v = request(
        addr,
        "GET",
        &format!("/api/v1/tickets/{mine}"),
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    )
    .await
    .json();
    assert_eq!(v["status"], "acknowledged", "{v}");
    let last = v["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "contract holder (holder-mobil)");
    assert_eq!(last["note"], "passage jeudi");
    let again = post(format!("csrf={csrf}&status=new")).await;
    assert_eq!(
        again.status, 409,
        "the lifecycle still applies: {}",
        again.body
    );

    let (_, board) = board_of(addr, "viewer").await;
    assert!(
        !board.body.contains("/status\""),
        "a viewer gets no form: {}",
        board.body
    );
}

on_both_engines!(
    the_board_moves_a_ticket_through_its_form_only_with_the_csrf_token,
    a_holder_moves_its_own_tickets_and_cannot_reach_another_lots,
    every_api_route_answers_every_role_as_the_matrix_says,
    lists_hold_only_what_the_scope_allows,
    every_api_route_is_documented_and_in_the_matrix,
    the_openapi_document_is_served_without_login,
    sessions_are_strict_httponly_cookies_and_forms_need_csrf,
    logins_are_throttled_after_five_failures,
    api_tokens_are_hashed_revocable_and_checked,
);
