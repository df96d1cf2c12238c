//! Latency of HTTP routes: for each path, REQUESTS GETs (after WARMUP unmeasured ones)
//! from CONCURRENCY parallel clients, each on a fresh HTTP/1.0 connection; prints a
//! Markdown table of median, p90, p99 and max milliseconds, response size and status.
//! Paths come from `--path` (repeatable) or a file (one per line, `#` comments).
//!
//! ```sh
//! cargo build --release -p parc-server --examples
//! target/release/examples/http_latency --base http://127.0.0.1:8080 \
//!     --path /api/v1/summary --path '/api/v1/devices?limit=100'
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use clap::Parser;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[derive(Debug, Parser)]
struct Args {
    /// Base URL, http://host:port (plain HTTP only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    #[arg(long = "path")]
    paths: Vec<String>,
    /// A file listing paths, one per line.
    #[arg(long)]
    paths_file: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 50)]
    requests: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
}

async fn get(host: &str, path: &str) -> Result<(u16, usize)> {
    let mut s = tokio::net::TcpStream::connect(host)
        .await
        .with_context(|| format!("connecting to {host}"))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf[..buf.len().min(64)]);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |p| buf.len() - p - 4);
    Ok((status, body))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let host = a
        .base
        .strip_prefix("http://")
        .context("--base must start with http://")?
        .trim_end_matches('/')
        .to_string();
    let mut paths = a.paths.clone();
    if let Some(f) = &a.paths_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        paths.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    ensure!(!paths.is_empty(), "no paths: use --path or --paths-file");
    ensure!(a.requests > 0 && a.concurrency > 0);
    let timeout = Duration::from_secs_f64(a.timeout);
    println!("| path | requests | median ms | p90 ms | p99 ms | max ms | body bytes | status |");
    println!("|---|---|---|---|---|---|---|---|");
    for path in &paths {
        for _ in 0..a.warmup {
            tokio::time::timeout(timeout, get(&host, path)).await??;
        }
        let per = a.requests.div_ceil(a.concurrency);
        let mut tasks = Vec::new();
        for _ in 0..a.concurrency {
            let (host, path) = (host.clone(), path.clone());
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::with_capacity(per);
                for _ in 0..per {
                    let t = Instant::now();
                    let (status, bytes) = tokio::time::timeout(timeout, get(&host, &path))
                        .await
                        .context("timed out")??;
                    out.push((t.elapsed().as_secs_f64() * 1000.0, status, bytes));
                }
                anyhow::Ok(out)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        let mut ms: Vec<f64> = all.iter().map(|x| x.0).collect();
        ms.sort_by(f64::total_cmp);
        let mut statuses: Vec<u16> = all.iter().map(|x| x.1).collect();
        statuses.sort_unstable();
        statuses.dedup();
        let bytes = all.iter().map(|x| x.2).sum::<usize>() / all.len();
        println!(
            "| `{path}` | {} | {:.1} | {:.1} | {:.1} | {:.1} | {bytes} | {:?} |",
            all.len(),
            pct(&ms, 0.5),
            pct(&ms, 0.9),
            pct(&ms, 0.99),
            ms.last().copied().unwrap_or(0.0),
            statuses
        );
        if statuses.iter().any(|s| *s != 200) {
            bail!("{path}: non-200 status {statuses:?}");
        }
    }
    println!(
        "\n{} requests per path after {} warm-up, {} concurrent client(s), one connection per request.",
        a.requests, a.warmup, a.concurrency
    );
    Ok(())
}
