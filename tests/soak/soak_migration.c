/* SPDX-License-Identifier: MIT */
/*
 * soak_migration - tests/stress/stress_migration.c with a long default budget
 * (600 s; VMMU_TEST_SECONDS still overrides it), under the "soak" label:
 * `make soak`.  Same seeds, same replay (VMMU_SEED=N).
 */
#define STRESS_DEFAULT_SECONDS 600.0
#include "../stress/stress_migration.c"
