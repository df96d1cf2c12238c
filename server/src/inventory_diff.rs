//! What changed between two inventories of one device: a battery, disk or display
//! replaced, a touch panel gone, memory added. Technicians read these as the device's
//! dated component history.
//!
//! Pure: no IO, no clock. Components are compared by slot (battery `BAT0`, disk `sda`,
//! display connector) and identity (serials, EDID): a slot whose identity differs is a
//! replacement. It must never report a change for readings that merely vary (charge,
//! free space) — those belong to health.

use std::collections::BTreeMap;

use parc_protocol::Inventory;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// "system", "battery", "disk", "display", "touch", "memory", "cpu".
    pub component: &'static str,
    /// Where the component sits: "BAT0", "sda", "card0-HDMI-A-1", or the component name.
    pub slot: String,
    pub change: ChangeKind,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Removed,
    Replaced,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Replaced => "replaced",
        }
    }
}

fn describe(parts: &[Option<&str>]) -> String {
    let words: Vec<&str> = parts.iter().flatten().copied().collect();
    if words.is_empty() {
        "unidentified".to_string()
    } else {
        words.join(" ")
    }
}

fn slots(inv: &Inventory) -> BTreeMap<(&'static str, String), String> {
    let mut m = BTreeMap::new();
    let id = &inv.identity;
    if id.system_serial.is_some() || id.product_name.is_some() {
        m.insert(
            ("system", "system".to_string()),
            describe(&[
                id.system_manufacturer.as_deref(),
                id.product_name.as_deref(),
                id.system_serial.as_deref(),
            ]),
        );
    }
    for b in &inv.batteries {
        m.insert(
            ("battery", b.name.clone()),
            describe(&[
                b.manufacturer.as_deref(),
                b.model.as_deref(),
                b.serial.as_deref(),
            ]),
        );
    }
    for d in &inv.disks {
        m.insert(
            ("disk", d.name.clone()),
            describe(&[d.model.as_deref(), d.serial.as_deref()]),
        );
    }
    for d in inv.displays.iter().filter(|d| d.connected) {
        let ident = match &d.edid {
            Some(e) => {
                let serial = e
                    .monitor_serial
                    .clone()
                    .or_else(|| e.serial_number.map(|n| n.to_string()));
                format!(
                    "{} {:04x}{}{}",
                    e.manufacturer_id,
                    e.product_code,
                    e.monitor_name
                        .as_deref()
                        .map(|n| format!(" {n}"))
                        .unwrap_or_default(),
                    serial.map(|s| format!(" {s}")).unwrap_or_default()
                )
            }
            None => "unidentified".to_string(),
        };
        m.insert(("display", d.connector.clone()), ident);
    }
    for t in inv.input_devices.iter().filter(|i| i.touchscreen) {
        let ident = describe(&[
            Some(t.name.as_str()),
            t.vendor_id.as_deref(),
            t.product_id.as_deref(),
        ]);
        m.insert(("touch", ident.clone()), ident);
    }
    if let Some(bytes) = inv.memory_total_bytes {
        // Kernels report slightly different totals across versions: compare in MiB.
        m.insert(
            ("memory", "memory".to_string()),
            format!("{} MiB", bytes / (1024 * 1024)),
        );
    }
    if let Some(model) = inv.cpu.as_ref().and_then(|c| c.model.clone()) {
        m.insert(("cpu", "cpu".to_string()), model);
    }
    m
}

/// The component changes from `old` to `new`, in a stable order.
pub fn diff(old: &Inventory, new: &Inventory) -> Vec<Change> {
    let before = slots(old);
    let after = slots(new);
    let mut out = Vec::new();
    for ((component, slot), was) in &before {
        match after.get(&(component, slot.clone())) {
            None => out.push(Change {
                component,
                slot: slot.clone(),
                change: ChangeKind::Removed,
                before: Some(was.clone()),
                after: None,
            }),
            Some(now) if now != was => out.push(Change {
                component,
                slot: slot.clone(),
                change: ChangeKind::Replaced,
                before: Some(was.clone()),
                after: Some(now.clone()),
            }),
            Some(_) => {}
        }
    }
    for ((component, slot), now) in &after {
        if !before.contains_key(&(component, slot.clone())) {
            out.push(Change {
                component,
                slot: slot.clone(),
                change: ChangeKind::Added,
                before: None,
                after: Some(now.clone()),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use parc_protocol::inventory::{BatteryInfo, Display, Edid, InputDevice};

    fn laptop() -> Inventory {
        let mut inv = Inventory::default();
        inv.identity.system_serial = Some("PF2ABCDE".into());
        inv.identity.product_name = Some("ThinkPad L13".into());
        inv.batteries.push(BatteryInfo {
            name: "BAT0".into(),
            manufacturer: Some("SMP".into()),
            model: Some("5B10W13930".into()),
            serial: Some("1234".into()),
            ..Default::default()
        });
        inv.displays.push(Display {
            connector: "card0-eDP-1".into(),
            connected: true,
            edid: Some(Edid {
                manufacturer_id: "LEN".into(),
                product_code: 0x40ba,
                ..Default::default()
            }),
        });
        inv.input_devices.push(InputDevice {
            name: "ELAN Touchscreen".into(),
            touchscreen: true,
            ..Default::default()
        });
        inv.memory_total_bytes = Some(8 * 1024 * 1024 * 1024);
        inv
    }

    #[test]
    fn identical_inventories_have_no_change() {
        assert!(diff(&laptop(), &laptop()).is_empty());
    }

    #[test]
    fn a_battery_with_another_serial_is_a_replacement() {
        let mut new = laptop();
        new.batteries[0].serial = Some("9999".into());
        let d = diff(&laptop(), &new);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].component, "battery");
        assert_eq!(d[0].slot, "BAT0");
        assert_eq!(d[0].change, ChangeKind::Replaced);
        assert_eq!(d[0].after.as_deref(), Some("SMP 5B10W13930 9999"));
    }

    #[test]
    fn a_missing_touch_panel_and_a_new_disk_are_reported() {
        let mut new = laptop();
        new.input_devices.clear();
        new.disks.push(parc_protocol::inventory::Disk {
            name: "nvme0n1".into(),
            model: Some("PM991".into()),
            serial: Some("S4".into()),
            ..Default::default()
        });
        let d = diff(&laptop(), &new);
        let kinds: Vec<_> = d.iter().map(|c| (c.component, c.change)).collect();
        assert!(kinds.contains(&("touch", ChangeKind::Removed)));
        assert!(kinds.contains(&("disk", ChangeKind::Added)));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn a_disconnected_display_counts_as_removed() {
        let mut new = laptop();
        new.displays[0].connected = false;
        let d = diff(&laptop(), &new);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].component, d[0].change),
            ("display", ChangeKind::Removed)
        );
    }

    #[test]
    fn memory_totals_within_a_mebibyte_are_the_same() {
        let mut new = laptop();
        new.memory_total_bytes = Some(8 * 1024 * 1024 * 1024 + 4096);
        assert!(diff(&laptop(), &new).is_empty());
    }
}
