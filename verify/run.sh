#!/usr/bin/env bash
# verify/run.sh - check verify/mmu.pml with Spin (`make verify` runs this).
#
# Every configuration of the fixed model must verify with no error; every
# mutant (a rule of DESIGN.md taken out) must produce a counterexample.
# Prints, for each run: states stored, seconds, and for mutants the depth
# of the counterexample and the length of its shortest trail (pan -i).
# Work files go to $VERIFY_DIR (default build-verify/).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${VERIFY_DIR:-$root/build-verify}
mkdir -p "$dir"
cp "$root/verify/mmu.pml" "$dir/"
cd "$dir"

# name | -D flags | expect (ok / fail)
runs=(
	"zap+zap/harvest|-DNOPS=3 -DNO_UNLINK -DNO_AGING|ok"
	"zap+zap/harvest+aging|-DNOPS=2 -DNO_UNLINK|ok"
	"zap+unlink+rcu|-DNOPS=3 -DNO_AGING -DNO_SECOND|ok"
	"zap/harvest+unlink+rcu|-DNOPS=3 -DNO_AGING -DNO_ZAPPER|ok"
	"MUT_SKIP_FROZEN|-DNOPS=3 -DNO_UNLINK -DNO_AGING -DMUT_SKIP_FROZEN|fail"
	"MUT_NO_HARVEST_FLUSH|-DNOPS=2 -DNO_UNLINK -DMUT_NO_HARVEST_FLUSH|fail"
	"MUT_FREE_NOW|-DNOPS=3 -DNO_AGING -DNO_SECOND -DMUT_FREE_NOW|fail"
)

status=0
for r in "${runs[@]}"; do
	IFS='|' read -r name flags expect <<<"$r"
	rm -f mmu.pml.trail pan pan.*
	# shellcheck disable=SC2086
	spin -a $flags mmu.pml >/dev/null
	gcc -O2 -DCOLLAPSE -DSAFETY -DMEMLIM=2048 -o pan pan.c
	out=$(./pan -m200000 2>&1 || true)
	errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' <<<"$out")
	states=$(sed -n 's/^ *\([0-9]*\) states, stored.*/\1/p' <<<"$out")
	secs=$(sed -n 's/^pan: elapsed time \([0-9.e+]*\) seconds.*/\1/p' <<<"$out")
	line="$name: $states states, ${secs:-0} s"
	if [[ "$expect" == ok ]]; then
		if [[ "$errors" == 0 ]] && ! grep -q "search not completed\|out of memory" <<<"$out"; then
			echo "verify: OK    $line"
		else
			echo "verify: FAIL  $line (expected no error)"
			echo "$out"
			[[ -f mmu.pml.trail ]] && spin -t -p $flags mmu.pml | tail -40
			status=1
		fi
	else
		if [[ "${errors:-0}" != 0 && -f mmu.pml.trail ]]; then
			what=$(grep -m1 "assertion violated" <<<"$out" | sed 's/^pan:1: //')
			# shortest counterexample: iterative deepening
			short=$(./pan -m200000 -i 2>&1 || true)
			# each shorter trail found lowers the bound to its depth
			depth=$( (sed -n 's/.*at depth \([0-9]*\).*/\1/p' <<<"$short"
				  sed -n 's/.*reducing search depth to \([0-9]*\).*/\1/p' <<<"$short") |
				sort -n | head -1)
			# shellcheck disable=SC2086
			steps=$(spin -t -p $flags mmu.pml 2>/dev/null | grep -c '^ *[0-9]*:	proc' || true)
			cp mmu.pml.trail "$name.trail"
			echo "verify: OK    $line; counterexample found: $what;" \
				"shortest trail: depth $depth, $steps statements ($dir/$name.trail)"
		else
			echo "verify: FAIL  $line (mutant $name not caught)"
			status=1
		fi
	fi
done
exit $status
