//! Display outputs from the DRM connectors in `sys/class/drm` (`card0-eDP-1`,
//! `card1-HDMI-A-1`…): which are connected and, for the inventory, the EDID identity
//! of what is plugged in.
//!
//! It reads the connector's own status and EDID files only; it must never probe or
//! wake an output (no `detect` writes, no DDC/CI), and never read what is on screen.

use std::path::Path;

use parc_protocol::inventory::Display;

use super::edid::parse_edid;
use super::read::{self, Notes};

/// Connectors are the `cardN-TYPE-M` entries; `cardN` itself and `renderD*` are not.
fn connectors(root: &Path, notes: &mut Notes) -> Option<Vec<(String, std::path::PathBuf)>> {
    let entries = notes.take("displays", read::entries(&root.join("sys/class/drm")))?;
    Some(
        entries
            .into_iter()
            .filter(|(name, dir)| {
                name.starts_with("card") && name.contains('-') && dir.join("status").exists()
            })
            .collect(),
    )
}

pub(crate) fn displays(root: &Path, notes: &mut Notes) -> Vec<Display> {
    let Some(connectors) = connectors(root, notes) else {
        return Vec::new();
    };
    connectors
        .into_iter()
        .map(|(connector, dir)| {
            let connected = read::text(&dir.join("status")).is_ok_and(|s| s == "connected");
            let edid = if connected {
                let bytes = std::fs::read(dir.join("edid")).map_err(|e| read::reason_for(&e));
                let parsed = bytes.and_then(|b| {
                    if b.is_empty() {
                        Err("empty".to_string())
                    } else {
                        parse_edid(&b).map_err(|e| e.to_string())
                    }
                });
                notes.take(&format!("displays.{connector}.edid"), parsed)
            } else {
                None
            };
            Display {
                connector,
                connected,
                edid,
            }
        })
        .collect()
}

pub(crate) fn connected_count(root: &Path, notes: &mut Notes) -> Option<u32> {
    let connectors = connectors(root, notes)?;
    let n = connectors
        .iter()
        .filter(|(_, dir)| read::text(&dir.join("status")).is_ok_and(|s| s == "connected"))
        .count();
    Some(n as u32)
}
