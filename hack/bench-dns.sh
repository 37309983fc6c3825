#!/usr/bin/env bash
# Benchmark netguard dns-proxy against dnsmasq and CoreDNS as UDP DNS
# forwarders.
#
# All three forward, cache off, to the same loopback upstream
# (test/bench/dnsupstream, an answer-from-the-wire server that is not the
# bottleneck), and are driven by dnsperf in the same run, alternating, for
# ROUNDS rounds. Prints qps, p50 and p99 latency per run, the medians, the
# ratios netguard/dnsmasq and netguard/CoreDNS, each forwarder's CPU time
# per answered query (user + system, from /proc/PID/stat: the forwarder's
# own cost, which the machine's other load moves less than qps, since all
# share the cores with dnsperf and the upstream) and its peak memory under
# load (VmRSS and RssAnon from /proc/PID/status, sampled while dnsperf
# runs). Only loopback addresses are used.
#
# CoreDNS (module github.com/coredns/coredns, COREDNS_VERSION) is built once
# per machine by hack/coredns.sh; COREDNS=0 leaves it out. Latency comes
# from dnsperf -v (a line per query, which costs dnsperf CPU the forwarders
# would otherwise get); LATENCY=0 measures qps without it.
#
# NAMES is the number of distinct names asked in turn (100); NAMES=1 asks
# one name over and over, as nginx workers and a pod's processes often do
# at once: a forwarder that merges identical queries in flight gains there.
#
# Usage: hack/bench-dns.sh            (DURATION=10 CLIENTS=4 ROUNDS=3 NAMES=100)
# Needs: go, dnsperf, dnsmasq, dig.
set -euo pipefail

DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-4}
ROUNDS=${ROUNDS:-3}
NAMES=${NAMES:-100}
COREDNS=${COREDNS:-1}
LATENCY=${LATENCY:-1}
UPSTREAM_PORT=${UPSTREAM_PORT:-15300}
NETGUARD_PORT=${NETGUARD_PORT:-15301}
DNSMASQ_PORT=${DNSMASQ_PORT:-15302}
COREDNS_PORT=${COREDNS_PORT:-15303}

root=$(cd "$(dirname "$0")/.." && pwd)
dnsmasq_bin=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
for tool in go dnsperf dig "$dnsmasq_bin"; do
	command -v "$tool" >/dev/null || { echo "bench-dns: $tool is required" >&2; exit 1; }
done
coredns_bin=
if [ "$COREDNS" = 1 ]; then
	coredns_bin=$("$root/hack/coredns.sh")
fi

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

for i in $(seq 1 "$NAMES"); do echo "host$i.upstream.test A"; done >"$work/queries"

declare -A port pid
"$work/dnsupstream" -listen "127.0.0.1:$UPSTREAM_PORT" &
pids+=($!)
"$work/netguard" dns-proxy --listen "127.0.0.1:$NETGUARD_PORT" --upstream "127.0.0.1:$UPSTREAM_PORT" \
	--cache-size 0 --metrics-bind-address 0 2>"$work/netguard.log" &
pids+=($!) pid[netguard]=$! port[netguard]=$NETGUARD_PORT
"$dnsmasq_bin" --keep-in-foreground --no-resolv --no-hosts --user=root --pid-file= \
	--listen-address=127.0.0.1 --bind-interfaces --port="$DNSMASQ_PORT" \
	--server="127.0.0.1#$UPSTREAM_PORT" --cache-size=0 2>"$work/dnsmasq.log" &
pids+=($!) pid[dnsmasq]=$! port[dnsmasq]=$DNSMASQ_PORT
targets="netguard dnsmasq"
if [ -n "$coredns_bin" ]; then
	# forward only: no cache plugin, as the others run without a cache.
	cat >"$work/Corefile" <<-EOF
	.:$COREDNS_PORT {
	    bind 127.0.0.1
	    forward . 127.0.0.1:$UPSTREAM_PORT
	}
	EOF
	"$coredns_bin" -conf "$work/Corefile" -quiet >"$work/coredns.log" 2>&1 &
	pids+=($!) pid[coredns]=$! port[coredns]=$COREDNS_PORT
	targets="$targets coredns"
fi

