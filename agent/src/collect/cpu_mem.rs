//! Processor model and counts (`proc/cpuinfo`), memory and swap (`proc/meminfo`), load
//! averages (`proc/loadavg`) and CPU usage from two `proc/stat` samples.
//!
//! System-wide figures only: it must never look at individual processes (`proc/PID`),
//! which would reveal what people run.

use std::collections::HashSet;
use std::path::Path;

use parc_protocol::inventory::Cpu;

use super::CpuSample;
use super::read::{self, Notes};

pub(crate) fn cpu(root: &Path, notes: &mut Notes) -> Option<Cpu> {
    let text = notes.take("cpu", read::text(&root.join("proc/cpuinfo")))?;
    let cpu = parse_cpuinfo(&text);
    if cpu.model.is_none() {
        notes.push("cpu.model", "not in proc/cpuinfo");
    }
    if cpu.physical_cores.is_none() {
        notes.push("cpu.physical_cores", "no core ids in proc/cpuinfo");
    }
    Some(cpu)
}

/// One block per logical CPU. Physical cores are the distinct (package, core) pairs;
/// ARM kernels print neither, and then the count is unknown rather than guessed.
fn parse_cpuinfo(text: &str) -> Cpu {
    let mut model = None;
    let mut logical = 0u32;
    let mut cores = HashSet::new();
    for block in text.split("\n\n") {
        let mut is_cpu = false;
        let mut package = None;
        let mut core = None;
        for line in block.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            match key {
                "processor" => is_cpu = value.parse::<u32>().is_ok(),
                "model name" | "Model" | "Hardware" if model.is_none() && !value.is_empty() => {
                    model = Some(value.to_string());
                }
                "physical id" => package = Some(value.to_string()),
                "core id" => core = Some(value.to_string()),
                _ => {}
            }
        }
        if is_cpu {
            logical += 1;
            if let Some(core) = core {
                cores.insert((package.unwrap_or_default(), core));
            }
        }
    }
    Cpu {
        model,
        physical_cores: (!cores.is_empty()).then_some(cores.len() as u32),
        logical_cpus: (logical > 0).then_some(logical),
    }
}

#[derive(Debug, Default)]
pub(crate) struct Memory {
    pub total: Option<u64>,
    pub used: Option<u64>,
    pub swap_total: Option<u64>,
    pub swap_used: Option<u64>,
}

pub(crate) fn memory(root: &Path, notes: &mut Notes) -> Memory {
    let text = match read::text(&root.join("proc/meminfo")) {
        Ok(t) => t,
        Err(reason) => {
            notes.push("memory", reason);
            return Memory::default();
        }
    };
    let field = |name: &str| -> Option<u64> {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            kib.checked_mul(1024)
        })
    };
    let total = field("MemTotal");
    // MemAvailable (Linux ≥ 3.14) is what could be given to a new program; MemFree
    // would count the page cache as used and make every machine look full.
    let available = field("MemAvailable");
    let swap_total = field("SwapTotal");
    let swap_free = field("SwapFree");
    let used = match (total, available) {
        (Some(t), Some(a)) => Some(t.saturating_sub(a)),
        _ => {
            notes.push(
                "memory_used_bytes",
                "MemTotal or MemAvailable not in meminfo",
            );
            None
        }
    };
    let swap_used = match (swap_total, swap_free) {
        (Some(t), Some(f)) => Some(t.saturating_sub(f)),
        _ => {
            notes.push("swap_used_bytes", "SwapTotal or SwapFree not in meminfo");
            None
        }
    };
    if total.is_none() {
        notes.push("memory_total_bytes", "MemTotal not in meminfo");
    }
    Memory {
        total,
        used,
        swap_total,
        swap_used,
    }
}

pub(crate) fn load(root: &Path) -> Result<[f64; 3], String> {
    let text = read::text(&root.join("proc/loadavg"))?;
    let mut it = text.split_whitespace().map(str::parse::<f64>);
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => Ok([a, b, c]),
        _ => Err(format!("unparsable loadavg {text:?}")),
    }
}

/// The aggregate `cpu` line: user nice system idle iowait irq softirq steal (guest
/// time is already included in user and nice, so it is not added again).
pub(crate) fn cpu_sample(root: &Path) -> Result<CpuSample, String> {
    let text = read::text(&root.join("proc/stat"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or("no cpu line in proc/stat")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| format!("unparsable cpu line {line:?}"))?;
    if fields.len() < 4 {
        return Err(format!("short cpu line {line:?}"));
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Ok(CpuSample {
        busy: total - idle,
        total,
    })
}

pub(crate) fn usage(prev: CpuSample, now: CpuSample) -> Result<f64, String> {
    let total = now.total.checked_sub(prev.total);
    let busy = now.busy.checked_sub(prev.busy);
    match (total, busy) {
        (Some(0), _) => Err("no time elapsed between samples".to_string()),
        (Some(t), Some(b)) => Ok((b as f64 / t as f64 * 100.0).clamp(0.0, 100.0)),
        // Counters went backwards: the machine rebooted or suspended oddly; wait for the
        // next pair rather than report nonsense.
        _ => Err("counters went backwards between samples".to_string()),
    }
}
