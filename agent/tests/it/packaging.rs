//! The agent's .deb, built from this test binary's `parc-agent` with cargo-deb and
//! unpacked into a throwaway root with `dpkg-deb`: files, modes, conffiles, maintainer
//! scripts and the hardened unit are what packaging/README.md promises, and the
//! shipped configuration is valid for the shipped binary.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (.ci/run installs it)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the .deb from the already built dev binary (the one this test runs with).
fn build_deb(out: &Path) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    run(Command::new(env!("CARGO"))
        .current_dir(workspace)
        .args([
            "deb",
            "-p",
            "parc-agent",
            "--profile",
            "dev",
            "--no-build",
            "--fast",
            "-o",
        ])
        .arg(out));
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("cargo deb wrote a .deb")
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
#[ignore = "needs cargo-deb, dpkg-deb and systemd-analyze"]
fn the_agent_deb_installs_its_binary_config_user_and_hardened_unit() {
    let work = tempfile::tempdir().unwrap();
    let deb = build_deb(work.path());
    let root = work.path().join("root");
    let control = work.path().join("control");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));

    // Files and modes.
    let bin = root.join("usr/bin/parc-agent");
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(mode(&root.join("etc/parc/agent.toml")), 0o644);
    assert_eq!(
        mode(&root.join("usr/lib/systemd/system/parc-agent.service")),
        0o644
    );
    let sysusers =
        std::fs::read_to_string(root.join("usr/lib/sysusers.d/parc-agent.conf")).unwrap();
    assert!(sysusers.contains("u parc-agent - "), "{sysusers}");
    assert!(root.join("usr/share/doc/parc-agent/copyright").exists());
    assert!(
        root.join("usr/share/doc/parc-agent/changelog.Debian.gz")
            .exists()
    );
    assert!(
        !root.join("var").exists(),
        "state is created at install, not shipped"
    );

    // The configuration is a conffile, and valid for the binary it ships with.
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/parc/agent.toml");
    let version = run(Command::new(&bin).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("parc-agent {}", env!("CARGO_PKG_VERSION"))
    );
    run(Command::new(&bin)
        .arg("--config")
        .arg(root.join("etc/parc/agent.toml"))
        .arg("validate-config"));

    // Maintainer scripts: the user and the binary before the generated systemd part,
    // which enables the unit and restarts it on upgrade; purge removes the state.
    for s in ["postinst", "prerm", "postrm"] {
        assert_eq!(mode(&control.join(s)), 0o755, "{s}");
    }
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(
        !postinst.contains("#DEBHELPER#"),
        "the systemd snippets were inserted"
    );
    let user = postinst.find("systemd-sysusers parc-agent.conf").unwrap();
    let copy = postinst.find("/var/lib/parc/agent/bin/parc-agent").unwrap();
    let enable = postinst
        .find("deb-systemd-helper")
        .expect("enables the unit");
    assert!(user < copy && copy < enable, "{postinst}");
    assert_eq!(
        postinst.matches("deb-systemd-helper enable").count(),
        1,
        "one generated systemd part: {postinst}"
    );
    // The generated sysusers call names the file shipped in /usr/lib/sysusers.d.
    assert!(!postinst.contains("sysusers.conf"), "{postinst}");
    let postrm = std::fs::read_to_string(control.join("postrm")).unwrap();
    assert!(postrm.contains("rm -rf /var/lib/parc/agent"), "{postrm}");
    let prerm = std::fs::read_to_string(control.join("prerm")).unwrap();
    assert!(
        prerm.contains("deb-systemd-invoke stop") || prerm.contains("systemctl"),
        "{prerm}"
    );
    run(Command::new("sh").arg("-n").arg(control.join("postinst")));
    run(Command::new("sh").arg("-n").arg(control.join("postrm")));

    // The hardened unit.
    let unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/parc-agent.service")).unwrap();
    for line in [
        "User=parc-agent",
        "ConditionPathExists=/var/lib/parc/agent/enrollment.json",
        "ExecStartPre=/usr/bin/parc-agent --config /etc/parc/agent.toml validate-config",
        "ExecStartPre=-/var/lib/parc/agent/update/previous-parc-agent --config /etc/parc/agent.toml update-guard --install-path /var/lib/parc/agent/bin/parc-agent",
        "ExecStart=/var/lib/parc/agent/bin/parc-agent --config /etc/parc/agent.toml run",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=parc/agent",
        "Restart=on-failure",
        "RestartForceExitStatus=75",
        "AmbientCapabilities=CAP_DAC_READ_SEARCH CAP_SYS_RAWIO CAP_SYS_ADMIN",
        "CapabilityBoundingSet=CAP_DAC_READ_SEARCH CAP_SYS_RAWIO CAP_SYS_ADMIN",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == line),
            "the unit lacks `{line}`"
        );
    }
    assert_eq!(
        parc_agent::update::EXIT_RESTART,
        75,
        "RestartForceExitStatus must match"
    );
    // No other privilege: no root, no PrivateDevices (smartctl opens the disks).
    assert!(!unit.lines().any(|l| l.starts_with("User=root")));

    // systemd parses every directive (an unknown or misspelt key is only a warning at
    // boot, silently dropping the hardening it names). The executables are not
    // installed on this host: those complaints are expected.
    let units = work.path().join("units");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::copy(
        root.join("usr/lib/systemd/system/parc-agent.service"),
        units.join("parc-agent.service"),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("parc-agent.service"))
        .output()
        .expect("systemd-analyze is installed (systemd)");
    let complaints = String::from_utf8_lossy(&out.stderr).into_owned();
    let unexpected: Vec<&str> = complaints
        .lines()
        .filter(|l| !l.contains("is not executable: No such file or directory"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "systemd-analyze verify: {unexpected:?}"
    );
}
