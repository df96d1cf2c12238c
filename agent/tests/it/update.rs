//! Self-update against the real server library (releases published with
//! `parc_server::releases_cli::publish`, served over HTTP on port 0): real signed
//! `.tar.gz` archives built here, zipsign ed25519 keys generated here, a temporary
//! install path standing for the agent's executable (a shell script answering
//! `--version`), and the daemon playing the new version after a "restart".

use std::io::{Cursor, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use parc_agent::collect::Collector;
use parc_agent::config::AgentConfig;
use parc_agent::enroll::{enroll, request_from_inventory};
use parc_agent::runtime::{RunOptions, RunOutcome, run_with};
use parc_agent::state::StateDir;
use parc_agent::update::{Refusal, Updater};
use parc_protocol::release::{archive_file_name, manifest_path};
use zipsign_api::SigningKey;

use crate::enrol::{Server, start_server, start_server_with, token};
use crate::support::*;

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn signing_key() -> SigningKey {
    let mut seed = [0u8; 32];
    getrandom(&mut seed);
    SigningKey::from_bytes(&seed)
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(buf)
        .unwrap();
}

fn public(k: &SigningKey) -> [u8; 32] {
    k.verifying_key().to_bytes()
}

/// A stand-in for the agent executable: answers `--version` like clap does.
fn script(version: &str) -> Vec<u8> {
    format!("#!/bin/sh\necho \"parc-agent {version}\"\n").into_bytes()
}

/// A `.tar.gz` holding `parc-agent` (mode 0755) with `content`.
fn tar_gz(content: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    {
        let mut tar = tar::Builder::new(&mut gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, "parc-agent", content).unwrap();
        tar.finish().unwrap();
    }
    gz.finish().unwrap()
}

/// Signs `archive` under `file_name` (the name the signature is bound to).
fn sign(archive: &[u8], file_name: &str, key: &SigningKey) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    zipsign_api::sign::copy_and_sign_tar(
        &mut Cursor::new(archive),
        &mut out,
        std::slice::from_ref(key),
        Some(file_name.as_bytes()),
    )
    .unwrap();
    out.into_inner()
}

/// Writes an archive for `version` into `dir` under its published name.
fn release_file(dir: &Path, version: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(archive_file_name(version, TARGET));
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    path
}

fn signed_release(dir: &Path, version: &str, key: &SigningKey) -> PathBuf {
    let name = archive_file_name(version, TARGET);
    release_file(dir, version, &sign(&tar_gz(&script(version)), &name, key))
}

async fn publish(server: &Server, path: &Path, version: &str, percent: i64, sites: &[String]) {
    parc_server::releases_cli::publish(
        &server.store,
        path,
        version,
        "stable",
        percent,
        sites,
        Utc::now(),
    )
    .await
    .unwrap();
}

/// The install path (version 0.1.0 installed) and an updater for it.
struct Install {
    dir: tempfile::TempDir,
    updater: Updater,
}

impl Install {
    fn new(keys: Vec<[u8; 32]>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin/parc-agent");
        std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
        std::fs::write(&bin, script("0.1.0")).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let updater = Updater {
            enabled: true,
            current_version: "0.1.0".into(),
            install_path: bin,
            dir: dir.path().join("state/update"),
            keys,
            ca_pem: None,
            health_timeout: Duration::from_secs(300),
            target: TARGET.into(),
        };
        Self { dir, updater }
    }

    fn installed(&self) -> String {
        String::from_utf8(std::fs::read(&self.updater.install_path).unwrap()).unwrap()
    }
}

