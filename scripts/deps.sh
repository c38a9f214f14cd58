#!/usr/bin/env bash
# Install the Debian packages vmmu needs to build, test and measure.
#
# Quiet when everything is there.  Otherwise, as root: `apt-get update` once,
# then installs what is missing.  Not root: uses `sudo -n` when it works
# without a password, else prints the exact command and exits 1.
# VMMU_SKIP_DEPS=1 skips the check (e.g. on a non-Debian system).
set -euo pipefail

PACKAGES=(
	build-essential    # gcc, make, libc headers
	cmake
	ninja-build
	pkg-config
	liburcu-dev        # liburcu-memb, liburcu-cds
	libcmocka-dev      # unit/stress/soak tests
	systemtap-sdt-dev  # <sys/sdt.h> static probes
	clang              # sanitizer builds and libFuzzer
	libclang-rt-14-dev # ASan/UBSan/TSan/libFuzzer runtimes for clang 14
	llvm               # llvm-symbolizer for sanitizer stack traces
	clang-format       # make format
	gnuplot-nox        # vmmu-perf plots
	jq                 # tests: the JSON of vmmu-perf tour / compare
	valgrind
)

if [[ "${VMMU_SKIP_DEPS:-0}" == 1 ]]; then
	exit 0
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
	echo "deps.sh: not a Debian system (no dpkg-query); install by hand:" >&2
	echo "  ${PACKAGES[*]}" >&2
	exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	if [[ "$status" != "install ok installed" ]]; then
		missing+=("$pkg")
	fi
done

if ((${#missing[@]} == 0)); then
	exit 0
fi

install_cmd=(apt-get install -y --no-install-recommends "${missing[@]}")
echo "deps.sh: missing Debian packages: ${missing[*]}" >&2

if [[ $(id -u) -eq 0 ]]; then
	apt-get update
	DEBIAN_FRONTEND=noninteractive "${install_cmd[@]}"
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	sudo -n apt-get update
	sudo -n env DEBIAN_FRONTEND=noninteractive "${install_cmd[@]}"
else
	echo "deps.sh: run this, then try again:" >&2
	echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive ${install_cmd[*]}" >&2
	exit 1
fi
