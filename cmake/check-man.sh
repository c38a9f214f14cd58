#!/usr/bin/env bash
# check-man.sh PAGE VMMU_PERF: the man page formats without a groff warning,
# and names every experiment that `vmmu-perf --help` lists.
set -euo pipefail

page=$1 perf=$2
if ! command -v groff >/dev/null; then
	echo "groff not installed: skipped"
	exit 77
fi
warn=$(groff -man -ww -z "$page" 2>&1)
if [[ -n "$warn" ]]; then
	echo "$warn" >&2
	exit 1
fi
text=$(groff -man -Tascii -P-cbou "$page" 2>/dev/null)
status=0
for e in $("$perf" --help | awk '/^experiments:/ { on = 1; next } on { print $1 }'); do
	if ! grep -qw -- "$e" <<<"$text"; then
		echo "man page does not describe '$e'" >&2
		status=1
	fi
done
[[ $status == 0 ]] && echo "man page ok"
exit $status
