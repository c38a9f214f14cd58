/* SPDX-License-Identifier: MIT */
/*
 * perf_access_tracking.c - vmmu-perf access-tracking: KVM's
 * access_tracking_perf_test on vmmu.
 *
 * Every vCPU writes its region (populating it), writes and reads it again,
 * then the memory is marked idle (vmmu_idle_mark, what page_idle does
 * through the aging notifiers) and written, marked idle again and read.
 * The times carry KVM's names; idle page counts show what the marking and
 * the accesses did.  Without EPT A/D bits (-e) marking idle takes every
 * right away from the leaves and the accesses that follow are the faults
 * the lockless fast path fixes; with A/D bits it clears Accessed and the
 * processor sets it again without a fault.
 *
 * --compare fast runs the seed's two metrics with the fast path off and on
 * in one process, at 1 and 2 vCPUs: dirty logging's "Iteration 2 dirty
 * memory time" (write-protect mode, without A/D bits, as the seed ran with
 * eptad=N pml=N) and "Writing to idle memory" (without A/D bits), each
 * with the walk floor of the same VM (every page mapped and writable, TLB
 * cold) to give the cost per page of a fast fault against a walk.
 */
#define _GNU_SOURCE
#include "perf.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct at_opts {
	unsigned nr_vcpus;
	uint64_t bytes;
	enum vmmu_backing backing;
	bool no_ad, no_fast;
};

static uint64_t vcpu_gpa(const struct perf_vm *p, unsigned i)
{
	return TEST_GPA + i * p->bytes_per_vcpu;
}

/* Mark every vCPU's region idle; returns the time taken. */
static uint64_t mark_idle(struct perf_vm *p)
{
	uint64_t t0 = now_ns();

	for (unsigned i = 0; i < p->nr_vcpus; i++) {
		int r = vmmu_idle_mark(p->vm, 0, vcpu_gpa(p, i), p->bytes_per_vcpu);

		if (r)
			die("vmmu_idle_mark", r);
	}
	return now_ns() - t0;
}

static void print_idle(struct perf_vm *p, const char *when)
{
	uint64_t idle_total = 0, mapped_total = 0;

	for (unsigned i = 0; i < p->nr_vcpus; i++) {
		uint64_t idle, mapped;
		int r = vmmu_idle_count(p->vm, 0, vcpu_gpa(p, i), p->bytes_per_vcpu, &idle,
					&mapped);

		if (r)
			die("vmmu_idle_count", r);
		idle_total += idle;
		mapped_total += mapped;
	}
	printf("Idle pages %s: %" PRIu64 " of %" PRIu64 " mapped (%" PRIu64 " in the regions)\n",
	       when, idle_total, mapped_total, (uint64_t)(p->nr_vcpus * p->bytes_per_vcpu / PAGE));
}

static uint64_t fast_faults(struct perf_vm *p)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < p->nr_vcpus; i++) {
		struct vmmu_vcpu_stats s;

		vmmu_vcpu_stats(p->vcpus[i], &s);
		n += s.pf_fast;
	}
	return n;
}

/* A write pass over memory that is mapped writable, TLBs cold. */
static uint64_t walk_floor(struct perf_vm *p)
{
	run_pass(p, p->nr_vcpus, PASS_WRITE); /* everything writable again */
	flush_all_tlbs(p);
	return run_pass(p, p->nr_vcpus, PASS_WRITE);
}

