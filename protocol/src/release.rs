//! HTTP wire types of agent releases: the per-channel manifest the agent's updater
//! (self_update's manifest backend, schema 1) reads, and the archive naming rule.
//!
//! An archive is `parc-agent-{version}-{target}.tar.gz` holding the `parc-agent`
//! executable, signed with zipsign under that exact name (the signature covers the name,
//! so an archive is never renamed after signing). No IO here.

use serde::{Deserialize, Serialize};

/// Release channels: `pilot` devices get releases first.
pub const CHANNELS: [&str; 2] = ["stable", "pilot"];

/// Path of a channel's manifest; assets are listed relative to it (`files/{name}`).
pub fn manifest_path(channel: &str) -> String {
    format!("/api/v1/releases/{channel}/manifest.json")
}

/// The published file name of a release archive.
pub fn archive_file_name(version: &str, target: &str) -> String {
    format!("parc-agent-{version}-{target}.tar.gz")
}

/// The target named by an archive file name published for `version`, if the name
/// follows [`archive_file_name`].
pub fn archive_target<'a>(file_name: &'a str, version: &str) -> Option<&'a str> {
    let target = file_name
        .strip_prefix("parc-agent-")?
        .strip_prefix(version)?
        .strip_prefix('-')?
        .strip_suffix(".tar.gz")?;
    let ok = !target.is_empty()
        && target
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    ok.then_some(target)
}

/// self_update's manifest, schema 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub releases: Vec<ManifestRelease>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestRelease {
    /// Bare semver, no leading `v`.
    pub version: String,
    /// RFC 3339 publication time.
    pub date: String,
    pub assets: Vec<ManifestAsset>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestAsset {
    pub name: String,
    /// Relative to the manifest's URL.
    pub url: String,
    /// `sha256:{hex}` of the archive as served.
    pub digest: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_round_trip_and_foreign_names_are_refused() {
        let n = archive_file_name("1.2.0-rc.1", "x86_64-unknown-linux-gnu");
        assert_eq!(n, "parc-agent-1.2.0-rc.1-x86_64-unknown-linux-gnu.tar.gz");
        assert_eq!(
            archive_target(&n, "1.2.0-rc.1"),
            Some("x86_64-unknown-linux-gnu")
        );
        assert_eq!(archive_target(&n, "1.2.0"), None);
        assert_eq!(archive_target("parc-agent-1.2.0-x86_64.zip", "1.2.0"), None);
        assert_eq!(
            archive_target("parc-agent-1.2.0-../x.tar.gz", "1.2.0"),
            None
        );
        assert_eq!(archive_target("parc-agent-1.2.0-.tar.gz", "1.2.0"), None);
    }
}
