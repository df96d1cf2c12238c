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
use crate::ingest::{BrokerUrl, ExternalMqtt, Ingest, IngestError, IngestOptions};
use crate::metrics::Metrics;
use crate::shutdown::{self, Shutdown};
use crate::store::{Store, StoreError};

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
}

enum Source {
    Embedded {
        broker: EmbeddedBroker,
        link: Link,
        logins: Option<tokio::sync::mpsc::Receiver<AuthRequest>>,
    },
    External(ExternalMqtt),
}

/// A server with its store open and its broker (if embedded) configured but not yet
/// started: the demo adds in-process clients to the broker at this point.
pub struct Prepared {
    pub ingest: Arc<Ingest>,
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
                Source::Embedded {
                    broker,
                    link,
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
            store,
            metrics,
            IngestOptions::from_config(&config),
        ));
        Ok(Self {
            ingest,
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
        let ingest_task = match self.source {
            Source::Embedded {
                broker,
                link,
                logins,
            } => {
                if let Some(logins) = logins {
                    tokio::spawn(answer_logins(ingest.clone(), logins, signal.clone()));
                }
                let _thread = broker.start();
                tokio::spawn(crate::ingest::run_embedded(
                    ingest.clone(),
                    link.0,
                    link.1,
                    signal.clone(),
                ))
            }
            Source::External(mqtt) => tokio::spawn(crate::ingest::run_external(
                ingest.clone(),
                mqtt,
                signal.clone(),
            )),
        };
        let prune_task = tokio::spawn(prune_loop(
            ingest.clone(),
            self.config.retention(),
            Duration::from_secs(u64::from(self.config.retention.prune_interval_minutes) * 60),
            signal.clone(),
        ));
        let refresh_task = tokio::spawn(refresh_latest_loop(
            ingest.clone(),
            Duration::from_secs(15),
            signal.clone(),
        ));
        let web = Arc::new(crate::http_auth::Web::new(self.config.http.secure_cookies));
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