static void at_run(const struct at_opts *o)
{
	struct vmmu_vm_config cfg = { .disable_ept_ad = o->no_ad,
				      .disable_fast_page_fault = o->no_fast };
	uint64_t pages = o->nr_vcpus * o->bytes / PAGE, idle_write, floor, f0;
	struct perf_vm p;

	perf_vm_create_cfg(&p, &cfg, o->nr_vcpus, o->bytes, true, o->backing);
	print_time("Populating memory time", run_pass(&p, o->nr_vcpus, PASS_WRITE));
	print_time("Writing to populated memory time", run_pass(&p, o->nr_vcpus, PASS_WRITE));
	print_time("Reading from populated memory time", run_pass(&p, o->nr_vcpus, PASS_READ));
	print_time("Mark memory idle time", mark_idle(&p));
	print_idle(&p, "after marking");
	f0 = fast_faults(&p);
	idle_write = run_pass(&p, o->nr_vcpus, PASS_WRITE);
	print_time("Writing to idle memory time", idle_write);
	printf("Fast page faults while writing: %" PRIu64 "\n", fast_faults(&p) - f0);
	print_idle(&p, "after writing");
	print_time("Mark memory idle time", mark_idle(&p));
	f0 = fast_faults(&p);
	print_time("Reading from idle memory time", run_pass(&p, o->nr_vcpus, PASS_READ));
	printf("Fast page faults while reading: %" PRIu64 "\n", fast_faults(&p) - f0);
	print_idle(&p, "after reading");
	floor = walk_floor(&p);
	print_time("Walk floor time", floor);
	perf_record(PERF_RATIO, "Ratio writing to idle memory / walk floor", "x",
		    (double)idle_write / (double)floor);
	printf("Writing to idle memory: %.1f ns per page, walk floor %.1f ns per page, "
	       "ratio %.2fx\n",
	       (double)idle_write / (double)(pages / o->nr_vcpus),
	       (double)floor / (double)(pages / o->nr_vcpus), (double)idle_write / (double)floor);
	perf_vm_destroy(&p);
}

/*
 * The seed's dirty-log metric: populate, enable logging (write-protect),
 * dirty everything (iteration 1), harvest (get dirty log protects again),
 * dirty everything again (iteration 2, timed).  *@floor gets the walk
 * floor of the same VM, *@fast the fast faults of iteration 2.
 */
static uint64_t dirty_log_iter2(unsigned nr, uint64_t bytes, enum vmmu_backing b, bool fast,
				uint64_t *floor, uint64_t *nfast)
{
	struct vmmu_vm_config cfg = { .disable_ept_ad = true,
				      .dirty_log_wrprot = true,
				      .disable_fast_page_fault = !fast };
	struct vmmu_userspace_memory_region mr;
	uint64_t words = (nr * bytes / PAGE + 63) / 64, *bm, t, f0;
	struct perf_vm p;
	int r;

	perf_vm_create_cfg(&p, &cfg, nr, bytes, true, b);
	bm = calloc(words, sizeof(*bm));
	if (!bm)
		die("calloc", -ENOMEM);
	run_pass(&p, nr, PASS_WRITE);
	mr = (struct vmmu_userspace_memory_region){
		.slot = 0,
		.flags = VMMU_MEM_LOG_DIRTY_PAGES,
		.guest_phys_addr = TEST_GPA,
		.memory_size = nr * bytes,
		.userspace_addr = (uint64_t)(uintptr_t)p.mem,
	};
	r = vmmu_set_user_memory_region(p.vm, &mr);
	if (r)
		die("vmmu_set_user_memory_region", r);
	run_pass(&p, nr, PASS_WRITE);
	r = vmmu_get_dirty_log(p.vm, 0, bm);
	if (r)
		die("vmmu_get_dirty_log", r);
	f0 = fast_faults(&p);
	t = run_pass(&p, nr, PASS_WRITE);
	*nfast = fast_faults(&p) - f0;
	r = vmmu_get_dirty_log(p.vm, 0, bm);
	if (r)
		die("vmmu_get_dirty_log", r);
	*floor = walk_floor(&p);
	free(bm);
	perf_vm_destroy(&p);
	return t;
}

/* The access-tracking metric: populate, mark idle, write (timed). */
static uint64_t idle_write(unsigned nr, uint64_t bytes, enum vmmu_backing b, bool fast,
			   uint64_t *floor, uint64_t *nfast)
{
	struct vmmu_vm_config cfg = { .disable_ept_ad = true, .disable_fast_page_fault = !fast };
	struct perf_vm p;
	uint64_t t, f0;

	perf_vm_create_cfg(&p, &cfg, nr, bytes, true, b);
	run_pass(&p, nr, PASS_WRITE);
	mark_idle(&p);
	f0 = fast_faults(&p);
	t = run_pass(&p, nr, PASS_WRITE);
	*nfast = fast_faults(&p) - f0;
	*floor = walk_floor(&p);
	perf_vm_destroy(&p);
	return t;
}

#define AT_MAX_REPEATS 10

struct cmp_cell {
	uint64_t t[AT_MAX_REPEATS], floor[AT_MAX_REPEATS], nfast[AT_MAX_REPEATS];
};

