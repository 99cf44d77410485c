#!/usr/bin/env bash
# 2,000 SMTP sessions, idle and active, against a fresh --dev gateway
# (issue 12, goal 4): SMTPACTIVE_IDLE sessions that read the greeting and
# say nothing, and SMTPACTIVE_ACTIVE that STARTTLS, AUTH, MAIL, RCPT, DATA
# and then send one body line per second until measured (bench/smtpidle
# -active). Prints the gateway's RSS and fds before, held and after, the
# RSS per held session, how the caps and timeouts treated them, whether a
# legitimate submission and a portal page were served meanwhile, and
# whether every slow message was accepted in the end.
#
# Usage: bench/smtpactive.sh [extra smtpidle flags]
#   SMTPACTIVE_IDLE (1000), SMTPACTIVE_ACTIVE (1000), SMTPACTIVE_HOLD (20s:
#   how long the sessions are held before the measurement), and the
#   gateway's PHIGATE_SMTP_* settings from the environment (e.g.
#   PHIGATE_SMTP_MAX_CONNECTIONS=4000 PHIGATE_SMTP_HANDSHAKE_TIMEOUT=5m to
#   hold every idle session; the defaults cap and time them out).
# The account's sending limits are lifted (bench/lib.sh): all the active
# sessions are one account. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)"
D=$(mktemp -d /tmp/smtpactive.XXXXXX)
. bench/lib.sh
trap 'stop_nodes; rm -rf "$D"' EXIT
go build -o "$D/phigate" ./cmd/phigate
go build -o "$D/smtpidle" ./bench/smtpidle
export PHIGATE_SMTP_MAX_CONNECTIONS_PER_IP=${PHIGATE_SMTP_MAX_CONNECTIONS_PER_IP:-20} # the default; lib.sh sets 64
start_node gw "$D/data"
HTTP_PORT=$(sed -n 's/^http_addr = "127.0.0.1:\([0-9]*\)"/\1/p' "$D/gw.toml")
make_account "$D/data"
echo "fd limit $(ulimit -n); gateway pid ${NODE_PIDS[0]}; load average $(loadavg)"
env | grep '^PHIGATE_SMTP_' || echo "PHIGATE_SMTP_*: defaults (max_connections_per_ip from bench/lib.sh unless set)"
"$D/smtpidle" -addr "127.0.0.1:$SMTP_PORT" -portal "https://127.0.0.1:$HTTP_PORT/login" -pid "${NODE_PIDS[0]}" \
	-user dr.lee@clinic.example -pass-file "$D/pass" -n "${SMTPACTIVE_IDLE:-1000}" -active "${SMTPACTIVE_ACTIVE:-1000}" \
	-per-ip 20 -settle "${SMTPACTIVE_HOLD:-20s}" "$@"
echo "load average after: $(loadavg)"
echo "gateway log lines about refused or evicted connections: $(grep -c 'smtp connection' "$D/gw.log" || true)"
