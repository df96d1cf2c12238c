//! The README's main command: `parc-server demo` runs the loop — the simulated fleet
//! enrols and connects like real agents, the real agent reports this machine, the
//! impostor is refused — and the server reports over HTTP what it actually received.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn http_get(addr: &str, path: &str, token: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The `host:port` of the first printed URL on a line containing `marker`.
fn url_on(lines: &[String], marker: &str) -> String {
    let line = lines
        .iter()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no line with {marker:?} in {lines:?}"));
    let after = line.split("http://").nth(1).unwrap();
    after.split('/').next().unwrap().trim().to_string()
}

#[test]
fn demo_enrols_the_fleet_and_the_real_agent_and_refuses_the_impostor() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_parc-server"))
        .args(["demo", "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0"])
        .args(["--webhook", "127.0.0.1:0", "--devices", "8"])
        .args(["--accel", "2016", "--duration-seconds", "60", "--data-dir"])
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout).lines();
    let mut lines = Vec::new();
    for line in reader.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with("Press Ctrl-C");
        lines.push(line);
        if done {
            break;
        }
    }
    let addr = url_on(&lines, "/api/v1/summary");
    let hook = url_on(&lines, "Webhook deliveries");
    let token = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("API token (admin):"))
        .expect("the demo printed an admin API token")
        .trim()
        .to_string();
    assert_eq!(http_get(&addr, "/healthz", "").trim(), "ok");
    let refused = http_get(&addr, "/api/v1/summary", "pat_0.wrong");
    assert!(refused.contains("unauthenticated"), "{refused}");

    let deadline = Instant::now() + Duration::from_secs(40);
    let summary = loop {
        let body = http_get(&addr, "/api/v1/summary", &token);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let healths = v["counts"]["health_samples"].as_u64().unwrap_or(0);
        let inventories = v["counts"]["inventories"].as_u64().unwrap_or(0);
        let forged = v["counts"]["quarantined"]["bad_signature"]
            .as_u64()
            .unwrap_or(0);
        let delivered: serde_json::Value =
            serde_json::from_str(&http_get(&hook, "/deliveries", "")).unwrap();
        // 8 simulated devices, the impostor's own inventory, and this machine's agent;
        // and a ticket delivered to the holder's webhook.
        if healths >= 16
            && inventories >= 10
            && forged >= 1
            && delivered["total"].as_u64() > Some(0)
        {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "demo did not produce enough traffic: {body}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let devices: serde_json::Value =
        serde_json::from_str(&http_get(&addr, "/api/v1/devices", &token)).unwrap();
    let deliveries: serde_json::Value =
        serde_json::from_str(&http_get(&hook, "/deliveries", "")).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(summary["engine"], "sqlite");
    let devices = devices["devices"].as_array().unwrap();
    assert_eq!(
        devices.len(),
        10,
        "8 simulated devices, the impostor and the real agent enrolled: {devices:?}"
    );
    let first = devices
        .iter()
        .find(|d| d["serial"] == "PARCDEMO0000")
        .expect("the first delivered serial enrolled");
    assert!(!first["last_seen"].is_null(), "{first}");
    assert!(
        devices.iter().any(|d| d["agent_version"]
            .as_str()
            .is_some_and(|v| !v.ends_with("-sim"))),
        "the real agent reported: {devices:?}"
    );
    // The scheduled battery wear opened a ticket for the lot's holder, and the demo's
    // receiver got it, signed.
    let notices: Vec<&serde_json::Value> = deliveries["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["body"]["event"] == "ticket.created")
        .collect();
    assert!(!notices.is_empty(), "no ticket delivered: {deliveries}");
    let n = notices[0];
    assert!(
        n["parc_headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "x-parc-signature" && h[1].as_str().unwrap().starts_with("sha256=")),
        "{n}"
    );
    assert!(
        n["body"]["ticket"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("PARC-")
    );
}

#[test]
fn demo_stops_by_itself_and_reports_what_it_stored() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_parc-server"))
        .args(["demo", "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0"])
        .args(["--webhook", "127.0.0.1:0", "--no-agent"])
        .args(["--devices", "3", "--duration-seconds", "6"])
        .arg("--data-dir")
        .arg(data.path())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("Stopped. Stored"))
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    assert!(summary.contains("from 4 devices"), "{summary}");
    assert!(
        stdout.lines().any(|l| l.starts_with("Fleet: 3 devices")),
        "{stdout}"
    );
}
