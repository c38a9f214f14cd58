#!/usr/bin/env bash
# tests/mutation/run.sh - mutation testing: apply each planted defect
# (tests/mutation/NN-*.patch) to a scratch copy of the tree, build it and
# check that the test suite fails.  Run before a release, not in CI (each
# mutant is a full build and test run).
#
#   tests/mutation/run.sh                 every mutant, the whole suite
#                                         (ctest -LE soak)
#   tests/mutation/run.sh 01 03           only these mutants
#   QUICK=1 tests/mutation/run.sh         only the tests LIST names for
#                                         each mutant (ctest -R)
#   VARIANT=asan tests/mutation/run.sh    clang + ASan/UBSan instead of gcc
#
#   CHECK=1 tests/mutation/run.sh         only check that each patch still
#                                         applies (git apply --check, no
#                                         fuzz); no build.  CTest runs this
#                                         as mutation_patches_apply (label
#                                         unit): a stale patch fails make test
#
# QUICK builds only the programs of the tests it runs.  Exit status 77
# (skipped) outside a git checkout.
#
# Prints, per mutant: CAUGHT (the suite failed, with the failing tests),
# SURVIVED (the suite passed: a gap in the tests), STALE (the patch no
# longer applies: refresh it) or BROKEN (it applies but does not build).
# Exit status 1 if any mutant survived, is stale or broken.  Scratch copies
# go to ${MUTATION_DIR:-/tmp/vmmu-mutation}.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
list="$root/tests/mutation/LIST"
scratch=${MUTATION_DIR:-/tmp/vmmu-mutation}
jobs=${JOBS:-2}
variant=${VARIANT:-gcc}
case "$variant" in
gcc) cmake_args=(-DCMAKE_C_COMPILER=gcc) ;;
asan) cmake_args=(-DCMAKE_C_COMPILER=clang -DVMMU_SANITIZE=address -DVMMU_FUZZ=OFF) ;;
tsan) cmake_args=(-DCMAKE_C_COMPILER=clang -DVMMU_SANITIZE=thread) ;;
*) echo "run.sh: VARIANT is gcc, asan or tsan" >&2; exit 2 ;;
esac

# The patches are git diffs applied with git: outside a git checkout of
# the tree there is nothing to check (77: skipped, for CTest).
if [[ "$(git -C "$root" rev-parse --show-toplevel 2>/dev/null)" != "$root" ]]; then
	echo "run.sh: $root is not a git checkout: skipped"
	exit 77
fi

status=0
while IFS='|' read -r id patch tests what; do
	[[ -z "$id" || "$id" == \#* ]] && continue
	id=$(echo "$id" | xargs); patch=$(echo "$patch" | xargs); tests=$(echo "$tests" | xargs)
	if (($# > 0)); then
		want=0
		for a in "$@"; do [[ "$a" == "$id" ]] && want=1; done
		((want)) || continue
	fi
	# Strict: no fuzz (a patch applied with fuzz may plant its defect in
	# the wrong place); offsets are fine.
	if ! (cd "$root" && git apply --check "tests/mutation/$patch") >/dev/null 2>&1; then
		echo "mutation $id: STALE   $patch no longer applies to this tree: refresh it" \
			"(git apply --check tests/mutation/$patch)"
		status=1
		continue
	fi
	if [[ "${CHECK:-0}" == 1 ]]; then
		echo "mutation $id: applies $patch"
		continue
	fi
	dir="$scratch/$id"
	rm -rf "$dir"
	mkdir -p "$dir"
	# The working tree as it is (tracked files), without build trees.
	(cd "$root" && git ls-files -z | xargs -0 cp --parents -t "$dir")
	if ! (cd "$dir" && git apply "$root/tests/mutation/$patch") >"$dir/patch.log" 2>&1; then
		echo "mutation $id: STALE   $patch does not apply to the copy ($dir/patch.log)"
		status=1
		continue
	fi
	# A mutant that does not build tests nothing: the patch is broken.
	# QUICK builds only the programs of the tests it runs (a test's program
	# is its name without _global); anything else builds everything.
	targets=()
	if [[ "${QUICK:-0}" == 1 && -n "$tests" ]] &&
		cmake -S "$dir" -B "$dir/build" -G Ninja "${cmake_args[@]}" >"$dir/build.log" 2>&1; then
		while read -r t; do
			targets+=("${t%_global}")
		done < <(cd "$dir/build" && ctest -N -R "${tests//,/|}" |
			sed -n 's/^ *Test *#[0-9]*: *\([^ ]*\).*/\1/p' | sort -u)
		if ((${#targets[@]})) && cmake --build "$dir/build" -j "$jobs" --target \
			$(printf '%s\n' "${targets[@]}" | sort -u) >>"$dir/build.log" 2>&1; then
			:
		else
			targets=()
		fi
	fi
	if ((${#targets[@]} == 0)) &&
		{ ! cmake -S "$dir" -B "$dir/build" -G Ninja "${cmake_args[@]}" >"$dir/build.log" 2>&1 ||
		! cmake --build "$dir/build" -j "$jobs" >>"$dir/build.log" 2>&1; }; then
		echo "mutation $id: BROKEN  $patch applies but does not build: fix the patch ($dir/build.log)"
		status=1
		continue
	fi
	filter=()
	[[ "${QUICK:-0}" == 1 && -n "$tests" ]] && filter=(-R "${tests//,/|}")
	start=$SECONDS
	if (cd "$dir/build" &&
		ctest -j"$jobs" -LE soak "${filter[@]}" --timeout 300 >"$dir/test.log" 2>&1); then
		echo "mutation $id: SURVIVED $what ($((SECONDS - start)) s; expected: $tests)"
		status=1
	else
		failed=$(sed -n 's/^[[:space:]]*[0-9]* - \([^ ]*\) .*/\1/p' "$dir/test.log" | tr '\n' ' ')
		echo "mutation $id: CAUGHT  $what ($((SECONDS - start)) s) by: $failed"
	fi
done <"$list"
exit $status