static double med_of(const uint64_t *v, unsigned n)
{
	double d[AT_MAX_REPEATS];

	for (unsigned i = 0; i < n; i++)
		d[i] = (double)v[i];
	return perf_median(d, n);
}

static void compare_fast(const struct at_opts *o, unsigned reps)
{
	static const unsigned vcpus[] = { 1, 2 };
	static struct cmp_cell c[2][2][2]; /* [metric][vcpus][fast] */
	const char *names[2] = { "Iteration 2 dirty memory time", "Writing to idle memory" };
	double x[AT_MAX_REPEATS];
	char what[160];

	memset(c, 0, sizeof(c));
	/* Off and on alternate; every run is kept. */
	for (unsigned rep = 0; rep < reps; rep++)
		for (unsigned m = 0; m < 2; m++)
			for (unsigned v = 0; v < 2; v++)
				for (unsigned f = 0; f < 2; f++) {
					struct cmp_cell *e = &c[m][v][f];

					e->t[rep] = (m == 0 ? dirty_log_iter2 : idle_write)(
						vcpus[v], o->bytes, o->backing, f, &e->floor[rep],
						&e->nfast[rep]);
				}

	printf("\nFast page fault, %" PRIu64 " MiB per vCPU, backing %s, no EPT A/D bits, "
	       "write-protect dirty logging, median of %u runs each\n",
	       o->bytes >> 20, vmmu_backing_name(o->backing), reps);
	printf("| %-30s | %5s | %18s | %18s | %8s |\n", "Metric", "vCPUs", "fast path off",
	       "fast path on", "off / on");
	printf("|--------------------------------|-------|--------------------|"
	       "--------------------|----------|\n");
	for (unsigned m = 0; m < 2; m++)
		for (unsigned v = 0; v < 2; v++) {
			double off = med_of(c[m][v][0].t, reps), on = med_of(c[m][v][1].t, reps);

			printf("| %-30s | %5u | %16.9fs | %16.9fs | %7.2fx |\n", names[m], vcpus[v],
			       off / 1e9, on / 1e9, off / on);
		}
	/* Every figure, median (min, max); each ratio within a run. */
	printf("\n");
	for (unsigned m = 0; m < 2; m++)
		for (unsigned v = 0; v < 2; v++) {
			for (unsigned f = 0; f < 2; f++) {
				snprintf(what, sizeof(what), "%s, %u vCPU(s), fast path %s",
					 names[m], vcpus[v], f ? "on" : "off");
				print_times(what, c[m][v][f].t, reps);
				snprintf(what, sizeof(what),
					 "Walk floor, %s, %u vCPU(s), fast path %s", names[m],
					 vcpus[v], f ? "on" : "off");
				print_times(what, c[m][v][f].floor, reps);
			}
			for (unsigned k = 0; k < reps; k++)
				x[k] = (double)c[m][v][0].t[k] / (double)c[m][v][1].t[k];
			print_ratiosf(x, reps, "%s, %u vCPU(s): fast path off / on", names[m],
				      vcpus[v]);
		}
	printf("\nPer page (each vCPU's pages), against the walk floor of the same VM "
	       "(all mapped and writable, TLB cold):\n");
	for (unsigned m = 0; m < 2; m++)
		for (unsigned v = 0; v < 2; v++) {
			double pages = (double)(o->bytes / PAGE);
			const struct cmp_cell *on = &c[m][v][1], *off = &c[m][v][0];

			for (unsigned k = 0; k < reps; k++)
				x[k] = (double)on->t[k] / (double)on->floor[k];
			print_ratiosf(x, reps, "%s, %u vCPU(s): fast fault / walk floor", names[m],
				      vcpus[v]);
			for (unsigned k = 0; k < reps; k++)
				x[k] = (double)off->t[k] / (double)off->floor[k];
			print_ratiosf(x, reps, "%s, %u vCPU(s): locked path / walk floor", names[m],
				      vcpus[v]);
			printf("%s, %u vCPU(s): fast fault %.1f ns/page, locked path %.1f ns/page, "
			       "walk floor %.1f ns/page (medians); fast faults %" PRIu64
			       " (on) / %" PRIu64 " (off) in run 1\n",
			       names[m], vcpus[v], med_of(on->t, reps) / pages,
			       med_of(off->t, reps) / pages, med_of(on->floor, reps) / pages,
			       on->nfast[0], off->nfast[0]);
		}
}

