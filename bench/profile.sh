#!/usr/bin/env bash
# Profile a running gateway under the ratio.sh load (issue 12): a fresh
# `phigate serve --dev --debug-pprof` (profiler on its loopback metrics
# listener), smtpload against it (~20 KB, 32 connections, 10 messages per
# connection, STARTTLS + AUTH) for PROFILE_SECONDS+4 s, and meanwhile a CPU
# profile of PROFILE_SECONDS s taken 2 s into the load, then the allocation
# profile. Everything stays on loopback.
#
# Usage: bench/profile.sh [OUT]      (OUT default /tmp/phigate-profile)
#   PROFILE_SECONDS  CPU profile length (default 10)
# Writes OUT/phigate (the binary, for symbols), OUT/cpu.pprof,
# OUT/allocs.pprof, OUT/smtpload.json; then, e.g.:
#   go tool pprof -top -cum OUT/phigate OUT/cpu.pprof
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/phigate-profile}
SECS=${PROFILE_SECONDS:-10}
mkdir -p "$OUT"
D=$(mktemp -d /tmp/profile.XXXXXX)
. bench/lib.sh
cleanup() {
	stop_nodes
	rm -rf "$D"
}
trap cleanup EXIT
build_bench
read -r mport < <(free_ports 1)
NODE_ARGS=(--debug-pprof --metrics "127.0.0.1:$mport")
start_node phigate "$D/data"
make_account "$D/data"
cp "$D/phigate" "$OUT/phigate"
echo "load average before: $(loadavg)"
smtpload_run "$SMTP_PORT" "$OUT/smtpload.json" -conns 32 -per-conn 10 -n 10000000 -duration "$((SECS + 4))s" \
	-size 20480 -to patient@example.net -json &
LOADPID=$!
sleep 2
curl -sf -o "$OUT/cpu.pprof" "http://127.0.0.1:$mport/debug/pprof/profile?seconds=$SECS"
echo "load average at the end of the CPU profile: $(loadavg)"
wait "$LOADPID" || true
curl -sf -o "$OUT/allocs.pprof" "http://127.0.0.1:$mport/debug/pprof/allocs"
jq -r '"\(.ok) ok, \(.failed) failed, \(.msgs_per_sec*10|round/10) msgs/s, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms"' "$OUT/smtpload.json"
echo "profiles in $OUT: go tool pprof -top -cum $OUT/phigate $OUT/cpu.pprof"