fn manifest_url(server: &Server, device: Option<&str>) -> String {
    let base = format!("http://{}{}", server.http, manifest_path("stable"));
    match device {
        Some(d) => format!("{base}?device={d}"),
        None => base,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_newer_release_is_installed_with_a_rotated_key_and_the_previous_binary_kept() {
    let server = start_server().await;
    let old_key = signing_key();
    let new_key = signing_key();
    let files = tempfile::tempdir().unwrap();
    publish(
        &server,
        &signed_release(files.path(), "0.2.0", &new_key),
        "0.2.0",
        100,
        &[],
    )
    .await;

    // The agent trusts both keys of a rotation; the release is signed with the new one.
    let install = Install::new(vec![public(&old_key), public(&new_key)]);
    let u = install.updater.clone();
    let url = manifest_url(&server, None);
    let pending = tokio::task::spawn_blocking(move || u.apply(&url, "0.2.0", Utc::now()))
        .await
        .unwrap()
        .expect("the signed release is installed");
    assert_eq!(
        (pending.from_version.as_str(), pending.to_version.as_str()),
        ("0.1.0", "0.2.0")
    );
    assert_eq!(
        install.installed(),
        String::from_utf8(script("0.2.0")).unwrap()
    );
    assert_eq!(
        std::fs::read(install.updater.previous_path()).unwrap(),
        script("0.1.0"),
        "the previous binary is kept for a rollback"
    );
    assert_eq!(install.updater.pending(), Some(pending));
    let _ = server.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_wrongly_signed_tampered_checksum_mismatched_and_downgrade_releases_are_refused() {
    let server = start_server().await;
    let key = signing_key();
    let stranger = signing_key();
    let files = tempfile::tempdir().unwrap();

    // 0.2.0 unsigned, 0.3.0 signed by an unknown key, 0.4.0 altered after signing,
    // 0.5.0 signed but altered in storage (served bytes ≠ manifest digest), 0.6.0
    // signed but its binary says 0.0.9, 0.0.5 signed but older than the running 0.1.0.
    publish(
        &server,
        &release_file(files.path(), "0.2.0", &tar_gz(&script("0.2.0"))),
        "0.2.0",
        100,
        &[],
    )
    .await;
    publish(
        &server,
        &signed_release(files.path(), "0.3.0", &stranger),
        "0.3.0",
        100,
        &[],
    )
    .await;
    let name = archive_file_name("0.4.0", TARGET);
    let mut tampered = sign(&tar_gz(&script("0.4.0")), &name, &key);
    // Inside the compressed data, before the signature trailer.
    tampered[20] ^= 0x01;
    publish(
        &server,
        &release_file(files.path(), "0.4.0", &tampered),
        "0.4.0",
        100,
        &[],
    )
    .await;
    publish(
        &server,
        &signed_release(files.path(), "0.5.0", &key),
        "0.5.0",
        100,
        &[],
    )
    .await;
    corrupt_stored_archive(&server, &archive_file_name("0.5.0", TARGET)).await;
    let name = archive_file_name("0.6.0", TARGET);
    let liar = sign(&tar_gz(&script("0.0.9")), &name, &key);
    publish(
        &server,
        &release_file(files.path(), "0.6.0", &liar),
        "0.6.0",
        100,
        &[],
    )
    .await;
    publish(
        &server,
        &signed_release(files.path(), "0.0.5", &key),
        "0.0.5",
        100,
        &[],
    )
    .await;

    let install = Install::new(vec![public(&key)]);
    for (version, expected) in [
        ("0.2.0", Refusal::Unsigned),
        ("0.3.0", Refusal::BadSignature),
        ("0.4.0", Refusal::BadSignature),
        ("0.5.0", Refusal::ChecksumMismatch),
        ("0.6.0", Refusal::VersionMismatch),
        ("0.0.5", Refusal::Downgrade),
        ("0.1.0", Refusal::Downgrade),
        ("9.0.0", Refusal::NotOffered),
    ] {
        let u = install.updater.clone();
        let url = manifest_url(&server, None);
        let refused = tokio::task::spawn_blocking(move || u.apply(&url, version, Utc::now()))
            .await
            .unwrap()
            .expect_err(version);
        assert_eq!(refused.reason, expected, "{version}: {refused}");
        let event = refused.event("0.1.0", Utc::now());
        assert_eq!(event.event_type, "update_refused");
        assert_eq!(event.data["reason"], expected.reason(), "{version}");
        assert_eq!(event.data["version"], version);
        assert_eq!(
            install.installed(),
            String::from_utf8(script("0.1.0")).unwrap(),
            "{version}: the installed binary is untouched"
        );
        assert_eq!(install.updater.pending(), None, "{version}");
    }
    let _ = server.stop.send(());
}

/// Storage corruption (or a man in the middle) between publication and download.
async fn corrupt_stored_archive(server: &Server, file_name: &str) {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}", server._db.path().join("parc.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let archive: Vec<u8> =
        sqlx::query_scalar("SELECT archive FROM agent_releases WHERE file_name = ?")
            .bind(file_name)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let mut bad = archive.clone();
    bad[30] ^= 0x01;
    let n = sqlx::query("UPDATE agent_releases SET archive = ? WHERE file_name = ?")
        .bind(bad)
        .bind(file_name)
        .execute(&mut conn)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_release_reaches_the_pilot_school_and_its_percentage_only() {
    let server = start_server().await;
    let key = signing_key();
    let files = tempfile::tempdir().unwrap();
    // Nobody but the pilot school (UAI 0570001S) at first.
    publish(
        &server,
        &signed_release(files.path(), "0.2.0", &key),
        "0.2.0",
        0,
        &["0570001S".to_string()],
    )
    .await;
    let pilot = enrol(&server, Some("0570001S"), "laptop").await;
    let other = enrol(&server, Some("0570002T"), "desktop").await;

    let install = Install::new(vec![public(&key)]);
    let apply = |device: String| {
        let u = install.updater.clone();
        let url = manifest_url(&server, Some(&device));
        tokio::task::spawn_blocking(move || u.apply(&url, "0.2.0", Utc::now()))
    };
    let refused = apply(other.clone())
        .await
        .unwrap()
        .expect_err("not in the pilot");
    assert_eq!(refused.reason, Refusal::NotOffered);
    apply(pilot)
        .await
        .unwrap()
        .expect("the pilot school gets it");

    // Widened to everyone: the other school gets it too.
    server
        .store
        .set_rollout("stable", "0.2.0", 100, &[], Utc::now())
        .await
        .unwrap();
    let install2 = Install::new(vec![public(&key)]);
    let u = install2.updater.clone();
    let url = manifest_url(&server, Some(&other));
    tokio::task::spawn_blocking(move || u.apply(&url, "0.2.0", Utc::now()))
        .await
        .unwrap()
        .expect("the widened rollout reaches every device");
    let _ = server.stop.send(());
}

/// Enrols a device through the real HTTP enrolment with a token scoped to `site`.
async fn enrol(server: &Server, site: Option<&str>, fixture_name: &str) -> String {
    let t = parc_server::enroll::new_token();
    server
        .store
        .create_token(
            &parc_server::store::NewTokenRecord {
                id: &t.id,
                secret_sha256: &t.secret_sha256,
                label: "École pilote",
                scope: site,
                expires_at: Utc::now() + chrono::Duration::hours(1),
                max_uses: None,
            },
            Utc::now(),
        )
        .await
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let inv = Collector::new(fixture(fixture_name), None, "0.1.0").inventory();
    let e = enroll(
        &format!("http://{}", server.http),
        &request_from_inventory(&inv, &t.token, "0.1.0"),
        None,
        &StateDir::new(state.path()),
    )
    .await
    .unwrap();
    e.device_id.to_string()
}

fn agent_config(
    state: &Path,
    mqtt_url: &str,
    protocol: &str,
    install: &Install,
    timeout_s: u32,
) -> AgentConfig {
    let text = config_text(mqtt_url, state, &format!("protocol = \"{protocol}\"\n"))
        + &format!(
            "[update]\ninstall_path = \"{}\"\nhealth_timeout_seconds = {timeout_s}\n",
            install.updater.install_path.display()
        );
    AgentConfig::parse(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_that_does_not_reach_the_broker_in_time_is_rolled_back_and_reported() {
    let server = start_server().await;
    let key = signing_key();
    let files = tempfile::tempdir().unwrap();
    publish(
        &server,
        &signed_release(files.path(), "0.2.0", &key),
        "0.2.0",
        100,
        &[],
    )
    .await;
    let state = tempfile::tempdir().unwrap();
    let device = TestDevice::new("d-rollback", 7);
    device.write_state(state.path());

    let mut install = Install::new(vec![public(&key)]);
    install.updater.dir = state.path().join("update");
    install.updater.health_timeout = Duration::from_secs(2);
    let u = install.updater.clone();
    let url = manifest_url(&server, None);
    tokio::task::spawn_blocking(move || u.apply(&url, "0.2.0", Utc::now()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        install.installed(),
        String::from_utf8(script("0.2.0")).unwrap()
    );

    // "Restarted" into 0.2.0, which cannot reach any broker.
    let dead = format!("mqtt://127.0.0.1:{}", free_port());
    let cfg = agent_config(state.path(), &dead, "v5", &install, 2);
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        run_with(
            cfg,
            std::future::pending(),
            RunOptions {
                version: "0.2.0".into(),
                release_keys: vec![public(&key)],
            },
        ),
    )
    .await
    .expect("the probation ends by itself")
    .unwrap();
    assert_eq!(
        outcome,
        RunOutcome::RolledBack {
            version: "0.2.0".into()
        }
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "it waited for its deadline"
    );
    assert_eq!(
        install.installed(),
        String::from_utf8(script("0.1.0")).unwrap(),
        "the previous binary is back"
    );
    assert_eq!(install.updater.pending(), None);
    let report = install
        .updater
        .rollback_report()
        .expect("a rollback to report");
    assert_eq!(report.event_type, "update_rolled_back");
    assert_eq!(report.data["from_version"], "0.2.0");
    assert_eq!(report.data["to_version"], "0.1.0");
    let _ = server.stop.send(());
}

#[test]
fn the_start_guard_restores_the_previous_binary_once_the_deadline_has_passed() {
    let mut install = Install::new(vec![[1; 32]]);
    install.updater.health_timeout = Duration::from_secs(60);
    // Simulate an installation as `apply` leaves it, without the network.
    std::fs::create_dir_all(&install.updater.dir).unwrap();
    std::fs::copy(
        &install.updater.install_path,
        install.updater.previous_path(),
    )
    .unwrap();
    std::fs::write(&install.updater.install_path, script("0.2.0")).unwrap();
    let installed_at = Utc::now();
    let pending = parc_agent::update::Pending {
        from_version: "0.1.0".into(),
        to_version: "0.2.0".into(),
        installed_at,
        deadline: installed_at + chrono::Duration::seconds(60),
    };
    std::fs::write(
        install.updater.dir.join("pending.json"),
        serde_json::to_vec(&pending).unwrap(),
    )
    .unwrap();

    assert!(
        !install
            .updater
            .guard(installed_at + chrono::Duration::seconds(30))
            .unwrap()
    );
    assert_eq!(
        install.installed(),
        String::from_utf8(script("0.2.0")).unwrap()
    );
    assert!(
        install
            .updater
            .guard(installed_at + chrono::Duration::seconds(61))
            .unwrap()
    );
    assert_eq!(
        install.installed(),
        String::from_utf8(script("0.1.0")).unwrap()
    );
    let ev = install.updater.rollback_report().unwrap();
    assert!(
        ev.data["reason"]
            .as_str()
            .unwrap()
            .contains("did not report healthy")
    );
    install.updater.clear_rollback_report().unwrap();
    assert!(install.updater.rollback_report().is_none());
    let _ = &install.dir;
}

#[test]
fn the_build_embeds_release_keys_and_refuses_an_empty_list() {
    assert!(!parc_agent::update::RELEASE_KEYS.is_empty());
    for empty in ["", "\n# only a comment\n   \n"] {
        let e = parc_agent::release_keys::parse_key_list(empty).unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }
    let k = "58f69e5017ce3b0753d0c2541d8cd26652dc6b60f14920f5a86c735994498054";
    assert_eq!(
        parc_agent::release_keys::parse_key_list(k).unwrap().len(),
        1
    );
    assert!(parc_agent::release_keys::parse_key_list(&format!("{k}\n{k}\n")).is_err());
    assert!(parc_agent::release_keys::parse_key_list("abcd").is_err());
    // The default build's list is the committed test-only one.
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/release-keys/TEST-ONLY-release-keys.txt"
    ))
    .unwrap();
    if std::env::var_os("PARC_RELEASE_KEYS").is_none() {
        assert_eq!(
            parc_agent::release_keys::parse_key_list(&committed).unwrap(),
            parc_agent::update::RELEASE_KEYS
        );
        // black_box: a build-time constant, checked at run time on purpose.
        let test_only = std::hint::black_box(parc_agent::update::RELEASE_KEYS_ARE_TEST_ONLY);
        assert!(
            test_only,
            "the default build must say its keys are test-only"
        );
    }
}

/// The whole path through Mosquitto: the server (ingesting from that broker) stores
/// the refusals the daemon reports, the daemon installs an announced signed release
/// and returns for a restart, and the "restarted" new version confirms itself once
/// connected, reports `update_applied` and its version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto"]
async fn the_daemon_applies_an_announced_release_and_the_server_sees_refusals_and_the_new_version()
{
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_test_writer()
        .try_init();
    let broker = Mosquitto::start();
    let broker_url = broker.url();
    let server = start_server_with(|cfg| cfg.mqtt.url = Some(broker_url.clone())).await;
    let key = signing_key();
    let files = tempfile::tempdir().unwrap();
    publish(
        &server,
        &release_file(files.path(), "0.2.0", &tar_gz(&script("0.2.0"))),
        "0.2.0",
        100,
        &[],
    )
    .await;
    publish(
        &server,
        &signed_release(files.path(), "0.3.0", &key),
        "0.3.0",
        100,
        &[],
    )
    .await;

    let state = tempfile::tempdir().unwrap();
    let inv = Collector::new(fixture("laptop"), None, "0.1.0").inventory();
    let e = enroll(
        &format!("http://{}", server.http),
        &request_from_inventory(&inv, &token(&server.store).await, "0.1.0"),
        None,
        &StateDir::new(state.path()),
    )
    .await
    .unwrap();
    let device = e.device_id.clone();
    let device_key = e.key().unwrap();
    let install = Install::new(vec![public(&key)]);
    let cfg = agent_config(state.path(), &broker.url(), "v5", &install, 30);
    let options = RunOptions {
        version: "0.1.0".into(),
        release_keys: vec![public(&key)],
    };
    let daemon = tokio::spawn(run_with(cfg.clone(), std::future::pending(), options));
    let store = server.store.clone();
    let d = device.clone();
    // Online means its status reached the server, so it has subscribed to its commands.
    eventually_async(30, "the device is online as 0.1.0", || {
        let store = store.clone();
        let d = d.clone();
        async move {
            let row = device_row(&store, &d).await;
            row.as_ref().and_then(|r| r.online) == Some(true)
                && row.and_then(|r| r.agent_version).as_deref() == Some("0.1.0")
        }
    })
    .await;

    let url = manifest_url(&server, Some(device.as_str()));
    let announce = |seq: u64, version: &str| {
        command(
            &device,
            &device_key,
            seq,
            parc_protocol::Command::UpdateAvailable {
                version: version.into(),
                channel: "stable".into(),
                manifest_url: url.clone(),
            },
        )
    };
    // An unsigned release, then a downgrade: refused, and the server is told why.
    for (seq, version, reason) in [(1, "0.2.0", "unsigned"), (2, "0.0.1", "downgrade")] {
        let (t, p) = announce(seq, version);
        publish_raw(broker.port, t, p).await;
        let store = server.store.clone();
        let d = device.clone();
        eventually_async(
            30,
            &format!("the {reason} refusal reaches the server"),
            || {
                let store = store.clone();
                let d = d.clone();
                async move {
                    refusal_reasons(&store, &d)
                        .await
                        .contains(&reason.to_string())
                }
            },
        )
        .await;
    }
    assert_eq!(
        install.installed(),
        String::from_utf8(script("0.1.0")).unwrap()
    );

    // The signed 0.3.0: installed, and the daemon returns for a restart.
    let (t, p) = announce(3, "0.3.0");
    publish_raw(broker.port, t, p).await;
    let outcome = tokio::time::timeout(Duration::from_secs(60), daemon)
        .await
        .expect("the daemon returns after installing")
        .unwrap()
        .unwrap();
    assert_eq!(
        outcome,
        RunOutcome::RestartForUpdate {
            version: "0.3.0".into()
        }
    );
    assert_eq!(
        install.installed(),
        String::from_utf8(script("0.3.0")).unwrap()
    );

    // The new version starts, reaches the broker, confirms itself and reports.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(run_with(
        cfg,
        async {
            let _ = stopped.await;
        },
        RunOptions {
            version: "0.3.0".into(),
            release_keys: vec![public(&key)],
        },
    ));
    let store = server.store.clone();
    let d = device.clone();
    eventually_async(30, "the server sees 0.3.0 and update_applied", || {
        let store = store.clone();
        let d = d.clone();
        async move {
            agent_version(&store, &d).await.as_deref() == Some("0.3.0")
                && event_types(&store, &d)
                    .await
                    .contains(&"update_applied".to_string())
        }
    })
    .await;
    // Fleet versions are for administrators.
    parc_server::accounts_cli::add_account(
        &server.store,
        "admin",
        None,
        "admin",
        None,
        None,
        "a long test password",
    )
    .await
    .unwrap();
    let admin = parc_server::accounts_cli::issue_token(&server.store, "admin", "test", Some(1))
        .await
        .unwrap();
    let url = format!("http://{}/api/v1/fleet/versions", server.http);
    let anonymous = reqwest::get(&url).await.unwrap().status();
    assert_eq!(anonymous, 401);
    let versions: serde_json::Value = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        versions
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["agent_version"] == "0.3.0" && v["devices"] == 1),
        "{versions}"
    );
    assert_eq!(
        Updater::from_config(
            &agent_config(state.path(), &broker.url(), "v5", &install, 30),
            "0.3.0"
        )
        .unwrap()
        .pending(),
        None
    );
    let _ = stop.send(());
    daemon.await.unwrap().unwrap();
    let _ = server.stop.send(());
}

