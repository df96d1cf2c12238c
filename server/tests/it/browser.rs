//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven over
//! the DevTools protocol against `parc-server demo`. It logs in through the form, opens
//! the fleet overview, a device page with its charts, the tickets board, the lot
//! scorecard and the other
//! pages, writes screenshots under `$CARGO_TARGET_TMPDIR/browser/`, and checks that a
//! device enrolled with the host name `<script>alert(1)</script>` shows it as text.
//!
//! External suite (`--ignored`): it fails, never skips, when Chromium is missing.

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;

const XSS: &str = "<script>alert(1)</script>";

/// A minimal DevTools client: one page target, commands answered in order, events kept.
struct Cdp {
    ws: tungstenite::WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
    session: String,
    events: Vec<Value>,
    chromium: Child,
    _profile: tempfile::TempDir,
}

impl Cdp {
    fn launch(binary: &Path) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let mut chromium = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--remote-debugging-port=0",
                "--window-size=1280,1800",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting chromium");
        let mut lines = BufReader::new(chromium.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("chromium exited before printing its DevTools address")
                .unwrap();
            if let Some(u) = line.strip_prefix("DevTools listening on ") {
                break u.trim().to_string();
            }
        };
        // Keep draining chromium's log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let (ws, _) = tungstenite::connect(url.as_str()).expect("DevTools websocket");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
        let mut cdp = Self {
            ws,
            next: 0,
            session: String::new(),
            events: Vec::new(),
            chromium,
            _profile: profile,
        };
        let target = cdp.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = cdp.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        cdp.session = attached["sessionId"].as_str().unwrap().to_string();
        cdp.call("Page.enable", json!({}));
        cdp.call("Runtime.enable", json!({}));
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 1800, "deviceScaleFactor": 1, "mobile": false}),
        );
        cdp
    }

    fn read(&mut self) -> Value {
        loop {
            match self.ws.read().expect("reading from DevTools") {
                tungstenite::Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                tungstenite::Message::Close(_) => panic!("DevTools closed the connection"),
                _ => {}
            }
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap();
        loop {
            let v = self.read();
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {}", v["error"]);
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    fn wait_event(&mut self, method: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.events.iter().any(|e| e["method"] == method) {
            assert!(Instant::now() < deadline, "no {method} within 30 s");
            let v = self.read();
            self.events.push(v);
        }
    }

    /// Runs `action` and waits for the page it leads to to finish loading.
    fn load(&mut self, action: impl FnOnce(&mut Self)) {
        self.events.retain(|e| e["method"] != "Page.loadEventFired");
        action(self);
        self.wait_event("Page.loadEventFired");
    }

    fn goto(&mut self, url: &str) {
        self.load(|c| {
            c.call("Page.navigate", json!({"url": url}));
        });
    }

    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        assert!(
            r["exceptionDetails"].is_null(),
            "{expression}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    fn screenshot(&mut self, path: &Path) {
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).unwrap();
    }

    fn dialogs(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["method"] == "Page.javascriptDialogOpening")
            .collect()
    }
}

impl Drop for Cdp {
    fn drop(&mut self) {
        let _ = self.chromium.kill();
        let _ = self.chromium.wait();
    }
}

