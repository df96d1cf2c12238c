//! The uplink against a real Mosquitto (external suite: `cargo test -- --ignored`).
//! Each test starts its own broker and fails, not skips, when Mosquitto is missing.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use parc_agent::outbox::Outbox;
use parc_agent::spool::Spool;
use parc_agent::state::{StateDir, random_epoch};
use parc_protocol::{Body, Event, Kind, Presence};

use crate::support::*;

/// Spools `n` small events directly (as a long outage would leave them); returns
/// their seqs.
fn prefill(state_dir: &std::path::Path, dev: &TestDevice, n: u64) -> Vec<u64> {
    let spool = Spool::open(
        &StateDir::new(state_dir).spool_path(),
        20 << 20,
        random_epoch,
    )
    .unwrap();
    let ob = Outbox::new(dev.id.clone(), dev.key.clone(), spool.epoch().clone());
    (0..n)
        .map(|i| {
            ob.push(
                &spool,
                Body::Event(Event {
                    event_type: "test_backlog".into(),
                    occurred_at: Utc::now(),
                    detail: Some(format!("backlog message {i}")),
                    data: Default::default(),
                }),
                Utc::now(),
            )
            .unwrap()
            .seq
        })
        .collect()
}

async fn once_delivers_everything(protocol: &str) {
    let broker = Mosquitto::start();
    let dev = TestDevice::new("d-once", 3);
    let state = tempfile::tempdir().unwrap();
    dev.write_state(state.path());
    let rx = subscribe(broker.port, dev.key.clone());
    let cfg = config(
        &broker.url(),
        state.path(),
        &format!("protocol = \"{protocol}\""),
    );
    let report = parc_agent::runtime::once(cfg, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(report.pending, 0, "{report:?}");
    assert!(report.connected);
    eventually(10, "inventory, health, hello and online status", || {
        let r = rx.lock().unwrap();
        let kinds = r.kinds();
        [Kind::Inventory, Kind::Health, Kind::Hello, Kind::Status]
            .iter()
            .all(|k| kinds.contains(k))
    })
    .await;
    {
        let r = rx.lock().unwrap();
        assert!(r.refused.is_empty(), "{:?}", r.refused);
        let inv = r
            .by_seq
            .values()
            .flatten()
            .find(|m| m.kind() == Kind::Inventory)
            .unwrap();
        assert_eq!(inv.header.device_id, dev.id);
        assert!(inv.header.sent_at >= inv.header.collected_at);
        let Body::Inventory(body) = &inv.body else {
            unreachable!()
        };
        assert!(
            body.identity.product_name.is_some(),
            "fixture inventory collected"
        );
    }
    // Leaving without DISCONNECT lets the broker publish the will: offline, signed.
    eventually(10, "the offline will", || {
        rx.lock()
            .unwrap()
            .by_seq
            .values()
            .flatten()
            .any(|m| matches!(&m.body, Body::Status(s) if s.state == Presence::Offline))
    })
    .await;
    // Everything left the spool.
    let spool = Spool::open(
        &StateDir::new(state.path()).spool_path(),
        20 << 20,
        random_epoch,
    )
    .unwrap();
    assert_eq!(spool.len().unwrap(), 0);
    assert!(spool.stats().unwrap().last_ack_ms.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto"]
async fn once_publishes_signed_messages_over_mqtt_v5() {
    once_delivers_everything("v5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto"]
async fn once_publishes_signed_messages_over_mqtt_v4() {
    once_delivers_everything("v4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto"]
async fn once_fails_clearly_when_the_broker_is_down() {
    let dev = TestDevice::new("d-down", 4);
    let state = tempfile::tempdir().unwrap();
    dev.write_state(state.path());
    let url = format!("mqtt://127.0.0.1:{}", free_port());
    let report = parc_agent::runtime::once(config(&url, state.path(), ""), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(report.pending >= 2, "{report:?}");
    assert!(!report.connected);
    assert!(report.last_error.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto"]
async fn a_broker_restart_mid_stream_loses_nothing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("parc_agent=debug")
        .with_test_writer()
        .try_init();
    let mut broker = Mosquitto::start();
    let dev = TestDevice::new("d-restart", 5);
    let state = tempfile::tempdir().unwrap();
    dev.write_state(state.path());
    let seqs = prefill(state.path(), &dev, 600);
    let rx = subscribe(broker.port, dev.key.clone());
    let cfg = config(
        &broker.url(),
        state.path(),
        "drain_rate_per_second = 200\ninflight = 16",
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(parc_agent::runtime::run(cfg, async {
        let _ = stop_rx.await;
    }));
    eventually(10, "the drain started", || {
        rx.lock().unwrap().by_seq.len() > 50
    })
    .await;
    broker.stop();
    tokio::time::sleep(Duration::from_millis(700)).await;
    broker.restart();
    let want: BTreeSet<u64> = seqs.iter().copied().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let missing = || {
        let r = rx.lock().unwrap();
        want.iter()
            .filter(|s| !r.by_seq.contains_key(s))
            .copied()
            .collect::<Vec<u64>>()
    };
    while !missing().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = missing();
    assert!(
        m.is_empty(),
        "{} seqs missing, first {:?}",
        m.len(),
        &m[..m.len().min(20)]
    );
    let _ = stop_tx.send(());
    let stopped = tokio::time::timeout(Duration::from_secs(5), agent).await;
    assert!(stopped.is_ok(), "the agent stops within 5 s");
    stopped.unwrap().unwrap().unwrap();
    assert!(rx.lock().unwrap().refused.is_empty());
}

/// The `parc-agent` binary SIGKILLed at random moments and the broker restarted, while
/// 2,000 spooled messages drain: every seq arrives at least once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto"]
async fn chaos_kill_the_agent_and_restart_the_broker() {
    const N: u64 = 2_000;
    let mut broker = Mosquitto::start();
    let dev = TestDevice::new("d-chaos", 6);
    let state = tempfile::tempdir().unwrap();
    dev.write_state(state.path());
    let seqs = prefill(state.path(), &dev, N);
    let conf = state.path().join("agent.toml");
    std::fs::write(
        &conf,
        config_text(&broker.url(), state.path(), "drain_rate_per_second = 400"),
    )
    .unwrap();
    let rx = subscribe(broker.port, dev.key.clone());
    let log_path = state.path().join("agent.log");
    let log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap()
    };
    let want: BTreeSet<u64> = seqs.iter().copied().collect();
    let missing = || {
        let r = rx.lock().unwrap();
        want.iter().filter(|s| !r.by_seq.contains_key(s)).count()
    };
    // xorshift: reproducible "random" moments.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |max: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % max
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut kills = 0;
    let mut restarts = 0;
    while missing() > 0 && tokio::time::Instant::now() < deadline {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_parc-agent"))
            .arg("--config")
            .arg(&conf)
            .arg("run")
            .env("PARC_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200 + rand(1_300))).await;
        if rand(3) == 0 {
            broker.restart();
            restarts += 1;
            tokio::time::sleep(Duration::from_millis(rand(800))).await;
        }
        unsafe_kill(child.id(), libc::SIGKILL);
        let _ = child.wait();
        kills += 1;
    }
    // Then let it finish in peace.
    if missing() > 0 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_parc-agent"))
            .arg("--config")
            .arg(&conf)
            .arg("run")
            .stdout(std::process::Stdio::null())
            .stderr(log())
            .spawn()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while missing() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if missing() > 0 {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            panic!(
                "{} seqs missing after the chaos; agent log tail:\n{}",
                missing(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        unsafe_kill(child.id(), libc::SIGTERM);
        let _ = child.wait();
    }
    let r = rx.lock().unwrap();
    assert!(
        r.refused.is_empty(),
        "{:?}",
        &r.refused[..r.refused.len().min(3)]
    );
    let dups: usize = want.iter().map(|s| r.by_seq[s].len() - 1).sum();
    eprintln!("chaos: {kills} kills, {restarts} broker restarts, {dups} duplicates");
    assert!(kills > 0);
}
