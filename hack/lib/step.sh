# shellcheck shell=bash
# Progress a user can follow for the long steps of a first run (Debian
# packages, Go modules, the Kubernetes, helm, promtool and CoreDNS builds),
# instead of the hundreds of lines `apt-get` and `go` print. Source it:
#
#   . "$(dirname "$0")/lib/step.sh"
#   step "Building kube-apiserver v1.37.2 (first run only, about 5 min)" ./k8s-build.sh ...
#   step_cached "kube-apiserver v1.37.2"
#
# step WHAT COMMAND... prints to stderr one line when COMMAND starts
# (WHAT: what it does and how long it is expected to take), a line every
# NETGUARD_STEP_HEARTBEAT seconds (60; 0 for none) while it runs ("still
# building kube-apiserver v1.37.2, 3 min so far"), and one line with the
# time it took when it ends. COMMAND's output, stdout and stderr, goes to a
# log file under ~/.cache/netguard/logs (XDG_CACHE_HOME), removed when
# COMMAND succeeds (the logs of failed or interrupted steps after a week).
# When COMMAND fails, step prints the last 40 lines of the log and the
# log's path to stderr and returns COMMAND's exit status: under `set -e`
# the script stops there, with the error in sight.
#
# COMMAND runs in a subshell with `set -e` (a shell function stops at its
# first failing command, unless step itself is called in a condition,
# where bash ignores set -e), its stdin from /dev/null (hidden output
# cannot ask a question nobody sees). Nothing is printed on stdout, so
# scripts whose stdout is a path stay clean. NETGUARD_VERBOSE=1 shows
# COMMAND's output as it comes (on stderr) instead of a log.
#
# step_cached WHAT prints one line saying WHAT is already there.
#
# apt_install PACKAGE..., step_go_modules and step_go_build (with
# go_to_compile) are the steps several scripts share.

step_cached() {
	echo "==> $1: cached" >&2
}

# apt_install PACKAGE...: apt-get update, then install PACKAGEs without
# their recommendations; a command for step.
apt_install() {
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "$@"
}

# step_go_modules: in the repository, downloads ($GO, or go) the Go
# modules netguard needs when some are not in the module cache, so that go
# build, run, vet and test print no "go: downloading" lines. 100 MB of
# modules: 7-19 s on a fast link, measured with an empty GOMODCACHE.
step_go_modules() {
	GOPROXY=off "${GO:-go}" mod download >/dev/null 2>&1 && return 0
	step "Downloading netguard's Go modules (first run only, about 30 s)" "${GO:-go}" mod download
}

# step_go_build WHAT [FLAG...] PACKAGE...: go build ($GO, or go), as a step
# (WHAT) when most of it is still to compile (an empty Go build cache: the
# first run), as a plain go build otherwise (a few packages changed:
# seconds, and the compiler's errors as they come). netguard and its
# dependencies are about 1,000 packages: 250 s of CPU, measured with an
# empty GOCACHE.
step_go_build() {
	local what=$1
	shift
	if [ "$(go_to_compile "$@")" -gt 100 ]; then
		step "$what" "${GO:-go}" build "$@"
	else
		"${GO:-go}" build "$@"
	fi
}

# go_to_compile [FLAG...] PACKAGE...: how many packages `go build` would
# compile, the others being in the Go build cache.
go_to_compile() {
	"${GO:-go}" build -n "$@" 2>&1 | grep -c '/compile ' || true
}

step() {
	local what=$1 name start rc=0 log= dir hb_fd hb_pid
	shift
	name=${what%% (*} # without "(first run only, ...)"
	printf -v start '%(%s)T' -1
	echo "==> $what" >&2
	if [ "${NETGUARD_VERBOSE:-0}" != 1 ]; then
		dir="${XDG_CACHE_HOME:-$HOME/.cache}/netguard/logs"
		if { mkdir -p "$dir" && log=$(mktemp "$dir/$(_step_slug "$name").XXXXXX.log"); } 2>/dev/null; then
			# What interrupted or failed steps left, after a week.
			find "$dir" -name '*.log' -mtime +7 -delete 2>/dev/null || true
		else
			log=$(mktemp --suffix .log) || return
		fi
	fi
	# COMMAND's status without `( ... ) || rc=$?`, since bash ignores set -e
	# inside the left side of ||.
	local errexit=
	case $- in *e*) errexit=1 ;; esac
	set +e
	if [ -z "$log" ]; then
		(
			set -e
			"$@"
		) </dev/null >&2
		rc=$?
	else
		# The heartbeat reads from a pipe only this shell writes to: it
		# ends when the pipe closes, when the step ends or this shell dies
		# (Ctrl-C, kill), so it never outlives the step. COMMAND does not
		# get the pipe, and the heartbeat keeps no stdout of the script's
		# (a $(...) reading it waits for every holder).
		exec {hb_fd}> >(
			exec >&2
			_step_heartbeat "$name" "$start" "${NETGUARD_STEP_HEARTBEAT:-60}"
		)
		hb_pid=$!
		(
			set -e
			"$@"
		) </dev/null >"$log" 2>&1 {hb_fd}>&-
		rc=$?
		exec {hb_fd}>&-
		wait "$hb_pid" 2>/dev/null
	fi
	[ -z "$errexit" ] || set -e
	local now
	printf -v now '%(%s)T' -1
	if [ "$rc" = 0 ]; then
		echo "    ${name}: done in $(_step_duration $((now - start)))" >&2
		[ -z "$log" ] || rm -f "$log"
		return 0
	fi
	{
		echo "    ${name}: FAILED after $(_step_duration $((now - start))) (exit status $rc)"
		if [ -s "$log" ]; then
			echo "    the last 40 lines of its output:"
			tail -n 40 "$log" | sed 's/^/    | /'
			echo "    full output: $log"
		elif [ -n "$log" ]; then
			echo "    it printed nothing"
			rm -f "$log"
		fi
	} >&2
	return "$rc"
}

# _step_heartbeat NAME START EVERY: a line every EVERY seconds until its
# stdin (the pipe from step) closes.
_step_heartbeat() {
	local name=$1 start=$2 every=$3 now
	if [ "$every" -le 0 ] 2>/dev/null; then
		while read -r _; do :; done
		return 0
	fi
	while :; do
		read -r -t "$every" _ && continue
		[ $? -gt 128 ] || return 0 # end of file: the step is over
		printf -v now '%(%s)T' -1
		echo "    still ${name,}, $(_step_minutes $((now - start))) so far"
	done
}

# _step_duration SECONDS: 42s, 4m 05s.
_step_duration() {
	if [ "$1" -lt 60 ]; then
		echo "${1}s"
	else
		printf '%dm %02ds\n' $(($1 / 60)) $(($1 % 60))
	fi
}

# _step_minutes SECONDS: 42 s, 3 min.
_step_minutes() {
	if [ "$1" -lt 60 ]; then echo "$1 s"; else echo "$(($1 / 60)) min"; fi
}

# _step_slug NAME: a file name for NAME's log.
_step_slug() {
	local s=${1,,}
	s=${s//[^a-z0-9.]/-}
	while [[ $s == *--* ]]; do s=${s//--/-}; done
	s=${s#-}
	s=${s:0:60}
	echo "${s%-}"
}
