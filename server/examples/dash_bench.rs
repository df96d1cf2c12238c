//! Dashboard read latency at scale: the fleet overview and device searches over HTTP on
//! a database of `--devices` devices (default 100,000) with `--samples` health samples
//! (default 10 million), on SQLite or PostgreSQL.
//!
//! The database is generated once (several minutes) and reused: a SQLite file at
//! `--sqlite` or a PostgreSQL database named `--pg-db`; `--refill` starts afresh. Each
//! request kind is then sent `--requests` times, one at a time, over a fresh
//! connection, to the server's real router (authenticated with an admin API token, and
//! once more with a technician's, whose scope is narrower); p50 and p95 are printed.
//!
//! ```sh
//! cargo build --release -p parc-server --example dash_bench
//! target/release/examples/dash_bench --engine sqlite --sqlite /var/tmp/parc-dash-bench.db
//! target/release/examples/dash_bench --engine postgres
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use clap::{Parser, ValueEnum};
use parc_server::store::{Store, load_demo_dataset, synthetic_hostname, synthetic_serial};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EngineArg {
    Sqlite,
    Postgres,
}

#[derive(Debug, Parser)]
#[command(about = "Fleet overview and search latency on a large synthetic fleet")]
struct Args {
    #[arg(long, value_enum, default_value_t = EngineArg::Sqlite)]
    engine: EngineArg,
    #[arg(long, default_value_t = 100_000)]
    devices: usize,
    /// Health samples in total (spread evenly over the devices).
    #[arg(long, default_value_t = 10_000_000)]
    samples: usize,
    #[arg(long, default_value = "/var/tmp/parc-dash-bench.db")]
    sqlite: std::path::PathBuf,
    #[arg(
        long,
        env = "PARC_TEST_PG",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pg_admin: String,
    #[arg(long, default_value = "parc_dash_bench")]
    pg_db: String,
    /// Drop and regenerate the database.
    #[arg(long)]
    refill: bool,
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Generate the database and stop (to fill both engines at once, then measure each
    /// alone).
    #[arg(long)]
    fill_only: bool,
}

async fn open(args: &Args) -> Result<Store> {
    match args.engine {
        EngineArg::Sqlite => {
            if args.refill {
                for ext in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{ext}", args.sqlite.display()));
                }
            }
            Ok(Store::connect(&format!("sqlite://{}", args.sqlite.display())).await?)
        }
        EngineArg::Postgres => {
            if args.refill {
                Store::drop_postgres_database(&args.pg_admin, &args.pg_db).await?;
            }
            let base = args.pg_admin.rsplit_once('/').map(|(b, _)| b).unwrap_or("");
            let url = format!("{base}/{}", args.pg_db);
            match Store::connect(&url).await {
                Ok(s) => Ok(s),
                Err(_) => {
                    let url = Store::create_postgres_database(&args.pg_admin, &args.pg_db)
                        .await
                        .context("creating the benchmark database")?;
                    Ok(Store::connect(&url).await?)
                }
            }
        }
    }
}

