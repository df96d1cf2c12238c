#!/usr/bin/env bash
# Footprint of a running, connected, idle agent next to two daemons often found on the
# same machines: Debian's prometheus-node-exporter and collectd. Each runs for SETTLE
# seconds (default 20), then its resident memory (VmRSS) and thread count are read from
# /proc; plus the stripped release size of parc-agent.
#
# The agent is real: a release parc-server (embedded broker + SQLite, own ports) issues a
# token, `parc-agent enroll` enrols, `parc-agent run` connects over MQTT v4 and reports.
# Targets: agent idle RSS ≤ 0.5× node_exporter's, ≤ 4 threads.
#
# Needs root for apt-get. Respects CARGO_TARGET_DIR. Usage: agent/bench/footprint.sh
set -euo pipefail

SETTLE=${SETTLE:-20}
root=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
say() { printf '%s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_threads() { awk '/^VmRSS/{r=$2} /^Threads/{t=$2} END{printf "%.1f %d\n", r/1024, t}' "/proc/$1/status"; }

for pkg in prometheus-node-exporter collectd-core; do
    dpkg -s "$pkg" >/dev/null 2>&1 || { apt-get update -qq >&2 || true; apt-get install -y -qq "$pkg" >&2; }
done

say "== building parc-agent (profile release-agent) and parc-server (release) in $target"
(cd "$root" && CARGO_TARGET_DIR=$target cargo build --profile release-agent --quiet -p parc-agent --bin parc-agent)
(cd "$root" && CARGO_TARGET_DIR=$target cargo build --release --quiet -p parc-server --bin parc-server)
agent=$target/release-agent/parc-agent
server=$target/release/parc-server

http=$(free_port); mqtt=$(free_port)
cat > "$work/server.toml" <<TOML
[http]
listen = "127.0.0.1:$http"
[mqtt]
listen = "127.0.0.1:$mqtt"
[storage]
data_dir = "$work/server"
TOML
PARC_LOG=warn "$server" --config "$work/server.toml" run & pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
token=$("$server" --config "$work/server.toml" token create --label footprint 2>/dev/null)
cat > "$work/agent.toml" <<TOML
[server]
url = "http://127.0.0.1:$http"
[mqtt]
url = "mqtt://127.0.0.1:$mqtt"
protocol = "v4"
initial_delay_max_seconds = 0
[collect]
health_interval_seconds = 60
[state]
dir = "$work/agent"
TOML
"$agent" --config "$work/agent.toml" enroll --token "$token" >&2
PARC_LOG=warn "$agent" --config "$work/agent.toml" run & agent_pid=$!; pids+=($agent_pid)

np=$(free_port)
prometheus-node-exporter --web.listen-address="127.0.0.1:$np" >/dev/null 2>&1 & ne_pid=$!; pids+=($ne_pid)
cat > "$work/collectd.conf" <<CONF
Interval 10
LoadPlugin cpu
LoadPlugin memory
LoadPlugin load
LoadPlugin df
LoadPlugin interface
LoadPlugin csv
<Plugin csv>
  DataDir "$work/collectd"
</Plugin>
CONF
collectd -f -C "$work/collectd.conf" >/dev/null 2>&1 & cd_pid=$!; pids+=($cd_pid)

say "== settling for $SETTLE s"
sleep "$SETTLE"
stored=$(curl -fs "http://127.0.0.1:$http/api/v1/summary" | python3 -c 'import json,sys; print(json.load(sys.stdin)["counts"]["messages"])')
read -r a_rss a_thr < <(rss_threads "$agent_pid")
grep -E "^(Rss|Anonymous|Shared_Clean|Private_Clean)" "/proc/$agent_pid/smaps_rollup" >&2 || true
read -r n_rss n_thr < <(rss_threads "$ne_pid")
read -r c_rss c_thr < <(rss_threads "$cd_pid")
size=$(stat -c %s "$agent")

echo
echo "machine: $(uname -srm), $(nproc) CPU(s); agent connected, server stored $stored of its messages"
echo
echo "| daemon (idle, after ${SETTLE} s) | RSS MiB | threads |"
echo "|---|---|---|"
echo "| parc-agent run (connected, MQTT v4) | $a_rss | $a_thr |"
echo "| prometheus-node-exporter | $n_rss | $n_thr |"
echo "| collectd (cpu, memory, load, df, interface, csv) | $c_rss | $c_thr |"
echo "| ratio parc-agent / node_exporter (target ≤ 0.5) | $(python3 -c "print(round($a_rss/$n_rss,3))") | |"
echo
echo "parc-agent stripped binary (profile release-agent): $size bytes"
