/* SPDX-License-Identifier: MIT */
/*
 * soak_frozen_flush - tests/stress/stress_frozen_flush.c with a long default budget
 * (300 s; VMMU_TEST_SECONDS still overrides it), under the "soak" label:
 * `make soak`.  Same seeds, same replay (VMMU_SEED=N).
 */
#define STRESS_DEFAULT_SECONDS 300.0
#include "../stress/stress_frozen_flush.c"
