//! Agent releases, pure part: checking what is published, who a staged rollout reaches,
//! and the manifest a device is served.
//!
//! A release reaches a device when the device's site (school UAI) is one of the
//! rollout's named sites, or when the device's bucket — a stable number 0–99 drawn
//! from a hash of its id and the version — is below the rollout percentage. Widening
//! the percentage only ever adds devices, and each version draws different buckets, so
//! the same devices are not always first. No IO here: the store reads, `http_releases`
//! serves.

use chrono::{DateTime, Utc};
use parc_protocol::release::{CHANNELS, Manifest, ManifestAsset, ManifestRelease, archive_target};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    #[error("unknown channel {0:?}: use \"stable\" or \"pilot\"")]
    Channel(String),
    #[error("version {0:?} is not a semantic version (e.g. 1.4.0)")]
    Version(String),
    #[error(
        "archive name {name:?} must be parc-agent-{version}-TARGET.tar.gz (the name the archive was signed under)"
    )]
    FileName { name: String, version: String },
    #[error("rollout percentage {0} is not between 0 and 100")]
    Percent(i64),
    #[error("site {0:?} is not a valid UAI (7 digits and its check letter)")]
    Site(String),
}

/// A release as stored, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseInfo {
    pub channel: String,
    pub version: String,
    pub file_name: String,
    pub target: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub published_at: DateTime<Utc>,
    pub rollout: Rollout,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollout {
    pub percent: i64,
    pub sites: Vec<String>,
    pub updated_at: DateTime<Utc>,
}

pub fn check_channel(channel: &str) -> Result<(), ReleaseError> {
    if CHANNELS.contains(&channel) {
        Ok(())
    } else {
        Err(ReleaseError::Channel(channel.to_string()))
    }
}

/// Checks the version and the archive's name; returns the target the name carries.
pub fn check_archive_name(file_name: &str, version: &str) -> Result<String, ReleaseError> {
    semver::Version::parse(version).map_err(|_| ReleaseError::Version(version.to_string()))?;
    archive_target(file_name, version)
        .map(str::to_string)
        .ok_or_else(|| ReleaseError::FileName {
            name: file_name.to_string(),
            version: version.to_string(),
        })
}

