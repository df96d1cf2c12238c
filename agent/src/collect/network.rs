//! Network interfaces from `sys/class/net` (name, MAC address, wired or wireless),
//! their IP addresses (IPv6 from `proc/net/if_inet6`; IPv4 from the local host entries
//! of `proc/net/fib_trie`, attributed to an interface through `proc/net/route`), and
//! Wi-Fi signal from `proc/net/wireless`.
//!
//! Interface facts only: it must never read traffic, connections, sockets, visited
//! addresses or the names of the networks a device joined.

use std::path::Path;

use parc_protocol::health::Wifi;
use parc_protocol::inventory::NetworkInterface;

use super::read::{self, Notes};

pub(crate) fn interfaces(root: &Path, notes: &mut Notes) -> Vec<NetworkInterface> {
    let mut addresses = ipv4_addresses(root);
    for (iface, addr) in ipv6_addresses(root) {
        addresses.push((iface, addr));
    }
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
            let mut addrs: Vec<String> = addresses
                .iter()
                .filter(|(iface, _)| *iface == name)
                .map(|(_, a)| a.clone())
                .collect();
            addrs.sort();
            addrs.dedup();
            NetworkInterface {
                name,
                mac,
                link: Some(link.to_string()),
                addresses: addrs,
            }
        })
        .collect()
}

/// `proc/net/if_inet6`: `fe800000000000000a0027fffe4e8a2e 02 40 20 80 wlp0s20f3`
/// (address, index, prefix length, scope, flags, interface). Loopback is left out.
fn ipv6_addresses(root: &Path) -> Vec<(String, String)> {
    let Ok(text) = read::text(&root.join("proc/net/if_inet6")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (hex, iface) = (f.first()?, f.get(5)?);
            let bits = u128::from_str_radix(hex, 16).ok()?;
            let addr = std::net::Ipv6Addr::from(bits);
            (!addr.is_loopback() && *iface != "lo").then(|| (iface.to_string(), addr.to_string()))
        })
        .collect()
}

/// IPv4 addresses of this host: the `/32 host LOCAL` leaves of `proc/net/fib_trie`,
/// each given to the interface whose route (`proc/net/route`, longest mask) covers it.
fn ipv4_addresses(root: &Path) -> Vec<(String, String)> {
    let (Ok(trie), Ok(routes)) = (
        read::text(&root.join("proc/net/fib_trie")),
        read::text(&root.join("proc/net/route")),
    ) else {
        return Vec::new();
    };
    // Iface Destination Gateway Flags RefCnt Use Metric Mask …, hex in host order.
    let routes: Vec<(String, u32, u32)> = routes
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            (mask != 0).then(|| (f[0].to_string(), dest, mask))
        })
        .collect();
    let mut locals = Vec::new();
    let mut last: Option<std::net::Ipv4Addr> = None;
    for line in trie.lines() {
        let t = line.trim_start_matches([' ', '|', '-', '+']).trim();
        if let Ok(a) = t.parse::<std::net::Ipv4Addr>() {
            last = Some(a);
        } else if t.starts_with("/32 host LOCAL")
            && let Some(a) = last
            && !a.is_loopback()
            && !locals.contains(&a)
        {
            locals.push(a);
        }
    }
    locals
        .into_iter()
        .filter_map(|a| {
            // The route file prints the kernel's in-memory (network-order) u32 as a
            // native integer: compare in the same representation.
            let host = u32::from_ne_bytes(a.octets());
            routes
                .iter()
                .filter(|(_, dest, mask)| host & mask == *dest)
                .max_by_key(|(_, _, mask)| mask.count_ones())
                .map(|(iface, _, _)| (iface.clone(), a.to_string()))
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
