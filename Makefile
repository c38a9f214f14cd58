# vmmu — front door.  The build itself is CMake + Ninja (CMakeLists.txt);
# this file only chains the usual steps.  Every target first runs
# scripts/deps.sh, which installs missing Debian packages.
#
#   make            build build/ and run the main job, `vmmu-perf tour`
#   make build      build build/ only
#   make test       build/, every test except label soak
#   make test-asan  same in build-asan/ (clang, ASan + UBSan, fuzz targets)
#   make test-tsan  same in build-tsan/ (clang, TSan)
#   make test-all   the three above
#   make soak       build/, label soak only
#   make install    install build/ into $(DESTDIR)$(PREFIX) (default /usr/local)
#   make uninstall  remove what the last `make install` installed
#   make install-check  install into temporary prefixes and build and run
#                   examples out of tree (pkg-config, find_package)
#   make format     clang-format -i on every C file
#   make clean      remove the build directories
#
# CTEST_ARGS is passed to ctest, e.g. make test CTEST_ARGS='-R tdp -V'.
# PERF_ARGS is passed to `vmmu-perf tour` by `make`, e.g. PERF_ARGS='-o report'.

CC_DEFAULT  ?= gcc
CC_SANITIZE ?= clang
JOBS        ?= 2
CTEST_ARGS  ?=
PERF_ARGS   ?=
PREFIX      ?= /usr/local
DESTDIR     ?=

BUILD      := build
BUILD_ASAN := build-asan
BUILD_TSAN := build-tsan

CTEST := ctest --output-on-failure -j$(JOBS)
C_DIRS := src include hw tools tests fuzz examples

.PHONY: all deps build build-asan build-tsan test test-asan test-tsan test-all \
	soak install uninstall install-check format format-check clean

all: build
	@perf=$(BUILD)/tools/vmmu-perf; \
	if [ ! -x "$$perf" ]; then \
		echo "make: $$perf was not built (is tools/vmmu-perf.c there yet?)" >&2; \
		exit 1; \
	fi; \
	echo "+ $$perf tour $(PERF_ARGS)"; \
	"$$perf" tour $(PERF_ARGS)

deps:
	@./scripts/deps.sh

# $(call configure_and_build,<dir>,<compiler>,<extra cmake args>)
# Configure only once: afterwards ninja re-runs cmake by itself when a
# CMake file changes or a source file appears or disappears.
define configure_and_build
	@test -f $(1)/build.ninja || \
		cmake -S . -B $(1) -G Ninja -DCMAKE_C_COMPILER=$(2) $(3)
	cmake --build $(1) -j $(JOBS)
endef

build: deps
	$(call configure_and_build,$(BUILD),$(CC_DEFAULT),)

build-asan: deps
	$(call configure_and_build,$(BUILD_ASAN),$(CC_SANITIZE),-DVMMU_SANITIZE=address)

build-tsan: deps
	$(call configure_and_build,$(BUILD_TSAN),$(CC_SANITIZE),-DVMMU_SANITIZE=thread)

test: build
	$(CTEST) --test-dir $(BUILD) -LE soak $(CTEST_ARGS)

test-asan: build-asan
	$(CTEST) --test-dir $(BUILD_ASAN) -LE soak $(CTEST_ARGS)

test-tsan: build-tsan
	$(CTEST) --test-dir $(BUILD_TSAN) -LE soak $(CTEST_ARGS)

test-all: test test-asan test-tsan

# Soak tests use both cores each; run them one at a time.
soak: build
	ctest --output-on-failure --test-dir $(BUILD) -L soak $(CTEST_ARGS)

# cmake --install reads DESTDIR from the environment.
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

uninstall:
	@test -f $(BUILD)/install_manifest.txt || \
		{ echo "make: nothing installed from $(BUILD)/" >&2; exit 1; }
	xargs -r -d '\n' rm -f -- < $(BUILD)/install_manifest.txt

install-check: build
	./cmake/install-check.sh $(BUILD)

format: deps
	@find $(C_DIRS) -name '*.[ch]' 2>/dev/null | xargs -r clang-format -i

format-check: deps
	@find $(C_DIRS) -name '*.[ch]' 2>/dev/null | xargs -r clang-format --dry-run -Werror

clean: deps
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_TSAN)