for p in "$UPSTREAM_PORT" "${port[@]}"; do
	ok=
	for _ in $(seq 1 50); do
		if [ "$(dig +short +time=1 +tries=1 -p "$p" @127.0.0.1 host1.upstream.test A 2>/dev/null)" = "198.51.100.1" ]; then ok=1; break; fi
		sleep 0.1
	done
	[ -n "$ok" ] || { echo "bench-dns: nothing answers on 127.0.0.1:$p" >&2; cat "$work"/*.log >&2; exit 1; }
done

# Something else may hold a port and answer in place of a forwarder that
# could not bind it.
for t in $targets; do
	kill -0 "${pid[$t]}" 2>/dev/null || { echo "bench-dns: $t exited at start; is its port in use?" >&2; cat "$work"/*.log >&2; exit 1; }
done

# memory PID OUT: samples VmRSS and RssAnon (kB) of PID until killed and
# writes the peaks to OUT.
memory() {
	local rss=0 anon=0 r a
	trap 'echo "$rss $anon" >"$2"; exit 0' TERM
	while :; do
		r=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0)
		a=$(awk '/^RssAnon:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0)
		[ "${r:-0}" -gt "$rss" ] && rss=$r
		[ "${a:-0}" -gt "$anon" ] && anon=$a
		sleep 0.2
	done
}

# percentile P FILE: the P-th percentile, in ms, of dnsperf -v latencies.
percentile() {
	awk '/^> / {print $NF}' "$2" | sort -g | awk -v p="$1" '{v[NR]=$1} END {if (NR == 0) {print "nan"; exit} i=int(NR*p/100); if (i < 1) i=1; printf "%.3f", v[i]*1000}'
}

mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# cputicks PID: user + system CPU time of PID, in clock ticks.
cputicks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# run NAME PORT [PID]: one dnsperf run; prints
# "qps p50_ms p99_ms lost rss_kB anon_kB cpu_us_per_query".
run() {
	local out="$work/$1.out" mem="$work/$1.mem" sampler= ticks=
	if [ -n "${3:-}" ]; then
		memory "$3" "$mem" &
		sampler=$!
		ticks=$(cputicks "$3")
	fi
	local verbose=
	[ "$LATENCY" = 1 ] && verbose=-v
	dnsperf -s 127.0.0.1 -p "$2" -d "$work/queries" -c "$CLIENTS" -l "$DURATION" $verbose >"$out" 2>&1 || true
	local rss=- anon=- cpu=-
	local qps lost completed
	qps=$(awk '/Queries per second:/ {print $4}' "$out")
	lost=$(awk '/Queries lost:/ {print $3}' "$out")
	completed=$(awk '/Queries completed:/ {print $3}' "$out")
	if [ -n "$sampler" ]; then
		cpu=$(awk -v t="$(($(cputicks "$3") - ticks))" -v hz="$hz" -v q="${completed:-0}" 'BEGIN { printf "%.1f", q ? t * 1e6 / hz / q : 0 }')
		kill -TERM "$sampler" && wait "$sampler" || true
		read -r rss anon <"$mem"
	fi
	echo "${qps:-0} $(percentile 50 "$out") $(percentile 99 "$out") ${lost:-?} $rss $anon $cpu"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %-6s %10s %9s %9s %8s %10s %10s %10s\n' target round qps p50_ms p99_ms lost rss_MB anon_MB cpu_us/q
read -r up_qps up_p50 up_p99 up_lost _ _ _ < <(run upstream "$UPSTREAM_PORT")
printf '%-10s %-6s %10.0f %9s %9s %8s %10s %10s %10s\n' upstream - "$up_qps" "$up_p50" "$up_p99" "$up_lost" - - -
declare -A qpss p50s p99s cpus rss anon
for t in $targets; do rss[$t]=0 anon[$t]=0; done
for round in $(seq 1 "$ROUNDS"); do
	# Rotate which goes first, so none always gets the warmer machine.
	order=$(echo $targets | tr ' ' '\n' | awk -v r="$round" '{v[NR]=$0} END {for (i = 0; i < NR; i++) print v[(i + r - 1) % NR + 1]}')
	for t in $order; do
		read -r qps p50 p99 lost r a c < <(run "$t" "${port[$t]}" "${pid[$t]}")
		printf '%-10s %-6s %10.0f %9s %9s %8s %10s %10s %10s\n' "$t" "$round" "$qps" "$p50" "$p99" "$lost" "$(mb "$r")" "$(mb "$a")" "$c"
		qpss[$t]+="$qps " p50s[$t]+="$p50 " p99s[$t]+="$p99 " cpus[$t]+="$c "
		[ "$r" -gt "${rss[$t]}" ] && rss[$t]=$r
		[ "$a" -gt "${anon[$t]}" ] && anon[$t]=$a
	done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
declare -A mq m50 m99 mcpu
echo
printf '%-10s %10s %9s %9s %9s %12s %12s\n' median qps p50_ms p99_ms cpu_us/q peak_rss_MB peak_anon_MB
for t in $targets; do
	# shellcheck disable=SC2086
	mq[$t]=$(median ${qpss[$t]}) m50[$t]=$(median ${p50s[$t]}) m99[$t]=$(median ${p99s[$t]}) mcpu[$t]=$(median ${cpus[$t]})
	printf '%-10s %10.0f %9.3f %9.3f %9.1f %12s %12s\n' "$t" "${mq[$t]}" "${m50[$t]}" "${m99[$t]}" "${mcpu[$t]}" "$(mb "${rss[$t]}")" "$(mb "${anon[$t]}")"
done
echo
for t in $targets; do
	[ "$t" = netguard ] && continue
	awk -v t="$t" -v nq="${mq[netguard]}" -v tq="${mq[$t]}" -v n50="${m50[netguard]}" -v t50="${m50[$t]}" \
		-v n99="${m99[netguard]}" -v t99="${m99[$t]}" -v nc="${mcpu[netguard]}" -v tc="${mcpu[$t]}" 'BEGIN {
		printf "ratio netguard/%-8s qps %.2f   p50 %.2f   p99 %.2f   cpu/query %.2f\n", t, nq/tq, n50/t50, n99/t99, nc/tc
	}'
done
echo "command: dnsperf -s 127.0.0.1 -p PORT -d QUERIES -c $CLIENTS -l $DURATION$([ "$LATENCY" = 1 ] && echo " -v"); $NAMES distinct names; $ROUNDS rounds, cache off on all, upstream test/bench/dnsupstream on 127.0.0.1:$UPSTREAM_PORT"
