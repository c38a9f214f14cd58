#!/usr/bin/env bash
# check-tour.sh VMMU_PERF OUTDIR: `vmmu-perf tour --quick` runs, prints its
# table, writes the report, and its JSON parses and has every row: each seed
# of the tour with status "ok" (every row is built now), numbers where the
# row ran.
set -euo pipefail

perf=$1 out=$2
rm -rf "$out"
"$perf" tour --quick -o "$out" --json "$out/tour-stdout.json" >"$out.txt"
cat "$out.txt"
grep -q '^| seed | experiment |' "$out.txt"
test -s "$out/report.md"
for f in tour.json tour-stdout.json; do
	jq -e '
	  (.experiment == "tour") and (.status == 0) and
	  ([.rows[].seed] | sort | unique) == ["-", "000", "001", "002", "003", "004"] and
	  (.rows | length) >= 9 and
	  all(.rows[]; .status == "ok" or .status == "not built") and
	  all(.rows[] | select(.status == "ok"); (.value | type) == "number" and
	      (.floor_ratio | type) == "number" and .floor_ratio > 0) and
	  ([.rows[] | select(.status == "not built")] | length) == 0 and
	  all(.runs[]; .status == 0) and
	  (.ratios | length) >= 14
	' "$out/$f" >/dev/null || {
		echo "check-tour: $f lacks a row or a figure:" >&2
		jq '.rows' "$out/$f" >&2
		exit 1
	}
done
# Every run's own JSON is there and parses.
for j in "$out"/*.json; do
	jq -e '.tool == "vmmu-perf" and (.metrics | type) == "object"' "$j" >/dev/null
done
echo "check-tour: ok ($(jq '.rows | length' "$out/tour.json") rows)"
