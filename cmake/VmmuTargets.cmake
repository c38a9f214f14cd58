# Helpers that turn one .c file into one program and one CTest test.

# Sanitizer runtime options, set as ENVIRONMENT on every test.
set(VMMU_TEST_ENV "")
if(VMMU_SANITIZE STREQUAL "address")
	set(_asan "detect_leaks=1:abort_on_error=1")
	set(_ubsan "print_stacktrace=1:halt_on_error=1")
	if(VMMU_LLVM_SYMBOLIZER)
		string(APPEND _asan ":external_symbolizer_path=${VMMU_LLVM_SYMBOLIZER}")
		string(APPEND _ubsan ":external_symbolizer_path=${VMMU_LLVM_SYMBOLIZER}")
	endif()
	list(APPEND VMMU_TEST_ENV "ASAN_OPTIONS=${_asan}" "UBSAN_OPTIONS=${_ubsan}")
elseif(VMMU_SANITIZE STREQUAL "thread")
	set(_tsan "suppressions=${CMAKE_SOURCE_DIR}/tests/tsan.supp")
	string(APPEND _tsan ":halt_on_error=1:second_deadlock_stack=1")
	if(VMMU_LLVM_SYMBOLIZER)
		string(APPEND _tsan ":external_symbolizer_path=${VMMU_LLVM_SYMBOLIZER}")
	endif()
	list(APPEND VMMU_TEST_ENV "TSAN_OPTIONS=${_tsan}")
endif()

# vmmu_add_program(<target> <source> DIR <dir under build/>
#                  [OUTPUT_NAME <name>] [INCLUDES <dir>...] [LIBS <lib>...])
function(vmmu_add_program target source)
	cmake_parse_arguments(P "" "DIR;OUTPUT_NAME" "INCLUDES;LIBS" ${ARGN})
	add_executable(${target} "${source}")
	if(P_INCLUDES)
		target_include_directories(${target} PRIVATE ${P_INCLUDES})
	endif()
	target_link_libraries(${target} PRIVATE ${P_LIBS})
	set_target_properties(${target} PROPERTIES
			      RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/${P_DIR}")
	if(P_OUTPUT_NAME)
		set_target_properties(${target} PROPERTIES OUTPUT_NAME ${P_OUTPUT_NAME})
	endif()
endfunction()

# vmmu_add_ctest(<test name> <target> LABEL <label> [TIMEOUT <s>] [ARGS <arg>...])
# Exit code 77 means "skipped".  Stress and soak tests reserve both cores
# (PROCESSORS 2) so ctest -j2 does not run two of them at once.
function(vmmu_add_ctest name target)
	cmake_parse_arguments(T "" "LABEL;TIMEOUT" "ARGS" ${ARGN})
	if(NOT T_TIMEOUT)
		set(T_TIMEOUT ${VMMU_TEST_TIMEOUT})
	endif()
	add_test(NAME ${name} COMMAND $<TARGET_FILE:${target}> ${T_ARGS}
		 WORKING_DIRECTORY "${CMAKE_BINARY_DIR}")
	set_tests_properties(${name} PROPERTIES
			     LABELS "${T_LABEL}"
			     SKIP_RETURN_CODE 77
			     TIMEOUT ${T_TIMEOUT})
	if(VMMU_TEST_ENV)
		set_tests_properties(${name} PROPERTIES ENVIRONMENT "${VMMU_TEST_ENV}")
	endif()
	if(T_LABEL STREQUAL "stress" OR T_LABEL STREQUAL "soak")
		set_tests_properties(${name} PROPERTIES PROCESSORS 2)
	endif()
	set_property(GLOBAL APPEND PROPERTY VMMU_TESTS_${T_LABEL} ${name})
endfunction()

# vmmu_add_fuzz_ctest(<fuzz target>): runs the fuzzer for VMMU_FUZZ_SECONDS
# on a corpus directory in the build tree (empty at first; libFuzzer adds
# the inputs it finds interesting, so later local runs start from them).
# fuzz/corpus/<target>/, if it exists, is read as extra seeds.  Crash files
# go to <build>/fuzz/artifacts/.
function(vmmu_add_fuzz_ctest target)
	set(corpus "${CMAKE_BINARY_DIR}/fuzz/corpus/${target}")
	set(artifacts "${CMAKE_BINARY_DIR}/fuzz/artifacts")
	file(MAKE_DIRECTORY "${corpus}" "${artifacts}")
	set(dirs "${corpus}")
	if(IS_DIRECTORY "${CMAKE_SOURCE_DIR}/fuzz/corpus/${target}")
		list(APPEND dirs "${CMAKE_SOURCE_DIR}/fuzz/corpus/${target}")
	endif()
	if(target MATCHES "^fuzz_")
		set(name ${target})
	else()
		set(name fuzz_${target})
	endif()
	vmmu_add_ctest(${name} ${target} LABEL fuzz
		       ARGS -max_total_time=${VMMU_FUZZ_SECONDS} -rss_limit_mb=2048
			    -timeout=25 -artifact_prefix=${artifacts}/${target}- ${dirs})
endfunction()

function(vmmu_print_summary)
	message(STATUS "vmmu: build type ${CMAKE_BUILD_TYPE}, compiler "
		       "${CMAKE_C_COMPILER_ID} ${CMAKE_C_COMPILER_VERSION}, "
		       "sanitize '${VMMU_SANITIZE}', fuzz ${VMMU_FUZZ}")
	foreach(label unit stress soak fuzz example tool)
		get_property(tests GLOBAL PROPERTY VMMU_TESTS_${label})
		list(LENGTH tests n)
		message(STATUS "vmmu: ${n} ${label} test(s)")
	endforeach()
endfunction()
