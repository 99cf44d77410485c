#!/usr/bin/env bash
# One node on SQLite, one node on PostgreSQL, two nodes on PostgreSQL
# (issue 11.6): the same smtpload load against each, one after the other,
# each on fresh state, and one table.
#
# Usage: bench/nodes.sh
#   NODES_N   messages per run (default 3200, as bench/ratio.sh)
#   PGHOST_URL  the PostgreSQL server (default postgres://postgres@127.0.0.1:5432,
#             trust auth); a database phigate_bench_<pid> is created on it
#             for each PostgreSQL run and dropped afterwards.
# Load: ~20 KB messages, 32 connections, 10 messages per connection,
# STARTTLS + AUTH PLAIN. With two nodes, two smtpload processes of 16
# connections and NODES_N/2 messages each, one per node, at the same time:
# msgs/s is the sum of the two, p50/p99 the worse of the two. The two nodes
# share one data folder (keys), the database and a private redis-server.
# Everything stays on loopback.
set -euo pipefail
# The caller's gateway settings must not leak into the runs.
unset PHIGATE_STORE_URL PHIGATE_REDIS_URL PHIGATE_REDIS_PREFIX
cd "$(dirname "$0")/.."
N=${NODES_N:-3200}
PG=${PGHOST_URL:-postgres://postgres@127.0.0.1:5432}
DB=phigate_bench_$$
LOAD=(-size 20480 -per-conn 10 -to patient@example.net -json)

D=$(mktemp -d /tmp/nodes.XXXXXX)
. bench/lib.sh
REDIS=
cleanup() {
	stop_nodes
	if [ -n "$REDIS" ]; then kill "$REDIS" 2>/dev/null || true; wait "$REDIS" 2>/dev/null || true; fi
	psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
	rm -rf "$D"
}
trap cleanup EXIT
build_bench

# fresh_db (re)creates the run's database, so each PostgreSQL run starts empty.
fresh_db() {
	export PGOPTIONS='-c client_min_messages=warning'
	psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null
	psql "$PG/postgres" -qc "CREATE DATABASE $DB" >/dev/null
}

# pg_rows notes how many message rows the run left in PostgreSQL (and no
# SQLite file in its data folder): proof that the nodes used the database.
pg_rows() {
	[ ! -e "$D/$1/phigate.db" ] || { echo "$1 wrote $D/$1/phigate.db" >&2; exit 1; }
	echo "$1: $(psql "$PG/$DB" -tAc 'SELECT count(*) FROM messages') rows in PostgreSQL's messages table" >>"$D/loads"
}

# start_redis runs a private, unpersisted redis-server on a free port.
start_redis() {
	local port
	read -r port < <(free_ports 1)
	redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >"$D/redis.log" 2>&1 &
	REDIS=$!
	for _ in $(seq 50); do redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
	REDIS_URL=redis://127.0.0.1:$port/0
}

one_node() {
	local run=$1
	start_node "$run" "$D/$run"
	make_account "$D/$run"
	echo "$run: load average $(loadavg)" >>"$D/loads"
	smtpload_run "$SMTP_PORT" "$D/$run.json" -conns 32 -n "$N" "${LOAD[@]}"
	stop_nodes
}

two_nodes() {
	local a b
	start_redis
	local redis="[redis]
url = \"$REDIS_URL\"
prefix = \"phigate-bench:\""
	# One after the other: the first creates the dev keys in the shared
	# data folder and migrates the database.
	start_node pg2a "$D/pg2" "$redis"
	a=$SMTP_PORT
	start_node pg2b "$D/pg2" "$redis"
	b=$SMTP_PORT
	make_account "$D/pg2"
	echo "pg-2-nodes: load average $(loadavg)" >>"$D/loads"
	smtpload_run "$a" "$D/pg2a.json" -conns 16 -n $((N / 2)) "${LOAD[@]}" &
	local la=$!
	smtpload_run "$b" "$D/pg2b.json" -conns 16 -n $((N - N / 2)) "${LOAD[@]}" &
	wait "$la" $!
	stop_nodes
	jq -s '{msgs_per_sec: (map(.msgs_per_sec) | add), ok: (map(.ok) | add), failed: (map(.failed) | add),
		latency_ms: {p50: (map(.latency_ms.p50) | max), p99: (map(.latency_ms.p99) | max)},
		per_wall: ((map(.ok) | add) / (map(.wall_seconds) | max)),
		failures: (map(.failures // []) | add), conn_error_kinds: (map(.conn_error_kinds // []) | add)}' \
		"$D/pg2a.json" "$D/pg2b.json" >"$D/pg-2-nodes.json"
}

one_node sqlite
fresh_db
export PHIGATE_STORE_URL="$PG/$DB?sslmode=disable"
one_node pg
pg_rows pg
fresh_db
two_nodes
pg_rows pg2

echo "date $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; $N messages of ~20 KB per run, 32 connections in all, 10 messages per connection"
cat "$D/loads"
printf '%-11s %8s %7s %9s %9s %9s\n' run msgs/s ok failed 'p50 ms' 'p99 ms'
for r in sqlite pg pg-2-nodes; do
	jq -r --arg r "$r" '[$r, (.msgs_per_sec*10|round/10), .ok, .failed, (.latency_ms.p50*10|round/10), (.latency_ms.p99*10|round/10)] | @tsv' "$D/$r.json" |
		awk -F'\t' '{printf "%-11s %8s %7s %9s %9s %9s\n", $1, $2, $3, $4, $5, $6}'
	jq -r '.failures[]? | "  failed: \(.count) \(.reply)"' "$D/$r.json"
	jq -r '.conn_error_kinds[]? | "  connection error: \(.count) \(.reply)"' "$D/$r.json"
done
jq -r '"pg-2-nodes: msgs/s is the sum of the two generators; messages ok / the longer wall time = \(.per_wall*10|round/10)"' "$D/pg-2-nodes.json"
