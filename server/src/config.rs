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
    pub storage: StorageSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    pub listen: SocketAddr,
    pub max_payload_bytes: usize,
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
        Ok(cfg)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config always serializes")
    }
}
