//! Input devices from `proc/bus/input/devices`: keyboards, touchpads and, what matters
//! for interactive displays, whether a touch panel is present.
//!
//! Device descriptions only: it must never open `/dev/input/event*` or read what is
//! typed or touched. Bluetooth and virtual (uinput) devices are left out: their names
//! are chosen by people ("Marie's keyboard") or by user programs. The `Uniq=` line,
//! which holds Bluetooth addresses, is never read.

use std::path::Path;

use parc_protocol::inventory::InputDevice;

use super::read::{self, Notes};

/// linux/input-event-codes.h
const INPUT_PROP_POINTER: usize = 0x00;
const INPUT_PROP_DIRECT: usize = 0x01;
const ABS_MT_POSITION_X: usize = 0x35;
const BUS_BLUETOOTH: u16 = 0x05;
const BUS_VIRTUAL: u16 = 0x06;

pub(crate) fn devices(root: &Path, notes: &mut Notes) -> Vec<InputDevice> {
    match read::list(&root.join("proc/bus/input/devices")) {
        Ok(text) => parse_devices(&text),
        Err(reason) => {
            notes.push("input_devices", reason);
            Vec::new()
        }
    }
}

pub(crate) fn touch_count(root: &Path, notes: &mut Notes) -> Option<u32> {
    let text = notes.take(
        "touch_devices",
        read::list(&root.join("proc/bus/input/devices")),
    )?;
    Some(
        parse_devices(&text)
            .iter()
            .filter(|d| d.touchscreen)
            .count() as u32,
    )
}

fn parse_devices(text: &str) -> Vec<InputDevice> {
    text.split("\n\n").filter_map(parse_block).collect()
}

fn parse_block(block: &str) -> Option<InputDevice> {
    let mut name = None;
    let mut bus = None;
    let mut vendor = None;
    let mut product = None;
    let mut prop = Vec::new();
    let mut abs = Vec::new();
    for line in block.lines() {
        if let Some(rest) = line.strip_prefix("I: ") {
            for field in rest.split_whitespace() {
                match field.split_once('=') {
                    Some(("Bus", v)) => bus = u16::from_str_radix(v, 16).ok(),
                    Some(("Vendor", v)) => vendor = Some(v.to_ascii_lowercase()),
                    Some(("Product", v)) => product = Some(v.to_ascii_lowercase()),
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("N: Name=") {
            name = Some(rest.trim().trim_matches('"').to_string());
        } else if let Some(rest) = line.strip_prefix("B: PROP=") {
            prop = bitmask(rest);
        } else if let Some(rest) = line.strip_prefix("B: ABS=") {
            abs = bitmask(rest);
        }
    }
    let name = name.filter(|n| !n.is_empty())?;
    if matches!(bus, Some(BUS_BLUETOOTH | BUS_VIRTUAL)) {
        return None;
    }
    let has = |mask: &[u64], bit: usize| {
        mask.get(bit / 64)
            .is_some_and(|word| word & (1u64 << (bit % 64)) != 0)
    };
    // A touch panel reports positions on the screen (INPUT_PROP_DIRECT). Older drivers
    // omit the property; multitouch axes then mean a panel unless the device says it
    // moves a pointer (a touchpad) or its name says so.
    let lower = name.to_lowercase();
    let touchpad =
        has(&prop, INPUT_PROP_POINTER) || lower.contains("touchpad") || lower.contains("trackpad");
    let touchscreen = has(&prop, INPUT_PROP_DIRECT) || (has(&abs, ABS_MT_POSITION_X) && !touchpad);
    let id = |v: Option<String>| v.filter(|v| v.len() == 4 && v != "0000");
    Some(InputDevice {
        name,
        touchscreen,
        vendor_id: id(vendor),
        product_id: id(product),
        bus: bus.map(bus_name),
    })
}

/// A bitmask as the kernel prints it: hex words, most significant first, each as wide
/// as the kernel's `long`. Returned as 64-bit words, least significant first.
fn bitmask(text: &str) -> Vec<u64> {
    let words: Vec<u64> = text
        .split_whitespace()
        .rev()
        .map(|w| u64::from_str_radix(w, 16).unwrap_or(0))
        .collect();
    if usize::BITS == 64 {
        return words;
    }
    // A 32-bit kernel prints 32-bit words: pair them up.
    words
        .chunks(2)
        .map(|c| c[0] | c.get(1).map_or(0, |hi| hi << 32))
        .collect()
}

fn bus_name(bus: u16) -> String {
    match bus {
        0x01 => "pci",
        0x03 => "usb",
        0x10 => "isa",
        0x11 => "i8042",
        0x13 => "rs232",
        0x18 => "i2c",
        0x19 => "host",
        0x1c => "spi",
        0x1d => "rmi",
        0x1e => "cec",
        0x1f => "intel-ishtp",
        other => return format!("0x{other:04x}"),
    }
    .to_string()
}
