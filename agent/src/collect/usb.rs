//! USB devices from `sys/bus/usb/devices`: vendor and product ids and names, and the
//! serial of built-in devices (webcam, touch controller, fingerprint reader) so that a
//! replaced component can be seen.
//!
//! Devices on external ports are listed by vendor and product only (a document camera
//! or a speaker bar is classroom equipment worth seeing), but their serials are never
//! reported: a phone or a key plugged in to charge belongs to a person, not to the
//! school. Root hubs (the kernel's own vendor id 1d6b) are left out: they are not
//! hardware one can replace.

use std::path::Path;

use parc_protocol::inventory::UsbDevice;
use parc_protocol::normalize_serial;

use super::read::{self, Notes};

const LINUX_FOUNDATION: &str = "1d6b";

pub(crate) fn devices(root: &Path, notes: &mut Notes) -> Vec<UsbDevice> {
    let Some(entries) = notes.take(
        "usb_devices",
        read::entries(&root.join("sys/bus/usb/devices")),
    ) else {
        return Vec::new();
    };
    entries
        .into_iter()
        // Interfaces ("1-2:1.0") have no idVendor; only devices do.
        .filter_map(|(_, dir)| {
            let vendor_id = read::text(&dir.join("idVendor")).ok()?.to_ascii_lowercase();
            let product_id = read::text(&dir.join("idProduct"))
                .ok()?
                .to_ascii_lowercase();
            if vendor_id == LINUX_FOUNDATION {
                return None;
            }
            let built_in = read::text(&dir.join("removable")).is_ok_and(|r| r == "fixed");
            let serial = if built_in {
                read::text(&dir.join("serial"))
                    .ok()
                    .and_then(|s| normalize_serial(&s))
            } else {
                None
            };
            Some(UsbDevice {
                vendor_id,
                product_id,
                manufacturer: read::text(&dir.join("manufacturer")).ok(),
                product: read::text(&dir.join("product")).ok(),
                serial,
            })
        })
        .collect()
}
