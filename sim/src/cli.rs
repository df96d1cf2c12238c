//! The `parc-sim` command line: options, progress lines on stderr, the final report as
//! JSON on stdout. Runs until Ctrl-C, SIGTERM or `--duration-seconds`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{TimeDelta, Utc};
use clap::Parser;
use parc_agent::config::MqttProtocol;

use crate::fleet::{FleetOptions, ScheduledFault};
use crate::{Profile, SimClock};

#[derive(Debug, Parser)]
#[command(
    name = "parc-sim",
    version,
    about = "Simulated Parc devices speaking the real protocol"
)]
pub struct Args {
    /// Server base URL, for enrolment.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Broker URL.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub mqtt: String,
    /// MQTT version: v4 for the embedded broker, v5 for Mosquitto/EMQX.
    #[arg(long, value_enum, default_value = "v4")]
    pub protocol: Proto,
    /// Enrolment token (`parc-server token create`); not needed for devices enrolled before.
    #[arg(
        long,
        env = "PARC_SIM_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    pub token: String,
    #[arg(long, default_value_t = 300)]
    pub devices: usize,
    /// Devices' enrolment files, one folder per serial (reused by the next run).
    #[arg(long, default_value = "parc-sim-state")]
    pub state_dir: PathBuf,
    /// A delivery manifest (CSV with `serial` and `model` columns): its devices come
    /// first, so they link to their lots.
    #[arg(long)]
    pub delivered: Option<PathBuf>,
    /// Mix of the generated devices, `profile=weight,…`.
    #[arg(long, default_value = "cart_laptop=6,display=2,office_pc=1")]
    pub mix: String,
    /// Simulated time runs this many times faster than real time until it reaches the
    /// present (2016: a week in five minutes).
    #[arg(long, default_value_t = 1.0)]
    pub accel: f64,
    /// Simulated time starts on the Monday at least this many days ago.
    #[arg(long, default_value_t = 0)]
    pub days_ago: i64,
    /// Simulated minutes between two health samples.
    #[arg(long, default_value_t = 5.0)]
    pub health_interval_minutes: f64,
    /// Every device stays on, whatever its profile's schedule.
    #[arg(long)]
    pub always_on: bool,
    /// Spread the first connections over this many seconds.
    #[arg(long, default_value_t = 5.0)]
    pub ramp_seconds: f64,
    /// Concurrent enrolments.
    #[arg(long, default_value_t = 8)]
    pub enrol_concurrency: usize,
    /// Share of devices that develop a random fault in the first five simulated days.
    #[arg(long, default_value_t = 0.05)]
    pub fault_share: f64,
    /// A scheduled fault, `DEVICE:FAULT@+HOURS` (repeatable), e.g. `3:touch_lost@+26`.
    #[arg(long = "fault")]
    pub faults: Vec<ScheduledFault>,
    /// Enrol the devices (saving their credentials in --state-dir) and exit.
    #[arg(long)]
    pub enrol_only: bool,
    /// Add an enrolled impostor that signs reports as the first device with its own key.
    #[arg(long)]
    pub impostor: bool,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    pub duration_seconds: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 10.0)]
    pub progress_seconds: f64,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Proto {
    V4,
    V5,
}

/// `profile=weight,…`
pub fn parse_mix(s: &str) -> anyhow::Result<Vec<(Profile, u32)>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (name, w) = p
                .split_once('=')
                .with_context(|| format!("--mix {p:?}: expected profile=weight"))?;
            let profile =
                <Profile as clap::ValueEnum>::from_str(name.trim(), true).map_err(|_| {
                    anyhow::anyhow!(
                        "--mix: unknown profile {name:?} (cart_laptop, display, office_pc)"
                    )
                })?;
            let w: u32 = w
                .trim()
                .parse()
                .with_context(|| format!("--mix {p:?}: weight"))?;
            Ok((profile, w))
        })
        .collect()
}

/// `(serial, model)` of each line of a delivery manifest.
pub fn read_delivered(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("the manifest has no {name:?} column"))
    };
    let (s, m) = (col("serial")?, col("model")?);
    Ok(lines
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some((f.get(s)?.trim().to_string(), f.get(m)?.trim().to_string()))
        })
        .collect())
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PARC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("parc-sim: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parc-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let delivered = match &args.delivered {
        Some(p) => read_delivered(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )?,
        None => Vec::new(),
    };
    let mix = parse_mix(&args.mix)?;
    anyhow::ensure!(args.accel >= 1.0, "--accel must be at least 1");
    anyhow::ensure!(
        args.health_interval_minutes > 0.0,
        "--health-interval-minutes must be positive"
    );
    let mut opts = FleetOptions::new(
        &args.server,
        &args.mqtt,
        &args.token,
        args.state_dir.clone(),
    );
    opts.protocol = match args.protocol {
        Proto::V4 => MqttProtocol::V4,
        Proto::V5 => MqttProtocol::V5,
    };
    opts.sim_start = if args.days_ago > 0 {
        SimClock::monday_before(Utc::now(), args.days_ago)
    } else {
        Utc::now()
    };
    opts.accel = args.accel;
    opts.health_interval =
        TimeDelta::milliseconds((args.health_interval_minutes * 60_000.0) as i64);
    opts.always_on = args.always_on;
    opts.ramp = Duration::from_secs_f64(args.ramp_seconds.max(0.0));
    opts.enrol_concurrency = args.enrol_concurrency;
    opts.fault_share = args.fault_share;
    opts.schedule = args.faults.clone();
    opts.seed = args.seed;
    opts.enrol_only = args.enrol_only;
    opts.impostor = args.impostor;
    let devices = crate::plan(crate::specs(&delivered, args.devices, &mix), &opts)?;
    eprintln!(
        "parc-sim: {} devices, simulated time from {} at {}×",
        devices.len(),
        opts.sim_start.to_rfc3339(),
        opts.accel
    );
    let stats_every = args.progress_seconds;
    let duration = args.duration_seconds;
    let stop = async move {
        let limit = async {
            match duration {
                Some(s) => tokio::time::sleep(Duration::from_secs_f64(s)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = limit => {}
            () = shutdown_signal() => {}
        }
    };
    let report = crate::fleet::run_with_progress(devices, opts, stop, stats_every, |p| {
        eprintln!(
            "parc-sim: {:>6.1}s sim {} enrolled {} connected {} health {} inventories {} disconnects {}",
            p.elapsed_s,
            p.sim_now.format("%a %d %H:%M"),
            p.stats.enrolled.load(Ordering::Relaxed),
            p.stats.connected_devices.load(Ordering::Relaxed),
            p.stats.health_spooled.load(Ordering::Relaxed),
            p.stats.inventories_spooled.load(Ordering::Relaxed),
            p.stats.disconnects.load(Ordering::Relaxed),
        );
    })
    .await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_and_the_manifest_are_read_with_clear_errors() {
        assert_eq!(
            parse_mix("cart_laptop=3, display=1").unwrap(),
            vec![(Profile::CartLaptop, 3), (Profile::Display, 1)]
        );
        assert!(
            parse_mix("toaster=1")
                .unwrap_err()
                .to_string()
                .contains("unknown profile")
        );
        let d = read_delivered("serial,model,lot\nA1,SPE-86-ENI,1\n\nB2,ThinkPad,2\n").unwrap();
        assert_eq!(
            d,
            vec![
                ("A1".into(), "SPE-86-ENI".into()),
                ("B2".into(), "ThinkPad".into())
            ]
        );
        assert!(
            read_delivered("sn,model\n")
                .unwrap_err()
                .to_string()
                .contains("serial")
        );
    }
}
