//! Agent configuration: a TOML file (default `/etc/parc/agent.toml`), overridable by
//! `PARC_AGENT_SECTION__KEY` environment variables, with an embedded default that
//! `parc-agent print-config` prints.
//!
//! Loading either yields a complete, checked configuration or an error that names the
//! offending key; it must never fall back silently to a default for a key the file got
//! wrong.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format as _, Toml};
use serde::{Deserialize, Serialize};

/// The embedded default configuration, documented key by key.
pub const DEFAULT_TOML: &str = include_str!("default-agent.toml");

/// Default location of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/parc/agent.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub server: ServerSection,
    pub mqtt: MqttSection,
    pub collect: CollectSection,
    pub spool: SpoolSection,
    pub state: StateSection,
    #[serde(default)]
    pub update: UpdateSection,
    #[serde(default)]
    pub probes: Vec<ProbeConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Base URL of the Parc server (enrolment, releases).
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    /// `mqtts://host:8883` (TLS) or `mqtt://host:1883` (plain, for a local broker).
    pub url: String,
    /// PEM file of the fleet CA the broker's certificate must chain to; empty means
    /// the system roots.
    #[serde(default)]
    pub ca_file: String,
    /// MQTT protocol version: "v5" (Mosquitto, EMQX) or "v4" (3.1.1, e.g. the server's
    /// embedded broker).
    #[serde(default)]
    pub protocol: MqttProtocol,
    /// Before the first connection, wait a random delay up to this many seconds so that
    /// a school's devices powered on together do not reach the broker at once.
    #[serde(default = "default_initial_delay")]
    pub initial_delay_max_seconds: u32,
    /// Highest rate at which a backlog is drained, in messages per second.
    #[serde(default = "default_drain_rate")]
    pub drain_rate_per_second: u32,
    /// Messages published and not yet acknowledged at any time.
    #[serde(default = "default_inflight")]
    pub inflight: u16,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_seconds: u32,
    /// Ceiling of the reconnection backoff (1 s doubling, with full jitter).
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_seconds: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MqttProtocol {
    V4,
    #[default]
    V5,
}

fn default_initial_delay() -> u32 {
    30
}
fn default_drain_rate() -> u32 {
    50
}
fn default_inflight() -> u16 {
    32
}
fn default_keep_alive() -> u32 {
    60
}
fn default_reconnect_max() -> u32 {
    300
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectSection {
    /// Filesystem root the collectors read `/sys`, `/proc`, `/etc` under.
    pub root: PathBuf,
    pub health_interval_seconds: u32,
    pub inventory_interval_seconds: u32,
    /// smartctl executable; empty disables SMART.
    pub smartctl: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSection {
    pub max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// Where enrolment credentials, the spool and the epoch live.
    pub dir: PathBuf,
}

/// Self-update from the server's signed releases (see [`crate::update`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpdateSection {
    /// Apply `update_available` commands; false refuses them (each refusal reported).
    pub enabled: bool,
    /// Release channel this device follows: "stable" or "pilot".
    pub channel: String,
    /// The executable replaced by an update; empty means the running one.
    pub install_path: PathBuf,
    /// After restarting into a new version, it must reach the broker within this many
    /// seconds or the previous binary is restored.
    pub health_timeout_seconds: u32,
    /// PEM file of a private CA to trust (only) for the release downloads; empty means
    /// the system roots.
    pub ca_file: PathBuf,
}

impl Default for UpdateSection {
    fn default() -> Self {
        Self {
            enabled: true,
            channel: "stable".into(),
            install_path: PathBuf::new(),
            health_timeout_seconds: 300,
            ca_file: PathBuf::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    pub name: String,
    pub url: String,
    #[serde(default = "default_probe_timeout")]
    pub timeout_ms: u32,
}

fn default_probe_timeout() -> u32 {
    5000
}

impl AgentConfig {
    /// The embedded defaults.
    pub fn defaults() -> Self {
        Self::extract(Figment::from(Toml::string(DEFAULT_TOML)))
            .expect("the embedded default config is valid")
    }

    /// Layers, lowest first: embedded defaults, the file (`path`, else
    /// `/etc/parc/agent.toml` when it exists), then `PARC_AGENT_SECTION__KEY`
    /// environment variables (e.g. `PARC_AGENT_MQTT__URL`).
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
        };
        if let Some(p) = file {
            // Read it ourselves: figment treats a missing file as empty, and a typo in
            // --config must not silently give the defaults.
            let text = std::fs::read_to_string(&p).map_err(|source| ConfigError::Read {
                path: p.clone(),
                source,
            })?;
            fig = fig.merge(Toml::string(&text));
        }
        fig = fig.merge(Env::prefixed("PARC_AGENT_").ignore(&["CONFIG"]).split("__"));
        Self::extract(fig)
    }

    /// Parses a TOML document over the defaults (no environment), for tests and tools.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::extract(Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(text)))
    }

    fn extract(fig: Figment) -> Result<Self, ConfigError> {
        let cfg: AgentConfig = fig.extract().map_err(|e| ConfigError::Invalid {
            key: e.path.join("."),
            message: e.kind.to_string(),
        })?;
        cfg.check().map_err(|(key, message)| ConfigError::Invalid {
            key: key.to_string(),
            message,
        })?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        if !(self.mqtt.url.starts_with("mqtt://") || self.mqtt.url.starts_with("mqtts://")) {
            return Err((
                "mqtt.url",
                format!("{:?} must start with mqtt:// or mqtts://", self.mqtt.url),
            ));
        }
        if !(self.server.url.starts_with("http://") || self.server.url.starts_with("https://")) {
            return Err((
                "server.url",
                format!("{:?} must start with http:// or https://", self.server.url),
            ));
        }
        if !(10..=86_400).contains(&self.collect.health_interval_seconds) {
            return Err((
                "collect.health_interval_seconds",
                "must be between 10 and 86400".into(),
            ));
        }
        if !(60..=7 * 86_400).contains(&self.collect.inventory_interval_seconds) {
            return Err((
                "collect.inventory_interval_seconds",
                "must be between 60 and 604800".into(),
            ));
        }
        if self.mqtt.drain_rate_per_second == 0 {
            return Err(("mqtt.drain_rate_per_second", "must be at least 1".into()));
        }
        if !(1..=1000).contains(&self.mqtt.inflight) {
            return Err(("mqtt.inflight", "must be between 1 and 1000".into()));
        }
        if !(5..=3600).contains(&self.mqtt.keep_alive_seconds) {
            return Err((
                "mqtt.keep_alive_seconds",
                "must be between 5 and 3600".into(),
            ));
        }
        if self.spool.max_bytes < 1024 * 1024 {
            return Err(("spool.max_bytes", "must be at least 1 MiB".into()));
        }
        if !matches!(self.update.channel.as_str(), "stable" | "pilot") {
            return Err((
                "update.channel",
                format!("{:?} must be \"stable\" or \"pilot\"", self.update.channel),
            ));
        }
        if !(1..=86_400).contains(&self.update.health_timeout_seconds) {
            return Err((
                "update.health_timeout_seconds",
                "must be between 1 and 86400".into(),
            ));
        }
        for p in &self.probes {
            if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
                return Err((
                    "probes.url",
                    format!("probe {:?}: {:?} is not an http(s) URL", p.name, p.url),
                ));
            }
        }
        Ok(())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config always serializes")
    }
}
