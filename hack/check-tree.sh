#!/usr/bin/env bash
# Fails when the repository tracks a built executable or a file over 1 MiB:
# build outputs belong in bin/ (ignored), large test data in caches.
#
# Executables are recognised by content (ELF, Mach-O, PE and Java class
# magic numbers, whatever the file mode) and by mode (an executable file
# must be a script starting with "#!").
set -euo pipefail
cd "$(dirname "$0")/.."

max=$((1024 * 1024))
bad=0
while IFS= read -r -d '' entry; do
	mode=${entry%% *}
	path=${entry#*$'\t'}
	[ -f "$path" ] || continue # deleted in the work tree
	size=$(stat -c %s "$path")
	if [ "$size" -gt "$max" ]; then
		echo "check-tree: $path is $size bytes; tracked files must stay under 1 MiB" >&2
		bad=1
	fi
	magic=$(head -c 4 "$path" | od -An -tx1 | tr -d ' \n')
	case "$magic" in
	7f454c46 | cefaedfe | cffaedfe | feedface | feedfacf | cafebabe | 4d5a*)
		echo "check-tree: $path is a compiled executable (magic $magic); build outputs must not be tracked" >&2
		bad=1
		continue
		;;
	esac
	if [ "$mode" = 100755 ] && [ "$(head -c 2 "$path")" != '#!' ]; then
		echo "check-tree: $path is executable but not a script (no #! line)" >&2
		bad=1
	fi
done < <(git ls-files -s -z)
exit "$bad"