/// Checks a rollout and normalises its sites (upper case, sorted, deduplicated).
pub fn check_rollout(percent: i64, sites: &[String]) -> Result<Vec<String>, ReleaseError> {
    if !(0..=100).contains(&percent) {
        return Err(ReleaseError::Percent(percent));
    }
    let mut out = Vec::new();
    for s in sites {
        let uai = crate::domain::Uai::parse(s).map_err(|_| ReleaseError::Site(s.clone()))?;
        out.push(uai.as_str().to_string());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The device's stable bucket, 0–99, for `version`.
pub fn bucket(device_id: &str, version: &str) -> u8 {
    let h = Sha256::digest(format!("{device_id}/{version}").as_bytes());
    (u16::from_be_bytes([h[0], h[1]]) % 100) as u8
}

/// Whether the rollout reaches a device. An anonymous request (no device) gets only
/// releases at 100 %.
pub fn reaches(
    rollout: &Rollout,
    version: &str,
    device_id: Option<&str>,
    site: Option<&str>,
) -> bool {
    if rollout.percent >= 100 {
        return true;
    }
    let Some(device_id) = device_id else {
        return false;
    };
    if let Some(site) = site
        && rollout.sites.iter().any(|s| s.eq_ignore_ascii_case(site))
    {
        return true;
    }
    i64::from(bucket(device_id, version)) < rollout.percent
}

/// The manifest a device is served: the channel's releases that reach it.
pub fn manifest_for(
    releases: &[ReleaseInfo],
    device_id: Option<&str>,
    site: Option<&str>,
) -> Manifest {
    let mut out: Vec<ManifestRelease> = Vec::new();
    for r in releases {
        if !reaches(&r.rollout, &r.version, device_id, site) {
            continue;
        }
        let asset = ManifestAsset {
            name: r.file_name.clone(),
            url: format!("files/{}", r.file_name),
            digest: format!("sha256:{}", r.sha256),
        };
        match out.iter_mut().find(|m| m.version == r.version) {
            Some(m) => m.assets.push(asset),
            None => out.push(ManifestRelease {
                version: r.version.clone(),
                date: r.published_at.to_rfc3339(),
                assets: vec![asset],
            }),
        }
    }
    Manifest {
        schema: 1,
        releases: out,
    }
}

/// What to announce to a device running `agent_version`: per channel, the newest
/// release that reaches it and is newer than what it runs. The device ignores the
/// channels it does not follow. Nothing for a device whose version is unknown or not
/// a semantic version.
pub fn announcements_for(
    releases: &[ReleaseInfo],
    device_id: &str,
    site: Option<&str>,
    agent_version: Option<&str>,
) -> Vec<(String, String)> {
    let Some(running) = agent_version.and_then(|v| semver::Version::parse(v).ok()) else {
        return Vec::new();
    };
    let mut best: Vec<(String, semver::Version)> = Vec::new();
    for r in releases {
        let Ok(v) = semver::Version::parse(&r.version) else {
            continue;
        };
        if v <= running || !reaches(&r.rollout, &r.version, Some(device_id), site) {
            continue;
        }
        match best.iter_mut().find(|(c, _)| *c == r.channel) {
            Some((_, b)) if *b >= v => {}
            Some((_, b)) => *b = v,
            None => best.push((r.channel.clone(), v)),
        }
    }
    best.into_iter().map(|(c, v)| (c, v.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(percent: i64, sites: &[&str]) -> Rollout {
        Rollout {
            percent,
            sites: sites.iter().map(|s| s.to_string()).collect(),
            updated_at: DateTime::default(),
        }
    }

    #[test]
    fn widening_a_rollout_only_adds_devices_and_reaches_about_the_percentage() {
        let ids: Vec<String> = (0..2000).map(|i| format!("d-{i:05}")).collect();
        let mut previous = 0;
        for pct in [0, 5, 20, 50, 100] {
            let r = rollout(pct, &[]);
            let n = ids
                .iter()
                .filter(|d| reaches(&r, "1.1.0", Some(d), None))
                .count();
            assert!(n >= previous, "{pct}%: {n} < {previous}");
            let expected = 2000 * pct as usize / 100;
            assert!(
                n.abs_diff(expected) <= 60,
                "{pct}%: {n} devices, expected ~{expected}"
            );
            previous = n;
        }
    }

    #[test]
    fn a_pilot_site_gets_the_release_before_any_percentage() {
        let r = rollout(0, &["0570001S"]);
        assert!(reaches(&r, "1.1.0", Some("d-1"), Some("0570001S")));
        assert!(!reaches(&r, "1.1.0", Some("d-1"), Some("0570002T")));
        assert!(!reaches(&r, "1.1.0", Some("d-1"), None));
        assert!(!reaches(&r, "1.1.0", None, Some("0570001S")));
        assert!(reaches(&rollout(100, &[]), "1.1.0", None, None));
    }

    fn release(channel: &str, version: &str, percent: i64) -> ReleaseInfo {
        ReleaseInfo {
            channel: channel.into(),
            version: version.into(),
            file_name: format!("parc-agent-{version}-x86_64-unknown-linux-gnu.tar.gz"),
            target: "x86_64-unknown-linux-gnu".into(),
            sha256: String::new(),
            size_bytes: 0,
            published_at: DateTime::default(),
            rollout: rollout(percent, &[]),
        }
    }

    #[test]
    fn a_device_is_told_of_the_newest_release_per_channel_that_reaches_it() {
        let rs = [
            release("stable", "1.1.0", 100),
            release("stable", "1.2.0", 100),
            release("stable", "1.3.0", 0),
            release("pilot", "1.3.0", 100),
        ];
        let mut got = announcements_for(&rs, "d-1", None, Some("1.0.0"));
        got.sort();
        assert_eq!(
            got,
            [
                ("pilot".into(), "1.3.0".into()),
                ("stable".into(), "1.2.0".into())
            ]
        );
        assert_eq!(
            announcements_for(&rs, "d-1", None, Some("1.3.0")),
            Vec::<(String, String)>::new()
        );
        assert!(announcements_for(&rs, "d-1", None, None).is_empty());
        assert!(announcements_for(&rs, "d-1", None, Some("garbage")).is_empty());
    }

    #[test]
    fn archive_names_versions_and_rollouts_are_checked() {
        assert_eq!(
            check_archive_name("parc-agent-1.1.0-x86_64-unknown-linux-gnu.tar.gz", "1.1.0"),
            Ok("x86_64-unknown-linux-gnu".into())
        );
        assert!(matches!(
            check_archive_name("agent.tar.gz", "1.1.0"),
            Err(ReleaseError::FileName { .. })
        ));
        assert!(matches!(
            check_archive_name("parc-agent-v1-x.tar.gz", "v1"),
            Err(ReleaseError::Version(_))
        ));
        assert_eq!(check_rollout(101, &[]), Err(ReleaseError::Percent(101)));
        assert!(check_channel("beta").is_err());
    }
}
