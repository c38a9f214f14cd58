/* SPDX-License-Identifier: MIT */
/*
 * soak_dirty_log - tests/stress/stress_dirty_log.c with a long default budget
 * (900 s; VMMU_TEST_SECONDS still overrides it), under the "soak" label:
 * `make soak`.  Same seeds, same replay (VMMU_SEED=N).
 */
#define STRESS_DEFAULT_SECONDS 900.0
#include "../stress/stress_dirty_log.c"
