//! Memory error counters from the kernel's EDAC driver
//! (`sys/devices/system/edac/mc/mc*/{ce,ue}_count`), summed over memory controllers.
//!
//! Most laptops have no ECC memory and no EDAC driver: the reading is then absent with
//! its reason, and must never be reported as zero errors, which would claim a check
//! that was not made.

use std::path::Path;

use parc_protocol::health::MemoryErrors;

use super::read::{self, Notes};

pub(crate) fn read(root: &Path, notes: &mut Notes) -> Option<MemoryErrors> {
    let controllers = notes.take(
        "memory_errors",
        read::entries(&root.join("sys/devices/system/edac/mc")),
    )?;
    let controllers: Vec<_> = controllers
        .into_iter()
        .filter(|(name, _)| name.starts_with("mc") && name[2..].parse::<u32>().is_ok())
        .collect();
    if controllers.is_empty() {
        notes.push("memory_errors", "no memory controller reported");
        return None;
    }
    let mut total = MemoryErrors::default();
    for (name, dir) in &controllers {
        // One unreadable counter makes the sum a lower bound, which would hide errors:
        // report nothing rather than too little.
        let counts = read::uint(&dir.join("ce_count"))
            .and_then(|ce| read::uint(&dir.join("ue_count")).map(|ue| (ce, ue)));
        match counts {
            Ok((ce, ue)) => {
                total.corrected = total.corrected.saturating_add(ce);
                total.uncorrected = total.uncorrected.saturating_add(ue);
            }
            Err(reason) => {
                notes.push(format!("memory_errors.{name}"), reason);
                return None;
            }
        }
    }
    Some(total)
}
