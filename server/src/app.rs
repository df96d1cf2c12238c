//! Assembles a server from its configuration: store, ingest (embedded broker or
//! external one), HTTP, pruning — and stops them in order on shutdown.
//!
//! Sockets the caller can bind (HTTP) are passed in so tests use port 0. It must never
//! leave a task running after `run` returns, nor return before the writer has
//! committed what it had.

use std::sync::Arc;
use std::time::Duration;

use crate::broker::{AuthRequest, BrokerError, EmbeddedBroker, Link};
use crate::config::ServerConfig;
use crate::dispatch::{DispatchOptions, Dispatcher};
use crate::ingest::{BrokerUrl, ExternalMqtt, Ingest, IngestError, IngestOptions};
use crate::maintenance::{Maintenance, MaintenanceOptions};
use crate::metrics::Metrics;
use crate::rules::RuleSet;
use crate::shutdown::{self, Shutdown};
use crate::store::{Store, StoreError};
use parc_protocol::ticket::ContactRef;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Ingest(#[from] Box<IngestError>),
    #[error("key `mqtt.url`: {0}")]
    BrokerUrl(String),
    #[error("creating the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Http(#[source] std::io::Error),
    #[error("rules: {0}")]
    Rules(String),
    #[error(transparent)]
    Dispatch(#[from] crate::dispatch::DispatchError),
}

enum Source {
    Embedded {
        broker: EmbeddedBroker,
        link: Link,
        commands: Link,
        logins: Option<tokio::sync::mpsc::Receiver<AuthRequest>>,
    },
    External(ExternalMqtt),
}

/// A server with its store open and its broker (if embedded) configured but not yet
/// started: the demo adds in-process clients to the broker at this point.
pub struct Prepared {
    pub ingest: Arc<Ingest>,
    pub maintenance: Arc<Maintenance>,
    dispatcher: Arc<Dispatcher>,
    source: Source,
    config: ServerConfig,
}

impl Prepared {
    pub async fn new(config: ServerConfig) -> Result<Self, ServerError> {
        if config.database.url.is_none() {
            std::fs::create_dir_all(&config.storage.data_dir).map_err(|source| {
                ServerError::DataDir {
                    path: config.storage.data_dir.clone(),
                    source,
                }
            })?;
        }
        let source = match &config.mqtt.url {
            None => {
                let (auth, logins) = if config.mqtt.allow_anonymous {
                    (None, None)
                } else {
                    let (tx, rx) = tokio::sync::mpsc::channel(1024);
                    (Some(tx), Some(rx))
                };
                let broker =
                    EmbeddedBroker::new(config.mqtt.listen, config.mqtt.max_payload_bytes, auth)?;
                let link = broker.link("parc-server")?;
                let commands = broker.link("parc-server-commands")?;
                Source::Embedded {
                    broker,
                    link,
                    commands,
                    logins,
                }
            }
            Some(url) => Source::External(ExternalMqtt {
                url: BrokerUrl::parse(url).map_err(ServerError::BrokerUrl)?,
                client_id: config.mqtt.client_id.clone(),
                shared_group: config.mqtt.shared_group.clone(),
                username: config.mqtt.username.clone(),
                password: config.mqtt.password.clone(),
                ca_file: config.mqtt.ca_file.clone(),
            }),
        };
        let store = Store::connect(&config.database_url()).await?;
        let metrics = Arc::new(Metrics::new());
        if let Ok(n) = store.devices_online().await {
            metrics.devices_online.set(n);
        }
        let ingest = Arc::new(Ingest::new(
            store.clone(),
            metrics.clone(),
            IngestOptions::from_config(&config),
        ));
        let maintenance = Arc::new(Maintenance {
            store: store.clone(),
            metrics: metrics.clone(),
            options: maintenance_options(&config)?,
            rules_wakeup: ingest.rules_wakeup.clone(),
            dispatch_wakeup: Arc::new(tokio::sync::Notify::new()),
            lease_renewed: std::sync::Mutex::new(None),
        });
        let dispatcher = Arc::new(Dispatcher::new(store, metrics, dispatch_options(&config))?);
        Ok(Self {
            ingest,
            maintenance,
            dispatcher,
            source,
            config,
        })
    }

    /// The embedded broker, when there is one and it has not started yet.
    pub fn embedded_broker(&self) -> Option<&EmbeddedBroker> {
        match &self.source {
            Source::Embedded { broker, .. } => Some(broker),
            Source::External(_) => None,
        }
    }

    /// Runs until `shutdown` resolves, then stops every task (within about 10 s).
    pub async fn run(
        self,
        http: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let (trigger, signal) = shutdown::channel();
        let ingest = self.ingest.clone();
        let mut command_link = None;
        let ingest_task = match self.source {
            Source::Embedded {
                broker,
                link,
                commands,
                logins,
            } => {
                command_link = Some(crate::commands::CommandLink::Embedded(commands));
                if let Some(logins) = logins {
                    tokio::spawn(answer_logins(ingest.clone(), logins, signal.clone()));
                }
                let _thread = broker.start();
                // Ready means devices can connect: wait for the broker's listener.
                wait_listening(self.config.mqtt.listen).await;
                tokio::spawn(crate::ingest::run_embedded(
                    ingest.clone(),
                    link.0,
                    link.1,
                    signal.clone(),
                ))
            }
            Source::External(mqtt) => {
                match crate::commands::external_link(&mqtt, signal.clone()) {
                    Ok(l) => command_link = Some(l),
                    Err(e) => {
                        tracing::error!(error = %e, "no command connection: release announcements are off")
                    }
                }
                tokio::spawn(crate::ingest::run_external(
                    ingest.clone(),
                    mqtt,
                    signal.clone(),
                ))
            }
        };
        let rules_task = tokio::spawn(crate::maintenance::run(
            self.maintenance.clone(),
            signal.clone(),
        ));
        let dispatch_task = tokio::spawn(crate::dispatch::run(
            self.dispatcher.clone(),
            self.maintenance.clone(),
            signal.clone(),
        ));
        let announce_task = command_link.map(|link| {
            tokio::spawn(crate::commands::announce_loop(
                ingest.clone(),
                link,
                Duration::from_secs(u64::from(self.config.releases.announce_interval_seconds)),
                signal.clone(),
            ))
        });
        let prune_task = tokio::spawn(prune_loop(
            ingest.clone(),
            self.config.retention(),
            Duration::from_secs(u64::from(self.config.retention.prune_interval_minutes) * 60),
            signal.clone(),
        ));
        let checkpoint_task = {
            let store = ingest.store.clone();
            let stop = signal.clone().wait();
            tokio::spawn(async move { store.run_checkpointer(stop).await })
        };
        let refresh_task = tokio::spawn(refresh_latest_loop(
            ingest.clone(),
            Duration::from_secs(15),
            signal.clone(),
        ));
        let web = Arc::new(
            crate::http_auth::Web::new(self.config.http.secure_cookies).with_dispatch(
                self.maintenance.dispatch_wakeup.clone(),
                self.config.dispatch.smtp_url.is_some(),
            ),
        );
        let http_task = tokio::spawn(crate::http::serve(
            http,
            crate::http::router(ingest.clone(), web),
            signal.clone().wait(),
        ));
        shutdown.await;
        tracing::info!("shutting down");
        trigger.fire();
        let stopped = async {
            let ingest_result = ingest_task.await;
            let _ = prune_task.await;
            let _ = refresh_task.await;
            let _ = checkpoint_task.await;
            let _ = rules_task.await;
            let _ = dispatch_task.await;
            if let Some(t) = announce_task {
                let _ = t.await;
            }
            let http_result = http_task.await;
            (ingest_result, http_result)
        };
        match tokio::time::timeout(Duration::from_secs(10), stopped).await {
            Ok((ingest_result, http_result)) => {
                if let Ok(Err(e)) = ingest_result {
                    return Err(Box::new(e).into());
                }
                if let Ok(Err(e)) = http_result {
                    return Err(ServerError::Http(e));
                }
            }
            Err(_) => tracing::warn!("some tasks did not stop within 10 s"),
        }
        // The pool itself closes when the last handle to the store goes: callers such as
        // the demo still read from it after the server stopped.
        Ok(())
    }
}

/// The rules (shipped, plus the site's file) and ticket settings from the config.
pub fn maintenance_options(config: &ServerConfig) -> Result<MaintenanceOptions, ServerError> {
    let rules = match &config.rules.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ServerError::Rules(format!("cannot read {}: {e}", path.display())))?;
            RuleSet::shipped_with(&text)
                .map_err(|e| ServerError::Rules(format!("{}: {e}", path.display())))?
        }
        None => RuleSet::shipped().map_err(|e| ServerError::Rules(e.to_string()))?,
    };
    let t = &config.tickets;
    Ok(MaintenanceOptions {
        rules,
        storm_threshold: t.storm_threshold,
        storm_window: chrono::Duration::hours(i64::from(t.storm_window_hours)),
        reference_prefix: t.reference_prefix.clone(),
        evidence: chrono::Duration::days(i64::from(t.evidence_days)),
        contact: t.contact_name.as_ref().map(|name| ContactRef {
            name: name.clone(),
            email: t.contact_email.clone(),
            phone: t.contact_phone.clone(),
        }),
        email_enabled: config.dispatch.smtp_url.is_some(),
        silence_every: Duration::from_secs(u64::from(config.rules.silence_check_minutes) * 60),
        instance: config.mqtt.client_id.clone(),
    })
}

