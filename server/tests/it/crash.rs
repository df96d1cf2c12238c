//! Crash safety: SIGKILL the server binary in the middle of a QoS 1 burst from 100
//! devices, restart it, and every published message is stored exactly once — the
//! broker kept what was not acknowledged, the store deduplicated what was redelivered.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

fn spawn_server(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_parc-server"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("PARC_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting parc-server")
}

async fn wait_ready(http: std::net::SocketAddr) {
    eventually(30, "server ready", || async move {
        tokio::net::TcpStream::connect(http).await.is_ok()
            && http_get(http, "/readyz").await.0 == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto + postgres"]
async fn sigkill_during_a_qos1_burst_loses_and_duplicates_nothing_on_postgres() {
    stopped_during_a_burst(TestDb::postgres().await, Stop::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto"]
async fn sigkill_during_a_qos1_burst_loses_and_duplicates_nothing_on_sqlite() {
    stopped_during_a_burst(TestDb::sqlite(), Stop::Kill).await;
}

/// A graceful stop mid-burst: what was read and handed to the decoders or writers is
/// committed and acknowledged, the rest stays with the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto"]
async fn sigterm_during_a_qos1_burst_stops_cleanly_and_loses_and_duplicates_nothing() {
    stopped_during_a_burst(TestDb::sqlite(), Stop::Term).await;
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    Kill,
    Term,
}

async fn stopped_during_a_burst(db: TestDb, stop: Stop) {
    const DEVICES: usize = 100;
    const PER_DEVICE: usize = 30;
    let mosquitto = Mosquitto::start();
    let store = db.store().await;
    let devices: Vec<TestDevice> = (0..DEVICES)
        .map(|n| TestDevice::new(&format!("d-crash-{n:03}"), n as u8))
        .collect();
    register(&store, &devices).await;

    let dir = tempfile::tempdir().unwrap();
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"{http}\"\n[mqtt]\nurl = \"{}\"\nclient_id = \"parc-crash-test\"\n\
             [database]\nurl = \"{}\"\n[storage]\ndata_dir = \"{}\"\n",
            mosquitto.url(),
            db.url,
            dir.path().display()
        ),
    )
    .unwrap();

    let mut server = spawn_server(&config);
    wait_ready(http).await;

    // Each device paces its messages so the burst outlasts the stop; a graceful stop
    // takes longer than a kill, so its burst is slower.
    let pause = match stop {
        Stop::Kill => Duration::from_millis(40),
        Stop::Term => Duration::from_millis(300),
    };
    let port = mosquitto.port;
    let mut publishers = Vec::new();
    for mut d in devices.clone() {
        publishers.push(tokio::spawn(async move {
            let mut frames = Vec::new();
            for i in 0..PER_DEVICE {
                let m = d.health(90.0 - i as f64 / 10.0);
                frames.push(d.seal(&m));
            }
            let id = d.id.to_string();
            for chunk in frames.chunks(5) {
                publish_all(
                    port,
                    &format!("{id}-{}", chunk.len()),
                    d.login(),
                    chunk.to_vec(),
                )
                .await;
                tokio::time::sleep(pause).await;
            }
        }));
    }
    // Kill once part of the burst is committed, so some messages are stored, some
    // are in the server's queue or batch unacknowledged, some are still to come.
    let s = store.clone();
    eventually(30, "part of the burst stored", || {
        let s = s.clone();
        async move { s.counts().await.unwrap().messages >= 500 }
    })
    .await;
    match stop {
        Stop::Kill => {
            server.kill().expect("SIGKILL the server");
            server.wait().unwrap();
        }
        Stop::Term => {
            let status = terminate(server).await;
            assert!(
                status.success(),
                "SIGTERM mid-burst stops cleanly: {status}"
            );
        }
    }
    let stored_at_stop = store.counts().await.unwrap().messages;
    for p in publishers {
        p.await.unwrap();
    }
    let total = (DEVICES * PER_DEVICE) as i64;
    eprintln!("stored when stopped ({stop:?}): {stored_at_stop} of {total}");
    assert!(
        stored_at_stop < total,
        "the stop happened after the whole burst was stored ({stored_at_stop} of {total})"
    );

    let server = spawn_server(&config);
    wait_ready(http).await;
    let s = store.clone();
    eventually(60, "every message stored after the restart", || {
        let s = s.clone();
        async move { s.counts().await.unwrap().messages >= total }
    })
    .await;
    // Let any redelivery in flight land, then check nothing was stored twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = store.counts().await.unwrap();
    assert_eq!(c.messages, total);
    assert_eq!(c.health_samples, total);
    for d in &devices {
        assert_eq!(store.message_count(&d.id).await.unwrap(), PER_DEVICE as i64);
    }
    let status = terminate(server).await;
    assert!(
        status.success(),
        "SIGTERM stops the server cleanly: {status}"
    );
}

/// Sends SIGTERM and waits for the server to exit.
async fn terminate(mut server: Child) -> std::process::ExitStatus {
    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(server.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success(), "kill -TERM: {kill}");
    tokio::task::spawn_blocking(move || server.wait().unwrap())
        .await
        .unwrap()
}
