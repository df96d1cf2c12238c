//! Faults become tickets end to end: devices publish through the broker, the rules
//! raise, tickets open and go out to a real HTTP receiver (signature checked) and, in
//! the external suite, to a real SMTP sink (Python's aiosmtpd); repairs are confirmed
//! by telemetry; a crash between ticket and delivery still delivers exactly once;
//! out-of-warranty faults stay with the authority; a batch defect is one claim.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use parc_protocol::ticket::{TicketNotice, verify_notice};
use parc_server::app::{Prepared, ServerError};
use parc_server::config::ServerConfig;
use parc_server::store::{Store, TicketScope, load_demo_dataset};
use tokio::sync::oneshot;

use crate::support::*;

const SECRET: &str = "test-webhook-secret";
/// Lot 2 laptops of order BC-2026-006 (delivered 2026-10-05, battery warranty 12
/// months, SIVOS not self-maintained): battery faults go to the holder mobil-edu.
const IN_WARRANTY_SERIAL: &str = "PF5DR00001";
/// Lot 2 laptop of BC-2024-001 (delivered 2024-02-12): battery warranty over.
const BATTERY_WARRANTY_OVER_SERIAL: &str = "PARCDEMO0001";

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Received {
    key: String,
    event: String,
    signature_ok: bool,
    /// Answered 2xx (the effect happened).
    accepted: bool,
    notice: Option<TicketNotice>,
}

/// A real webhook receiver: records every request; while `hang` is set it never
/// answers (the sender times out or dies waiting).
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    hang: Arc<AtomicBool>,
    _stop: Arc<oneshot::Sender<()>>,
}

