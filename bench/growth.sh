#!/usr/bin/env bash
# Cost growth (issue 12, goal 5): BenchmarkIntakeGrowth's two arms, empty
# store and a fresh synced copy of a seeded one, each in its own process,
# alternating for GROWTH_PAIRS pairs (3), GROWTH_N messages per arm
# (6000); prints each pair and the mean of the seeded / empty ratios of
# msgs/s and of CPU per message.
#
#   go run ./bench/seed -data /tmp/seeded -messages 100000 -accounts 10000
#   bench/growth.sh /tmp/seeded
set -euo pipefail
cd "$(dirname "$0")/.."
seeded=${1:?usage: bench/growth.sh SEEDED_FOLDER (made by bench/seed)}
pairs=${GROWTH_PAIRS:-3}
n=${GROWTH_N:-6000}
D=$(mktemp -d /tmp/growth.XXXXXX)
trap 'rm -rf "$D"' EXIT
go test -c -o "$D/gw.test" ./gateway
arm() { # arm NAME: one run; prints "msgs/s cpu-ms/msg p50 p99 reads writes"
	(cd gateway && PHIGATE_BENCH_SEEDED=$seeded "$D/gw.test" -test.run '^$' -test.bench "IntakeGrowth/$1\$" \
		-test.benchtime "${n}x") | awk '/^BenchmarkIntakeGrowth/ {
		for (i = 3; i < NF; i += 2) v[$(i + 1)] = $i
		print v["msgs/s"], v["cpu-ms/msg"], v["accept-p50-ms"], v["accept-p99-ms"], v["reads/msg"], v["writes/msg"] }'
}
echo "load average $(cut -d' ' -f1-3 /proc/loadavg); $n messages per arm"
echo "pair | empty: msgs/s, cpu-ms/msg, p50/p99 ms, reads/writes per msg | seeded: the same | seeded/empty msgs/s, cpu"
for p in $(seq "$pairs"); do
	read -r er ec e50 e99 erd ewr < <(arm empty)
	read -r sr sc s50 s99 srd swr < <(arm seeded)
	awk -v p="$p" -v er="$er" -v ec="$ec" -v sr="$sr" -v sc="$sc" \
		-v e="$e50/$e99, $erd/$ewr" -v s="$s50/$s99, $srd/$swr" \
		'BEGIN { printf "%d | %.1f, %.2f, %s | %.1f, %.2f, %s | %.2f, %.2f\n", p, er, ec, e, sr, sc, s, sr / er, ec / sc }'
done | tee "$D/pairs"
awk -F'|' '{ split($4, r, ","); a += r[1]; b += r[2]; k++ } END { printf "mean seeded/empty: msgs/s %.2f, CPU per message %.2f (empty/seeded)\n", a / k, b / k }' "$D/pairs"
