/* SPDX-License-Identifier: MIT */
/*
 * vmmu-perf - the experiments of the seeds, measured on vmmu and its
 * hardware model, with KVM selftest vocabulary and metric names.
 *
 * Every run measures its own floors in the same process, and prints the
 * figures as ratios to them, because on a shared machine only ratios taken
 * in one run are stable.  Each experiment lives in tools/perf_<name>.c and
 * registers itself (perf.h); this file only dispatches.
 */
#include "perf.h"

#include <stdio.h>
#include <string.h>

static struct perf_experiment *experiments;

void perf_register(struct perf_experiment *e)
{
	struct perf_experiment **pp = &experiments;

	/* Keep the list sorted by name so the usage text is stable. */
	while (*pp && strcmp((*pp)->name, e->name) < 0)
		pp = &(*pp)->next;
	e->next = *pp;
	*pp = e;
}

static void usage(void)
{
	printf("usage: vmmu-perf <experiment> [options]   (vmmu-perf <experiment> -h for more)\n"
	       "experiments:\n");
	for (struct perf_experiment *e = experiments; e; e = e->next)
		printf("  %-18s %s\n", e->name, e->summary);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage();
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage();
		return 0;
	}
	for (struct perf_experiment *e = experiments; e; e = e->next)
		if (!strcmp(argv[1], e->name))
			return e->run(argc - 1, argv + 1);
	fprintf(stderr, "vmmu-perf: unknown experiment '%s'\n", argv[1]);
	usage();
	return 2;
}
