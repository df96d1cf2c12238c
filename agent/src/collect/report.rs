//! `parc-agent collect`: one full inventory and one health sample (with SMART and the
//! configured probes), wrapped in the protocol's message envelopes exactly as they
//! would be published, printed as one JSON object `{"inventory": …, "health": …}` for
//! people, scripts and benchmarks.
//!
//! It publishes nothing, writes nothing and needs no enrolment: an unenrolled machine
//! is named [`LOCAL_DEVICE_ID`] under a fresh random epoch. Unsupported signals are
//! listed with their reasons in each body; they are never an error.

use std::path::Path;

use chrono::Utc;
use parc_protocol::{Body, DeviceId, Epoch, Header, Message};

use super::Collector;
use crate::config::AgentConfig;

/// The device id printed by an agent that has not been enrolled.
pub const LOCAL_DEVICE_ID: &str = "local";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no random bytes for the epoch: {0}")]
    Random(getrandom::Error),
    #[error("cannot start the runtime for the probes: {0}")]
    Runtime(std::io::Error),
}

/// Collects under `root` (else the configuration's `collect.root`) and returns the JSON
/// text of both messages: inventory with seq 1, health with seq 2.
pub fn collect_json(
    cfg: &AgentConfig,
    root: Option<&Path>,
    pretty: bool,
) -> Result<String, ReportError> {
    let (inventory, health) = collect_messages(cfg, root)?;
    Ok(if pretty {
        format!(
            "{{\n  \"inventory\": {},\n  \"health\": {}\n}}",
            indent(&inventory.to_json_pretty()),
            indent(&health.to_json_pretty())
        )
    } else {
        format!(
            "{{\"inventory\":{},\"health\":{}}}",
            inventory.to_json(),
            health.to_json()
        )
    })
}

/// The two messages `collect_json` prints.
pub fn collect_messages(
    cfg: &AgentConfig,
    root: Option<&Path>,
) -> Result<(Message, Message), ReportError> {
    let mut section = cfg.collect.clone();
    if let Some(root) = root {
        section.root = root.to_path_buf();
    }
    let mut collector = Collector::from_config(&section, env!("CARGO_PKG_VERSION"));
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(ReportError::Random)?;
    let epoch = Epoch::from_random(random);
    let device_id = DeviceId::parse(LOCAL_DEVICE_ID).expect("the local device id is valid");

    let inventory = collector.inventory();
    let inventory_at = Utc::now();
    let mut health = collector.health_with_storage();
    if !cfg.probes.is_empty() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ReportError::Runtime)?;
        health.probes = runtime.block_on(super::probe_all(&cfg.probes));
    }
    let health_at = Utc::now();

    let header = |seq, collected_at| Header {
        device_id: device_id.clone(),
        epoch: epoch.clone(),
        seq,
        collected_at,
        sent_at: Utc::now(),
    };
    Ok((
        Message::new(
            header(1, inventory_at),
            Body::Inventory(Box::new(inventory)),
        ),
        Message::new(header(2, health_at), Body::Health(Box::new(health))),
    ))
}

/// Indents every line but the first by two spaces, to nest a pretty message.
fn indent(text: &str) -> String {
    text.replace('\n', "\n  ")
}
