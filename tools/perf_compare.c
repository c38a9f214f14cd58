/* SPDX-License-Identifier: MIT */
/*
 * perf_compare.c - vmmu-perf compare A.json B.json: what changed between
 * two results written with --json (for example before and after a patch).
 *
 * For every metric, floor and ratio of A it prints A's median, B's median
 * and the change, then the names only one side has, and the configuration
 * entries that differ.  A time that went down is a speed-up; B's floors
 * changing as much as its metrics means the machine changed, not the code.
 */
#define _GNU_SOURCE
#include "perf.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const sections[] = { "metrics", "floors", "ratios" };

static double median_of(const struct jv *m)
{
	return jv_num(jv_get(m, "median"), NAN);
}

static void print_value(double v, const char *unit)
{
	if (isnan(v))
		printf(" %14s", "-");
	else if (!strcmp(unit, "s"))
		printf(" %12.6f s", v);
	else if (!strcmp(unit, "x"))
		printf(" %13.2fx", v);
	else
		printf(" %11.1f %-2s", v, unit);
}

static int compare_files(const char *pa, const char *pb, double threshold)
{
	char err[256];
	struct jv *a = jv_parse_file(pa, err, sizeof(err)), *b;
	unsigned changed = 0, total = 0;
	int width = 20;

	if (!a) {
		fprintf(stderr, "vmmu-perf compare: %s: %s\n", pa, err);
		return 1;
	}
	b = jv_parse_file(pb, err, sizeof(err));
	if (!b) {
		fprintf(stderr, "vmmu-perf compare: %s: %s\n", pb, err);
		jv_free(a);
		return 1;
	}
	if (!jv_get(a, "metrics") || !jv_get(b, "metrics")) {
		fprintf(stderr, "vmmu-perf compare: not vmmu-perf --json output\n");
		jv_free(a);
		jv_free(b);
		return 1;
	}
	printf("A: %s (%s)\nB: %s (%s)\n", pa, jv_str(jv_get(a, "experiment"), "?"), pb,
	       jv_str(jv_get(b, "experiment"), "?"));
	if (strcmp(jv_str(jv_get(a, "experiment"), ""), jv_str(jv_get(b, "experiment"), "")))
		printf("note: different experiments; only names they share are compared\n");

	/* Configuration differences first: they explain the rest. */
	{
		const struct jv *ca = jv_get(a, "config"), *cb = jv_get(b, "config");
		bool head = false;

		for (size_t i = 0; ca && i < ca->n; i++) {
			const char *va = jv_str(&ca->items[i], "?");
			const char *vb = jv_str(jv_get(cb, ca->keys[i]), "(absent)");

			if (strcmp(va, vb)) {
				if (!head)
					printf("\nConfiguration differs:\n");
				head = true;
				printf("  %s: %s -> %s\n", ca->keys[i], va, vb);
			}
		}
	}

	/* The name column is as wide as the longest name (up to 100). */
	for (unsigned s = 0; s < 3; s++)
		for (unsigned k = 0; k < 2; k++) {
			const struct jv *sec = jv_get(k ? b : a, sections[s]);

			for (size_t i = 0; sec && i < sec->n; i++)
				if ((int)strlen(sec->keys[i]) > width)
					width = (int)strlen(sec->keys[i]);
		}
	if (width > 100)
		width = 100;

	for (unsigned s = 0; s < 3; s++) {
		const struct jv *sa = jv_get(a, sections[s]), *sb = jv_get(b, sections[s]);
		bool head = false;

		for (size_t i = 0; sa && i < sa->n; i++) {
			const struct jv *mb = jv_get(sb, sa->keys[i]);
			const char *unit = jv_str(jv_get(&sa->items[i], "unit"), "");
			double va = median_of(&sa->items[i]), vb = mb ? median_of(mb) : NAN;
			double change = va != 0 && !isnan(va) && !isnan(vb) ? vb / va - 1 : NAN;

			if (!head) {
				printf("\n%-*s %14s %14s %9s\n", width, sections[s], "A (median)",
				       "B (median)", "change");
				head = true;
			}
			printf("%-*.*s", width, width, sa->keys[i]);
			print_value(va, unit);
			print_value(vb, unit);
			if (isnan(change)) {
				printf(" %9s\n", mb ? "-" : "only A");
				continue;
			}
			total++;
			printf(" %+8.1f%%%s\n", change * 100,
			       fabs(change) >= threshold / 100 ? " *" : "");
			if (fabs(change) >= threshold / 100)
				changed++;
		}
		for (size_t i = 0; sb && i < sb->n; i++)
			if (!jv_get(sa, sb->keys[i])) {
				printf("%-*.*s %14s", width, width, sb->keys[i], "-");
				print_value(median_of(&sb->items[i]),
					    jv_str(jv_get(&sb->items[i], "unit"), ""));
				printf(" %9s\n", "only B");
			}
	}
	printf("\n%u of %u figures changed by %.0f%% or more (marked *); change = B / A - 1\n",
	       changed, total, threshold);
	perf_record(PERF_METRIC, "figures compared", "", total);
	perf_record(PERF_METRIC, "figures changed", "", changed);
	jv_free(a);
	jv_free(b);
	return 0;
}

static void usage(void)
{
	printf("usage: vmmu-perf compare [-t percent] A.json B.json\n"
	       "  Every metric, floor and ratio of two --json results side by side (median\n"
	       "  of the repeats), with the change B / A - 1; configuration differences first.\n"
	       "  -t PCT   mark changes of at least PCT percent (default 10)\n");
}

static int cmd_compare(int argc, char **argv)
{
	double threshold = 10;
	int c;

	while ((c = getopt(argc, argv, "t:h")) != -1) {
		switch (c) {
		case 't':
			threshold = strtod(optarg, NULL);
			break;
		case 'h':
			usage();
			return 0;
		default:
			usage();
			return 2;
		}
	}
	if (argc - optind != 2 || threshold < 0) {
		usage();
		return 2;
	}
	return compare_files(argv[optind], argv[optind + 1], threshold);
}

VMMU_PERF_EXPERIMENT(compare, "compare", "compare two --json results: each figure's change",
		     cmd_compare)