static void usage(void)
{
	printf("usage: vmmu-perf access-tracking [-v vcpus] [-b bytes-per-vcpu] [-s backing]\n"
	       "                                 [-e] [--no-fast] [--compare fast [--repeat N]]\n"
	       "  KVM's access_tracking_perf_test: populate, write, read, mark idle, write,\n"
	       "  mark idle, read; idle page counts after each marking and access.\n"
	       "  -v N        vCPUs (default 1)\n"
	       "  -b SIZE     bytes per vCPU (default 1G)\n"
	       "  -s BACKING  anonymous (default), anonymous_thp, anonymous_hugetlb_2mb, ...\n"
	       "  -e          no EPT A/D bits: marking idle uses the access-tracked encoding\n"
	       "  --no-fast   lockless fast page faults off (disable_fast_page_fault)\n"
	       "  --compare fast  the seed's table: Iteration 2 dirty memory time and Writing\n"
	       "              to idle memory, fast path off vs on, at 1 and 2 vCPUs\n"
	       "  --repeat N, -r N  with --compare, N runs of each: every figure is the\n"
	       "              median (min, max), each ratio taken within a run (default 1)\n");
}

static int cmd_access_tracking(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "no-fast", no_argument, NULL, 'F' },
		{ "compare", required_argument, NULL, 'C' },
		{ "repeat", required_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct at_opts o = { .nr_vcpus = 1,
			     .bytes = 1ull << 30,
			     .backing = VMMU_BACKING_ANONYMOUS };
	bool compare = false;
	unsigned reps = 1;
	int c;

	while ((c = getopt_long(argc, argv, "v:b:s:r:eh", opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			o.nr_vcpus = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'b':
			o.bytes = parse_size(optarg);
			break;
		case 's':
			if (vmmu_backing_parse(optarg, &o.backing)) {
				fprintf(stderr, "unknown backing '%s'\n", optarg);
				return 2;
			}
			break;
		case 'e':
			o.no_ad = true;
			break;
		case 'F':
			o.no_fast = true;
			break;
		case 'C':
			if (strcmp(optarg, "fast")) {
				fprintf(stderr, "--compare: only 'fast' is known\n");
				return 2;
			}
			compare = true;
			break;
		case 'N':
		case 'r':
			reps = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'h':
			usage();
			return 0;
		default:
			usage();
			return 2;
		}
	}
	if (!o.nr_vcpus || o.nr_vcpus > VMMU_MAX_VCPUS || o.bytes < PAGE ||
	    o.bytes % vmmu_backing_page_size(o.backing) || !reps || reps > AT_MAX_REPEATS) {
		usage();
		return 2;
	}
	perf_config("vcpus", "%u", o.nr_vcpus);
	perf_config("bytes_per_vcpu", "%" PRIu64, o.bytes);
	perf_config("backing", "%s", vmmu_backing_name(o.backing));
	perf_config("mode", "%s", compare ? "compare fast" : "single run");
	if (compare)
		perf_config("repeats", "%u (median of)", reps);
	else {
		perf_config("ept_ad_bits", "%s", o.no_ad ? "off" : "on");
		perf_config("fast_page_fault", "%s", o.no_fast ? "off" : "on");
	}
	if (compare) {
		printf("Testing: fast path off vs on, 1 and 2 vCPUs, %" PRIu64 " MiB each, "
		       "backing %s\n",
		       o.bytes >> 20, vmmu_backing_name(o.backing));
		compare_fast(&o, reps);
		return 0;
	}
	printf("Testing: %u vCPU(s), %" PRIu64 " MiB each, backing %s, EPT A/D bits %s, "
	       "fast page faults %s\n",
	       o.nr_vcpus, o.bytes >> 20, vmmu_backing_name(o.backing), o.no_ad ? "off" : "on",
	       o.no_fast ? "off" : "on");
	at_run(&o);
	return 0;
}

VMMU_PERF_EXPERIMENT(access_tracking, "access-tracking",
		     "KVM's access_tracking_perf_test: idle marking, fast page faults",
		     cmd_access_tracking)
