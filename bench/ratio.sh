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
# loopback). Everything stays on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
ANCHOR=${POSTFIX_ANCHOR:-$PWD/../shared/bench/postfix-anchor.sh}
N=${RATIO_N:-3200}
LOAD=(-conns 32 -per-conn 10 -n "$N" -size 20480 -to patient@example.net -json)

D=$(mktemp -d /tmp/ratio.XXXXXX)
GW=
cleanup() {
	if [ -n "$GW" ]; then kill "$GW" 2>/dev/null || true; wait "$GW" 2>/dev/null || true; fi
	"$ANCHOR" stop >/dev/null 2>&1 || true
	rm -rf "$D"
}
trap cleanup EXIT
go build -o "$D/phigate" ./cmd/phigate
go build -o "$D/smtpload" ./bench/smtpload

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# smtpload exits 1 when a message failed; the failure count is reported.
postfix_run() {
	"$ANCHOR" start >/dev/null
	echo "$1: load average $(loadavg)" >>"$D/loads"
	"$D/smtpload" -addr 127.0.0.1:10025 -no-auth -from load@example.com "${LOAD[@]}" >"$D/$1.json" || true
	"$ANCHOR" stop >/dev/null
}

# free_ports prints n ports the kernel just handed out on 127.0.0.1.
free_ports() {
	python3 -c 'import socket,sys
ss=[socket.socket() for _ in range(int(sys.argv[1]))]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

phigate_run() {
	local smtp http
	read -r smtp http < <(free_ports 2)
	# Lifted for a load run (bench/README.md, "Sending limits"): all 32
	# connections are one account from one address.
	cat >"$D/bench.toml" <<-EOF
		[server]
		smtp_addr = "127.0.0.1:$smtp"
		smtps_addr = ""
		http_addr = "127.0.0.1:$http"
		[smtp]
		max_connections_per_ip = 64
		[smtp.senders]
		messages_per_hour = 0
		concurrent_transactions = 0
		max_stored_bytes = 0
		[metrics]
		addr = ""
		[log]
		level = "warn"
	EOF
	# Only serve reads it: the user commands find the dev data folder
	# by --data (with a --config they would expect a production layout).
	"$D/phigate" serve --dev --config "$D/bench.toml" --data "$D/data" >"$D/phigate.log" 2>&1 &
	GW=$!
	for _ in $(seq 100); do ss -ltn | grep -q "127.0.0.1:$smtp " && break; sleep 0.2; done
	ss -ltn | grep -q "127.0.0.1:$smtp " || { cat "$D/phigate.log" >&2; exit 1; }
	echo 'maple harbor lantern 17' | "$D/phigate" user add --data "$D/data" --email dr.lee@clinic.example --role staff --password-stdin >/dev/null
	"$D/phigate" user app-password --data "$D/data" --email dr.lee@clinic.example --name bench | tail -1 >"$D/pass"
	echo "phigate: load average $(loadavg)" >>"$D/loads"
	"$D/smtpload" -addr "127.0.0.1:$smtp" -user dr.lee@clinic.example -pass-file "$D/pass" "${LOAD[@]}" >"$D/phigate.json" || true
	kill "$GW"
	wait "$GW" 2>/dev/null || true
	GW=
}

postfix_run postfix1
phigate_run
postfix_run postfix2

echo "date $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; $N messages of ~20 KB per run, 32 connections, 10 messages per connection"
cat "$D/loads"
printf '%-9s %8s %7s %9s %9s %9s\n' run msgs/s ok failed 'p50 ms' 'p99 ms'
for r in postfix1 phigate postfix2; do
	jq -r --arg r "$r" '[$r, (.msgs_per_sec*10|round/10), .ok, .failed, (.latency_ms.p50*10|round/10), (.latency_ms.p99*10|round/10)] | @tsv' "$D/$r.json" |
		awk -F'\t' '{printf "%-9s %8s %7s %9s %9s %9s\n", $1, $2, $3, $4, $5, $6}'
	jq -r '.failures[]? | "  failed: \(.count) \(.reply)"' "$D/$r.json"
	jq -r '.conn_error_kinds[]? | "  connection error: \(.count) \(.reply)"' "$D/$r.json"
done
jq -rs '((.[0].msgs_per_sec + .[2].msgs_per_sec) / 2) as $pf |
	"ratio phigate / mean(Postfix) = \(.[1].msgs_per_sec*10|round/10) / \($pf*10|round/10) = \(if $pf > 0 then (.[1].msgs_per_sec / $pf * 100 | round / 100) else "n/a" end)"' \
	"$D/postfix1.json" "$D/phigate.json" "$D/postfix2.json"
