//! Parsing of the release verifying-key list that `build.rs` embeds in the agent.
//!
//! Shared verbatim by the build script (which fails the build on any error, an empty
//! list included) and the library (so the rules are tested). It must stay plain `std`
//! and must never accept an empty list: self_update treats an empty key set as "do not
//! verify", so an empty list would silently turn signature checks off.

/// Length of an ed25519 verifying key.
pub const KEY_LEN: usize = 32;

/// Parses one key per line (64 hex digits), `#` comments and blank lines ignored.
/// Duplicates are refused (a rotation list naming a key twice is a mistake).
pub fn parse_key_list(text: &str) -> Result<Vec<[u8; KEY_LEN]>, String> {
    let mut keys: Vec<[u8; KEY_LEN]> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let key = parse_hex_key(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        if keys.contains(&key) {
            return Err(format!("line {}: this key is already listed", i + 1));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(
            "the release key list is empty: an agent without verifying keys would install \
             unsigned updates, so the build refuses it"
                .to_string(),
        );
    }
    Ok(keys)
}

fn parse_hex_key(s: &str) -> Result<[u8; KEY_LEN], String> {
    if s.len() != KEY_LEN * 2 {
        return Err(format!(
            "a key is {} hex digits, found {} characters",
            KEY_LEN * 2,
            s.len()
        ));
    }
    let mut out = [0u8; KEY_LEN];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = hex_digit(chunk[0])?;
        let lo = hex_digit(chunk[1])?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

fn hex_digit(c: u8) -> Result<u8, String> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(format!("`{}` is not a hex digit", c as char)),
    }
}
