#!/usr/bin/env bash
# Cost of a full inventory on this machine: `parc-agent collect` (inventory + health
# with SMART, as the agent sends them) against Debian's `fusioninventory-inventory`
# (the agent French local authorities often run today, through GLPI), plus the CPU time
# of one periodic health sample.
#
# Each command runs RUNS times (default 5) under `/usr/bin/time -v`; CPU is user+sys of
# the process and the children it waited for (dmidecode, lspci, smartctl…), memory the
# peak resident set. Medians are reported, with parc-agent/fusioninventory ratios.
# Targets: CPU ≤ 0.1×, peak RSS ≤ 0.25×, one health sample ≤ 5 ms CPU.
#
# Needs root (apt-get, and both tools read root-only DMI serials). Respects
# CARGO_TARGET_DIR. Usage: agent/bench/collect_vs_fusioninventory.sh [RUNS]
set -euo pipefail

RUNS=${1:-${RUNS:-5}}
HEALTH_CALLS=${HEALTH_CALLS:-200}
agent_dir=$(cd "$(dirname "$0")/.." && pwd)
workspace=$(cd "$agent_dir/.." && pwd)
target=${CARGO_TARGET_DIR:-$workspace/target}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

say() { printf '%s\n' "$*" >&2; }

say "== building parc-agent (release) in $target"
(cd "$workspace" && CARGO_TARGET_DIR=$target cargo build --release --quiet -p parc-agent \
    --bin parc-agent --example health_bench)
parc=$target/release/parc-agent
health_bench=$target/release/examples/health_bench

if [ ! -x /usr/bin/time ]; then
    say "== installing GNU time"
    apt-get install -y time >/dev/null || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }
fi
if ! command -v fusioninventory-inventory >/dev/null; then
    say "== installing fusioninventory-agent"
    if ! apt-get install -y fusioninventory-agent >/dev/null 2>"$work/apt.err"; then
        apt-get update >/dev/null
        apt-get install -y fusioninventory-agent >/dev/null
    fi
fi
fusion=$(command -v fusioninventory-inventory)

# measure NAME INNER CMD... : $RUNS samples, each running CMD INNER times in a row
# (stdout to /dev/null) under one /usr/bin/time; appends "cpu_seconds_per_run rss_kib"
# lines to $work/NAME. GNU time prints CPU to 10 ms, too coarse for one parc-agent
# run: its samples repeat the command and divide. The peak RSS is the largest single
# run's (the wrapping shell is smaller).
measure() {
    local name=$1 inner=$2
    shift 2
    : >"$work/$name"
    for _ in $(seq "$RUNS"); do
        /usr/bin/time -v -o "$work/time.out" sh -c \
            'n=$1; shift; i=0; while [ "$i" -lt "$n" ]; do "$@" >/dev/null || exit 1; i=$((i + 1)); done' \
            sh "$inner" "$@" 2>"$work/$name.stderr" || {
            say "$name failed:"
            cat "$work/$name.stderr" >&2
            exit 1
        }
        awk -F': ' -v n="$inner" '
            /User time \(seconds\)/ { u = $2 }
            /System time \(seconds\)/ { s = $2 }
            /Maximum resident set size \(kbytes\)/ { r = $2 }
            END { printf "%.5f %d\n", (u + s) / n, r }' "$work/time.out" >>"$work/$name"
    done
}

# median FILE COLUMN
median() {
    cut -d' ' -f"$2" "$1" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.5f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

PARC_INNER=${PARC_INNER:-20}
say "== parc-agent collect: $RUNS samples of $PARC_INNER runs"
"$parc" collect >"$work/parc.json"   # warm the page cache once, and keep one output
measure parc "$PARC_INNER" "$parc" collect
say "== fusioninventory-inventory x$RUNS"
"$fusion" >/dev/null 2>&1 || true
measure fusion 1 "$fusion"
say "== fusioninventory-inventory --no-category software x$RUNS (informative)"
measure fusion_nosoft 1 "$fusion" --no-category software
say "== health sample x$HEALTH_CALLS"
health_line=$("$health_bench" / "$HEALTH_CALLS")

pc=$(median "$work/parc" 1)
pr=$(median "$work/parc" 2)
fc=$(median "$work/fusion" 1)
fr=$(median "$work/fusion" 2)
nc=$(median "$work/fusion_nosoft" 1)
nr=$(median "$work/fusion_nosoft" 2)

echo
echo "machine: $(uname -srm), $(nproc) CPU(s); $(fusioninventory-agent --version 2>/dev/null | head -1 || echo fusioninventory)"
echo "parc-agent collect output: $(wc -c <"$work/parc.json") bytes, $(grep -o '"signal"' "$work/parc.json" | wc -l) unsupported signals"
echo "medians of $RUNS samples (user+sys CPU per run incl. waited-for children; peak RSS):"
echo
awk -v pc="$pc" -v pr="$pr" -v fc="$fc" -v fr="$fr" -v nc="$nc" -v nr="$nr" 'BEGIN {
    row = "| %-50s | %9s | %9s |\n"
    printf row, "command", "CPU s", "RSS MiB"
    printf "|%s|%s|%s|\n", "----------------------------------------------------", "-----------", "-----------"
    printf row, "parc-agent collect", sprintf("%.4f", pc), sprintf("%.1f", pr / 1024)
    printf row, "fusioninventory-inventory", sprintf("%.4f", fc), sprintf("%.1f", fr / 1024)
    printf row, "fusioninventory-inventory --no-category software", sprintf("%.4f", nc), sprintf("%.1f", nr / 1024)
    printf row, "ratio parc / fusioninventory (targets 0.1, 0.25)", sprintf("%.4f", pc / fc), sprintf("%.3f", pr / fr)
    printf row, "ratio parc / fusioninventory without software", sprintf("%.4f", pc / nc), sprintf("%.3f", pr / nr)
}'
echo
echo "$health_line (target: 5 ms CPU)"
