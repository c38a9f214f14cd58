#!/usr/bin/env bash
# check-compare.sh VMMU_PERF DIR: `vmmu-perf compare A.json B.json` on two
# populate runs that differ in their vCPU count: the configuration change
# and every metric, floor and ratio of both are printed; a file that is not
# JSON is an error.
set -euo pipefail

perf=$1 dir=$2
rm -rf "$dir"
mkdir -p "$dir"
"$perf" populate -v 2 -b 4M --json "$dir/a.json" >/dev/null
"$perf" populate -v 1 -b 4M --json "$dir/b.json" >/dev/null
"$perf" compare "$dir/a.json" "$dir/b.json" | tee "$dir/out.txt"
grep -q '^  vcpus: 2 -> 1$' "$dir/out.txt"
for name in 'Populate memory time' 'Walk floor time' 'Ratio populate / walk floor'; do
	grep -q "^$name " "$dir/out.txt" || { echo "check-compare: no '$name' row" >&2; exit 1; }
done
grep -q 'figures changed by' "$dir/out.txt"
# compare's own --json, and a broken input.
"$perf" compare "$dir/a.json" "$dir/a.json" --json "$dir/c.json" >/dev/null
jq -e '.metrics["figures changed"].median == 0' "$dir/c.json" >/dev/null
echo '{"metrics": {' >"$dir/bad.json"
if "$perf" compare "$dir/a.json" "$dir/bad.json" 2>"$dir/err.txt"; then
	echo "check-compare: a broken file was accepted" >&2
	exit 1
fi
grep -q 'bad.json' "$dir/err.txt"
echo "check-compare: ok"