pub fn dispatch_options(config: &ServerConfig) -> DispatchOptions {
    let d = &config.dispatch;
    DispatchOptions {
        smtp_url: d.smtp_url.clone(),
        email_from: d.email_from.clone(),
        public_url: d.public_url.clone(),
        retry_first: Duration::from_secs(u64::from(d.retry_first_seconds)),
        retry_max: Duration::from_secs(u64::from(d.retry_max_seconds)),
        max_attempts: d.max_attempts,
        timeout: Duration::from_secs(u64::from(d.timeout_seconds)),
    }
}

/// Waits (at most 10 s) until something listens on `addr`'s port. On Linux it reads
/// the socket tables, which the broker does not notice (a probe connection makes
/// rumqttd log an error); elsewhere it connects.
async fn wait_listening(addr: std::net::SocketAddr) {
    let mut probe = addr;
    if probe.ip().is_unspecified() {
        probe.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    for _ in 0..200 {
        let up = match listening_on(addr.port()) {
            Some(up) => up,
            None => tokio::net::TcpStream::connect(probe).await.is_ok(),
        };
        if up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(%addr, "the embedded MQTT broker is not accepting connections after 10 s");
}

/// Whether a TCP socket is in LISTEN state on `port`, from /proc/net/tcp{,6};
/// `None` where those tables cannot be read.
fn listening_on(port: u16) -> Option<bool> {
    let mut read_any = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        read_any = true;
        let listening = text.lines().skip(1).any(|line| {
            let mut cols = line.split_whitespace();
            let local = cols.nth(1);
            let state = cols.nth(1);
            state == Some("0A")
                && local
                    .and_then(|l| l.rsplit(':').next())
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port)
        });
        if listening {
            return Some(true);
        }
    }
    read_any.then_some(false)
}

