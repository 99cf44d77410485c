#!/usr/bin/env bash
# Side by side with Postfix (issue 12, goal 1): the same smtpload run against
# the Postfix anchor, then a fresh phigate, then the Postfix anchor again, and
# phigate's messages/s as a ratio of the two Postfix runs' mean.
#
# Usage: bench/ratio.sh            (as root: the anchor writes /etc/postfix)
#   RATIO_N       messages per run (default 3200: each of the 32 connections
#                 does about ten sessions of 10 messages)
#   POSTFIX_ANCHOR  the anchor script (default ../shared/bench/postfix-anchor.sh
#                 beside the checkout): Postfix on 127.0.0.1:10025 requiring
#                 STARTTLS, fsyncing its queue, relaying to an smtp-sink.
# Load, both sides: ~20 KB messages, 32 connections, 10 messages per
# connection, STARTTLS; AUTH PLAIN on phigate only (Postfix relays for
# loopback). Everything stays on loopback. The 1-minute load average is
# printed before each run and as the lowest-highest of the samples taken
# every second during it (the machine may be shared: say so with figures).
set -euo pipefail
cd "$(dirname "$0")/.."
ANCHOR=${POSTFIX_ANCHOR:-$PWD/../shared/bench/postfix-anchor.sh}
N=${RATIO_N:-3200}
LOAD=(-conns 32 -per-conn 10 -n "$N" -size 20480 -to patient@example.net -json)

D=$(mktemp -d /tmp/ratio.XXXXXX)
. bench/lib.sh
cleanup() {
	stop_nodes
	"$ANCHOR" stop >/dev/null 2>&1 || true
	rm -rf "$D"
}
trap cleanup EXIT
build_bench

# sample NAME records the 1-minute load average every second until killed;
# loads_of NAME prints the run's lowest and highest sample.
sample() { while :; do cut -d' ' -f1 /proc/loadavg >>"$D/$1.load"; sleep 1; done; }
loads_of() { sort -n "$D/$1.load" | sed -n '1p;$p' | paste -sd' ' | awk '{printf "%s-%s", $1, ($2 == "" ? $1 : $2)}'; }

# smtpload exits 1 when a message failed; the failure count is reported.
postfix_run() {
	"$ANCHOR" start >/dev/null
	echo "$1: load average $(loadavg)" >>"$D/loads"
	sample "$1" & local s=$!
	"$D/smtpload" -addr 127.0.0.1:10025 -no-auth -from load@example.com "${LOAD[@]}" >"$D/$1.json" || true
	kill "$s"; wait "$s" 2>/dev/null || true
	"$ANCHOR" stop >/dev/null
}

phigate_run() {
	start_node phigate "$D/data"
	make_account "$D/data"
	echo "phigate: load average $(loadavg)" >>"$D/loads"
	sample phigate & local s=$!
	smtpload_run "$SMTP_PORT" "$D/phigate.json" "${LOAD[@]}"
	kill "$s"; wait "$s" 2>/dev/null || true
	stop_nodes
}

postfix_run postfix1
phigate_run
postfix_run postfix2

echo "date $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; $N messages of ~20 KB per run, 32 connections, 10 messages per connection"
cat "$D/loads"
printf '%-9s %8s %7s %9s %9s %9s  %s\n' run msgs/s ok failed 'p50 ms' 'p99 ms' 'load during'
for r in postfix1 phigate postfix2; do
	jq -r --arg r "$r" --arg l "$(loads_of "$r")" '[$r, (.msgs_per_sec*10|round/10), .ok, .failed, (.latency_ms.p50*10|round/10), (.latency_ms.p99*10|round/10), $l] | @tsv' "$D/$r.json" |
		awk -F'\t' '{printf "%-9s %8s %7s %9s %9s %9s  %s\n", $1, $2, $3, $4, $5, $6, $7}'
	jq -r '.failures[]? | "  failed: \(.count) \(.reply)"' "$D/$r.json"
	jq -r '.conn_error_kinds[]? | "  connection error: \(.count) \(.reply)"' "$D/$r.json"
done
jq -rs '((.[0].msgs_per_sec + .[2].msgs_per_sec) / 2) as $pf |
	"ratio phigate / mean(Postfix) = \(.[1].msgs_per_sec*10|round/10) / \($pf*10|round/10) = \(if $pf > 0 then (.[1].msgs_per_sec / $pf * 100 | round / 100) else "n/a" end)"' \
	"$D/postfix1.json" "$D/phigate.json" "$D/postfix2.json"
