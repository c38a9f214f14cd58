#!/usr/bin/env bash
# check-exports.sh CC INCLUDE_DIR LIB.so [LIB.so...]
#
# The shared libraries export exactly the public API: every function that
# include/vmmu/*.h declares is defined and exported by one of the libraries,
# and nothing else is (no internal vmmu_* function, no helper without the
# prefix).  The list of declared functions is taken from the compiler
# (gcc -aux-info: the prototypes of a file including every public header),
# independently of the regex that generates the version script.
set -euo pipefail

cc=$1 incdir=$2
shift 2
libs=()
for l in "$@"; do
	[[ -n "$l" ]] && libs+=("$l")
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for h in "$incdir"/vmmu/*.h; do
	echo "#include <vmmu/$(basename "$h")>"
done >"$tmp/all.c"

if "$cc" -I"$incdir" -aux-info "$tmp/aux.txt" -c "$tmp/all.c" -o "$tmp/all.o" 2>/dev/null; then
	# /* include/vmmu/vmmu.h:548:NC */ extern int vmmu_vm_create (...);
	grep -F "$incdir/vmmu/" "$tmp/aux.txt" | grep -E '\*/ extern ' |
		grep -oE '\b[A-Za-z_][A-Za-z0-9_]* \(' | sed 's/ ($//' | sort -u >"$tmp/declared"
	how="gcc -aux-info"
else
	# Not gcc: the preprocessed headers, every vmmu_* name before "(".
	"$cc" -I"$incdir" -E -P "$tmp/all.c" | tr '\n' ' ' |
		grep -oE '\bvmmu_[A-Za-z0-9_]*[[:space:]]*\(' | sed 's/[[:space:]]*($//' |
		sort -u >"$tmp/declared"
	how="the preprocessor"
fi

: >"$tmp/exported"
for l in "${libs[@]}"; do
	# Defined dynamic symbols, without the version suffix and the version
	# node itself (type A).
	nm -D --defined-only "$l" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' |
		sort -u >"$tmp/one"
	dup=$(comm -12 "$tmp/exported" "$tmp/one")
	if [[ -n "$dup" ]]; then
		echo "exported by two libraries: $dup" >&2
		exit 1
	fi
	sort -u "$tmp/exported" "$tmp/one" -o "$tmp/exported"
	printf '%s: %d symbols\n' "$(basename "$l")" "$(wc -l <"$tmp/one")"
done

printf '%d functions declared in %s/vmmu/*.h (by %s), %d exported\n' \
	"$(wc -l <"$tmp/declared")" "$incdir" "$how" "$(wc -l <"$tmp/exported")"
extra=$(comm -13 "$tmp/declared" "$tmp/exported")
missing=$(comm -23 "$tmp/declared" "$tmp/exported")
status=0
if [[ -n "$extra" ]]; then
	echo "exported but not declared in a public header:" >&2
	echo "$extra" | sed 's/^/  /' >&2
	status=1
fi
if [[ -n "$missing" ]]; then
	echo "declared in a public header but not exported (not defined?):" >&2
	echo "$missing" | sed 's/^/  /' >&2
	status=1
fi
[[ $status == 0 ]] && echo "exports match the public headers"
exit $status
