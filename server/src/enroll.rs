//! Enrolment secrets: token strings, device ids, keys and broker passwords, and the
//! Mosquitto password-file line for a device.
//!
//! Pure apart from drawing random bytes from the OS. It must never log or return a
//! secret except to the one caller that hands it to its owner (the enrolment response
//! or the `token create` output), and never store one in clear: tokens and broker
//! passwords are kept as hashes, device keys only because the HMAC check needs them.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use parc_protocol::{DeviceId, DeviceKey};
use sha2::{Digest as _, Sha256, Sha512};

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source is available");
    b
}

pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A new enrolment token: its public id, and the full string given to the authority
/// (`id.secret`). Only the secret's hash is stored.
pub struct NewToken {
    pub id: String,
    pub token: String,
    pub secret_sha256: String,
}

pub fn new_token() -> NewToken {
    let id = format!("tok_{}", hex::encode(random::<5>()));
    let secret = URL_SAFE_NO_PAD.encode(random::<24>());
    NewToken {
        token: format!("{id}.{secret}"),
        secret_sha256: sha256_hex(&secret),
        id,
    }
}

/// Splits a token string into (id, secret); `None` when it is not shaped like one.
pub fn split_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.trim().split_once('.')?;
    let ok_id = id.starts_with("tok_")
        && id.len() <= 32
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (ok_id && !secret.is_empty() && secret.len() <= 128).then_some((id, secret))
}

pub fn new_device_id() -> DeviceId {
    DeviceId::parse(&format!("d-{}", hex::encode(random::<8>())))
        .expect("d- and hex digits make a valid device id")
}

pub fn new_device_key() -> DeviceKey {
    DeviceKey::from_bytes(random::<32>())
}

pub fn new_mqtt_password() -> String {
    URL_SAFE_NO_PAD.encode(random::<24>())
}

/// A 256-bit secret as URL-safe text (webhook signing keys).
pub fn random_secret() -> String {
    URL_SAFE_NO_PAD.encode(random::<32>())
}

/// Mosquitto's iteration count for `$7$` (PBKDF2-SHA512) hashes, as `mosquitto_passwd`
/// writes them.
const MOSQUITTO_ITERATIONS: u32 = 101;

/// A `user:$7$…` line for Mosquitto's `password_file`.
pub fn mosquitto_password_line(user: &str, password: &str) -> String {
    mosquitto_password_line_with_salt(user, password, &random::<12>())
}

fn mosquitto_password_line_with_salt(user: &str, password: &str, salt: &[u8]) -> String {
    let mut hash = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, MOSQUITTO_ITERATIONS, &mut hash);
    format!(
        "{user}:$7${MOSQUITTO_ITERATIONS}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(hash)
    )
}

/// Lower-case, colon-separated MACs, without duplicates and without the all-zero or
/// locally administered (random, per-network) addresses that do not identify hardware.
pub fn normalize_macs(macs: &[String]) -> Vec<String> {
    let mut out: Vec<String> = macs
        .iter()
        .filter_map(|m| {
            let m = m.trim().to_ascii_lowercase().replace('-', ":");
            let bytes: Vec<u8> = m
                .split(':')
                .map(|p| u8::from_str_radix(p, 16))
                .collect::<Result<_, _>>()
                .ok()?;
            let usable = bytes.len() == 6 && bytes.iter().any(|b| *b != 0) && bytes[0] & 0x02 == 0;
            usable.then_some(m)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_into_id_and_secret() {
        let t = new_token();
        let (id, secret) = split_token(&t.token).unwrap();
        assert_eq!(id, t.id);
        assert_eq!(sha256_hex(secret), t.secret_sha256);
        assert!(split_token("nope").is_none());
        assert!(split_token("tok_x.").is_none());
        assert!(split_token("tok_x'; DROP.y").is_none());
    }

    #[test]
    fn mosquitto_lines_have_the_pbkdf2_sha512_shape() {
        let line = mosquitto_password_line_with_salt("d-1", "secret", &[0u8; 12]);
        let parts: Vec<&str> = line.split('$').collect();
        assert_eq!(parts[0], "d-1:");
        assert_eq!(parts[1], "7");
        assert_eq!(parts[2], "101");
        assert_eq!(STANDARD.decode(parts[3]).unwrap().len(), 12);
        assert_eq!(STANDARD.decode(parts[4]).unwrap().len(), 64);
    }

    #[test]
    fn macs_are_normalised_and_random_ones_dropped() {
        let macs = normalize_macs(&[
            "3C-52-82-00-11-22".into(),
            "3c:52:82:00:11:22".into(),
            "00:00:00:00:00:00".into(),
            "06:11:22:33:44:55".into(), // locally administered
            "garbage".into(),
        ]);
        assert_eq!(macs, vec!["3c:52:82:00:11:22"]);
    }
}
