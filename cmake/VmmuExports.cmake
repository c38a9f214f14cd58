# The public API as the linker sees it: a version script generated from the
# public headers, so that only what include/vmmu/*.h declares is exported
# from libvmmu.so and libvmmu_hw.so.
#
# Script mode (run at build time, re-run whenever a public header changes):
#   cmake -DHEADER_DIR=<include/vmmu> -DOUTPUT=<file.map> -DNODE=<VMMU_0.1>
#         [-DLIST=<file.txt>] -P VmmuExports.cmake
#
# A function is public when a header under HEADER_DIR declares it: every
# identifier vmmu_* followed by "(" outside comments.  The script lists them
# all under one version node; each library exports those it defines (GNU ld
# ignores the names a library does not define), everything else is local.
# LIST, if given, receives the names one per line (for the export test).

if(NOT CMAKE_SCRIPT_MODE_FILE)
	# Included from CMakeLists.txt: the function that wires it up.
	set(_VMMU_EXPORTS_SCRIPT "${CMAKE_CURRENT_LIST_FILE}")

	# vmmu_export_map(<out var> NODE <node> HEADERS <header>...)
	# Adds a custom command that writes ${CMAKE_BINARY_DIR}/vmmu.map and
	# vmmu-exports.txt; sets <out var> to the map's path.
	function(vmmu_export_map out_var)
		cmake_parse_arguments(E "" "NODE" "HEADERS" ${ARGN})
		set(map "${CMAKE_BINARY_DIR}/vmmu.map")
		set(list "${CMAKE_BINARY_DIR}/vmmu-exports.txt")
		add_custom_command(
			OUTPUT "${map}" "${list}"
			COMMAND "${CMAKE_COMMAND}" "-DHEADER_DIR=${VMMU_INCLUDE_DIR}/vmmu"
				"-DOUTPUT=${map}" "-DLIST=${list}" "-DNODE=${E_NODE}"
				-P "${_VMMU_EXPORTS_SCRIPT}"
			DEPENDS ${E_HEADERS} "${_VMMU_EXPORTS_SCRIPT}"
			COMMENT "Generating the export list from include/vmmu/*.h"
			VERBATIM)
		add_custom_target(vmmu_export_map DEPENDS "${map}" "${list}")
		set(${out_var} "${map}" PARENT_SCOPE)
	endfunction()
	return()
endif()

foreach(v HEADER_DIR OUTPUT NODE)
	if(NOT ${v})
		message(FATAL_ERROR "VmmuExports.cmake: -D${v}=... is required")
	endif()
endforeach()

file(GLOB headers "${HEADER_DIR}/*.h")
list(SORT headers)
set(names "")
foreach(h IN LISTS headers)
	file(READ "${h}" text)
	# Comments out: /* ... */ (possibly over lines), then // to end of line.
	string(REGEX REPLACE "/\\*([^*]|\\*+[^*/])*\\*+/" " " text "${text}")
	string(REGEX REPLACE "//[^\n]*" "" text "${text}")
	string(REGEX MATCHALL "vmmu_[A-Za-z0-9_]+[ \t\r\n]*\\(" found "${text}")
	foreach(f IN LISTS found)
		string(REGEX REPLACE "[ \t\r\n]*\\($" "" f "${f}")
		list(APPEND names "${f}")
	endforeach()
endforeach()
list(REMOVE_DUPLICATES names)
list(SORT names)
if(NOT names)
	message(FATAL_ERROR "VmmuExports.cmake: no vmmu_* declarations in ${HEADER_DIR}")
endif()

set(map "/* Generated from include/vmmu/*.h by cmake/VmmuExports.cmake: do not edit. */\n")
string(APPEND map "${NODE} {\nglobal:\n")
foreach(n IN LISTS names)
	string(APPEND map "\t${n};\n")
endforeach()
string(APPEND map "local:\n\t*;\n};\n")
file(WRITE "${OUTPUT}" "${map}")
if(LIST)
	string(REPLACE ";" "\n" lines "${names}")
	file(WRITE "${LIST}" "${lines}\n")
endif()
