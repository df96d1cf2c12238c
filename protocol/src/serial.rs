//! Serial-number normalisation, shared by the agent (what it reports) and the server
//! (what delivery manifests list), so that both sides compare the same strings.
//!
//! Firmware often ships placeholders instead of a serial; two devices with
//! "To be filled by O.E.M." must never be matched with each other or with a delivery,
//! so a placeholder normalises to `None`.

/// Placeholders seen in DMI tables and manifests, compared after upper-casing.
const PLACEHOLDERS: &[&str] = &[
    "TO BE FILLED BY O.E.M.",
    "TO BE FILLED BY OEM",
    "DEFAULT STRING",
    "SYSTEM SERIAL NUMBER",
    "CHASSIS SERIAL NUMBER",
    "BASE BOARD SERIAL NUMBER",
    "SERIAL NUMBER",
    "SERIAL",
    "NONE",
    "NULL",
    "N/A",
    "NA",
    "NOT APPLICABLE",
    "NOT SPECIFIED",
    "NOT AVAILABLE",
    "UNKNOWN",
    "INVALID",
    "EMPTY",
    "DEFAULT",
    "O.E.M.",
    "OEM",
    "0123456789",
    "123456789",
    "1234567890",
];

/// Trims, upper-cases and drops control characters; placeholders, and strings made of
/// one repeated character ("00000000", "FFFFFFFF", "0"), become `None`.
pub fn normalize_serial(raw: &str) -> Option<String> {
    let s: String = raw
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .to_uppercase();
    let mut chars = s.chars();
    let first = chars.next()?;
    if chars.all(|c| c == first) {
        return None;
    }
    if PLACEHOLDERS.contains(&s.as_str()) {
        return None;
    }
    Some(s)
}
