//! Cost of one health sample: runs `Collector::health()` repeatedly on this machine (or
//! under a root given as first argument) and prints the median CPU time and wall time
//! of a call. Used by `agent/bench/collect_vs_fusioninventory.sh`; the target is ≤ 5 ms
//! of CPU per sample. It only reads, like the agent.
//!
//! `cargo run --release -p parc-agent --example health_bench -- [ROOT] [CALLS]`

use std::time::{Duration, Instant};

use parc_agent::collect::Collector;

/// CPU time consumed by the calling thread so far.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a constant the
    // kernel supports; clock_gettime writes only into `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let root = args.next().unwrap_or_else(|| "/".to_string());
    let calls: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(200);
    let mut collector = Collector::new(&root, None, env!("CARGO_PKG_VERSION"));

    // The first sample also reads wtmp from its start and has no CPU baseline.
    let (cpu0, wall0) = (thread_cpu(), Instant::now());
    let first = collector.health();
    let (first_cpu, first_wall) = (thread_cpu() - cpu0, wall0.elapsed());

    let mut cpu = Vec::with_capacity(calls);
    let mut wall = Vec::with_capacity(calls);
    let mut unsupported = 0;
    for _ in 0..calls {
        let (c0, w0) = (thread_cpu(), Instant::now());
        let h = collector.health();
        cpu.push(thread_cpu() - c0);
        wall.push(w0.elapsed());
        unsupported = h.unsupported.len();
    }
    println!(
        "health sample on {root}: median {:.3} ms CPU, {:.3} ms wall over {calls} calls \
         (first call {:.3} ms CPU, {:.3} ms wall; {} signals unsupported)",
        ms(median(cpu)),
        ms(median(wall)),
        ms(first_cpu),
        ms(first_wall),
        unsupported.max(first.unsupported.len()),
    );
}
