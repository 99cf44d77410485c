#!/usr/bin/env bash
# Where a message's CPU goes (issue 12): reads a profile written by
# bench/profile.sh and prints, for each stage of the intake, the gateway's
# CPU time in it (pprof's cumulative time of the stage's function) divided
# by the messages accepted while the profile ran (smtpload's msgs/s x the
# profile's seconds). Stages are cumulative: an indented one is inside the
# one above it.
#
# Usage: bench/stages.sh [DIR]     (DIR default /tmp/phigate-profile)
set -euo pipefail
DIR=${1:-/tmp/phigate-profile}
TOP=$(mktemp)
trap 'rm -f "$TOP"' EXIT
go tool pprof -top -cum -nodecount 100000 -nodefraction 0 "$DIR/phigate" "$DIR/cpu.pprof" 2>/dev/null >"$TOP"
secs=$(awk '/^Duration:/ {sub(/s,?$/, "", $2); print $2}' "$TOP")
total=$(awk '/^Duration:/ {for (i = 1; i <= NF; i++) if ($i == "=") {v = $(i + 1); sub(/s$/, "", v); print v}}' "$TOP")
rate=$(jq -r .msgs_per_sec "$DIR/smtpload.json")
msgs=$(awk -v r="$rate" -v s="$secs" 'BEGIN {printf "%d", r * s}')

# cum FUNC prints FUNC's cumulative seconds (0 when it has no samples).
cum() {
	awk -v f="$1" '$6 == f {v = $4; if (v ~ /ms$/) {sub(/ms$/, "", v); v /= 1000} else sub(/s$/, "", v); print v; found = 1; exit}
		END {if (!found) print 0}' "$TOP"
}
row() {
	local label=$1 s=0 f
	shift
	for f in "$@"; do s=$(awk -v a="$s" -v b="$(cum "$f")" 'BEGIN {print a + b}'); done
	awk -v l="$label" -v s="$s" -v m="$msgs" 'BEGIN {printf "| %s | %.2f ms |\n", l, s * 1000 / m}'
}
echo "profile: ${secs} s, ${total} s of CPU samples, ${msgs} messages accepted meanwhile (${rate} msgs/s)"
echo "| stage (gateway CPU per message) | |"
echo "|---|---|"
row "TLS handshake (STARTTLS)" 'crypto/tls.(*Conn).serverHandshake'
row "TLS records, read + write" 'crypto/tls.(*Conn).Read' 'crypto/tls.(*Conn).Write'
row "AUTH PLAIN (app password: HMAC + one lookup)" 'github.com/phigate/phigate/smtpd.(*session).Auth.func1'
row "MAIL" 'github.com/phigate/phigate/smtpd.(*session).Mail'
row "RCPT" 'github.com/phigate/phigate/smtpd.(*session).Rcpt'
row "DATA, all of it" 'github.com/phigate/phigate/smtpd.(*session).Data'
row "&nbsp;&nbsp;reading DATA (dot-unstuffing, line limits)" 'github.com/emersion/go-smtp.(*dataReader).Read'
row "&nbsp;&nbsp;parse (MIME walk for summary and policy facts)" 'github.com/phigate/phigate/message.Parse'
row "&nbsp;&nbsp;detectors" 'github.com/phigate/phigate/detect.(*Scanner).ScanMessageResult' 'github.com/phigate/phigate/detect.(*Scanner).ScanPartsResult'
row "&nbsp;&nbsp;policy decision" 'github.com/phigate/phigate/policy.(*Document).Evaluate' 'github.com/phigate/phigate/policy.(*Document).EnvelopeDecision'
row "&nbsp;&nbsp;OpenPGP: sign + encrypt (body, summary, sender's copy)" 'github.com/phigate/phigate/crypto.Seal'
row "&nbsp;&nbsp;recipient account" 'github.com/phigate/phigate/identity.(*Service).EnsureRecipient'
row "&nbsp;&nbsp;notice" 'github.com/phigate/phigate/intake.(*Intake).Notice'
row "group commit (SQLite, one writer)" 'github.com/phigate/phigate/store.(*SQL).deliverLoop'
row "&nbsp;&nbsp;of which audit rows and hash chain" 'github.com/phigate/phigate/store.(*SQL).appendAudit'
row "&nbsp;&nbsp;of which WAL writes (pwrite)" 'modernc.org/libc.Xpwrite'
row "&nbsp;&nbsp;of which fsync (CPU of the call only)" 'modernc.org/libc.Xfsync'
row "notice dispatcher" 'github.com/phigate/phigate/notify.(*Dispatcher).Run'
row "garbage collector (background marking)" 'runtime.gcBgMarkWorker'
awk -v t="$total" -v m="$msgs" 'BEGIN {printf "| **whole process** | **%.2f ms** |\n", t * 1000 / m}'
