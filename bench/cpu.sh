#!/usr/bin/env bash
# CPU per message (issue 12): a fresh `phigate serve --dev`, one smtpload
# run against it (~20 KB, 32 connections, 10 messages per connection,
# STARTTLS + AUTH), and the CPU each side used per message: the gateway's
# from /proc/PID/stat around the run, smtpload's from /usr/bin/time. The
# gateway's environment is the caller's, so GOGC / GOMEMLIMIT compare the
# collector's settings:
#
#   GOGC=100 bench/cpu.sh; GOGC=400 bench/cpu.sh      # CPU_N messages (3200)
#
# CPU_SEEDED=FOLDER runs it on a synced copy of a folder bench/seed filled
# (issue 12, goal 5: the same figure on a store of 100,000 messages), with
# the seed's dr.lee and a new app password. Both kinds of run first send
# CPU_WARMUP messages (320) untimed: the gateway's start-up work (the
# first retention purge, the recipient's account, cold caches) stays out.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${CPU_N:-3200}
WARMUP=${CPU_WARMUP:-320}
D=$(mktemp -d /tmp/cpu.XXXXXX)
. bench/lib.sh
trap 'stop_nodes; rm -rf "$D"' EXIT
build_bench
if [ -n "${CPU_SEEDED:-}" ]; then
	cp -a "$CPU_SEEDED" "$D/data"
	sync
	"$D/phigate" user app-password --data "$D/data" --email dr.lee@clinic.example --name bench | tail -1 >"$D/pass"
	start_node phigate "$D/data"
else
	start_node phigate "$D/data"
	make_account "$D/data"
fi
pid=${NODE_PIDS[0]}
if [ "$WARMUP" -gt 0 ]; then
	smtpload_run "$SMTP_PORT" "$D/warmup.json" -conns 32 -per-conn 10 -n "$WARMUP" -size 20480 -to patient@example.net -json
fi
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks)
/usr/bin/time -f "%U %S" -o "$D/time" "$D/smtpload" -addr "127.0.0.1:$SMTP_PORT" -user dr.lee@clinic.example \
	-pass-file "$D/pass" -conns 32 -per-conn 10 -n "$N" -size 20480 -to patient@example.net -json >"$D/out.json" || true
t1=$(ticks)
echo "GOGC=${GOGC:-unset} GOMEMLIMIT=${GOMEMLIMIT:-unset}, store ${CPU_SEEDED:-empty}, load average $(loadavg)"
jq -r '"\(.ok) ok, \(.failed) failed, \(.msgs_per_sec*10|round/10) msgs/s, p50 \(.latency_ms.p50*10|round/10) ms, p99 \(.latency_ms.p99*10|round/10) ms"' "$D/out.json"
awk -v a="$t0" -v b="$t1" -v hz="$hz" -v n="$N" 'BEGIN {printf "gateway: %.2f ms of CPU per message\n", (b - a) * 1000 / hz / n}'
awk -v n="$N" '{printf "smtpload: %.2f ms of CPU per message\n", ($1 + $2) * 1000 / n}' "$D/time"
echo "gateway peak RSS: $(awk '/VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$pid/status")"
