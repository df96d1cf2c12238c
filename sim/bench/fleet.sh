#!/usr/bin/env bash
# Connection storm and steady state of a simulated fleet against one parc-server
# (embedded broker, SQLite), both on this machine. See BENCHMARKS.md.
#
#   sim/bench/fleet.sh storm  [DEVICES=10000] [RAMP_S=60]
#   sim/bench/fleet.sh steady [DEVICES=10000] [ACCEL=10] [SECONDS=600]
#
# storm: enrols DEVICES devices (not timed), restarts the server, then connects them all
#   within RAMP_S seconds and reports how many connected, p50/p99 connect time (uplink
#   start → CONNACK, including the broker's login check against the database), and the
#   server's CPU and RSS meanwhile.
# steady: every device stays on and sends a health report every 5 simulated minutes
#   with time running ACCEL× faster (ACCEL=10 with 10,000 devices: the message rate of
#   100,000 devices at 5 minutes) for SECONDS; after the ramp, measures the server's CPU
#   and RSS and the database growth per device per simulated day.
set -euo pipefail
mode=${1:?storm or steady}
devices=${2:-10000}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/release
if [ -z "${NO_BUILD:-}" ]; then
  (cd "$root" && cargo build --release -p parc-server -p parc-sim --bins)
fi
work=$(mktemp -d /tmp/parc-fleet-bench.XXXXXX)
trap 'kill $server_pid 2>/dev/null || true; wait 2>/dev/null || true' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port); mqtt=$(free_port)
cat > "$work/server.toml" <<TOML
[http]
listen = "127.0.0.1:$http"
[mqtt]
listen = "127.0.0.1:$mqtt"
[storage]
data_dir = "$work/data"
TOML
server_pid=
start_server() {
  PARC_LOG=warn "$bin/parc-server" --config "$work/server.toml" run 2>>"$work/server.log" &
  server_pid=$!
  for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server not ready; log:" >&2; cat "$work/server.log" >&2; exit 1
}
stop_server() { kill -TERM "$server_pid"; wait "$server_pid" || true; }
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/VmHWM/{print $2}' "/proc/$1/status"; }
db_bytes() { du -sb "$work/data" | cut -f1; }

token=$("$bin/parc-server" --config "$work/server.toml" token create --label bench --days 1 2>/dev/null)
start_server
echo "enrolling $devices devices…" >&2
t0=$(date +%s.%N)
"$bin/parc-sim" --server "http://127.0.0.1:$http" --mqtt "mqtt://127.0.0.1:$mqtt" --token "$token" \
  --devices "$devices" --state-dir "$work/devices" --enrol-only --ramp-seconds 0 \
  --enrol-concurrency 8 --progress-seconds 30 > "$work/enrol.json"
t1=$(date +%s.%N)
echo "enrolled: $(python3 -c "import json;r=json.load(open('$work/enrol.json'));print(r['enrolled'],'ok,',r['enrol_failed'],'failed')") in $(python3 -c "print(round($t1-$t0,1))") s" >&2
# A fresh server process: its RSS and CPU then count the fleet only.
stop_server
start_server
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

case "$mode" in
storm)
  ramp=${3:-60}
  c0=$(ticks "$server_pid"); s0=$(date +%s.%N)
  (
    # Server CPU and RSS every second while the fleet connects.
    while kill -0 "$server_pid" 2>/dev/null; do echo "$(date +%s.%N) $(rss_kib "$server_pid")"; sleep 1; done
  ) > "$work/rss.log" &
  sampler=$!
  /usr/bin/time -v -o "$work/sim.time" "$bin/parc-sim" --server "http://127.0.0.1:$http" \
    --mqtt "mqtt://127.0.0.1:$mqtt" --token "$token" --devices "$devices" \
    --state-dir "$work/devices" --always-on --ramp-seconds "$ramp" \
    --duration-seconds "$((ramp + 20))" --progress-seconds 10 > "$work/storm.json"
  c1=$(ticks "$server_pid"); s1=$(date +%s.%N)
  kill $sampler 2>/dev/null || true
  python3 - "$work" "$c0" "$c1" "$s0" "$s1" "$hz" "$(hwm_kib "$server_pid")" "$ramp" <<'PY'
