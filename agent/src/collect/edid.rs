//! EDID base-block parsing (VESA E-EDID 1.3/1.4): who made a display, its model, serial,
//! size and year, from the 128 bytes a monitor or panel sends.
//!
//! A pure function over bytes, so it is tested on hand-made blocks and can serve any
//! platform. It must never guess: a block with a bad header or checksum is refused
//! rather than half-read, and empty serials stay absent.

use parc_protocol::inventory::Edid;
use parc_protocol::normalize_serial;

const HEADER: [u8; 8] = [0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00];

/// Why a block was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdidError {
    #[error("EDID shorter than 128 bytes ({0})")]
    TooShort(usize),
    #[error("EDID header missing")]
    BadHeader,
    #[error("EDID checksum mismatch")]
    BadChecksum,
}

/// Parses the base block (the first 128 bytes; extension blocks are ignored).
pub fn parse_edid(bytes: &[u8]) -> Result<Edid, EdidError> {
    let block: &[u8; 128] = bytes
        .get(..128)
        .and_then(|b| b.try_into().ok())
        .ok_or(EdidError::TooShort(bytes.len()))?;
    if block[..8] != HEADER {
        return Err(EdidError::BadHeader);
    }
    if block.iter().fold(0u8, |acc, b| acc.wrapping_add(*b)) != 0 {
        return Err(EdidError::BadChecksum);
    }
    // Three 5-bit letters, 1 = 'A', big-endian.
    let id = u16::from_be_bytes([block[8], block[9]]);
    let manufacturer_id: String = [10u16, 5, 0]
        .iter()
        .map(|shift| {
            let v = ((id >> shift) & 0x1f) as u8;
            if (1..=26).contains(&v) {
                char::from(b'A' + v - 1)
            } else {
                '?'
            }
        })
        .collect();
    let product_code = u16::from_le_bytes([block[10], block[11]]);
    let serial = u32::from_le_bytes([block[12], block[13], block[14], block[15]]);
    // Byte 17 counts years since 1990; 0 means the panel does not say. Week 0xff
    // (EDID 1.4) turns the byte into a model year, still a year.
    let manufacture_year = (block[17] != 0).then(|| 1990 + u16::from(block[17]));
    // Both sizes 0 means a projector or a panel that does not report its size.
    let (w, h) = (block[21], block[22]);
    let (width_cm, height_cm) = if w != 0 && h != 0 {
        (Some(u16::from(w)), Some(u16::from(h)))
    } else {
        (None, None)
    };
    let mut monitor_name = None;
    let mut monitor_serial = None;
    for offset in [54usize, 72, 90, 108] {
        let d = &block[offset..offset + 18];
        // A display descriptor starts with a zero pixel clock; otherwise it is a
        // detailed timing.
        if d[0] != 0 || d[1] != 0 {
            continue;
        }
        match d[3] {
            0xfc => monitor_name = descriptor_text(&d[5..18]),
            0xff => monitor_serial = descriptor_text(&d[5..18]).and_then(|s| normalize_serial(&s)),
            _ => {}
        }
    }
    Ok(Edid {
        manufacturer_id,
        product_code,
        serial_number: (serial != 0).then_some(serial),
        monitor_name,
        monitor_serial,
        width_cm,
        height_cm,
        manufacture_year,
    })
}

/// Up to 13 ASCII bytes, ended by a line feed and padded with spaces.
fn descriptor_text(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == 0x0a).unwrap_or(bytes.len());
    let s: String = bytes[..end]
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                ' '
            }
        })
        .collect();
    let s = s.trim().to_string();
    (!s.is_empty()).then_some(s)
}