impl Receiver {
    async fn start() -> Self {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let hang = Arc::new(AtomicBool::new(false));
        let (g, h) = (got.clone(), hang.clone());
        let app = axum::Router::new().route(
            "/tickets",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (g, h) = (g.clone(), h.clone());
                async move {
                    let header = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    let signature_ok =
                        verify_notice(SECRET.as_bytes(), &body, &header("x-parc-signature"));
                    let hanging = h.load(Ordering::SeqCst);
                    g.lock().unwrap().push(Received {
                        key: header("idempotency-key"),
                        event: header("x-parc-event"),
                        signature_ok,
                        accepted: !hanging,
                        notice: serde_json::from_slice(&body).ok(),
                    });
                    if hanging {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            got,
            hang,
            _stop: Arc::new(tx),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/tickets", self.addr)
    }

    fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    fn accepted(&self, event: &str) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|r| r.accepted && r.event == event)
            .collect()
    }
}

/// A real SMTP server writing what it receives into a maildir.
struct SmtpSink {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl SmtpSink {
    fn start() -> Self {
        let python = Path::new("/usr/bin/python3");
        assert!(
            python.exists(),
            "/usr/bin/python3 is missing: install Debian's python3-aiosmtpd"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new(python)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-u",
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg("-l")
            .arg(format!("127.0.0.1:{port}"))
            .arg(dir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting aiosmtpd (Debian package python3-aiosmtpd)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { port, dir, child };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("aiosmtpd did not listen on {port} (is python3-aiosmtpd installed?)");
    }

    fn messages(&self) -> Vec<String> {
        let new = self.dir.path().join("mail/new");
        let Ok(entries) = std::fs::read_dir(new) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Server {
    store: Store,
    maintenance: std::sync::Arc<parc_server::maintenance::Maintenance>,
    mqtt_port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
    _db: TestDb,
}

impl Server {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("server stops within 15 s")
            .unwrap()
            .unwrap();
    }
}

/// Procurement data: the demo dataset, plus `extra` laptops of order BC-2026-006.
async fn procurement(store: &Store, receiver: &Receiver, extra: usize) {
    load_demo_dataset(store).await.unwrap();
    let mut csv = String::from(
        "serial,model,order_reference,lot,site_uai,delivery_date,acceptance_date,cart\n",
    );
    csv.push_str(&format!(
        "{IN_WARRANTY_SERIAL},ThinkPad X13 Gen 2i,BC-2026-006,Lot 2,0420102H,2026-10-05,2026-10-12,\n"
    ));
    for n in 0..extra {
        csv.push_str(&format!(
            "PFSTORM{n:03},ThinkPad X13 Gen 2i,BC-2026-006,Lot 2,0420102H,2026-10-05,2026-10-12,\n"
        ));
    }
    let parsed = parc_server::procurement::parse_manifest(&csv).unwrap();
    let report = store
        .import_deliveries(&parsed, false, chrono::Utc::now(), &|_, _| {})
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(
        store
            .set_holder_webhook("mobil-edu", &receiver.url(), SECRET)
            .await
            .unwrap()
    );
}

async fn start(db: TestDb, receiver: &Receiver, smtp: Option<&SmtpSink>, extra: usize) -> Server {
    start_with(db, receiver, smtp, extra, |_| {}).await
}

async fn start_with(
    db: TestDb,
    receiver: &Receiver,
    smtp: Option<&SmtpSink>,
    extra: usize,
    adjust: impl FnOnce(&mut ServerConfig),
) -> Server {
    let mut cfg = ServerConfig::defaults();
    let mqtt_port = free_port();
    cfg.mqtt.listen = format!("127.0.0.1:{mqtt_port}").parse().unwrap();
    cfg.database.url = Some(db.url.clone());
    cfg.ingest.batch_max_wait_ms = 20;
    cfg.dispatch.retry_first_seconds = 1;
    cfg.dispatch.smtp_url = smtp.map(|s| format!("smtp://127.0.0.1:{}", s.port));
    adjust(&mut cfg);
    let prepared = Prepared::new(cfg).await.unwrap();
    let store = prepared.ingest.store.clone();
    let maintenance = prepared.maintenance.clone();
    procurement(&store, receiver, extra).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(prepared.run(listener, async {
        let _ = rx.await;
    }));
    eventually(20, "server ready", || async {
        http_get(http, "/readyz").await.0 == 200
    })
    .await;
    Server {
        store,
        maintenance,
        mqtt_port,
        stop: Some(tx),
        task,
        _db: db,
    }
}

/// A test device reporting `serial`, registered in `store`.
async fn device(store: &Store, name: &str, n: u8, serial: &str) -> TestDevice {
    let d = TestDevice::new(name, n);
    let mut enrolment = d.enrolment();
    enrolment.serial = Some(serial.to_string());
    enrolment.hostname = Some(format!("pc-{name}"));
    store
        .upsert_device(&enrolment, chrono::Utc::now())
        .await
        .unwrap();
    d
}

async fn report_battery(port: u16, d: &mut TestDevice, values: &[f64]) {
    let frames = values
        .iter()
        .map(|v| {
            let m = d.health(*v);
            d.seal(&m)
        })
        .collect();
    publish_all(port, &format!("pub-{}", d.id), d.login(), frames).await;
}

/// Waits until the rules have judged `n` health samples since the server started: from
/// then on, whatever those samples lead to (or not) is committed, so an absence can be
/// asserted without guessing a delay.
async fn judged(server: &Server, n: u64) {
    let m = server.maintenance.clone();
    eventually(15, &format!("the rules judged {n} samples"), || {
        let m = m.clone();
        async move { m.metrics.rules_samples.get() >= n }
    })
    .await;
}

async fn the_ticket(store: &Store) -> parc_server::store::TicketRow {
    let tickets = store.tickets(&TicketScope::All, false, 100).await.unwrap();
    assert_eq!(tickets.len(), 1, "{tickets:#?}");
    tickets.into_iter().next().unwrap()
}

async fn worn_battery_becomes_one_ticket_sent_once_and_a_swap_closes_it(
    db: TestDb,
    smtp: Option<SmtpSink>,
) {
    let receiver = Receiver::start().await;
    let server = start(db, &receiver, smtp.as_ref(), 0).await;
    let store = server.store.clone();
    let mut d = device(&store, "d-battery-1", 11, IN_WARRANTY_SERIAL).await;

    // Two bad samples are not enough (the rule wants three).
    report_battery(server.mqtt_port, &mut d, &[52.0, 52.5]).await;
    judged(&server, 2).await;
    assert!(
        store
            .tickets(&TicketScope::All, false, 10)
            .await
            .unwrap()
            .is_empty()
    );

    report_battery(server.mqtt_port, &mut d, &[51.8]).await;
    eventually(15, "the ticket is delivered to the webhook", || {
        let r = receiver.clone();
        async move { !r.accepted("ticket.created").is_empty() }
    })
    .await;
    // More bad samples while it is open attach nothing new.
    report_battery(server.mqtt_port, &mut d, &[51.0, 50.5, 50.0]).await;
    judged(&server, 6).await;
    // The dispatcher records "sent" once the webhook has answered, a moment after the
    // receiver saw the delivery.
    let s = store.clone();
    eventually(15, "the ticket recorded as sent", || {
        let s = s.clone();
        async move { the_ticket(&s).await.status == "sent" }
    })
    .await;

    let ticket = the_ticket(&store).await;
    assert_eq!(ticket.queue, "holder");
    assert_eq!(ticket.holder_id.as_deref(), Some("mobil-edu"));
    assert_eq!(ticket.rule_id, "battery_worn");
    assert_eq!(ticket.status, "sent");
    assert!(ticket.gti_due.is_some() && ticket.gtr_due.is_some());
    let created = receiver.accepted("ticket.created");
    assert_eq!(created.len(), 1, "{created:#?}");
    assert!(created[0].signature_ok, "X-Parc-Signature verifies");
    assert!(!created[0].key.is_empty());
    let notice = created[0]
        .notice
        .clone()
        .expect("the body is a ticket notice");
    let t = &notice.ticket;
    assert_eq!(t.reference, ticket.reference);
    assert_eq!(t.fault.value, 51.8);
    assert_eq!(t.fault.samples, 3);
    assert!(!t.fault.history.is_empty());
    let dev = &t.devices[0];
    assert_eq!(dev.serial.as_deref(), Some(IN_WARRANTY_SERIAL));
    assert_eq!(dev.model.as_deref(), Some("ThinkPad X13 Gen 2i"));
    assert_eq!(dev.order_reference.as_deref(), Some("BC-2026-006"));
    assert_eq!(dev.site.as_ref().unwrap().uai, "0420102H");
    assert!(dev.warranty_end.is_some() && dev.delivered_on.is_some());
    assert_eq!(t.lot.as_ref().unwrap().number, 2);
    assert_eq!(t.holder.as_ref().unwrap().id, "mobil-edu");
    assert!(t.deadlines.gti_due.is_some());
    if let Some(sink) = &smtp {
        eventually(15, "one e-mail in the SMTP sink", || async {
            sink.messages().len() == 1
        })
        .await;
        let mail = &sink.messages()[0];
        assert!(mail.contains(&ticket.reference), "{mail}");
        assert!(mail.contains(IN_WARRANTY_SERIAL));
        assert!(mail.contains("To: sav@mobil-edu.example"), "{mail}");
        assert!(
            mail.contains("Message-ID: <parc-"),
            "the idempotency key: {mail}"
        );
        assert!(mail.contains("text/html") && mail.contains("text/plain"));
    }

    // The battery is swapped: three good samples clear the rule and close the ticket.
    report_battery(server.mqtt_port, &mut d, &[97.0, 97.0, 96.5]).await;
    let s = store.clone();
    let reference = ticket.reference.clone();
    eventually(15, "the ticket closes on telemetry", || {
        let (s, reference) = (s.clone(), reference.clone());
        async move {
            s.ticket(&TicketScope::All, &reference)
                .await
                .unwrap()
                .is_some_and(|t| t.status == "closed")
        }
    })
    .await;
    let ticket = the_ticket(&store).await;
    assert!(ticket.resolved_at.is_some() && ticket.closed_at.is_some());
    let trail: Vec<_> = store
        .ticket_events(ticket.id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.to_status)
        .collect();
    assert_eq!(trail, ["new", "sent", "resolved", "closed"]);
    // Still exactly one creation delivered; the holder heard about the closure.
    eventually(15, "the update reaches the holder", || {
        let r = receiver.clone();
        async move { !r.accepted("ticket.updated").is_empty() }
    })
    .await;
    assert_eq!(receiver.accepted("ticket.created").len(), 1);
    assert!(receiver.all().iter().all(|r| r.signature_ok));
    if let Some(sink) = &smtp {
        eventually(15, "the update e-mail", || async {
            sink.messages().len() >= 2
        })
        .await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worn_battery_becomes_one_ticket_sent_once_and_a_swap_closes_it_sqlite() {
    worn_battery_becomes_one_ticket_sent_once_and_a_swap_closes_it(TestDb::sqlite(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3-aiosmtpd"]
async fn worn_battery_ticket_also_reaches_a_real_smtp_sink_in_french() {
    worn_battery_becomes_one_ticket_sent_once_and_a_swap_closes_it(
        TestDb::sqlite(),
        Some(SmtpSink::start()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs postgres + python3-aiosmtpd"]
async fn worn_battery_ticket_on_postgres_with_webhook_and_smtp() {
    worn_battery_becomes_one_ticket_sent_once_and_a_swap_closes_it(
        TestDb::postgres().await,
        Some(SmtpSink::start()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_warranty_battery_stays_in_the_authoritys_queue() {
    let receiver = Receiver::start().await;
    let server = start(TestDb::sqlite(), &receiver, None, 0).await;
    let store = server.store.clone();
    let mut d = device(&store, "d-battery-old", 12, BATTERY_WARRANTY_OVER_SERIAL).await;
    report_battery(server.mqtt_port, &mut d, &[52.0, 52.0, 52.0]).await;
    let s = store.clone();
    eventually(15, "a ticket opens", || {
        let s = s.clone();
        async move {
            !s.tickets(&TicketScope::All, false, 10)
                .await
                .unwrap()
                .is_empty()
        }
    })
    .await;
    let ticket = the_ticket(&store).await;
    assert_eq!(ticket.queue, "authority");
    assert_eq!(ticket.route_reason, "warranty expired");
    assert_eq!(ticket.organisation_id.as_deref(), Some("commune-valbois"));
    assert_eq!(
        ticket.gti_due, None,
        "no contractual deadline on the authority's own queue"
    );
    assert!(
        store
            .tickets(&TicketScope::Holder("mobil-edu".into()), false, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .tickets(
                &TicketScope::Organisation("commune-valbois".into()),
                false,
                10
            )
            .await
            .unwrap()
            .len(),
        1
    );
    // Nothing queued, nothing sent.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(store.ticket_deliveries(ticket.id).await.unwrap().is_empty());
    assert!(receiver.all().is_empty(), "{:#?}", receiver.all());
    assert_eq!(ticket.status, "new");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_laptops_of_one_lot_and_model_wearing_out_make_one_grouped_claim() {
    const N: usize = 30;
    let receiver = Receiver::start().await;
    let server = start(TestDb::sqlite(), &receiver, None, N).await;
    let store = server.store.clone();
    let mut devices = Vec::new();
    for n in 0..N {
        let serial = format!("PFSTORM{n:03}");
        devices.push(device(&store, &format!("d-storm-{n:03}"), 100 + n as u8, &serial).await);
    }
    for d in &mut devices {
        report_battery(server.mqtt_port, d, &[55.0, 54.0, 53.0]).await;
    }
    let s = store.clone();
    eventually(30, "a claim listing the 30", || {
        let s = s.clone();
        async move {
            let open = s.tickets(&TicketScope::All, true, 100).await.unwrap();
            open.len() == 1
                && open[0].kind == "batch"
                && s.ticket_devices(open[0].id).await.unwrap().len() == N
        }
    })
    .await;
    let open = store.tickets(&TicketScope::All, true, 100).await.unwrap();
    let claim = &open[0];
    assert_eq!(claim.queue, "holder");
    assert_eq!(claim.model.as_deref(), Some("ThinkPad X13 Gen 2i"));
    assert_eq!(claim.lot_number, Some(2));
    let members: BTreeSet<String> = store
        .ticket_devices(claim.id)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let expected: BTreeSet<String> = devices.iter().map(|d| d.id.to_string()).collect();
    assert_eq!(members, expected);
    // The few tickets opened before the storm was recognised were folded into it.
    let all = store.tickets(&TicketScope::All, false, 100).await.unwrap();
    for t in all.iter().filter(|t| t.kind == "device") {
        assert_eq!(t.parent_id, Some(claim.id), "{t:#?}");
        assert_eq!(t.status, "closed");
    }
    assert!(
        all.len() < 6,
        "at most threshold − 1 device tickets: {}",
        all.len()
    );
    eventually(15, "the claim is delivered once", || {
        let r = receiver.clone();
        let reference = claim.reference.clone();
        async move {
            r.accepted("ticket.created")
                .iter()
                .filter(|x| {
                    x.notice
                        .as_ref()
                        .is_some_and(|n| n.ticket.reference == reference)
                })
                .count()
                == 1
        }
    })
    .await;
    let (doc, _) = store.ticket_document(claim.id).await.unwrap();
    assert_eq!(doc.devices.len(), N);
    server.stop().await;
}

fn spawn_server(config: &Path) -> Child {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs the server binary"]
async fn sigkill_between_ticket_and_delivery_still_delivers_exactly_once() {
    let receiver = Receiver::start().await;
    // The first delivery attempt hangs: the server dies with the ticket stored and
    // its delivery in flight.
    receiver.hang.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let url = Store::sqlite_url(&data);
    let store = Store::connect(&url).await.unwrap();
    procurement(&store, &receiver, 0).await;
    let mut d = device(&store, "d-crash-ticket", 21, IN_WARRANTY_SERIAL).await;

    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mqtt_port = free_port();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"{http}\"\n[mqtt]\nlisten = \"127.0.0.1:{mqtt_port}\"\n\
             [storage]\ndata_dir = \"{}\"\n[dispatch]\nretry_first_seconds = 1\ntimeout_seconds = 60\n",
            data.display()
        ),
    )
    .unwrap();
    let mut server = spawn_server(&config);
    eventually(30, "server ready", || async move {
        tokio::net::TcpStream::connect(http).await.is_ok()
            && http_get(http, "/readyz").await.0 == 200
    })
    .await;
    report_battery(mqtt_port, &mut d, &[52.0, 52.0, 52.0]).await;
    eventually(15, "the delivery is in flight", || {
        let r = receiver.clone();
        async move { !r.all().is_empty() }
    })
    .await;
    assert_eq!(the_ticket(&store).await.status, "new");
    server.kill().unwrap();
    server.wait().unwrap();

    receiver.hang.store(false, Ordering::SeqCst);
    let mut server = spawn_server(&config);
    eventually(30, "delivered after the restart", || {
        let r = receiver.clone();
        async move { r.accepted("ticket.created").len() == 1 }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.kill().unwrap();
    server.wait().unwrap();

    let all = receiver.all();
    assert_eq!(receiver.accepted("ticket.created").len(), 1, "{all:#?}");
    let keys: BTreeSet<&str> = all.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        keys.len(),
        1,
        "every attempt carries the same idempotency key"
    );
    let ticket = the_ticket(&store).await;
    assert_eq!(ticket.status, "sent");
    let deliveries = store.ticket_deliveries(ticket.id).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].outcome.as_deref(), Some("delivered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_repair_contradicted_by_telemetry_reopens_the_ticket() {
    use parc_server::tickets::{Actor, Status, check_transition};
    let receiver = Receiver::start().await;
    let server = start(TestDb::sqlite(), &receiver, None, 0).await;
    let store = server.store.clone();
    let mut d = device(&store, "d-battery-2", 13, IN_WARRANTY_SERIAL).await;
    report_battery(server.mqtt_port, &mut d, &[50.0, 50.0, 50.0]).await;
    // The dispatcher records the ticket as sent once the webhook has answered, so the
    // receiver can see the delivery a moment before the store says "sent".
    eventually(15, "the ticket is delivered and recorded as sent", || {
        let (r, store) = (receiver.clone(), store.clone());
        async move {
            !r.accepted("ticket.created").is_empty() && the_ticket(&store).await.status == "sent"
        }
    })
    .await;
    let t = the_ticket(&store).await;
    // The holder says it fixed it...
    let notify = store.holder_channels("mobil-edu", false).await.unwrap();
    for (from, to) in [
        (Status::Sent, Status::Acknowledged),
        (Status::Acknowledged, Status::Resolved),
    ] {
        check_transition(from, to, Actor::Holder).unwrap();
        assert!(
            store
                .change_ticket_status(
                    t.id,
                    from.as_str(),
                    to.as_str(),
                    "holder:mobil-edu",
                    Some("battery replaced"),
                    &notify,
                    chrono::Utc::now()
                )
                .await
                .unwrap()
        );
    }
    // ...a stale `from` is refused (someone moved it meanwhile).
    assert!(
        !store
            .change_ticket_status(
                t.id,
                "sent",
                "acknowledged",
                "holder:mobil-edu",
                None,
                &notify,
                chrono::Utc::now()
            )
            .await
            .unwrap()
    );
    // ...but the battery still reads 50 %: after the rule's three samples it reopens.
    report_battery(server.mqtt_port, &mut d, &[50.0, 50.0]).await;
    judged(&server, 5).await;
    assert_eq!(the_ticket(&store).await.status, "resolved");
    report_battery(server.mqtt_port, &mut d, &[50.0]).await;
    let s = store.clone();
    eventually(15, "reopened", || {
        let s = s.clone();
        async move {
            s.tickets(&TicketScope::All, false, 10).await.unwrap()[0].status == "reopened"
        }
    })
    .await;
    let t = the_ticket(&store).await;
    assert_eq!(t.resolved_at, None, "GTR runs again");
    let actors: Vec<String> = store
        .ticket_events(t.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.to_status.is_some())
        .map(|e| format!("{}:{}", e.actor, e.to_status.unwrap()))
        .collect();
    assert_eq!(
        actors,
        [
            "system:new",
            "system:sent",
            "holder:mobil-edu:acknowledged",
            "holder:mobil-edu:resolved",
            "telemetry:reopened"
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_silent_for_five_school_days_gets_a_connectivity_ticket_that_its_return_closes() {
    let receiver = Receiver::start().await;
    let server = start(TestDb::sqlite(), &receiver, None, 0).await;
    let store = server.store.clone();
    let mut d = device(&store, "d-silent", 14, IN_WARRANTY_SERIAL).await;
    report_battery(server.mqtt_port, &mut d, &[90.0]).await;
    let s = store.clone();
    eventually(10, "seen", || {
        let s = s.clone();
        async move { s.devices().await.unwrap()[0].last_seen.is_some() }
    })
    .await;
    let now = chrono::Utc::now();
    // Three days on (a weekend at most in between): not yet five school days.
    let o = server
        .maintenance
        .silence_round(now + chrono::Duration::days(3))
        .await
        .unwrap();
    assert_eq!(o.raised, 0);
    // Three weeks on: silent for well over five school days.
    let o = server
        .maintenance
        .silence_round(now + chrono::Duration::days(21))
        .await
        .unwrap();
    assert_eq!(o.raised, 1);
    let t = the_ticket(&store).await;
    assert_eq!(t.rule_id, "silent_school_days");
    assert_eq!(t.category, "connectivity");
    assert_eq!(
        t.queue, "authority",
        "connectivity is the authority's business"
    );
    // Checking again changes nothing.
    let o = server
        .maintenance
        .silence_round(now + chrono::Duration::days(22))
        .await
        .unwrap();
    assert_eq!(o.raised + o.tickets_opened, 0);
    // The device reports again: the silence clears and the ticket closes.
    report_battery(server.mqtt_port, &mut d, &[90.0]).await;
    let s = store.clone();
    eventually(15, "closed on return", || {
        let s = s.clone();
        async move { s.tickets(&TicketScope::All, false, 10).await.unwrap()[0].status == "closed" }
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lots_own_battery_threshold_overrides_the_shipped_rule() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[override]]\nlot = \"Lot 2 – Classes mobiles\"\nrule = \"battery_worn\"\nbelow = 45.0\n",
    )
    .unwrap();
    let receiver = Receiver::start().await;
    let server = start_with(TestDb::sqlite(), &receiver, None, 0, |cfg| {
        cfg.rules.file = Some(rules.clone());
    })
    .await;
    let store = server.store.clone();
    let mut d = device(&store, "d-lot-rule", 15, IN_WARRANTY_SERIAL).await;
    // 52 % is worn by the shipped rule, not by this lot's.
    report_battery(server.mqtt_port, &mut d, &[52.0, 52.0, 52.0]).await;
    judged(&server, 3).await;
    assert!(
        store
            .tickets(&TicketScope::All, false, 10)
            .await
            .unwrap()
            .is_empty()
    );
    report_battery(server.mqtt_port, &mut d, &[44.0, 44.0, 44.0]).await;
    let s = store.clone();
    eventually(15, "a ticket at the lot's threshold", || {
        let s = s.clone();
        async move { s.tickets(&TicketScope::All, false, 10).await.unwrap().len() == 1 }
    })
    .await;
    let (doc, _) = store
        .ticket_document(the_ticket(&store).await.id)
        .await
        .unwrap();
    assert_eq!(doc.fault.threshold, "< 45");
    server.stop().await;
}

#[tokio::test]
async fn a_broken_rules_file_stops_the_server_with_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[override]]\nlot = \"L\"\nrule = \"no_such_rule\"\nbelow = 1\n",
    )
    .unwrap();
    let mut cfg = ServerConfig::defaults();
    let db = TestDb::sqlite();
    cfg.database.url = Some(db.url.clone());
    cfg.mqtt.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    cfg.rules.file = Some(rules.clone());
    let err = Prepared::new(cfg).await.err().expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("rules.toml") && text.contains("no_such_rule"),
        "{text}"
    );
}

/// A server prepared on a fresh SQLite database with the procurement data, but not
/// running: the test calls the rules' rounds itself.
async fn prepared_not_running(receiver: &Receiver) -> (TestDb, Prepared) {
    let db = TestDb::sqlite();
    let mut cfg = ServerConfig::defaults();
    cfg.database.url = Some(db.url.clone());
    cfg.mqtt.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let prepared = Prepared::new(cfg).await.unwrap();
    procurement(&prepared.ingest.store, receiver, 0).await;
    (db, prepared)
}

/// Stores `n` health reports of `d` (battery health `battery`) in one ingest batch.
async fn store_health_batch(store: &Store, d: &mut TestDevice, n: usize, battery: f64) {
    let items: Vec<parc_server::store::Item> = (0..n)
        .map(|_| parc_server::store::Item::accepted(d.health(battery)))
        .collect();
    let now = chrono::Utc::now();
    store
        .write_batch(&items, now, now - chrono::Duration::days(30))
        .await
        .unwrap();
}

#[tokio::test]
async fn penalties_count_business_days_late_per_ticket_and_per_lot() {
    use chrono::{TimeZone as _, Utc};
    // The test drives the rounds itself, with a clock ten days in the past.
    let receiver = Receiver::start().await;
    let (_db, prepared) = prepared_not_running(&receiver).await;
    let store = prepared.ingest.store.clone();
    let mut d = device(&store, "d-penalty", 16, IN_WARRANTY_SERIAL).await;
    store_health_batch(&store, &mut d, 3, 40.0).await;
    // Opened Monday 2026-11-09 at 10:00 Paris time: lot 2 promises GTI 2 business
    // days, GTR 5 (09:00–18:00 by default).
    let opened = Utc.with_ymd_and_hms(2026, 11, 9, 9, 0, 0).unwrap();
    let o = prepared.maintenance.round(opened).await.unwrap();
    assert_eq!(o.tickets_opened, 1);
    let t = the_ticket(&store).await;
    assert!(t.gti_due.unwrap() > opened && t.gtr_due.unwrap() > t.gti_due.unwrap());

    // Nobody acknowledged it; judged on Friday 2026-11-20 at 12:00 Paris time.
    let judged = Utc.with_ymd_and_hms(2026, 11, 20, 11, 0, 0).unwrap();
    let (tickets, lots) = parc_server::maintenance::penalty_report(
        &store,
        opened - chrono::Duration::days(1),
        judged,
        judged,
    )
    .await
    .unwrap();
    assert_eq!(tickets.len(), 1);
    let p = tickets[0].penalty;
    assert!(p.gti_breached && p.gtr_breached, "{p:?}");
    // Wed 11 is Armistice day. GTI: 2 business days → due Thu 12 10:00; late Thu 12
    // (started), Fri 13, Mon 16 … Fri 20 (started) = 7 business days.
    assert_eq!(p.gti_days_late, 7, "{p:?}");
    // GTR: 5 business days → due Tue 17 10:00; late Tue 17 … Fri 20 = 4.
    assert_eq!(p.gtr_days_late, 4, "{p:?}");
    // Lot 2 charges 50 € per day late.
    assert_eq!(p.penalty_cents, (7 + 4) * 5_000);
    assert_eq!(lots.len(), 1);
    assert_eq!((lots[0].contract.as_str(), lots[0].lot), ("HV-2024-017", 2));
    assert_eq!(lots[0].penalty_cents, p.penalty_cents);
    // A ticket opened outside the period is not counted.
    let (none, _) = parc_server::maintenance::penalty_report(
        &store,
        judged,
        judged + chrono::Duration::days(1),
        judged,
    )
    .await
    .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn the_rules_judge_every_queued_sample_once_across_rounds() {
    let receiver = Receiver::start().await;
    let (_db, prepared) = prepared_not_running(&receiver).await;
    let store = prepared.ingest.store.clone();
    let mut d = device(&store, "d-queue", 17, IN_WARRANTY_SERIAL).await;
    // Three batches of 300 samples: each queues a row of 250 keys and one of 50.
    for _ in 0..3 {
        store_health_batch(&store, &mut d, 300, 90.0).await;
    }
    let first = prepared
        .maintenance
        .round(chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!((first.samples, first.more), (300, true), "two rows a round");
    let rest = prepared.maintenance.drain().await.unwrap();
    assert_eq!(rest.samples, 600);
    let after = prepared
        .maintenance
        .round(chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(
        (after.samples, after.more),
        (0, false),
        "the queue is empty"
    );
}
