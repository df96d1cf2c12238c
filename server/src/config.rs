//! Server configuration: embedded commented defaults, then a TOML file, then
//! `PARC_SERVER_SECTION__KEY` environment variables.
//!
//! Loading yields a complete, checked configuration or an error naming the key; it must
//! never silently fall back to a default for a key the file got wrong.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format as _, Toml};
use serde::{Deserialize, Serialize};

/// The embedded default configuration, documented key by key.
pub const DEFAULT_TOML: &str = include_str!("default-server.toml");

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
pub struct ServerConfig {
    pub http: HttpSection,
    pub mqtt: MqttSection,
    #[serde(default)]
    pub database: DatabaseSection,
    pub storage: StorageSection,
    pub ingest: IngestSection,
    pub retention: RetentionSection,
    pub rules: RulesSection,
    pub tickets: TicketsSection,
    pub dispatch: DispatchSection,
    #[serde(default)]
    pub releases: ReleasesSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub listen: SocketAddr,
    /// Mark session cookies `Secure` (the dashboard is reached over HTTPS).
    #[serde(default)]
    pub secure_cookies: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    pub listen: SocketAddr,
    pub max_payload_bytes: usize,
    /// Embedded broker only: let clients connect without a device login.
    pub allow_anonymous: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    pub batch_max_messages: usize,
    pub batch_max_wait_ms: u64,
    pub queue_capacity: usize,
    /// Batches committed at once (each device's messages always by the same writer);
    /// 0 = automatic: 1 on SQLite (one writer at a time anyway), 2 on PostgreSQL.
    #[serde(default)]
    pub writers: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    pub raw_days: u32,
    pub hourly_days: u32,
    pub events_days: u32,
    pub quarantine_days: u32,
    pub quarantine_max_rows: u64,
    pub prune_interval_minutes: u32,
}

/// Agent releases: how often online devices are told of releases that reach them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReleasesSection {
    pub announce_interval_seconds: u32,
}

