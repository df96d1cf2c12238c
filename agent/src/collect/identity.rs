//! Hardware identity from the SMBIOS/DMI strings the kernel exports under
//! `sys/class/dmi/id`: serial, maker, model, chassis type, board and BIOS.
//!
//! The serial and UUID files are readable by root only; without them the identity is
//! still reported, with the reason they are missing. Placeholders that firmware ships
//! instead of a serial must never be reported as a serial: two devices sharing
//! "To be filled by O.E.M." would be merged into one.

use std::path::Path;

use parc_protocol::inventory::Identity;
use parc_protocol::normalize_serial;

use super::read::{self, Notes};

/// Text that firmware vendors leave in DMI fields they did not fill.
const TEXT_PLACEHOLDERS: &[&str] = &[
    "TO BE FILLED BY O.E.M.",
    "TO BE FILLED BY OEM",
    "DEFAULT STRING",
    "SYSTEM MANUFACTURER",
    "SYSTEM PRODUCT NAME",
    "SYSTEM VERSION",
    "SYSTEM SKU",
    "SKU",
    "NOT APPLICABLE",
    "NOT SPECIFIED",
    "NONE",
    "N/A",
    "O.E.M.",
    "OEM",
];

pub(crate) fn read(root: &Path, notes: &mut Notes) -> Identity {
    let dmi = root.join("sys/class/dmi/id");
    // Virtual machines and most ARM boards have no DMI at all: one reason says it
    // better than a dozen.
    if let Err(e) = std::fs::metadata(&dmi) {
        notes.push("identity", read::reason_for(&e));
        return Identity::default();
    }
    let mut text = |file: &str, signal: &str| -> Option<String> {
        let value = read::text(&dmi.join(file)).and_then(|s| {
            if TEXT_PLACEHOLDERS.contains(&s.to_uppercase().as_str()) {
                Err(format!("firmware placeholder {s:?}"))
            } else {
                Ok(s)
            }
        });
        notes.take(signal, value)
    };
    let system_manufacturer = text("sys_vendor", "identity.system_manufacturer");
    let product_name = text("product_name", "identity.product_name");
    let product_version = text("product_version", "identity.product_version");
    let product_family = text("product_family", "identity.product_family");
    let product_sku = text("product_sku", "identity.product_sku");
    let bios_vendor = text("bios_vendor", "identity.bios_vendor");
    let bios_version = text("bios_version", "identity.bios_version");
    let bios_date = text("bios_date", "identity.bios_date");

    let system_serial = notes.take(
        "identity.system_serial",
        read::text(&dmi.join("product_serial")).and_then(serial),
    );
    let board_serial = notes.take(
        "identity.board_serial",
        read::text(&dmi.join("board_serial")).and_then(serial),
    );
    let system_uuid = notes.take(
        "identity.system_uuid",
        read::text(&dmi.join("product_uuid")).and_then(uuid),
    );
    let chassis_type = notes.take(
        "identity.chassis_type",
        read::int(&dmi.join("chassis_type")).and_then(chassis_words),
    );

    Identity {
        system_serial,
        system_manufacturer,
        product_name,
        product_version,
        product_family,
        product_sku,
        chassis_type,
        board_serial,
        bios_vendor,
        bios_version,
        bios_date,
        system_uuid,
    }
}

fn serial(raw: String) -> Result<String, String> {
    normalize_serial(&raw).ok_or_else(|| format!("firmware placeholder {raw:?}"))
}

/// A UUID that AMI firmware ships on unconfigured boards: thousands of machines share it.
const UUID_PLACEHOLDERS: &[&str] = &["03000200-0400-0500-0006-000700080009"];

/// Firmware without a real UUID fills it with one repeated digit (all 0 or all F) or a
/// vendor's template value; such a UUID identifies nothing.
fn uuid(raw: String) -> Result<String, String> {
    let digits: Vec<char> = raw
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if digits.len() != 32 {
        return Err(format!("malformed UUID {raw:?}"));
    }
    let lower = raw.to_ascii_lowercase();
    if digits.iter().all(|&c| c == digits[0]) || UUID_PLACEHOLDERS.contains(&lower.as_str()) {
        return Err(format!("firmware placeholder {raw:?}"));
    }
    Ok(lower)
}

/// SMBIOS 3.x, table "System Enclosure or Chassis Types" (7.4.1). The top bit of the
/// byte is the chassis-lock flag, not part of the type.
fn chassis_words(raw: i64) -> Result<String, String> {
    let words = match raw & 0x7f {
        0 => return Err("invalid type 0".to_string()),
        1 => "other",
        2 => return Err("firmware reports unknown".to_string()),
        3 => "desktop",
        4 => "low profile desktop",
        5 => "pizza box",
        6 => "mini tower",
        7 => "tower",
        8 => "portable",
        9 => "laptop",
        10 => "notebook",
        11 => "hand held",
        12 => "docking station",
        13 => "all-in-one",
        14 => "sub notebook",
        15 => "space-saving",
        16 => "lunch box",
        17 => "main server chassis",
        18 => "expansion chassis",
        19 => "sub chassis",
        20 => "bus expansion chassis",
        21 => "peripheral chassis",
        22 => "raid chassis",
        23 => "rack mount chassis",
        24 => "sealed-case pc",
        25 => "multi-system chassis",
        26 => "compact pci",
        27 => "advanced tca",
        28 => "blade",
        29 => "blade enclosure",
        30 => "tablet",
        31 => "convertible",
        32 => "detachable",
        33 => "iot gateway",
        34 => "embedded pc",
        35 => "mini pc",
        36 => "stick pc",
        // The set is open on the wire: a type newer than this table still says
        // something, so keep its number rather than dropping it.
        n => return Ok(format!("smbios type {n}")),
    };
    Ok(words.to_string())
}
