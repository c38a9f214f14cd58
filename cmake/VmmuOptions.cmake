# Build type, C standard, warnings, debug macros and sanitizer variants.
#
# Macros the sources can test (each is either undefined or 1, so both
# "#ifdef X" and "#if X" work):
#   VMMU_DEBUG  Debug and sanitizer builds: lock-held assertions and other
#               debug-only checks.
#   VMMU_ASAN   VMMU_SANITIZE=address (ASan + UBSan).
#   VMMU_TSAN   VMMU_SANITIZE=thread.
#   VMMU_HAVE_SDT  <sys/sdt.h> was found (see VmmuDeps.cmake).
# NDEBUG is never defined: assert() stays on in every build type.

if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
	set(CMAKE_BUILD_TYPE RelWithDebInfo CACHE STRING
	    "Debug, RelWithDebInfo (default), Release" FORCE)
endif()

set(CMAKE_C_STANDARD 11)
set(CMAKE_C_STANDARD_REQUIRED ON)
set(CMAKE_C_EXTENSIONS ON) # -std=gnu11
set(CMAKE_EXPORT_COMPILE_COMMANDS ON)

# Keep assertions in the optimised builds: CMake's defaults add -DNDEBUG.
set(CMAKE_C_FLAGS_RELWITHDEBINFO "-O2 -g" CACHE STRING "" FORCE)
set(CMAKE_C_FLAGS_RELEASE "-O2 -g" CACHE STRING "" FORCE)
set(CMAKE_C_FLAGS_DEBUG "-O0 -g" CACHE STRING "" FORCE)

# Warnings are errors in every build, not only in CI.
add_compile_options(-Wall -Wextra -Werror -UNDEBUG)

# ---------------------------------------------------------------------------
# Sanitizers
# ---------------------------------------------------------------------------
set(VMMU_SANITIZE "" CACHE STRING "Sanitizer variant: empty, address (ASan+UBSan) or thread")
set_property(CACHE VMMU_SANITIZE PROPERTY STRINGS "" address thread)

if(VMMU_SANITIZE STREQUAL "address")
	set(_vmmu_san_flags -fsanitize=address,undefined -fno-sanitize-recover=undefined
			    -fno-omit-frame-pointer)
	add_compile_definitions(VMMU_ASAN=1)
elseif(VMMU_SANITIZE STREQUAL "thread")
	set(_vmmu_san_flags -fsanitize=thread -fno-omit-frame-pointer)
	add_compile_definitions(VMMU_TSAN=1)
elseif(NOT VMMU_SANITIZE STREQUAL "")
	message(FATAL_ERROR "VMMU_SANITIZE must be empty, \"address\" or \"thread\", "
			    "not \"${VMMU_SANITIZE}\"")
endif()

if(_vmmu_san_flags)
	if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
		message(WARNING "vmmu: sanitizer builds are meant for clang "
				"(configure with CC=clang); using ${CMAKE_C_COMPILER_ID}")
	endif()
	add_compile_options(${_vmmu_san_flags})
	add_link_options(${_vmmu_san_flags})
endif()

# Shared libraries (and `install`): the ordinary build only, since nothing
# in a sanitizer build links them.
if(VMMU_SANITIZE STREQUAL "")
	set(_vmmu_shared_default ON)
else()
	set(_vmmu_shared_default OFF)
endif()
option(VMMU_SHARED "Also build libvmmu.so and libvmmu_hw.so (API-only exports)"
       ${_vmmu_shared_default})

if(CMAKE_BUILD_TYPE STREQUAL "Debug" OR VMMU_SANITIZE)
	add_compile_definitions(VMMU_DEBUG=1)
endif()

# ---------------------------------------------------------------------------
# Fuzzing (libFuzzer needs clang).  Not with TSan: libFuzzer does not
# support it.
# ---------------------------------------------------------------------------
if(CMAKE_C_COMPILER_ID MATCHES "Clang" AND NOT VMMU_SANITIZE STREQUAL "thread")
	set(_vmmu_fuzz_default ON)
else()
	set(_vmmu_fuzz_default OFF)
endif()
option(VMMU_FUZZ "Build fuzz/fuzz_*.c as libFuzzer targets (clang only)" ${_vmmu_fuzz_default})
if(VMMU_FUZZ AND NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
	message(WARNING "vmmu: VMMU_FUZZ needs clang; fuzz targets not built")
	set(VMMU_FUZZ OFF CACHE BOOL "" FORCE)
endif()
set(VMMU_FUZZ_SECONDS 30 CACHE STRING "How long each fuzz_* CTest test fuzzes")

# ---------------------------------------------------------------------------
# Test limits
# ---------------------------------------------------------------------------
set(VMMU_TEST_TIMEOUT 600 CACHE STRING "CTest timeout (s) for unit, stress, fuzz, example tests")
set(VMMU_SOAK_TIMEOUT 7200 CACHE STRING "CTest timeout (s) for soak tests")
