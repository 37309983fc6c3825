#!/usr/bin/env bash
# Finds what a test run left behind on the machine.
#
#   hack/leftovers.sh snapshot DIR   record the machine's state before the run
#   hack/leftovers.sh check DIR      compare with it after the run; exit 1 and
#                                    name each leftover, else exit 0
#
# Compared: network namespaces, network interfaces and iptables/ip6tables
# rules of the root namespace, mounts, the sysctls the tests and a node
# touch, and entries in the temporary directory. Processes are found by the
# marker NETGUARD_TEST_RUN=<id> in their environment, which every process
# the run starts inherits (set it before the run; check then needs it set to
# the same value): any such process still alive, except this script and its
# ancestors, is a leftover, wherever it was reparented to.
set -euo pipefail

sysctls=(
	net.ipv4.ip_forward net.ipv6.conf.all.forwarding
	net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
	net.ipv4.conf.all.route_localnet net.ipv4.ip_unprivileged_port_start
	net.ipv4.ip_local_port_range net.netfilter.nf_conntrack_max
	vm.overcommit_memory kernel.panic kernel.panic_on_oops
)

tmp=${TMPDIR:-/tmp}

state() {
	local dir=$1
	ip netns list 2>/dev/null | awk '{print $1}' | sort >"$dir/netns"
	ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | sort >"$dir/links"
	{
		for cmd in iptables-save ip6tables-save; do
			command -v "$cmd" >/dev/null || continue
			"$cmd" 2>/dev/null | sed -e 's/\[[0-9]*:[0-9]*\]//' -e '/^#/d' -e "s/^/$cmd: /"
		done
	} | sort >"$dir/rules"
	awk '{print $5}' /proc/self/mountinfo | sort >"$dir/mounts"
	for s in "${sysctls[@]}"; do
		printf '%s = %s\n' "$s" "$(sysctl -n "$s" 2>/dev/null | tr -s '\t ' ' ' || echo absent)"
	done >"$dir/sysctls"
	# Caches of the Go tool and of the kernel come and go by themselves.
	find "$tmp" -mindepth 1 -maxdepth 1 ! -name 'go-build*' ! -name 'go-link-*' \
		! -name '.X*' ! -name 'systemd-private-*' -printf '%f\n' 2>/dev/null | sort >"$dir/tmp"
}

# marked prints "PID COMMAND" of live processes carrying the run's marker,
# other than this script and its ancestors.
marked() {
	local marker="NETGUARD_TEST_RUN=$1" pid skip=" "
	pid=$BASHPID
	while [ "$pid" -gt 1 ]; do
		skip+="$pid "
		pid=$(awk '/^PPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 1)
	done
	for env in /proc/[0-9]*/environ; do
		pid=${env#/proc/}
		pid=${pid%/environ}
		case "$skip" in *" $pid "*) continue ;; esac
		if { tr '\0' '\n' <"$env"; } 2>/dev/null | grep -qxF "$marker"; then
			# Children of this script (the pipeline above) are gone by now;
			# a short-lived reader may still match: check it still lives.
			[ -d "/proc/$pid" ] || continue
			echo "$pid $({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | cut -c1-160)"
		fi
	done
}

case "${1:-}" in
snapshot)
	mkdir -p "$2"
	state "$2"
	;;
check)
	before=$2
	after=$before/after
	mkdir -p "$after"
	trap 'rm -rf "$after"' EXIT
	state "$after"
	found=0
	for what in netns links rules mounts sysctls tmp; do
		added=$(comm -13 "$before/$what" "$after/$what")
		removed=$(comm -23 "$before/$what" "$after/$what")
		case $what in
		netns) label="network namespace" ;;
		links) label="network interface" ;;
		rules) label="iptables rule" ;;
		mounts) label="mount" ;;
		sysctls) label="sysctl" ;;
		tmp) label="temporary file" ;;
		esac
		if [ -n "$added" ]; then
			found=1
			while IFS= read -r line; do echo "leftover $label: $line"; done <<<"$added"
		fi
		# A sysctl that changed shows up as added and removed; a rule or
		# an interface that went missing was taken away by the run.
		if [ -n "$removed" ] && [ "$what" != tmp ] && [ "$what" != sysctls ]; then
			found=1
			while IFS= read -r line; do echo "removed $label: $line"; done <<<"$removed"
		fi
	done
	if [ -n "${NETGUARD_TEST_RUN:-}" ]; then
		procs=$(marked "$NETGUARD_TEST_RUN")
		if [ -n "$procs" ]; then
			found=1
			while IFS= read -r line; do echo "leftover process: $line"; done <<<"$procs"
		fi
	fi
	if [ "$found" = 0 ]; then
		echo "leftovers: none (processes, network namespaces, interfaces, iptables rules, mounts, sysctls, temporary files)"
	fi
	exit "$found"
	;;
*)
	echo "usage: $0 snapshot DIR | check DIR" >&2
	exit 2
	;;
esac
