/* SPDX-License-Identifier: MIT */
/*
 * perf_tour.c - vmmu-perf tour: every seed's experiment at sizes that fit in
 * about a minute on 2 cores, and one table of what the seed published next
 * to what vmmu does here, with vmmu's figure against its floor measured in
 * the same run.
 *
 * Each experiment runs as a child process (this program again, with --json),
 * so one that fails leaves the others; its text output goes to a log file,
 * its JSON is read back.  A row names the figures it shows by their JSON
 * names ("ratios/<name>", "metrics/<name>", "floors/<name>"), so a new row is
 * one entry in rows[] below, and a row whose experiment does not exist yet
 * (no runs[] entry) prints "not built".
 *
 * -o DIR keeps the logs and JSON files there and writes report.md and the
 * gnuplot plots tour-speedup.png and tour-floor.png.
 */
#define _GNU_SOURCE
#include "perf.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ARGS 24

/* One experiment run; rows read their figures from its JSON. */
struct tour_run {
	const char *id; /* file names: <id>.txt, <id>.json */
	const char *argv[MAX_ARGS]; /* full sizes */
	const char *quick[MAX_ARGS]; /* --quick: seconds in all, for tests */
	/* filled in while touring */
	struct jv *json;
	int status; /* exit status, -1 when it did not run */
	double seconds;
};

static struct tour_run runs[] = {
	{ .id = "fast-pf",
	  .argv = { "access-tracking", "--compare", "fast", "-b", "128M", "--repeat", "2" },
	  .quick = { "access-tracking", "--compare", "fast", "-b", "8M" } },
	{ .id = "eager-split",
	  .argv = { "dirty-log", "--compare", "eager", "-g", "-s", "anonymous_thp", "-b", "256M",
		    "--repeat", "3" },
	  .quick = { "dirty-log", "--compare", "eager", "-g", "-s", "anonymous_thp", "-b", "16M",
		     "--repeat", "1" } },
	{ .id = "nested-eager-split",
	  .argv = { "dirty-log", "-n", "--compare", "eager", "-g", "-v", "2", "-w", "5", "-s",
		    "anonymous_thp", "-b", "256M", "--repeat", "3" },
	  .quick = { "dirty-log", "-n", "--compare", "eager", "-g", "-v", "2", "-w", "5", "-s",
		     "anonymous_thp", "-b", "16M", "--repeat", "1" } },
	{ .id = "prefault",
	  .argv = { "prefault", "-s", "anonymous", "-b", "128M", "-r", "2" },
	  .quick = { "prefault", "-s", "anonymous", "-b", "8M", "-r", "1", "-i", "1" } },
	{ .id = "cr0-wp",
	  .argv = { "role-switch", "-i", "100000" },
	  .quick = { "role-switch", "-i", "2000" } },
	{ .id = "populate",
	  .argv = { "populate", "-v", "2", "-b", "256M" },
	  .quick = { "populate", "-v", "2", "-b", "8M" } },
	/* Issue 14: per-root locking of the nested MMU, both lock modes. */
	{ .id = "nested-locks",
	  .argv = { "populate", "-n", "--l2-per-vcpu", "--scaling", "--compare", "locks", "-v", "2",
		    "-b", "64M", "-r", "3" },
	  .quick = { "populate", "-n", "--l2-per-vcpu", "--scaling", "--compare", "locks", "-v",
		     "2", "-b", "8M", "-r", "1" } },
	{ .id = "nested-dirty-locks",
	  .argv = { "dirty-log", "-n", "--l2-per-vcpu", "-v", "2", "--no-eager", "-g", "-s",
		    "anonymous_thp", "-b", "64M", "--compare", "locks", "-r", "3" },
	  .quick = { "dirty-log", "-n", "--l2-per-vcpu", "-v", "2", "--no-eager", "-g", "-s",
		     "anonymous_thp", "-b", "8M", "--compare", "locks", "-r", "1" } },
	{ .id = "mixed-locks",
	  .argv = { "populate", "--mixed", "--compare", "locks", "-b", "64M", "-r", "3" },
	  .quick = { "populate", "--mixed", "--compare", "locks", "-b", "8M", "-r", "1" } },
};
#define NR_RUNS (sizeof(runs) / sizeof(runs[0]))