struct Demo {
    child: Child,
    addr: String,
    password: String,
    token: String,
    data: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo() -> Demo {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_parc-server"))
        .args(["demo", "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0"])
        .args([
            "--webhook",
            "127.0.0.1:0",
            "--devices",
            "8",
            "--accel",
            "2016",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut addr, mut password, mut token) = (None, None, None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        let l = line.trim();
        if let Some(u) = l.strip_prefix("Dashboard:") {
            addr = Some(
                u.trim()
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_string(),
            );
        } else if let Some(p) = l.split("new each run: ").nth(1) {
            password = Some(p.trim_end_matches("):").to_string());
        } else if let Some(t) = l.strip_prefix("API token (admin):") {
            token = Some(t.trim().to_string());
        } else if l.starts_with("Press Ctrl-C") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Demo {
        child,
        addr: addr.expect("the demo printed its dashboard URL"),
        password: password.expect("the demo printed its logins' password"),
        token: token.expect("the demo printed an admin API token"),
        data,
    }
}

fn http(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default()
}

/// A device enrolling through the real API with a hostile host name.
fn enrol_hostile_device(demo: &Demo) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_parc-server"))
        .args(["token", "create", "--label", "browser test", "--days", "1"])
        .env("PARC_SERVER_STORAGE__DATA_DIR", demo.data.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let body = json!({
        "token": token, "serial": "XSS0000001", "manufacturer": "Evil",
        "product_name": "Laptop", "macs": [], "hostname": XSS, "agent_version": "0.1.0",
    })
    .to_string();
    let r = http(
        &demo.addr,
        "POST",
        "/api/v1/enroll",
        "Content-Type: application/json\r\n",
        &body,
    );
    let v: Value = serde_json::from_str(&r).unwrap_or_else(|e| panic!("{e}: {r}"));
    v["device_id"].as_str().unwrap().to_string()
}

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("chromium is not installed: .ci/run installs the Debian package `chromium`")
}

#[test]
#[ignore = "needs chromium (external suite)"]
fn the_dashboard_works_in_headless_chromium() {
    let binary = chromium();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&shots).unwrap();
    let demo = start_demo();
    let hostile = enrol_hostile_device(&demo);
    // Wait until the simulated fleet has reported (charts need samples).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = http(
            &demo.addr,
            "GET",
            "/api/v1/summary",
            &format!("Authorization: Bearer {}\r\n", demo.token),
            "",
        );
        let v: Value = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{e}: {s}"));
        // The board shows a real ticket: the demo schedules a battery wear early on.
        let tickets: Value = serde_json::from_str(&http(
            &demo.addr,
            "GET",
            "/api/v1/tickets",
            &format!("Authorization: Bearer {}\r\n", demo.token),
            "",
        ))
        .unwrap_or(Value::Null);
        let has_ticket = tickets.as_array().is_some_and(|t| !t.is_empty());
        if v["counts"]["health_samples"].as_u64().unwrap_or(0) >= 24 && has_ticket {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo fleet did not report: {s}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let base = format!("http://{}", demo.addr);
    let mut b = Cdp::launch(&binary);

    b.goto(&format!("{base}/"));
    assert_eq!(
        b.eval("location.pathname"),
        "/login",
        "strangers are sent to the login page"
    );
    b.screenshot(&shots.join("01-login.png"));
    let login = format!(
        "document.getElementById('login').value = 'admin'; \
         document.getElementById('password').value = {}; \
         document.getElementById('login-submit').click(); true",
        json!(demo.password)
    );
    b.load(|b| {
        b.eval(&login);
    });
    assert_eq!(b.eval("location.pathname"), "/");
    assert_eq!(
        b.eval("document.querySelector('h1').textContent"),
        "Vue d’ensemble du parc"
    );
    let rows = b
        .eval("document.querySelectorAll('#devices tr').length")
        .as_u64()
        .unwrap();
    assert!(
        rows >= 10,
        "8 devices, the impostor, the hostile one and a header: {rows}"
    );
    assert_eq!(
        b.eval(&format!(
            "[...document.querySelectorAll('#devices a')].some(a => a.textContent === {})",
            json!(XSS)
        )),
        true,
        "the hostile host name is listed as text"
    );
    b.screenshot(&shots.join("02-overview.png"));

    // A simulated laptop of the demo's deliveries (ids are issued at enrolment).
    let list: Value = serde_json::from_str(&http(
        &demo.addr,
        "GET",
        "/api/v1/devices?q=PARCDEMO0001",
        &format!("Authorization: Bearer {}\r\n", demo.token),
        "",
    ))
    .unwrap();
    let laptop = list["devices"][0]["device_id"]
        .as_str()
        .unwrap_or_else(|| panic!("PARCDEMO0001 enrolled: {list}"))
        .to_string();
    b.goto(&format!("{base}/devices/{laptop}"));
    let charts = b.eval("document.querySelectorAll('figure svg polyline, figure svg path').length");
    assert!(
        charts.as_u64().unwrap() >= 1,
        "a chart line is drawn: {charts}"
    );
    assert_eq!(
        b.eval("document.querySelector('figure svg').getAttribute('role')"),
        "img"
    );
    b.screenshot(&shots.join("03-device.png"));

    b.goto(&format!("{base}/lots"));
    assert_eq!(
        b.eval("document.querySelector('h1').textContent"),
        "Bilan des lots"
    );
    let lots = b.eval("document.querySelectorAll('section.lot').length");
    assert_eq!(lots, 2, "both lots of the demo contract");
    b.screenshot(&shots.join("05-lots.png"));

    b.goto(&format!("{base}/tickets"));
    assert_eq!(
        b.eval("document.querySelector('h1').textContent"),
        "Tickets ouverts"
    );
    let rows = b.eval("document.querySelectorAll('#tickets tr').length");
    assert!(rows.as_u64().unwrap() >= 2, "a header and a ticket: {rows}");
    b.screenshot(&shots.join("04-tickets.png"));

    for (path, file) in [
        ("/warranties", "06-warranties.png"),
        ("/carts", "07-carts.png"),
        ("/usage", "08-usage.png"),
        ("/reconciliation", "09-reconciliation.png"),
    ] {
        b.goto(&format!("{base}{path}"));
        assert_eq!(
            b.eval("document.querySelectorAll('main h1').length"),
            1,
            "{path}"
        );
        b.screenshot(&shots.join(file));
    }

    b.goto(&format!("{base}/devices/{hostile}"));
    assert_eq!(
        b.eval("document.getElementById('hostname').textContent"),
        XSS
    );
    assert_eq!(b.eval("document.querySelectorAll('main script').length"), 0);
    b.screenshot(&shots.join("10-hostile-hostname.png"));
    assert!(b.dialogs().is_empty(), "no script ran: {:?}", b.dialogs());
    eprintln!("screenshots in {}", shots.display());
}