async fn device_row(
    store: &parc_server::store::Store,
    d: &parc_protocol::DeviceId,
) -> Option<parc_server::store::DeviceRow> {
    store
        .devices()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.device_id == d.as_str())
}

async fn agent_version(
    store: &parc_server::store::Store,
    d: &parc_protocol::DeviceId,
) -> Option<String> {
    device_row(store, d).await.and_then(|r| r.agent_version)
}

async fn device_events(
    store: &parc_server::store::Store,
    d: &parc_protocol::DeviceId,
) -> Vec<parc_server::store::UpdateEventRow> {
    store.update_events(Some(d.as_str()), 100).await.unwrap()
}

async fn eventually_async<F: std::future::Future<Output = bool>>(
    secs: u64,
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {secs} s waiting for: {what}");
}

async fn event_types(
    store: &parc_server::store::Store,
    d: &parc_protocol::DeviceId,
) -> Vec<String> {
    device_events(store, d)
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

async fn refusal_reasons(
    store: &parc_server::store::Store,
    d: &parc_protocol::DeviceId,
) -> Vec<String> {
    device_events(store, d)
        .await
        .into_iter()
        .filter(|e| e.event_type == "update_refused")
        .filter_map(|e| e.data?.get("reason")?.as_str().map(str::to_string))
        .collect()
}

fn command(
    device: &parc_protocol::DeviceId,
    key: &parc_protocol::DeviceKey,
    seq: u64,
    cmd: parc_protocol::Command,
) -> (String, Vec<u8>) {
    use parc_protocol::{Body, Epoch, Header, Message, seal};
    let m = Message::new(
        Header {
            device_id: device.clone(),
            epoch: Epoch::from_random([0x5f; 16]),
            seq,
            collected_at: Utc::now(),
            sent_at: Utc::now(),
        },
        Body::Cmd(cmd),
    );
    seal(&m, key)
}

async fn publish_raw(port: u16, topic: String, payload: Vec<u8>) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let (client, mut el) = AsyncClient::new(
        MqttOptions::new(format!("cmd-{}", free_port()), "127.0.0.1", port),
        10,
    );
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => return,
            Ok(Ok(_)) => {}
            other => panic!("publishing the command failed: {other:?}"),
        }
    }
}

