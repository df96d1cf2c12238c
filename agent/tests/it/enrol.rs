//! Enrolment against the real server library, started in-process with SQLite and its
//! embedded broker (MQTT v4, device logins), then a full `once` through that broker.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::Utc;
use parc_agent::collect::Collector;
use parc_agent::enroll::{EnrollError, enroll, request_from_inventory};
use parc_agent::state::StateDir;
use parc_server::app::{Prepared, ServerError};
use parc_server::config::ServerConfig;
use parc_server::enroll::new_token;
use parc_server::store::{NewTokenRecord, Store};
use tokio::sync::oneshot;

use crate::support::*;

pub(crate) struct Server {
    pub(crate) store: Store,
    pub(crate) http: SocketAddr,
    pub(crate) mqtt_port: u16,
    pub(crate) stop: oneshot::Sender<()>,
    pub(crate) task: tokio::task::JoinHandle<Result<(), ServerError>>,
    pub(crate) _db: tempfile::TempDir,
}

pub(crate) async fn start_server() -> Server {
    start_server_with(|_| {}).await
}

/// A server whose configuration `adjust` may change (e.g. an external broker).
pub(crate) async fn start_server_with(adjust: impl FnOnce(&mut ServerConfig)) -> Server {
    let db = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::defaults();
    let mqtt_port = free_port();
    cfg.mqtt.listen = format!("127.0.0.1:{mqtt_port}").parse().unwrap();
    cfg.database.url = Some(Store::sqlite_url(db.path()));
    cfg.ingest.batch_max_wait_ms = 20;
    adjust(&mut cfg);
    let prepared = Prepared::new(cfg).await.unwrap();
    let store = prepared.ingest.store.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    let (stop, rx) = oneshot::channel();
    let task = tokio::spawn(prepared.run(listener, async {
        let _ = rx.await;
    }));
    Server {
        store,
        http,
        mqtt_port,
        stop,
        task,
        _db: db,
    }
}

pub(crate) async fn token(store: &Store) -> String {
    let t = new_token();
    store
        .create_token(
            &NewTokenRecord {
                id: &t.id,
                secret_sha256: &t.secret_sha256,
                label: "École test",
                scope: None,
                expires_at: Utc::now() + chrono::Duration::hours(1),
                max_uses: Some(5),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    t.token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_enrols_then_delivers_through_the_embedded_broker() {
    let server = start_server().await;
    let base = format!("http://{}", server.http);
    let state_dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(state_dir.path().join("state"));
    let inv = Collector::new(fixture("laptop"), None, "0.1.0").inventory();

    // A wrong token is refused with the server's code.
    let bad = request_from_inventory(&inv, "tok_nope.secret", "0.1.0");
    let err = enroll(&base, &bad, None, &state).await.unwrap_err();
    assert!(
        matches!(&err, EnrollError::Refused { status: 401 | 403, code, .. } if code.contains("token")),
        "{err}"
    );
    assert!(state.enrollment().is_err(), "nothing stored on refusal");

    let req = request_from_inventory(&inv, &token(&server.store).await, "0.1.0");
    let e = enroll(&base, &req, None, &state).await.unwrap();
    assert_eq!(state.enrollment().unwrap(), e);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(state.enrollment_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The issued credentials work on the embedded broker (v4), and the server stores
    // what the agent sends.
    let cfg = config(
        &format!("mqtt://127.0.0.1:{}", server.mqtt_port),
        state.path(),
        "protocol = \"v4\"",
    );
    let report = parc_agent::runtime::once(cfg, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(report.pending, 0, "{report:?}");
    let store = server.store.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = store.message_count(&e.device_id).await.unwrap();
        if n >= 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {n} messages stored; quarantine: {:?}",
            store.quarantine(10).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        store
            .latest_inventory(&e.device_id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.quarantine(10).await.unwrap().is_empty());

    let _ = server.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), server.task).await;
}
