/* SPDX-License-Identifier: MIT */
/*
 * vmmu-perf - the experiments of the seeds, measured on vmmu and its
 * hardware model, with KVM selftest vocabulary and metric names.
 *
 * Every run measures its own floors in the same process, and prints the
 * figures as ratios to them, because on a shared machine only ratios taken
 * in one run are stable.  Each experiment lives in tools/perf_<name>.c and
 * registers itself (perf.h); this file only dispatches, and handles the
 * option every experiment has: --json FILE (or --json=FILE; "-" writes the
 * JSON to stdout and the experiment's text to stderr).
 */
#define _GNU_SOURCE
#include "perf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

struct perf_experiment *perf_find(const char *name)
{
	for (struct perf_experiment *e = experiments; e; e = e->next)
		if (!strcmp(name, e->name))
			return e;
	return NULL;
}

static char self_path[4096];

const char *perf_self(void)
{
	return self_path;
}

static void usage(void)
{
	printf("usage: vmmu-perf <experiment> [options] [--json FILE]\n"
	       "       (vmmu-perf <experiment> -h for more; `man vmmu-perf`)\n"
	       "experiments:\n");
	for (struct perf_experiment *e = experiments; e; e = e->next)
		printf("  %-18s %s\n", e->name, e->summary);
}

int main(int argc, char **argv)
{
	struct perf_experiment *e;
	const char *json = NULL;
	int json_fd = -1, status;

	if (argc < 2) {
		usage();
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage();
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("vmmu-perf %s\n", VMMU_PERF_VERSION);
		return 0;
	}
	e = perf_find(argv[1]);
	if (!e) {
		fprintf(stderr, "vmmu-perf: unknown experiment '%s'\n", argv[1]);
		usage();
		return 2;
	}
	{
		ssize_t n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);

		if (n > 0)
			self_path[n] = '\0';
		else
			snprintf(self_path, sizeof(self_path), "%s", argv[0]);
	}
	/* Take --json out before the experiment parses its options. */
	for (int i = 2; i < argc;) {
		int take = 0;

		if (!strcmp(argv[i], "--json")) {
			if (i + 1 >= argc) {
				fprintf(stderr,
					"vmmu-perf: --json needs a file name (- for stdout)\n");
				return 2;
			}
			json = argv[i + 1];
			take = 2;
		} else if (!strncmp(argv[i], "--json=", 7)) {
			json = argv[i] + 7;
			take = 1;
		} else if (!strcmp(argv[i], "--")) {
			break;
		}
		if (!take) {
			i++;
			continue;
		}
		memmove(&argv[i], &argv[i + take], (size_t)(argc - i - take + 1) * sizeof(*argv));
		argc -= take;
	}
	if (json && !strcmp(json, "-")) {
		/* The experiment's own lines go to stderr, the JSON to stdout. */
		fflush(stdout);
		json_fd = dup(STDOUT_FILENO);
		if (json_fd < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
			perror("vmmu-perf: dup");
			return 1;
		}
	}
	status = e->run(argc - 1, argv + 1);
	fflush(stdout);
	if (json) {
		FILE *f = json_fd >= 0 ? fdopen(json_fd, "w") : fopen(json, "w");
		int r;

		if (!f) {
			fprintf(stderr, "vmmu-perf: %s: %s\n", json, strerror(errno));
			return 1;
		}
		r = perf_json_write(f, e->name, argc - 1, argv + 1, status);
		if (fclose(f) || r) {
			fprintf(stderr, "vmmu-perf: writing %s failed\n", json);
			return 1;
		}
	}
	return status;
}
