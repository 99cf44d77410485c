# Shared by the bench/*.sh scripts (sourced, not run): build the binaries,
# start fresh `phigate serve --dev` nodes on free loopback ports with the
# sending limits lifted, make the load account, run smtpload.
#
# The sourcing script sets D (a temporary folder, removed by its own cleanup)
# and calls stop_nodes from that cleanup.

NODE_PIDS=()

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# free_ports prints n ports the kernel just handed out on 127.0.0.1.
free_ports() {
	python3 -c 'import socket,sys
ss=[socket.socket() for _ in range(int(sys.argv[1]))]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

build_bench() {
	go build -o "$D/phigate" ./cmd/phigate
	go build -o "$D/smtpload" ./bench/smtpload
}

# start_node NAME DATA [EXTRA_TOML] starts a `serve --dev` node on DATA with
# its own free ports, waits for its SMTP listener and sets SMTP_PORT. The
# node's environment (PHIGATE_STORE_URL ...) is the caller's; NODE_ARGS
# (an array, e.g. --debug-pprof --metrics ADDR) are added to serve's flags.
start_node() {
	local name=$1 data=$2 extra=${3:-} smtp http
	read -r smtp http < <(free_ports 2)
	# Lifted for a load run (bench/README.md, "Sending limits"): all the
	# connections are one account from one address.
	cat >"$D/$name.toml" <<-EOF2
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
		$extra
	EOF2
	# Only serve reads it: the user commands find the dev data folder
	# by --data (with a --config they would expect a production layout).
	"$D/phigate" serve --dev --config "$D/$name.toml" --data "$data" ${NODE_ARGS[@]+"${NODE_ARGS[@]}"} >"$D/$name.log" 2>&1 &
	NODE_PIDS+=($!)
	for _ in $(seq 100); do ss -ltn | grep -q "127.0.0.1:$smtp " && break; sleep 0.2; done
	ss -ltn | grep -q "127.0.0.1:$smtp " || { cat "$D/$name.log" >&2; exit 1; }
	SMTP_PORT=$smtp
}

# make_account DATA creates the staff account dr.lee and writes an app
# password to $D/pass.
make_account() {
	echo 'maple harbor lantern 17' | "$D/phigate" user add --data "$1" --email dr.lee@clinic.example --role staff --password-stdin >/dev/null
	"$D/phigate" user app-password --data "$1" --email dr.lee@clinic.example --name bench | tail -1 >"$D/pass"
}

# smtpload_run PORT OUT [smtpload flags...] loads one node as dr.lee; it
# exits 1 when a message failed, and the failure count is in OUT.
smtpload_run() {
	local port=$1 out=$2
	shift 2
	"$D/smtpload" -addr "127.0.0.1:$port" -user dr.lee@clinic.example -pass-file "$D/pass" "$@" >"$out" || true
}

stop_nodes() {
	local p
	for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${NODE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	NODE_PIDS=()
}
