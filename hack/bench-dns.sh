#!/usr/bin/env bash
# Benchmark netguard dns-proxy against dnsmasq as UDP DNS forwarders.
#
# Both forward, cache off, to the same loopback upstream
# (test/bench/dnsupstream, an answer-from-the-wire server that is not the
# bottleneck), and are driven by dnsperf in the same run, alternating, for
# ROUNDS rounds. Prints qps and p99 latency per run, the medians, and the
# ratios netguard/dnsmasq. Only loopback addresses are used.
#
# Usage: hack/bench-dns.sh            (DURATION=10 CLIENTS=4 ROUNDS=3)
# Needs: go, dnsperf, dnsmasq, dig.
set -euo pipefail

DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-4}
ROUNDS=${ROUNDS:-3}
UPSTREAM_PORT=${UPSTREAM_PORT:-15300}
NETGUARD_PORT=${NETGUARD_PORT:-15301}
DNSMASQ_PORT=${DNSMASQ_PORT:-15302}

root=$(cd "$(dirname "$0")/.." && pwd)
dnsmasq_bin=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
for tool in go dnsperf dig "$dnsmasq_bin"; do
	command -v "$tool" >/dev/null || { echo "bench-dns: $tool is required" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

echo "building netguard and the upstream..." >&2
(cd "$root" && go build -o "$work/netguard" ./cmd/netguard && go build -o "$work/dnsupstream" ./test/bench/dnsupstream)

for i in $(seq 1 100); do echo "host$i.upstream.test A"; done >"$work/queries"

"$work/dnsupstream" -listen "127.0.0.1:$UPSTREAM_PORT" &
pids+=($!)
"$work/netguard" dns-proxy --listen "127.0.0.1:$NETGUARD_PORT" --upstream "127.0.0.1:$UPSTREAM_PORT" \
	--cache-size 0 --metrics-bind-address 0 2>"$work/netguard.log" &
pids+=($!)
"$dnsmasq_bin" --keep-in-foreground --no-resolv --no-hosts --user=root --pid-file= \
	--listen-address=127.0.0.1 --bind-interfaces --port="$DNSMASQ_PORT" \
	--server="127.0.0.1#$UPSTREAM_PORT" --cache-size=0 2>"$work/dnsmasq.log" &
pids+=($!)

for port in "$UPSTREAM_PORT" "$NETGUARD_PORT" "$DNSMASQ_PORT"; do
	ok=
	for _ in $(seq 1 50); do
		if [ "$(dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 host1.upstream.test A 2>/dev/null)" = "198.51.100.1" ]; then ok=1; break; fi
		sleep 0.1
	done
	[ -n "$ok" ] || { echo "bench-dns: nothing answers on 127.0.0.1:$port" >&2; cat "$work"/*.log >&2; exit 1; }
done

# run NAME PORT: one dnsperf run; prints "qps p99_ms lost".
run() {
	local out="$work/$1.out"
	dnsperf -s 127.0.0.1 -p "$2" -d "$work/queries" -c "$CLIENTS" -l "$DURATION" -v >"$out" 2>&1 || true
	local qps lost p99
	qps=$(awk '/Queries per second:/ {print $4}' "$out")
	lost=$(awk '/Queries lost:/ {print $3}' "$out")
	p99=$(awk '/^> / {print $NF}' "$out" | sort -g | awk '{v[NR]=$1} END {if (NR == 0) {print "nan"; exit} i=int(NR*0.99); if (i < 1) i=1; printf "%.3f", v[i]*1000}')
	echo "${qps:-0} $p99 ${lost:-?}"
}

printf '%-10s %-6s %12s %10s %8s\n' target round qps p99_ms lost
read -r up_qps up_p99 up_lost < <(run upstream "$UPSTREAM_PORT")
printf '%-10s %-6s %12.0f %10s %8s\n' upstream - "$up_qps" "$up_p99" "$up_lost"
ng_qps=() ng_p99=() dm_qps=() dm_p99=()
for round in $(seq 1 "$ROUNDS"); do
	# Alternate which goes first, so neither always gets the warmer machine.
	if [ $((round % 2)) -eq 1 ]; then order="netguard dnsmasq"; else order="dnsmasq netguard"; fi
	for target in $order; do
		if [ "$target" = netguard ]; then port=$NETGUARD_PORT; else port=$DNSMASQ_PORT; fi
		read -r qps p99 lost < <(run "$target" "$port")
		printf '%-10s %-6s %12.0f %10s %8s\n' "$target" "$round" "$qps" "$p99" "$lost"
		if [ "$target" = netguard ]; then ng_qps+=("$qps") ng_p99+=("$p99"); else dm_qps+=("$qps") dm_p99+=("$p99"); fi
	done
done

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
mq=$(median "${ng_qps[@]}") mp=$(median "${ng_p99[@]}") dq=$(median "${dm_qps[@]}") dp=$(median "${dm_p99[@]}")
echo
printf 'median     netguard %8.0f qps  p99 %7.3f ms\n' "$mq" "$mp"
printf 'median     dnsmasq  %8.0f qps  p99 %7.3f ms\n' "$dq" "$dp"
awk -v mq="$mq" -v dq="$dq" -v mp="$mp" -v dp="$dp" 'BEGIN {
	printf "ratio      qps netguard/dnsmasq %.2f (goal >= 1.00)   p99 netguard/dnsmasq %.2f (goal <= 1.20)\n", mq/dq, mp/dp
}'
echo "command: dnsperf -s 127.0.0.1 -p PORT -d QUERIES -c $CLIENTS -l $DURATION -v; $ROUNDS rounds, cache off on both, upstream test/bench/dnsupstream on 127.0.0.1:$UPSTREAM_PORT"