async fn fill(store: &Store, args: &Args) -> Result<()> {
    let have = store.counts().await?;
    if have.devices as usize >= args.devices && have.health_samples as usize >= args.samples {
        eprintln!(
            "reusing the database: {} devices, {} health samples",
            have.devices, have.health_samples
        );
        return Ok(());
    }
    ensure!(
        have.devices == 0,
        "the database holds {} devices but not the requested fleet: pass --refill",
        have.devices
    );
    load_demo_dataset(store).await?;
    let per_device = args.samples.div_ceil(args.devices);
    let started = Instant::now();
    let total = (per_device * args.devices) as u64;
    store
        .fill_synthetic_fleet(args.devices, per_device, chrono::Utc::now(), &|n| {
            if n % 1_000_000 < 20_000 {
                let rate = n as f64 / started.elapsed().as_secs_f64();
                eprintln!("  {n} / {total} samples ({rate:.0}/s)");
            }
        })
        .await?;
    eprintln!(
        "filled in {:.0} s; latest readings…",
        started.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    store
        .refresh_device_latest(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH)
        .await?;
    eprintln!("latest readings in {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}

async fn get(addr: SocketAddr, path: &str, token: &str) -> Result<(u16, usize)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let head = String::from_utf8_lossy(&buf[..buf.len().min(20)]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, buf.len()))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn account(store: &Store, login: &str, role: &str, org: Option<&str>) -> Result<String> {
    if store.account(login).await?.is_none() {
        parc_server::accounts_cli::add_account(
            store,
            login,
            None,
            role,
            org,
            None,
            "benchmark password",
        )
        .await?;
    }
    parc_server::accounts_cli::issue_token(store, login, "bench", Some(1)).await
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let store = open(&args).await?;
    fill(&store, &args).await?;
    // As autovacuum would after a bulk load: without statistics PostgreSQL's planner
    // guesses, and the paged queries were measured at 0.6–0.8 s instead of ~10 ms.
    let t = Instant::now();
    store.analyze().await?;
    eprintln!("planner statistics in {:.1} s", t.elapsed().as_secs_f64());
    if args.fill_only {
        return Ok(());
    }
    let admin = account(&store, "bench-admin", "admin", None).await?;
    let tech = account(&store, "bench-tech", "technician", Some("commune-valbois")).await?;
    let counts = store.counts().await?;

    let cfg = parc_server::config::ServerConfig::defaults();
    let ingest = Arc::new(parc_server::ingest::Ingest::new(
        store.clone(),
        Arc::new(parc_server::metrics::Metrics::new()),
        parc_server::ingest::IngestOptions::from_config(&cfg),
    ));
    let app = parc_server::http::router(ingest, Arc::new(parc_server::http_auth::Web::new(false)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(parc_server::http::serve(
        listener,
        app,
        std::future::pending(),
    ));

    let mid = args.devices / 2;
    let serial_prefix = synthetic_serial(mid)[..9].to_string();
    let host = synthetic_hostname(mid);
    let kinds: Vec<(&str, String, &str)> = vec![
        ("overview (admin)", "/api/v1/fleet/overview".into(), &admin),
        (
            "overview (technician)",
            "/api/v1/fleet/overview".into(),
            &tech,
        ),
        (
            "device list, first page",
            "/api/v1/devices?limit=50".into(),
            &admin,
        ),
        (
            "device list, page deep in",
            format!("/api/v1/devices?limit=50&after=d-syn-{mid:08}"),
            &admin,
        ),
        (
            "search serial prefix",
            format!("/api/v1/devices?q={serial_prefix}"),
            &admin,
        ),
        (
            "search exact host name",
            format!("/api/v1/devices?q={host}"),
            &admin,
        ),
        (
            "search school name",
            "/api/v1/devices?q=for%C3%AAt".into(),
            &admin,
        ),
        (
            "filter faulty",
            "/api/v1/devices?state=faulty".into(),
            &admin,
        ),
        (
            "search (technician)",
            format!("/api/v1/devices?q={serial_prefix}"),
            &tech,
        ),
    ];
    // The aggregate behind the overview, recomputed at most every OVERVIEW_MAX_AGE: what
    // the request that finds it stale pays.
    let thresholds = parc_server::store::StateThresholds::default();
    let mut agg = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        store.overview_rows(&thresholds, chrono::Utc::now()).await?;
        agg.push(t.elapsed());
    }
    agg.sort();
    println!(
        "engine {:?}: {} devices, {} health samples; {} requests per kind, sequential",
        args.engine, counts.devices, counts.health_samples, args.requests
    );
    println!("| request | p50 ms | p95 ms | max ms | bytes |");
    println!("|---|---|---|---|---|");
    println!(
        "| fleet aggregate recomputed (store, no HTTP; 10 runs) | {:.1} | {:.1} | {:.1} | |",
        agg[4].as_secs_f64() * 1000.0,
        agg[9].as_secs_f64() * 1000.0,
        agg[9].as_secs_f64() * 1000.0
    );
    for (name, path, token) in kinds {
        // Warm-up: the first requests fill the page cache and the pool.
        for _ in 0..3 {
            get(addr, &path, token).await?;
        }
        let mut times = Vec::with_capacity(args.requests);
        let mut bytes = 0;
        for _ in 0..args.requests {
            let t = Instant::now();
            let (status, n) = get(addr, &path, token).await?;
            times.push(t.elapsed());
            ensure!(status == 200, "{path}: HTTP {status}");
            bytes = n;
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {bytes} |",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.95)),
            ms(*times.last().unwrap()),
        );
    }
    Ok(())
}