/// Answers the embedded broker's login checks: a device logs in with its id as user
/// name and the broker password issued at enrolment.
async fn answer_logins(
    ingest: Arc<Ingest>,
    mut logins: tokio::sync::mpsc::Receiver<AuthRequest>,
    shutdown: Shutdown,
) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        let (client_id, user, password, answer) = tokio::select! {
            () = &mut stop => return,
            l = logins.recv() => match l {
                Some(l) => l,
                None => return,
            },
        };
        let ok = match ingest
            .store
            .check_mqtt_password(&user, &crate::enroll::sha256_hex(&password))
            .await
        {
            Ok(ok) => ok,
            Err(e) => {
                tracing::error!(error = %e, "checking a broker login failed; refusing it");
                false
            }
        };
        if !ok {
            tracing::warn!(client_id = %client_id.chars().take(64).collect::<String>(), user = %user.chars().take(64).collect::<String>(), "broker login refused");
        }
        let _ = answer.send(ok);
    }
}

async fn prune_loop(
    ingest: Arc<Ingest>,
    retention: crate::store::Retention,
    every: Duration,
    shutdown: Shutdown,
) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {}
        }
        match ingest.store.prune(chrono::Utc::now(), &retention).await {
            Ok(p) => tracing::debug!(?p, "pruned old data"),
            Err(e) => tracing::warn!(error = %e, "pruning failed; will retry"),
        }
    }
}

/// Keeps `device_latest` (the dashboard's per-device latest readings) current: the first
/// pass reads every device's newest sample, later ones only samples collected since the
/// previous pass (minus a margin for late or buffered reports).
async fn refresh_latest_loop(ingest: Arc<Ingest>, every: Duration, shutdown: Shutdown) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(every);
    let mut since = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {}
        }
        let started = chrono::Utc::now();
        match ingest.store.refresh_device_latest(since).await {
            Ok(n) => {
                tracing::debug!(rows = n, "refreshed the latest readings");
                since = started - chrono::Duration::minutes(10);
            }
            Err(e) => {
                tracing::warn!(error = %e, "refreshing the latest readings failed; will retry")
            }
        }
    }
}
