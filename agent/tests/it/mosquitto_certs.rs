//! The shipped production Mosquitto configuration with client certificates
//! (`packaging/mosquitto/parc-certs.conf` + `parc.acl`), run as shipped apart from its
//! port and file paths: a device's certificate cannot publish on another device's
//! topic, the server's certificate reads every device, and a client without a
//! certificate is refused.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::support::*;

fn packaging(file: &str) -> String {
    format!(
        "{}/../packaging/mosquitto/{file}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Writes the fleet CA, the broker's certificate and a client certificate per CN.
fn certificates(dir: &Path, clients: &[&str]) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Parc fleet CA (test)");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("fleet-ca.pem"), ca.pem()).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let issue = |name: &str, cn: &str, sans: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    };
    issue("broker", "localhost", vec!["localhost".into()]);
    for c in clients {
        issue(c, c, vec![]);
    }
}

fn tool(name: &str) -> String {
    for d in ["/usr/bin", "/usr/local/bin"] {
        let p = format!("{d}/{name}");
        if Path::new(&p).exists() {
            return p;
        }
    }
    panic!("{name} is not installed (.ci/run installs mosquitto-clients)");
}

fn tls_args(cmd: &mut Command, dir: &Path, port: u16, client: Option<&str>) {
    cmd.args(["-h", "localhost", "-p", &port.to_string(), "-V", "mqttv5"])
        .arg("--cafile")
        .arg(dir.join("fleet-ca.pem"));
    if let Some(c) = client {
        cmd.arg("--cert")
            .arg(dir.join(format!("{c}.pem")))
            .arg("--key")
            .arg(dir.join(format!("{c}.key")));
    }
}

fn publish(dir: &Path, port: u16, client: Option<&str>, topic: &str, payload: &str) -> bool {
    let mut cmd = Command::new(tool("mosquitto_pub"));
    tls_args(&mut cmd, dir, port, client);
    cmd.args(["-q", "1", "-t", topic, "-m", payload])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.status().unwrap().success()
}

#[test]
#[ignore = "needs mosquitto and mosquitto-clients"]
fn with_the_shipped_certificate_config_a_device_cannot_publish_as_another() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certificates(d, &["d-aaaa", "d-bbbb", "parc-server"]);
    let port = free_port();
    let shipped = std::fs::read_to_string(packaging("parc-certs.conf")).unwrap();
    for needed in [
        "require_certificate true",
        "use_identity_as_username true",
        "allow_anonymous false",
        "acl_file /etc/mosquitto/parc.acl",
        "listener 8883",
    ] {
        assert!(shipped.contains(needed), "parc-certs.conf lacks `{needed}`");
    }
    let conf = shipped
        .replace("listener 8883", &format!("listener {port} 127.0.0.1"))
        .replace("/etc/mosquitto/certs/", &format!("{}/", d.display()))
        .replace("/etc/mosquitto/parc.acl", &packaging("parc.acl"))
        .replace("/var/lib/mosquitto/", &format!("{}/", d.display()));
    std::fs::write(d.join("mosquitto.conf"), conf + "log_dest none\n").unwrap();
    let mut broker = Command::new(mosquitto_bin())
        .arg("-c")
        .arg(d.join("mosquitto.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting mosquitto");
    let mut up = false;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(up, "mosquitto did not start with the shipped configuration");

    // The server's certificate reads every device's health.
    let mut sub = Command::new(tool("mosquitto_sub"));
    tls_args(&mut sub, d, port, Some("parc-server"));
    let sub = sub
        .args([
            "-q",
            "1",
            "-t",
            "parc/v1/+/health",
            "-v",
            "-C",
            "2",
            "-W",
            "15",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));

    // d-aaaa's certificate: its own topic passes, d-bbbb's does not.
    publish(d, port, Some("d-aaaa"), "parc/v1/d-bbbb/health", "forged");
    assert!(publish(
        d,
        port,
        Some("d-aaaa"),
        "parc/v1/d-aaaa/health",
        "genuine-a"
    ));
    // Without a certificate nothing connects.
    assert!(
        !publish(d, port, None, "parc/v1/d-bbbb/health", "anonymous"),
        "a client without a certificate was accepted"
    );
    assert!(publish(
        d,
        port,
        Some("d-bbbb"),
        "parc/v1/d-bbbb/health",
        "genuine-b"
    ));

    let out = sub.wait_with_output().unwrap();
    let _ = broker.kill();
    let _ = broker.wait();
    let got = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(
        lines,
        [
            "parc/v1/d-aaaa/health genuine-a",
            "parc/v1/d-bbbb/health genuine-b"
        ],
        "the server must see each device's own publishes only; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
