//! The embedded MQTT broker (rumqttd), for single-machine deployments and the demo.
//!
//! rumqttd's `start()` blocks and spawns its own threads, so it runs on a dedicated
//! `std::thread`, never inside the tokio runtime. In-process clients (the server's own
//! subscription) are links created before the broker starts. rumqttd has no per-topic
//! ACL: nothing here may be relied on to stop a device publishing on another device's
//! topic — the ingest's HMAC check does that.

use std::net::{SocketAddr, TcpListener};

use rumqttd::local::{LinkRx, LinkTx};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "MQTT address {addr} is not available ({source}); choose another with `[mqtt] listen = \"127.0.0.1:PORT\"` or PARC_SERVER_MQTT__LISTEN"
    )]
    AddressInUse {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded broker configuration: {0}")]
    Config(String),
    #[error("embedded broker link {client_id}: {message}")]
    Link { client_id: String, message: String },
}

/// An in-process client of the embedded broker: what to send on, what to read from.
pub type Link = (LinkTx, LinkRx);

/// One broker login to check: (client id, user name, password, where to answer).
pub type AuthRequest = (String, String, String, tokio::sync::oneshot::Sender<bool>);

/// A configured broker whose in-process links can be created before it starts.
pub struct EmbeddedBroker {
    broker: rumqttd::Broker,
}

impl EmbeddedBroker {
    /// Checks that `listen` is free (rumqttd would only log the failure from its own
    /// thread) and prepares the broker.
    ///
    /// With `auth`, every network client must log in; each login is sent down the
    /// channel and allowed only if the answer is `true` (rumqttd runs the check on its
    /// own runtime, so the server answers from its own). Without, anyone may connect.
    pub fn new(
        listen: SocketAddr,
        max_payload_bytes: usize,
        auth: Option<tokio::sync::mpsc::Sender<AuthRequest>>,
    ) -> Result<Self, BrokerError> {
        TcpListener::bind(listen).map_err(|source| BrokerError::AddressInUse {
            addr: listen,
            source,
        })?;
        // The broker lets through publishes up to 8× the decoder's limit, so that an
        // oversized report reaches the ingest and is quarantined as `too_large` (with
        // its topic and size) instead of silently cutting the device's connection.
        let broker_max = max_payload_bytes.saturating_mul(8);
        let toml = format!(
            r#"
id = 0
[router]
id = 0
max_connections = 20010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "{listen}"
next_connection_delay_ms = 1
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = {broker_max}
    max_inflight_count = 100
    dynamic_filters = true
"#
        );
        let mut config: rumqttd::Config =
            toml::from_str(&toml).map_err(|e| BrokerError::Config(e.to_string()))?;
        if let Some(auth) = auth {
            let server = config
                .v4
                .as_mut()
                .and_then(|v4| v4.get_mut("1"))
                .ok_or_else(|| BrokerError::Config("no v4 listener".into()))?;
            server.set_auth_handler(move |client_id, user, pass| {
                let auth = auth.clone();
                async move {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    if auth.send((client_id, user, pass, tx)).await.is_err() {
                        return false;
                    }
                    rx.await.unwrap_or(false)
                }
            });
        }
        Ok(Self {
            broker: rumqttd::Broker::new(config),
        })
    }

    /// An in-process client of the broker.
    pub fn link(&self, client_id: &str) -> Result<Link, BrokerError> {
        self.broker.link(client_id).map_err(|e| BrokerError::Link {
            client_id: client_id.to_string(),
            message: e.to_string(),
        })
    }

    /// Starts the broker on its own thread. rumqttd offers no way to stop it: it lives
    /// as long as the process.
    pub fn start(mut self) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("parc-broker".into())
            .spawn(move || {
                if let Err(e) = self.broker.start() {
                    tracing::error!(error = %e, "embedded MQTT broker stopped");
                }
            })
            .expect("spawning the broker thread")
    }
}
