#!/usr/bin/env bash
# Prints what each failed test printed, from `go test` logs (with or
# without -v), so that the reason for a red run is at its end: a failing
# part of the real-node suite is followed by minutes of other parts and by
# the node's logs, far from where its messages scrolled by.
#
# usage: hack/failed-tests.sh LOG...
set -euo pipefail
awk '
# -v: "=== RUN   TestX/part" (also NAME, CONT, PAUSE) says whose output follows.
/^=== (RUN|NAME|CONT|PAUSE) / { current = $3; under_fail = ""; next }
# A result line. Without -v the failed test'"'"'s messages follow it, one
# level deeper.
/^ *--- (FAIL|PASS|SKIP): / {
	name = $3
	if ($2 == "FAIL:") {
		if (!(name in failed)) { order[++n] = name }
		failed[name] = 1
		under_fail = name
		match($0, /^ */); fail_indent = RLENGTH
	} else {
		under_fail = ""
	}
	next
}
/^(FAIL|ok|PASS)\>/ { current = ""; under_fail = ""; next }
/^panic: / { panics = panics $0 "\n"; in_panic = 20; next }
in_panic > 0 { panics = panics $0 "\n"; in_panic--; next }
{
	owner = current
	if (under_fail != "") {
		match($0, /^ */)
		if (RLENGTH > fail_indent) { owner = under_fail } else { under_fail = "" }
	}
	if (owner != "" && $0 ~ /^ /) {
		count[owner]++
		if (count[owner] <= 40) { out[owner] = out[owner] $0 "\n" }
	}
}
END {
	if (n == 0 && panics == "") { exit }
	print "==> What the failed tests printed"
	for (i = 1; i <= n; i++) {
		name = order[i]
		if (!(name in out)) { continue }
		print "--- FAIL: " name
		printf "%s", out[name]
		if (count[name] > 40) { print "    … " count[name] - 40 " more lines in the log above" }
	}
	if (panics != "") { printf "%s", panics }
}' "$@"
