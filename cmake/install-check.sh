#!/usr/bin/env bash
# install-check.sh BUILD_DIR: install vmmu into temporary prefixes and use it
# from outside the tree, against the installed files only:
#  1. DESTDIR=... PREFIX=/usr/local lays out every file under DESTDIR;
#  2. PREFIX=<tmp>: one example built with `pkg-config --cflags --libs
#     vmmu-hw`, one with find_package(vmmu CONFIG) (shared and static), and
#     run; the programs must load the installed libvmmu*.so.
# `make install-check` runs it; .ci/run calls that.
set -euo pipefail

build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
step() { printf '\n--- install-check: %s\n' "$*"; }

# Nothing from the source tree may leak in through the environment.
unset CPATH C_INCLUDE_PATH LIBRARY_PATH LD_LIBRARY_PATH PKG_CONFIG_PATH CMAKE_PREFIX_PATH

step "DESTDIR=$tmp/dest, prefix /usr/local"
DESTDIR="$tmp/dest" cmake --install "$build" --prefix /usr/local >/dev/null
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$build/CMakeCache.txt")
d="$tmp/dest/usr/local"
for f in "$libdir/libvmmu.so.0.1" "$libdir/libvmmu.so" "$libdir/libvmmu.a" \
	"$libdir/libvmmu_hw.so.0.1" "$libdir/libvmmu_hw.a" \
	include/vmmu/vmmu.h include/vmmu/hw.h include/vmmu/hostmem.h \
	bin/vmmu-perf share/man/man1/vmmu-perf.1 \
	"$libdir/pkgconfig/vmmu.pc" "$libdir/pkgconfig/vmmu-hw.pc" \
	"$libdir/cmake/vmmu/vmmuConfig.cmake" "$libdir/cmake/vmmu/vmmuConfigVersion.cmake" \
	"$libdir/cmake/vmmu/vmmuTargets.cmake"; do
	if [[ ! -e "$d/$f" ]]; then
		echo "install-check: $f not installed under DESTDIR" >&2
		exit 1
	fi
done
echo "all files in place under $d"
if grep -rlF -e "$src" -e "$build" "$d/$libdir/pkgconfig" "$d/$libdir/cmake"; then
	echo "install-check: installed files name the source or build tree" >&2
	exit 1
fi
if [[ -z "$(find "$tmp/dest" -path "$tmp/dest/usr/local" -prune -o -type f -print)" ]]; then
	echo "nothing written outside DESTDIR/usr/local"
fi

prefix="$tmp/prefix"
step "PREFIX=$prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
mkdir "$tmp/app"
cp "$src/examples/map_and_touch.c" "$src/examples/prefault.c" "$tmp/app/"

step "pkg-config --cflags --libs vmmu-hw: map_and_touch"
export PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig"
flags=$(pkg-config --cflags --libs vmmu-hw)
echo "pkg-config: $flags"
# shellcheck disable=SC2086
cc -std=gnu11 -Wall -Wextra -Werror -o "$tmp/app/map_and_touch" "$tmp/app/map_and_touch.c" $flags
ldd "$tmp/app/map_and_touch" | grep -E 'libvmmu' || true
LD_LIBRARY_PATH="$prefix/$libdir" ldd "$tmp/app/map_and_touch" | grep -qF "$prefix/$libdir/libvmmu_hw.so.0.1"
LD_LIBRARY_PATH="$prefix/$libdir" "$tmp/app/map_and_touch"

step "find_package(vmmu CONFIG): prefault, shared and static"
cp "$src/examples/installed/CMakeLists.txt" "$tmp/app/"
cmake -S "$tmp/app" -B "$tmp/app/build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
	-DEXAMPLE_SOURCE="$tmp/app/prefault.c" >/dev/null
cmake --build "$tmp/app/build"
LD_LIBRARY_PATH="$prefix/$libdir" "$tmp/app/build/example_shared" >/dev/null
echo "example_shared (vmmu::vmmu_hw) ran"
if ldd "$tmp/app/build/example_static" | grep -q libvmmu; then
	echo "install-check: example_static loads a shared libvmmu" >&2
	exit 1
fi
"$tmp/app/build/example_static" >/dev/null
echo "example_static (vmmu::vmmu_hw_static) ran"

step "ok"