impl Default for ReleasesSection {
    fn default() -> Self {
        Self {
            announce_interval_seconds: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSection {
    pub file: Option<PathBuf>,
    pub silence_check_minutes: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketsSection {
    pub storm_threshold: u32,
    pub storm_window_hours: u32,
    pub reference_prefix: String,
    pub evidence_days: u32,
    pub contact_name: Option<String>,
    pub contact_email: Option<String>,
    pub contact_phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchSection {
    pub smtp_url: Option<String>,
    pub email_from: String,
    pub public_url: String,
    pub retry_first_seconds: u32,
    pub retry_max_seconds: u32,
    pub max_attempts: u32,
    pub timeout_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    pub data_dir: PathBuf,
}

impl ServerConfig {
    pub fn defaults() -> Self {
        Self::extract(Figment::from(Toml::string(DEFAULT_TOML)))
            .expect("the embedded default config is valid")
    }

    /// Layers, lowest first: embedded defaults, the file, `PARC_SERVER_SECTION__KEY`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(p) = path {
            // Read it ourselves: figment treats a missing file as empty.
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            fig = fig.merge(Toml::string(&text));
        }
        Self::extract(
            fig.merge(
                Env::prefixed("PARC_SERVER_")
                    .ignore(&["CONFIG"])
                    .split("__"),
            ),
        )
    }

    /// Parses a TOML document over the defaults (no environment).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::extract(Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(text)))
    }

    fn extract(fig: Figment) -> Result<Self, ConfigError> {
        let cfg: ServerConfig = fig.extract().map_err(|e| ConfigError::Invalid {
            key: e.path.join("."),
            message: e.kind.to_string(),
        })?;
        if !(1024..=16 * 1024 * 1024).contains(&cfg.mqtt.max_payload_bytes) {
            return Err(ConfigError::Invalid {
                key: "mqtt.max_payload_bytes".into(),
                message: "must be between 1024 and 16777216".into(),
            });
        }
        let invalid = |key: &str, message: &str| {
            Err(ConfigError::Invalid {
                key: key.into(),
                message: message.into(),
            })
        };
        if let Some(url) = &cfg.mqtt.url
            && let Err(message) = crate::ingest::BrokerUrl::parse(url)
        {
            return invalid("mqtt.url", &message);
        }
        if let Some(url) = &cfg.database.url
            && crate::store::Engine::from_url(url).is_err()
        {
            return invalid("database.url", "must start with sqlite:// or postgres://");
        }
        if let Some(group) = &cfg.mqtt.shared_group
            && (group.is_empty() || group.contains(['/', '+', '#']))
        {
            return invalid(
                "mqtt.shared_group",
                "must be a non-empty name without '/', '+' or '#'",
            );
        }
        if cfg.mqtt.client_id.is_empty() || cfg.mqtt.client_id.len() > 64 {
            return invalid("mqtt.client_id", "must be 1 to 64 characters");
        }
        if !(1..=10_000).contains(&cfg.ingest.batch_max_messages) {
            return invalid("ingest.batch_max_messages", "must be between 1 and 10000");
        }
        if !(1..=10_000).contains(&cfg.ingest.batch_max_wait_ms) {
            return invalid("ingest.batch_max_wait_ms", "must be between 1 and 10000");
        }
        if cfg.ingest.writers > 16 {
            return invalid("ingest.writers", "must be between 0 (automatic) and 16");
        }
        if cfg.ingest.queue_capacity < cfg.ingest.batch_max_messages {
            return invalid(
                "ingest.queue_capacity",
                "must be at least ingest.batch_max_messages",
            );
        }
        if cfg.retention.raw_days == 0 || cfg.retention.hourly_days < cfg.retention.raw_days {
            return invalid(
                "retention.hourly_days",
                "raw_days must be at least 1 and hourly_days at least raw_days",
            );
        }
        if cfg.rules.silence_check_minutes == 0 {
            return invalid("rules.silence_check_minutes", "must be at least 1");
        }
        if cfg.tickets.storm_threshold < 2 {
            return invalid(
                "tickets.storm_threshold",
                "must be at least 2 (a claim groups several devices)",
            );
        }
        if cfg.tickets.storm_window_hours == 0 {
            return invalid("tickets.storm_window_hours", "must be at least 1");
        }
        let prefix = &cfg.tickets.reference_prefix;
        if prefix.is_empty()
            || prefix.len() > 16
            || !prefix.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return invalid(
                "tickets.reference_prefix",
                "must be 1 to 16 ASCII letters or digits",
            );
        }
        if let Some(url) = &cfg.dispatch.smtp_url
            && !(url.starts_with("smtp://") || url.starts_with("smtps://"))
        {
            return invalid("dispatch.smtp_url", "must start with smtp:// or smtps://");
        }
        if cfg
            .dispatch
            .email_from
            .parse::<lettre::message::Mailbox>()
            .is_err()
        {
            return invalid(
                "dispatch.email_from",
                "must be an address like \"Parc <parc@example.org>\"",
            );
        }
        if cfg.dispatch.retry_first_seconds == 0
            || cfg.dispatch.retry_max_seconds < cfg.dispatch.retry_first_seconds
        {
            return invalid(
                "dispatch.retry_max_seconds",
                "retry_first_seconds must be at least 1 and retry_max_seconds at least that",
            );
        }
        if cfg.dispatch.max_attempts == 0 || cfg.dispatch.timeout_seconds == 0 {
            return invalid(
                "dispatch.max_attempts",
                "max_attempts and timeout_seconds must be at least 1",
            );
        }
        if cfg.retention.prune_interval_minutes == 0 {
            return invalid("retention.prune_interval_minutes", "must be at least 1");
        }
        Ok(cfg)
    }

    /// The database URL: the configured one, or SQLite in the data directory.
    pub fn database_url(&self) -> String {
        self.database
            .url
            .clone()
            .unwrap_or_else(|| crate::store::Store::sqlite_url(&self.storage.data_dir))
    }

    pub fn retention(&self) -> crate::store::Retention {
        let days = |d: u32| std::time::Duration::from_secs(u64::from(d) * 86_400);
        crate::store::Retention {
            raw: days(self.retention.raw_days),
            hourly: days(self.retention.hourly_days),
            events: days(self.retention.events_days),
            quarantine: days(self.retention.quarantine_days),
            quarantine_max_rows: self.retention.quarantine_max_rows,
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config always serializes")
    }
}