/// The server announces a release to the online devices its rollout reaches (signed
/// `update_available` through its embedded broker), once widened; the daemon follows
/// its own channel only and installs the stable release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widening_a_rollout_announces_the_release_and_the_daemon_installs_it() {
    let server = start_server_with(|cfg| cfg.releases.announce_interval_seconds = 1).await;
    let key = signing_key();
    let files = tempfile::tempdir().unwrap();
    publish(
        &server,
        &signed_release(files.path(), "0.2.0", &key),
        "0.2.0",
        0,
        &[],
    )
    .await;
    // A pilot release reaching everyone: announced too, but not this device's channel.
    let pilot = signed_release(files.path(), "0.3.0", &key);
    parc_server::releases_cli::publish(
        &server.store,
        &pilot,
        "0.3.0",
        "pilot",
        100,
        &[],
        Utc::now(),
    )
    .await
    .unwrap();

    let state = tempfile::tempdir().unwrap();
    let inv = Collector::new(fixture("laptop"), None, "0.1.0").inventory();
    let e = enroll(
        &format!("http://{}", server.http),
        &request_from_inventory(&inv, &token(&server.store).await, "0.1.0"),
        None,
        &StateDir::new(state.path()),
    )
    .await
    .unwrap();
    let install = Install::new(vec![public(&key)]);
    let broker = format!("mqtt://127.0.0.1:{}", server.mqtt_port);
    let text = config_text(&broker, state.path(), "protocol = \"v4\"\n")
        + &format!(
            "[server]\nurl = \"http://{}\"\n[update]\ninstall_path = \"{}\"\n",
            server.http,
            install.updater.install_path.display()
        );
    let cfg = AgentConfig::parse(&text).unwrap();
    let daemon = tokio::spawn(run_with(
        cfg,
        std::future::pending(),
        RunOptions {
            version: "0.1.0".into(),
            release_keys: vec![public(&key)],
        },
    ));
    let store = server.store.clone();
    let d = e.device_id.clone();
    eventually_async(30, "the device is online", || {
        let store = store.clone();
        let d = d.clone();
        async move { device_row(&store, &d).await.and_then(|r| r.online) == Some(true) }
    })
    .await;
    // At 0 % nobody is told: give the announcer a few rounds.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!daemon.is_finished(), "nothing was announced at 0 %");
    assert!(
        !server
            .store
            .was_announced(d.as_str(), "stable", "0.2.0")
            .await
            .unwrap()
    );
    assert!(
        server
            .store
            .was_announced(d.as_str(), "pilot", "0.3.0")
            .await
            .unwrap()
    );

    server
        .store
        .set_rollout("stable", "0.2.0", 100, &[], Utc::now())
        .await
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), daemon)
        .await
        .expect("the announcement arrives and the daemon installs")
        .unwrap()
        .unwrap();
    assert_eq!(
        outcome,
        RunOutcome::RestartForUpdate {
            version: "0.2.0".into()
        }
    );
    assert_eq!(
        install.installed(),
        String::from_utf8(script("0.2.0")).unwrap()
    );
    assert!(
        server
            .store
            .was_announced(d.as_str(), "stable", "0.2.0")
            .await
            .unwrap()
    );
    let _ = server.stop.send(());
}
