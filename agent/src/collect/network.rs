//! Network interfaces from `sys/class/net` (name, MAC address, wired or wireless) and
//! Wi-Fi signal from `proc/net/wireless`.
//!
//! Interface facts only: it must never read traffic, connections, sockets, visited
//! addresses or the names of the networks a device joined.

use std::path::Path;

use parc_protocol::health::Wifi;
use parc_protocol::inventory::NetworkInterface;

use super::read::{self, Notes};

pub(crate) fn interfaces(root: &Path, notes: &mut Notes) -> Vec<NetworkInterface> {
    let Some(entries) = notes.take(
        "network_interfaces",
        read::entries(&root.join("sys/class/net")),
    ) else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter(|(name, dir)| name != "lo" && dir.is_dir())
        .map(|(name, dir)| {
            let mac = notes.take(
                &format!("network_interfaces.{name}.mac"),
                read::text(&dir.join("address")).and_then(|m| {
                    // Tunnels and some virtual links have no hardware address.
                    if m.chars().all(|c| c == '0' || c == ':') {
                        Err("no hardware address".to_string())
                    } else {
                        Ok(m.to_ascii_lowercase())
                    }
                }),
            );
            // Virtual interfaces (bridges, VPN tunnels, containers) have no `device`
            // link to the hardware they sit on.
            let link = if dir.join("wireless").exists() || dir.join("phy80211").exists() {
                "wireless"
            } else if dir.join("device").exists() {
                "wired"
            } else {
                "virtual"
            };
            NetworkInterface {
                name,
                mac,
                link: Some(link.to_string()),
                addresses: Vec::new(),
            }
        })
        .collect()
}

/// `proc/net/wireless`: two header lines, then
/// `wlan0: 0000   54.  -56.  -256  0 0 0 0 11 0` (status, link quality, level in dBm,
/// noise…). Link quality is out of 70 for most drivers (nl80211 reports it so).
pub(crate) fn wifi(root: &Path, notes: &mut Notes) -> Vec<Wifi> {
    let text = match read::text(&root.join("proc/net/wireless")) {
        Ok(t) => t,
        Err(reason) => {
            notes.push("wifi", reason);
            return Vec::new();
        }
    };
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (iface, rest) = line.split_once(':')?;
            let mut f = rest.split_whitespace().skip(1);
            let num = |s: Option<&str>| s?.trim_end_matches('.').parse::<f64>().ok();
            let quality = num(f.next());
            let level = num(f.next());
            Some(Wifi {
                interface: iface.trim().to_string(),
                // -256 and 0 are what drivers print when they have no level.
                signal_dbm: level.filter(|l| *l < 0.0 && *l > -256.0),
                quality_percent: quality
                    .filter(|q| *q > 0.0)
                    .map(|q| (q / 70.0 * 100.0).min(100.0)),
            })
        })
        .collect()
}
