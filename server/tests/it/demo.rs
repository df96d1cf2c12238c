//! The README's main command: `parc-server demo` runs the loop and the server reports,
//! over HTTP, what it actually received and refused.

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

#[test]
fn demo_runs_the_loop_and_refuses_the_impostor() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_parc-server"))
        .args([
            "demo",
            "--http",
            "127.0.0.1:0",
            "--mqtt",
            "127.0.0.1:0",
            "--devices",
            "8",
            "--data-dir",
        ])
        .arg(data.path())
        .args(["--interval-seconds", "1", "--duration-seconds", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut token = None;
    let addr = loop {
        let line = lines.next().expect("demo printed its URLs").unwrap();
        if let Some(t) = line.trim().strip_prefix("API token (admin):") {
            token = Some(t.trim().to_string());
        }
        if let Some(url) = line
            .split("http://")
            .nth(1)
            .filter(|_| line.contains("/api/v1/summary"))
        {
            break url.trim_end_matches("/api/v1/summary").to_string();
        }
    };
    let token = token.expect("the demo printed an admin API token before the URLs");
    assert_eq!(http_get(&addr, "/healthz", "").trim(), "ok");
    let refused = http_get(&addr, "/api/v1/summary", "pat_0.wrong");
    assert!(refused.contains("unauthenticated"), "{refused}");

    let deadline = Instant::now() + Duration::from_secs(20);
    let summary = loop {
        let body = http_get(&addr, "/api/v1/summary", &token);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let healths = v["counts"]["health_samples"].as_u64().unwrap_or(0);
        if healths >= 16
            && v["counts"]["inventories"] == 8
            && v["counts"]["quarantined"]["bad_signature"]
                .as_u64()
                .unwrap_or(0)
                >= 1
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
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(summary["engine"], "sqlite");
    assert_eq!(summary["counts"]["inventories"], 8);
    let devices = devices["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 9, "8 devices and the impostor are enrolled");
    let impostor = devices
        .iter()
        .find(|d| d["device_id"] == "d-demo-impostor")
        .unwrap();
    assert!(
        impostor["last_seen"].is_null(),
        "the impostor's forged messages were all refused: {impostor}"
    );
    let d0 = devices
        .iter()
        .find(|d| d["device_id"] == "d-demo-0000")
        .unwrap();
    assert_eq!(d0["serial"], "PARCDEMO0000");
    assert!(d0["last_seen"].is_string(), "{d0}");
    assert_ne!(d0["state"], "silent", "{d0}");
}

#[test]
fn demo_stops_by_itself_and_reports_what_it_stored() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_parc-server"))
        .args(["demo", "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0"])
        .args([
            "--devices",
            "3",
            "--interval-seconds",
            "1",
            "--duration-seconds",
            "3",
        ])
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
}
