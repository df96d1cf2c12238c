//! Embeds the release verifying keys in the agent.
//!
//! The list comes from the file named by `PARC_RELEASE_KEYS` (production builds), else
//! from `release-keys/TEST-ONLY-release-keys.txt`, whose private key was discarded (such
//! an agent accepts no update). An empty or malformed list fails the build: self_update
//! would read an empty key set as "do not verify".

use std::path::PathBuf;

#[path = "src/release_keys.rs"]
mod release_keys;

fn main() {
    println!("cargo:rerun-if-env-changed=PARC_RELEASE_KEYS");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let test_list = manifest_dir.join("release-keys/TEST-ONLY-release-keys.txt");
    let (path, is_test) = match std::env::var_os("PARC_RELEASE_KEYS") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), false),
        _ => (test_list, true),
    };
    println!("cargo:rerun-if-changed={}", path.display());
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("PARC_RELEASE_KEYS: cannot read {}: {e}", path.display()));
    let keys = release_keys::parse_key_list(&text)
        .unwrap_or_else(|e| panic!("release keys in {}: {e}", path.display()));
    let mut out = String::from("/// Release verifying keys embedded at build time (build.rs).\n");
    out.push_str("pub const RELEASE_KEYS: &[[u8; 32]] = &[\n");
    for k in &keys {
        out.push_str(&format!("    {k:?},\n"));
    }
    out.push_str("];\n");
    out.push_str(&format!(
        "/// Whether the keys are the TEST-ONLY list (no production key).\npub const RELEASE_KEYS_ARE_TEST_ONLY: bool = {is_test};\n"
    ));
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("release_keys.rs");
    std::fs::write(&dest, out).expect("writing release_keys.rs");
}
