#!/bin/sh
# 20,000 idle SMTP connections against a fresh --dev gateway: what they
# cost it (RSS, open fds) and whether a legitimate client and the portal
# are served meanwhile. Usage: bench/smtpidle.sh [extra smtpidle flags]
# Settings come from PHIGATE_SMTP_* in the environment (defaults otherwise),
# e.g. PHIGATE_SMTP_HANDSHAKE_TIMEOUT=5m to hold the flood while measuring.
set -eu
# The gateway and this client each hold one descriptor per connection.
ulimit -n "$(ulimit -Hn)"
D=$(mktemp -d /tmp/smtpidle.XXXXXX)
go build -o "$D/phigate" ./cmd/phigate
go build -o "$D/smtpidle" ./bench/smtpidle
export PHIGATE_LOG_LEVEL=warn PHIGATE_METRICS_ADDR= PHIGATE_SERVER_SMTP_ADDR=127.0.0.1:12587 \
	PHIGATE_SERVER_SMTPS_ADDR=127.0.0.1:12465 PHIGATE_SERVER_HTTP_ADDR=127.0.0.1:18443
"$D/phigate" serve --dev --data "$D/data" >"$D/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$D"' EXIT
sleep 3
echo 'maple harbor lantern 17' | "$D/phigate" user add --data "$D/data" --email dr.lee@clinic.example --role staff --password-stdin >/dev/null
"$D/phigate" user app-password --data "$D/data" --email dr.lee@clinic.example --name bench | tail -1 >"$D/pass"
echo "fd limit: $(ulimit -n); gateway pid $PID"
"$D/smtpidle" -addr 127.0.0.1:12587 -portal https://127.0.0.1:18443/login -pid $PID \
	-user dr.lee@clinic.example -pass-file "$D/pass" -n 20000 -per-ip 20 "$@"
grep -c 'smtp connection' "$D/log" | sed 's/^/log lines about refused or evicted connections: /' || true
