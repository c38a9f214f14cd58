# External dependencies.  scripts/deps.sh installs the Debian packages.
#
#   liburcu-dev       pkg-config liburcu-memb (+ liburcu-cds when present)
#   libcmocka-dev     pkg-config cmocka (tests only)
#   systemtap-sdt-dev <sys/sdt.h>, header only -> VMMU_HAVE_SDT=1
#   pthread, libm

find_package(PkgConfig REQUIRED)
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)

pkg_check_modules(URCU_MEMB REQUIRED IMPORTED_TARGET liburcu-memb)
pkg_check_modules(URCU_CDS IMPORTED_TARGET liburcu-cds)
pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)

set(VMMU_SYSTEM_LIBS PkgConfig::URCU_MEMB)
if(URCU_CDS_FOUND)
	list(APPEND VMMU_SYSTEM_LIBS PkgConfig::URCU_CDS)
endif()
list(APPEND VMMU_SYSTEM_LIBS Threads::Threads m)

include(CheckIncludeFile)
check_include_file(sys/sdt.h VMMU_HAVE_SDT_H)
if(VMMU_HAVE_SDT_H)
	add_compile_definitions(VMMU_HAVE_SDT=1)
else()
	message(WARNING "vmmu: <sys/sdt.h> not found (install systemtap-sdt-dev)")
endif()

# Symbolizer for sanitizer reports (package llvm).
find_program(VMMU_LLVM_SYMBOLIZER NAMES llvm-symbolizer llvm-symbolizer-14
	     HINTS /usr/lib/llvm-14/bin)
