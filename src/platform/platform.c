/* SPDX-License-Identifier: MIT */
#include "platform.h"

#include <sched.h>
#include <time.h>
#include <unistd.h>

void vmmu_warn_report(const char *file, int line, const char *cond)
{
	fprintf(stderr, "vmmu: WARNING at %s:%d: %s\n", file, line, cond);
	fflush(stderr);
	if (VMMU_DEBUG)
		abort();
}

uint64_t vmmu_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void vmmu_yield(void)
{
	sched_yield();
}

unsigned vmmu_nr_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (unsigned)n : 1;
}
