//! Writes a delivery manifest for load tests against the demo dataset
//! (`server/demo-data/dataset.toml`): LINES data lines of which BAD are refused, one
//! reason after another (bad UAI check letter, unknown order, unknown lot, bad date,
//! duplicate serial, missing serial, placeholder serial, lot mismatch, unknown school,
//! unknown cart), spread evenly through the file. Deterministic: the same arguments
//! write the same file.
//!
//! Usage: cargo run -p parc-server --example gen_manifest -- OUT.csv [LINES] [BAD]

#![allow(dead_code)] // `main` is unused where the tests include this file.

use std::io::Write as _;

/// (order, lot, site, model, cart) lines the demo dataset accepts.
const GOOD: &[(&str, u32, &str, &str, &str)] = &[
    (
        "BC-2024-001",
        2,
        "0420101G",
        "ThinkPad X13 Gen 2i",
        "CM-VALBOIS-1",
    ),
    (
        "BC-2025-004",
        2,
        "0570301T",
        "ThinkPad X13 Gen 2i",
        "CM-FRONTIERE-1",
    ),
    ("BC-2026-006", 2, "0420102H", "ThinkPad X13 Gen 2i", ""),
    ("BC-2024-002", 1, "0420201R", "SPE-86-ENI", ""),
    ("BC-2024-002", 1, "0420202S", "SPE-86-ENI", ""),
    ("BC-2026-005", 1, "0570301T", "SPE-86-ENI", ""),
];

const REASONS: usize = 10;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        eprintln!("usage: gen_manifest OUT.csv [LINES] [BAD]");
        std::process::exit(2);
    };
    let lines: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let bad: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let mut w = std::io::BufWriter::new(std::fs::File::create(out)?);
    let bad_written = write_manifest(&mut w, lines, bad)?;
    w.flush()?;
    eprintln!("wrote {out}: {lines} lines, {bad_written} of them bad");
    Ok(())
}

/// Writes the header and `lines` data lines, `bad` of them refused; returns how many
/// bad lines were written. (Also used by the integration tests.)
pub fn write_manifest(
    w: &mut impl std::io::Write,
    lines: usize,
    bad: usize,
) -> std::io::Result<usize> {
    assert!(bad < lines, "BAD must be smaller than LINES");
    writeln!(
        w,
        "serial,model,order_reference,lot,site_uai,delivery_date,acceptance_date,cart"
    )?;
    // Bad lines at every `step`-th position, never the first (the duplicate needs an
    // earlier serial).
    let step = lines / bad.max(1);
    let mut bad_written = 0;
    for i in 0..lines {
        let (order, lot, site, model, cart) = GOOD[i % GOOD.len()];
        let serial = format!("GEN{i:07}");
        let accepted = if i % 3 == 0 { "2026-10-12" } else { "" };
        let is_bad = bad_written < bad && i % step == step - 1;
        let line = if !is_bad {
            format!("{serial},{model},{order},{lot},{site},2026-10-05,{accepted},{cart}")
        } else {
            let reason = bad_written % REASONS;
            bad_written += 1;
            match reason {
                0 => format!("{serial},{model},{order},{lot},0420101A,2026-10-05,,"),
                1 => format!("{serial},{model},BC-9999-999,{lot},{site},2026-10-05,,"),
                2 => format!("{serial},{model},{order},9,{site},2026-10-05,,"),
                3 => format!("{serial},{model},{order},{lot},{site},2026-02-30,,"),
                4 => format!("GEN{:07},{model},{order},{lot},{site},2026-10-05,,", i - 1),
                5 => format!(",{model},{order},{lot},{site},2026-10-05,,"),
                6 => format!("To be filled by O.E.M.,{model},{order},{lot},{site},2026-10-05,,"),
                7 => format!("{serial},{model},{order},{},{site},2026-10-05,,", 3 - lot),
                8 => format!("{serial},{model},{order},{lot},0750655E,2026-10-05,,"),
                _ => format!("{serial},{model},{order},{lot},{site},2026-10-05,,CM-NOWHERE"),
            }
        };
        writeln!(w, "{line}")?;
    }
    Ok(bad_written)
}