import json, sys, re
work, c0, c1, s0, s1, hz, hwm, ramp = sys.argv[1:]
r = json.load(open(f"{work}/storm.json"))
cpu = (int(c1) - int(c0)) / int(hz) / (float(s1) - float(s0)) * 100
rss = [int(l.split()[1]) for l in open(f"{work}/rss.log") if len(l.split()) == 2]
t = open(f"{work}/sim.time").read()
sim_rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
sim_cpu = re.search(r"Percent of CPU this job got: (\d+)%", t).group(1)
print(f"devices {r['devices']}, ramp {ramp} s: connected {r['connected_devices']}, "
      f"all connected after {r['all_connected_after_s']} s; connect p50 {r['connect_ms_p50']} ms, "
      f"p99 {r['connect_ms_p99']} ms, max {r['connect_ms_max']} ms; connections {r['connections']}, "
      f"disconnects {r['disconnects']}; health sent {r['health_spooled']}, unacknowledged at stop {r['unacknowledged_at_stop']}")
print(f"server: CPU {cpu:.0f} % of one core over the run, peak RSS {max(rss)/1024:.0f} MiB (VmHWM {int(hwm)/1024:.0f} MiB)")
print(f"parc-sim: CPU {sim_cpu} % of one core, peak RSS {sim_rss/1024:.0f} MiB")
PY
  ;;
steady)
  accel=${3:-10}; secs=${4:-600}
  ramp=60
  "$bin/parc-sim" --server "http://127.0.0.1:$http" --mqtt "mqtt://127.0.0.1:$mqtt" --token "$token" \
    --devices "$devices" --state-dir "$work/devices" --always-on --ramp-seconds "$ramp" \
    --accel "$accel" --days-ago 1 --health-interval-minutes 5 --duration-seconds "$secs" \
    --progress-seconds 60 > "$work/steady.json" &
  sim_pid=$!
  sleep $((ramp + 30))
  c0=$(ticks "$server_pid"); s0=$(date +%s.%N); d0=$(db_bytes)
  m0=$(curl -fs "http://127.0.0.1:$http/metrics" | awk '/^parc_ingest_stored_total\{kind="health"\}/{print $2}')
  rss_max=0
  while kill -0 "$sim_pid" 2>/dev/null && [ "$(python3 -c "import time;print(int(time.time()-$s0))")" -lt $((secs - ramp - 45)) ]; do
    r=$(rss_kib "$server_pid"); [ "$r" -gt "$rss_max" ] && rss_max=$r; sleep 2
  done
  c1=$(ticks "$server_pid"); s1=$(date +%s.%N); d1=$(db_bytes)
  m1=$(curl -fs "http://127.0.0.1:$http/metrics" | awk '/^parc_ingest_stored_total\{kind="health"\}/{print $2}')
  wait "$sim_pid"
  python3 - "$c0" "$c1" "$s0" "$s1" "$hz" "$d0" "$d1" "$m0" "$m1" "$rss_max" "$devices" "$accel" "$work" <<'PY'
import sys, json
c0, c1, s0, s1, hz, d0, d1, m0, m1, rss, devices, accel, work = sys.argv[1:]
secs = float(s1) - float(s0)
cpu = (int(c1) - int(c0)) / int(hz) / secs * 100
stored = float(m1) - float(m0)
device_days = int(devices) * secs * float(accel) / 86400
r = json.load(open(f"{work}/steady.json"))
print(f"window {secs:.0f} s: stored {stored:.0f} health reports ({stored/secs:.0f}/s); server CPU {cpu:.0f} % of one core, "
      f"peak RSS {int(rss)/1024:.0f} MiB; database +{(int(d1)-int(d0))/1e6:.1f} MB for {device_days:.0f} simulated device-days "
      f"= {(int(d1)-int(d0))/device_days/1024:.1f} KiB per device per day")
print(f"fleet: connected {r['connected_devices']}/{r['devices']}, disconnects {r['disconnects']}, unacknowledged at stop {r['unacknowledged_at_stop']}")
PY
  ;;
*) echo "unknown mode $mode" >&2; exit 2 ;;
esac
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "work dir: $work"