/*
 * A figure: "section/name" in a run's JSON, optionally divided by another.
 * The row shows value (unit x: "4.2x", ns: "1234 ns") and floor (always a
 * ratio).  run == NULL: not built yet (the row still shows the seed).
 */
struct tour_row {
	const char *seed, *experiment;
	const char *published; /* the seed's figure, as published */
	double published_x; /* its ratio (0: none) */
	const char *run; /* runs[].id, or NULL: not built */
	const char *value, *value_den, *value_what;
	const char *floor, *floor_den, *floor_what;
	/* filled in */
	double v, f;
	const char *status;
};

static struct tour_row rows[] = {
	{ .seed = "002",
	  .experiment = "fast page fault: Iteration 2 dirty memory time, 2 vCPUs",
	  .published = "3.545 -> 0.315 s (64 vCPUs): 11.2x",
	  .published_x = 3.545234984 / 0.315209625,
	  .run = "fast-pf",
	  .value = "ratios/Iteration 2 dirty memory time, 2 vCPU(s): fast path off / on",
	  .value_what = "fast path off / on",
	  .floor = "ratios/Iteration 2 dirty memory time, 2 vCPU(s): fast fault / walk floor",
	  .floor_what = "fast fault / walk" },
	{ .seed = "002",
	  .experiment = "fast page fault: Writing to idle memory, 2 vCPUs",
	  .published = "3.250 -> 0.302 s (64 vCPUs): 10.8x",
	  .published_x = 3.249645416 / 0.301676189,
	  .run = "fast-pf",
	  .value = "ratios/Writing to idle memory, 2 vCPU(s): fast path off / on",
	  .value_what = "fast path off / on",
	  .floor = "ratios/Writing to idle memory, 2 vCPU(s): fast fault / walk floor",
	  .floor_what = "fast fault / walk" },
	{ .seed = "000",
	  .experiment = "eager splitting, TDP: Iteration 1 dirty memory time",
	  .published = "2.944 -> 0.146 s (96 vCPUs, 1G hugetlb): 20.2x",
	  .published_x = 2.943733325 / 0.145979748,
	  .run = "eager-split",
	  .value = "ratios/Iteration 1 dirty memory time: eager off / on",
	  .value_what = "eager off / on (THP)",
	  .floor = "ratios/eager on: Iteration 1 dirty memory / walk floor",
	  .floor_what = "eager on / walk" },
	/* The vCPUs in L2, L1 mapping them with 2 MiB EPT12 leaves over THP:
	 * the configuration of the seed's table (2 vCPUs, 5% writes). */
	{ .seed = "000",
	  .experiment = "eager splitting, nested: Iteration 1 dirty memory time",
	  .published = "0.386 -> 0.023 s (2 vCPUs, 5% writes): 16.8x",
	  .published_x = 0.386 / 0.023,
	  .run = "nested-eager-split",
	  .value = "ratios/Iteration 1 dirty memory time: eager off / on",
	  .value_what = "eager off / on (THP)",
	  .floor = "ratios/eager on: Iteration 1 dirty memory / walk floor",
	  .floor_what = "eager on / walk" },
	/* The split caches: what they hold after splitting (KVM: 2 x 513
	 * descriptors; here the chunk reverse map needs 2 per split, see
	 * src/nested/split.c), and lock drops to top them up per split. */
	{ .seed = "001",
	  .experiment = "split-cache sizes (nested eager split)",
	  .published = "capacity 2 x 513 descriptors, < 16 KiB per VM",
	  .run = "nested-eager-split",
	  .value = "metrics/EPT02 split caches: bytes held after the split",
	  .value_what = "held per VM",
	  .floor = "ratios/EPT02 split: top-ups per huge leaf split",
	  .floor_what = "top-ups / split" },
	{ .seed = "003",
	  .experiment = "pre-fault vs demand faulting: map + first touch + workload",
	  .published = "32 vCPUs, 64 GiB: > 50% better (1.5x)",
	  .published_x = 1.5,
	  .run = "prefault",
	  .value = "ratios/anonymous: Ratio demand / pre-fault, map + first touch + workload",
	  .value_what = "demand / pre-fault",
	  .floor = "ratios/anonymous: Ratio first touch after pre-fault / walk floor",
	  .floor_what = "first touch / walk" },
	{ .seed = "003",
	  .experiment = "direct build (2 workers) vs demand faulting",
	  .published = "(same series: > 50%, 1.5x)",
	  .published_x = 1.5,
	  .run = "prefault",
	  .value = "ratios/anonymous: Ratio demand / direct build (2 workers), map + first "
		   "touch + workload",
	  .value_what = "demand / direct build",
	  .floor = "ratios/anonymous: Ratio first touch after direct build (2 workers) / walk "
		   "floor",
	  .floor_what = "first touch / walk" },
	{ .seed = "004",
	  .experiment = "CR0.WP toggles: unload on change vs role split",
	  .published = "ssdd, TDP MMU: 7.98 -> 3.41 s: 2.3x",
	  .published_x = 7.98 / 3.41,
	  .run = "cr0-wp",
	  .value = "ratios/Ratio unload-on-change / role split",
	  .value_what = "unload / split",
	  .floor = "metrics/Role split: ns per toggle (whole loop)",
	  .floor_den = "floors/Guest walk: hw 2-D walk ns after INVLPG",
	  .floor_what = "toggle / 2-D walk" },
	/* Seed 000's proposal (issue 14): 2 vCPUs in 2 L2s scale as the walk
	 * floor does with per-root locks; an L2 faulting does not slow L1. */
	{ .seed = "000",
	  .experiment = "nested populate, 2 L2s: scaling efficiency, per-root locks",
	  .published = "(proposal, no figure; goal >= 0.9)",
	  .run = "nested-locks",
	  .value = "ratios/per-root locks: Scaling efficiency (populate scaling / walk floor "
		   "scaling)",
	  .value_what = "2 vs 1 / floor's",
	  .floor = "ratios/per-root locks: Ratio populate / walk floor (L2)",
	  .floor_what = "fault / walk" },
	{ .seed = "000",
	  .experiment = "nested populate, 2 L2s: scaling efficiency, global lock",
	  .published = "(before: one lock)",
	  .run = "nested-locks",
	  .value = "ratios/global lock: Scaling efficiency (populate scaling / walk floor "
		   "scaling)",
	  .value_what = "2 vs 1 / floor's",
	  .floor = "ratios/global lock: Ratio populate / walk floor (L2)",
	  .floor_what = "fault / walk" },
	{ .seed = "000",
	  .experiment = "L1 populate while an L2 faults / L1 alone, per-root locks",
	  .published = "(proposal, no figure; goal >= 0.9)",
	  .run = "mixed-locks",
	  .value = "ratios/per-root locks: L1 throughput while L2 faults / L1 alone",
	  .value_what = "L1 with L2 / alone",
	  .floor = "ratios/per-root locks: L1 efficiency (throughput ratio / walk floor's ratio)",
	  .floor_what = "/ floor's ratio" },
	{ .seed = "000",
	  .experiment = "L1 populate while an L2 faults / L1 alone, global lock",
	  .published = "(before: one lock)",
	  .run = "mixed-locks",
	  .value = "ratios/global lock: L1 throughput while L2 faults / L1 alone",
	  .value_what = "L1 with L2 / alone",
	  .floor = "ratios/global lock: L1 efficiency (throughput ratio / walk floor's ratio)",
	  .floor_what = "/ floor's ratio" },
	{ .seed = "000",
	  .experiment = "nested dirty logging, 2 L2s, eager split off: Iteration 1 dirty memory "
			"time",
	  .published = "(proposal, no figure)",
	  .run = "nested-dirty-locks",
	  .value = "ratios/Iteration 1 dirty memory time, global lock / per-root locks",
	  .value_what = "global / per-root",
	  .floor = "ratios/per-root locks: Ratio iteration 1 dirty memory / walk floor",
	  .floor_what = "per-root / walk" },
	{ .seed = "-",
	  .experiment = "populate: fault in every page, 2 vCPUs",
	  .published = "(no seed figure)",
	  .run = "populate",
	  .value = "metrics/Populate ns per page per vCPU",
	  .value_what = "per fault",
	  .floor = "ratios/Ratio populate / walk floor",
	  .floor_what = "fault / walk" },
};
#define NR_ROWS (sizeof(rows) / sizeof(rows[0]))

static struct tour_run *find_run(const char *id)
{
	for (size_t i = 0; id && i < NR_RUNS; i++)
		if (!strcmp(runs[i].id, id))
			return &runs[i];
	return NULL;
}

/* "section/name" in @json: its median, or NAN; *@unit gets its unit. */
static double figure(const struct jv *json, const char *spec, const char **unit)
{
	char section[16];
	const char *slash = strchr(spec, '/');
	const struct jv *m;

	if (!slash || (size_t)(slash - spec) >= sizeof(section))
		return NAN;
	memcpy(section, spec, (size_t)(slash - spec));
	section[slash - spec] = '\0';
	m = jv_get(jv_get(json, section), slash + 1);
	if (unit)
		*unit = jv_str(jv_get(m, "unit"), "");
	return jv_num(jv_get(m, "median"), NAN);
}

static double row_figure(const struct jv *json, const char *num, const char *den, const char **unit)
{
	double v = figure(json, num, unit);

	if (den) {
		v /= figure(json, den, NULL);
		if (unit)
			*unit = "x";
	}
	return v;
}

/* Run one experiment as a child: stdout to @log, JSON to @json. */
static int run_child(const char *const *args, const char *log, const char *json, double *secs)
{
	const char *argv[MAX_ARGS + 4];
	uint64_t t0 = now_ns();
	int n = 0, status;
	pid_t pid;

	argv[n++] = perf_self();
	for (int i = 0; args[i]; i++)
		argv[n++] = args[i];
	argv[n++] = "--json";
	argv[n++] = json;
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
			_exit(127);
		close(fd);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	*secs = (double)(now_ns() - t0) / 1e9;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

static void fmt_value(char *buf, size_t len, double v, const char *unit)
{
	if (isnan(v))
		snprintf(buf, len, "-");
	else if (!strcmp(unit, "x"))
		snprintf(buf, len, "%.2fx", v);
	else
		snprintf(buf, len, "%.0f %s", v, unit);
}

static void print_table(FILE *f, bool markdown)
{
	char v[48], fl[48];

	(void)markdown;
	fprintf(f,
		"| seed | experiment | the seed published | vmmu here | vs. floor (same run) |\n");
	fprintf(f, "|---|---|---|---|---|\n");
	for (size_t i = 0; i < NR_ROWS; i++) {
		struct tour_row *r = &rows[i];
		const char *unit = "x";

		if (r->run && find_run(r->run)->json)
			figure(find_run(r->run)->json, r->value, &unit);
		if (r->value_den)
			unit = "x";
		if (strcmp(r->status, "ok")) {
			snprintf(v, sizeof(v), "%s", r->status);
			snprintf(fl, sizeof(fl), "-");
		} else {
			char a[24], b[24];

			fmt_value(a, sizeof(a), r->v, unit);
			fmt_value(b, sizeof(b), r->f, "x");
			snprintf(v, sizeof(v), "%s %s", a, r->value_what);
			snprintf(fl, sizeof(fl), "%s %s", b, r->floor_what);
		}
		fprintf(f, "| %s | %s | %s | %s | %s |\n", r->seed, r->experiment, r->published, v,
			fl);
	}
}

static void json_rows(FILE *f, void *arg)
{
	(void)arg;
	fprintf(f, ",\n  \"rows\": [");
	for (size_t i = 0; i < NR_ROWS; i++) {
		const struct tour_row *r = &rows[i];
		const struct tour_run *run = find_run(r->run);

		fprintf(f, "%s\n    { \"seed\": ", i ? "," : "");
		perf_json_str(f, r->seed);
		fprintf(f, ", \"experiment\": ");
		perf_json_str(f, r->experiment);
		fprintf(f, ", \"published\": ");
		perf_json_str(f, r->published);
		fprintf(f, ", \"published_ratio\": ");
		perf_json_num(f, r->published_x > 0 ? r->published_x : NAN);
		fprintf(f, ", \"status\": ");
		perf_json_str(f, r->status);
		fprintf(f, ",\n      \"value\": ");
		perf_json_num(f, r->v);
		fprintf(f, ", \"value_what\": ");
		perf_json_str(f, r->value_what ? r->value_what : "");
		fprintf(f, ", \"floor_ratio\": ");
		perf_json_num(f, r->f);
		fprintf(f, ", \"floor_what\": ");
		perf_json_str(f, r->floor_what ? r->floor_what : "");
		fprintf(f, ", \"run\": ");
		perf_json_str(f, run ? run->id : "");
		fprintf(f, " }");
	}
	fprintf(f, "\n  ],\n  \"runs\": [");
	for (size_t i = 0; i < NR_RUNS; i++) {
		fprintf(f, "%s\n    { \"id\": ", i ? "," : "");
		perf_json_str(f, runs[i].id);
		fprintf(f, ", \"status\": %d, \"seconds\": ", runs[i].status);
		perf_json_num(f, runs[i].seconds);
		fprintf(f, " }");
	}
	fprintf(f, "\n  ]");
}

static int run_gnuplot(const char *dir)
{
	pid_t pid;
	int status;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		int null = open("/dev/null", O_WRONLY);

		if (chdir(dir) || null < 0 || dup2(null, STDOUT_FILENO) < 0)
			_exit(127);
		execlp("gnuplot", "gnuplot", "tour.gp", (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

static void write_plots(const char *dir)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/tour.dat", dir);
	f = fopen(path, "w");
	if (!f)
		return;
	fprintf(f, "# row label, the seed's ratio, vmmu's ratio, vmmu vs its floor\n");
	for (size_t i = 0; i < NR_ROWS; i++) {
		const struct tour_row *r = &rows[i];
		char label[64];
		bool x = r->value && !strncmp(r->value, "ratios/", 7);

		snprintf(label, sizeof(label), "%s %.*s", r->seed,
			 (int)strcspn(r->experiment, ":("), r->experiment);
		fprintf(f, "\"%s\" %g %g %g\n", label, r->published_x > 0 ? r->published_x : NAN,
			x && !isnan(r->v) ? r->v : NAN, isnan(r->f) ? NAN : r->f);
	}
	fclose(f);
	snprintf(path, sizeof(path), "%s/tour.gp", dir);
	f = fopen(path, "w");
	if (!f)
		return;
	fprintf(f, "# gnuplot tour.gp (written by vmmu-perf tour -o)\n"
		   "set terminal png size 1200,600\n"
		   "set style data histograms\nset style histogram clustered gap 1\n"
		   "set style fill solid 0.8 border -1\nset logscale y\nset grid ytics\n"
		   "set xtics rotate by -25 scale 0 font ',9'\nset key top left\n"
		   "set datafile missing 'nan'\n"
		   "set output 'tour-speedup.png'\n"
		   "set title 'vmmu-perf tour: before / after, as the seed published and here'\n"
		   "set ylabel 'ratio (x, log scale)'\n"
		   "plot 'tour.dat' using 2:xtic(1) title 'seed (published)', "
		   "'' using 3 title 'vmmu here'\n"
		   "set output 'tour-floor.png'\n"
		   "set title 'vmmu-perf tour: vmmu against its floor in the same run'\n"
		   "set ylabel 'x the floor (log scale)'\n"
		   "plot 'tour.dat' using 4:xtic(1) title 'vmmu / floor'\n");
	fclose(f);
	if (run_gnuplot(dir))
		fprintf(stderr, "vmmu-perf tour: gnuplot failed or missing: no plots\n");
}

static void write_report(const char *dir, bool quick, double secs)
{
	char path[4096], when[64];
	struct utsname u;
	time_t t = time(NULL);
	FILE *f;

	snprintf(path, sizeof(path), "%s/report.md", dir);
	f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "vmmu-perf tour: %s: %s\n", path, strerror(errno));
		return;
	}
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", gmtime(&t));
	if (uname(&u))
		snprintf(u.release, sizeof(u.release), "?");
	fprintf(f,
		"# vmmu-perf tour\n\n%s, vmmu-perf %s, %ld CPUs, Linux %s, %s sizes, "
		"%.0f s.\n\n",
		when, VMMU_PERF_VERSION, sysconf(_SC_NPROCESSORS_ONLN), u.release,
		quick ? "--quick" : "full", secs);
	fprintf(f, "Each seed's experiment on vmmu and its hardware model. \"The seed "
		   "published\" is the figure of the mailing-list thread (on real hardware, "
		   "many vCPUs); \"vmmu here\" is the same before/after ratio measured in this "
		   "run; \"vs. floor\" is vmmu's figure against a floor measured in the same "
		   "process (a walk-only pass with every page mapped, TLB cold), the only "
		   "figure that is stable on a shared machine.\n\n");
	print_table(f, true);
	fprintf(f, "\n![before/after ratios](tour-speedup.png)\n\n"
		   "![against the floor](tour-floor.png)\n\n## Runs\n\n");
	for (size_t i = 0; i < NR_RUNS; i++) {
		const struct tour_run *r = &runs[i];
		const char *const *a = quick ? r->quick : r->argv;

		fprintf(f, "- `%s`: `vmmu-perf", r->id);
		for (int k = 0; a[k]; k++)
			fprintf(f, " %s", a[k]);
		fprintf(f, "`, exit %d, %.1f s; output [%s.txt](%s.txt), JSON [%s.json](%s.json)\n",
			r->status, r->seconds, r->id, r->id, r->id, r->id);
	}
	fprintf(f, "\nRows marked \"not built\" wait for the part of vmmu that runs them.\n"
		   "Compare two tours with `vmmu-perf compare A/tour.json B/tour.json`.\n");
	fclose(f);
}

static void usage(void)
{
	printf("usage: vmmu-perf tour [--quick] [-o DIR] [--json FILE]\n"
	       "  Runs every seed's experiment (about a minute on 2 cores) and prints one\n"
	       "  table: the seed, the experiment, the figure the seed published, vmmu's\n"
	       "  figure here and its ratio to the floor measured in the same run.\n"
	       "  Progress goes to stderr.\n"
	       "  --quick   small sizes (seconds; for tests): the figures mean little\n"
	       "  -o DIR    keep each experiment's output and JSON in DIR, and write\n"
	       "            DIR/report.md, DIR/tour.json and gnuplot plots DIR/tour-*.png\n");
}

static void cleanup_tmp(const char *dir)
{
	char path[4096];

	for (size_t i = 0; i < NR_RUNS; i++) {
		snprintf(path, sizeof(path), "%s/%s.txt", dir, runs[i].id);
		unlink(path);
		snprintf(path, sizeof(path), "%s/%s.json", dir, runs[i].id);
		unlink(path);
	}
	rmdir(dir);
}

static int cmd_tour(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char tmpdir[] = "/tmp/vmmu-tour.XXXXXX", path[4096], jpath[4096];
	const char *dir = NULL;
	bool quick = false;
	unsigned failed = 0, nr = 0;
	uint64_t t0 = now_ns();
	int c;

	while ((c = getopt_long(argc, argv, "qo:h", opts, NULL)) != -1) {
		switch (c) {
		case 'q':
			quick = true;
			break;
		case 'o':
			dir = optarg;
			break;
		case 'h':
			usage();
			return 0;
		default:
			usage();
			return 2;
		}
	}
	if (optind != argc) {
		usage();
		return 2;
	}
	if (dir) {
		if (mkdir(dir, 0755) && errno != EEXIST) {
			fprintf(stderr, "vmmu-perf tour: %s: %s\n", dir, strerror(errno));
			return 1;
		}
	} else if (!mkdtemp(tmpdir)) {
		fprintf(stderr, "vmmu-perf tour: mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	perf_config("sizes", "%s", quick ? "quick" : "full");
	perf_json_extra(json_rows, NULL);

	nr = (unsigned)NR_RUNS;
	for (size_t i = 0; i < NR_RUNS; i++) {
		struct tour_run *r = &runs[i];
		const char *const *a = quick ? r->quick : r->argv;
		char err[256];

		fprintf(stderr, "tour [%zu/%u] vmmu-perf", i + 1, nr);
		for (int k = 0; a[k]; k++)
			fprintf(stderr, " %s", a[k]);
		fprintf(stderr, " ...");
		snprintf(path, sizeof(path), "%s/%s.txt", dir ? dir : tmpdir, r->id);
		snprintf(jpath, sizeof(jpath), "%s/%s.json", dir ? dir : tmpdir, r->id);
		unlink(jpath);
		if (!perf_find(a[0])) {
			r->status = -1;
			fprintf(stderr, " not built\n");
			continue;
		}
		r->status = run_child(a, path, jpath, &r->seconds);
		r->json = r->status ? NULL : jv_parse_file(jpath, err, sizeof(err));
		if (r->status)
			fprintf(stderr, " FAILED (exit %d; output in %s)\n", r->status,
				dir ? path : "the temporary log, now removed");
		else if (!r->json)
			fprintf(stderr, " bad JSON: %s\n", err);
		else
			fprintf(stderr, " %.1f s\n", r->seconds);
	}

	for (size_t i = 0; i < NR_ROWS; i++) {
		struct tour_row *r = &rows[i];
		const struct tour_run *run = find_run(r->run);

		r->v = r->f = NAN;
		if (!run) {
			r->status = "not built";
			continue;
		}
		if (!run->json) {
			r->status = "failed";
			failed++;
			continue;
		}
		r->v = row_figure(run->json, r->value, r->value_den, NULL);
		r->f = row_figure(run->json, r->floor, r->floor_den, NULL);
		if (isnan(r->v) || isnan(r->f)) {
			r->status = "missing";
			fprintf(stderr, "tour: seed %s: %s not in %s's JSON\n", r->seed,
				isnan(r->v) ? r->value : r->floor, run->id);
			failed++;
			continue;
		}
		r->status = "ok";
		perf_recordf(PERF_RATIO, !strncmp(r->value, "ratios/", 7) ? "x" : "ns", r->v,
			     "seed %s %s [%s]", r->seed, r->experiment, r->value_what);
		perf_recordf(PERF_RATIO, "x", r->f, "seed %s %s [%s]", r->seed, r->experiment,
			     r->floor_what);
	}

	printf("\nvmmu-perf tour: each seed's experiment, %s sizes\n\n", quick ? "quick" : "full");
	print_table(stdout, false);
	printf("\n\"vmmu here\" is measured on a software model with few vCPUs; \"vs. floor\" "
	       "divides by a walk-only pass of the same run.\n");
	fflush(stdout);
	if (dir) {
		FILE *f;

		snprintf(path, sizeof(path), "%s/tour.json", dir);
		f = fopen(path, "w");
		if (f) {
			char *args[] = { (char *)"tour", quick ? (char *)"--quick" : NULL, NULL };

			perf_json_write(f, "tour", quick ? 2 : 1, args, failed ? 1 : 0);
			fclose(f);
		}
		write_plots(dir);
		write_report(dir, quick, (double)(now_ns() - t0) / 1e9);
		printf("Report: %s/report.md (plots tour-speedup.png, tour-floor.png; each run's "
		       "output and JSON beside it)\n",
		       dir);
	}
	for (size_t i = 0; i < NR_RUNS; i++)
		jv_free(runs[i].json);
	if (!dir)
		cleanup_tmp(tmpdir);
	fprintf(stderr, "tour: %.0f s\n", (double)(now_ns() - t0) / 1e9);
	return failed ? 1 : 0;
}

VMMU_PERF_EXPERIMENT(tour, "tour", "every seed's experiment in about a minute, one summary table",
		     cmd_tour)
