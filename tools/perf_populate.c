/* SPDX-License-Identifier: MIT */
/*
 * perf_populate.c - vmmu-perf populate: fault in every page of guest memory
 * once (the populate phase of KVM's selftests) and compare with the walk
 * floor measured in the same run.
 */
#define _GNU_SOURCE
#include "perf.h"

#include <vmmu/nested.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct populate_result {
	uint64_t populate_ns, floor_ns, pages_per_vcpu;
	uint64_t populate_cpu_ns, floor_cpu_ns; /* CPU time of the slowest vCPU thread */
	struct vmmu_vm_stats vs;
	uint64_t pf_fixed, pf_spurious, pf_retry;
};

static void populate_once(unsigned nr_vcpus, uint64_t bytes, bool pretouch,
			  enum vmmu_backing backing, struct populate_result *res)
{
	struct perf_vm p;

	perf_vm_create(&p, nr_vcpus, bytes, pretouch, backing);
	res->pages_per_vcpu = bytes / PAGE;
	res->populate_ns = run_pass_cpu(&p, nr_vcpus, PASS_WRITE, &res->populate_cpu_ns);
	flush_all_tlbs(&p);
	res->floor_ns = run_pass_cpu(&p, nr_vcpus, PASS_WRITE, &res->floor_cpu_ns);
	vmmu_vm_stats(p.vm, &res->vs);
	res->pf_fixed = res->pf_spurious = res->pf_retry = 0;
	for (unsigned i = 0; i < nr_vcpus; i++) {
		struct vmmu_vcpu_stats s;

		vmmu_vcpu_stats(p.vcpus[i], &s);
		res->pf_fixed += s.pf_fixed;
		res->pf_spurious += s.pf_spurious;
		res->pf_retry += s.pf_retry;
	}
	perf_vm_destroy(&p);
}

/*
 * Nested mode (KVM memstress -n): L1 maps L2 identity-style with EPT12 in
 * a second slot, 2 MiB EPT12 leaves where it can, and the vCPUs run the
 * populate pass in L2, so every fault is a nested fault.  With
 * --l2-per-vcpu each vCPU is in its own L2 (its own EPT12 tree and EPT
 * pointer), so each faults into its own EPT02 root.
 */
/* Walk-floor passes per run in the nested modes, the best one kept. */
#define FLOOR_PASSES 3

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

struct nested_opts {
	unsigned nr_vcpus, repeats;
	uint64_t bytes;
	bool pretouch, per_vcpu, scaling;
	enum vmmu_backing backing;
	unsigned mode_first, mode_last; /* PERF_LOCK_* */
};

struct nested_result {
	uint64_t populate_ns, floor_ns, pages_per_vcpu;
	uint64_t populate_cpu_ns; /* CPU time of the slowest vCPU thread */
	struct perf_roots roots;
};

static void populate_nested(const struct nested_opts *o, unsigned nr_vcpus, unsigned mode,
			    struct nested_result *res)
{
	struct vmmu_vm_config cfg = { .nested_global_lock = mode == PERF_LOCK_GLOBAL };
	struct perf_vm p;
	struct perf_l2 l2;

	perf_vm_create_cfg(&p, &cfg, nr_vcpus, o->bytes, o->pretouch, o->backing);
	perf_l2_enter(&p, &l2, o->per_vcpu, (1ull << nr_vcpus) - 1);
	res->pages_per_vcpu = o->bytes / PAGE;
	res->populate_ns = run_pass_cpu(&p, nr_vcpus, PASS_WRITE, &res->populate_cpu_ns);
	/* The floor is short (a walk per page): the best of a few passes. */
	res->floor_ns = UINT64_MAX;
	for (int k = 0; k < FLOOR_PASSES; k++) {
		flush_all_tlbs(&p);
		res->floor_ns = min_u64(res->floor_ns, run_pass(&p, nr_vcpus, PASS_WRITE));
	}
	perf_roots_get(p.vm, &res->roots);
	perf_l2_leave(&p, &l2);
	perf_vm_destroy(&p);
}

#define POPULATE_MAX_REPEATS 64

static void report_nested(const struct nested_opts *o)
{
	static struct nested_result n[2][POPULATE_MAX_REPEATS], one[2][POPULATE_MAX_REPEATS];
	static struct populate_result tdp[POPULATE_MAX_REPEATS], tdp1[POPULATE_MAX_REPEATS];
	unsigned reps = o->repeats, nr = o->nr_vcpus;
	uint64_t t[POPULATE_MAX_REPEATS], f[POPULATE_MAX_REPEATS];
	double v[POPULATE_MAX_REPEATS], w[POPULATE_MAX_REPEATS], x[POPULATE_MAX_REPEATS];
	double eff[2][POPULATE_MAX_REPEATS];
	bool scaling = o->scaling && nr > 1;

	printf("Testing: nested (L1 maps L2 with 2 MiB EPT12 leaves, identity), %u vCPU(s) %s, "
	       "%" PRIu64 " MiB each, backing %s, host memory %s, nested MMU with %s, %u run(s)\n",
	       nr, o->per_vcpu ? "each in its own L2" : "in one L2", o->bytes >> 20,
	       vmmu_backing_name(o->backing), o->pretouch ? "pre-touched" : "not pre-touched",
	       o->mode_first == o->mode_last ? perf_lock_mode_names[o->mode_first] :
					       "per-root locks and the global lock, alternately",
	       reps);
	perf_config("vcpus", "%u", nr);
	perf_config("bytes_per_vcpu", "%" PRIu64, o->bytes);
	perf_config("backing", "%s", vmmu_backing_name(o->backing));
	perf_config("nested", "%s", o->per_vcpu ? "one L2 per vCPU" : "one L2");
	perf_config("repeats", "%u", reps);
	/* Run i of every mode (and of 1 vCPU, and of TDP) back to back:
	 * ratios within a run. */
	for (unsigned i = 0; i < reps; i++) {
		for (unsigned m = o->mode_first; m <= o->mode_last; m++) {
			populate_nested(o, nr, m, &n[m][i]);
			if (scaling)
				populate_nested(o, 1, m, &one[m][i]);
		}
		populate_once(nr, o->bytes, o->pretouch, o->backing, &tdp[i]);
		if (scaling)
			populate_once(1, o->bytes, o->pretouch, o->backing, &tdp1[i]);
	}
	for (unsigned m = o->mode_first; m <= o->mode_last; m++) {
		struct perf_summary s;

		printf("--- %s\n", perf_lock_mode_names[m]);
		if (o->mode_first != o->mode_last)
			perf_record_prefix("%s", perf_lock_mode_names[m]);
		for (unsigned i = 0; i < reps; i++) {
			t[i] = n[m][i].populate_ns;
			f[i] = n[m][i].floor_ns;
			v[i] = (double)t[i] / (double)n[m][i].pages_per_vcpu;
			w[i] = v[i] / ((double)tdp[i].populate_ns / (double)tdp[i].pages_per_vcpu);
			x[i] = (double)t[i] / (double)f[i];
		}
		print_times("Populate memory time (L2, nested)", t, reps);
		print_times("Walk floor time (L2)", f, reps);
		s = perf_summarize(v, reps);
		printf("Nested fault: %.1f ns per 4 KiB page per vCPU (min %.1f, max %.1f)\n",
		       s.med, s.min, s.max);
		for (unsigned i = 0; i < reps; i++)
			perf_record(PERF_METRIC, "Nested fault ns per page per vCPU", "ns", v[i]);
		print_ratios("Ratio nested fault / TDP populate fault", w, reps);
		print_ratios("Ratio populate / walk floor (L2)", x, reps);
		if (scaling) {
			for (unsigned i = 0; i < reps; i++) {
				const struct nested_result *a = &n[m][i], *b = &one[m][i];
				double tp_n = (double)a->pages_per_vcpu * nr /
					      (double)a->populate_ns,
				       tp_1 = (double)b->pages_per_vcpu / (double)b->populate_ns,
				       f_n = (double)a->pages_per_vcpu * nr / (double)a->floor_ns,
				       f_1 = (double)b->pages_per_vcpu / (double)b->floor_ns;

				t[i] = b->populate_ns;
				v[i] = tp_n / tp_1;
				w[i] = f_n / f_1;
				eff[m][i] = v[i] / w[i];
			}
			print_times("Populate memory time (L2, 1 vCPU)", t, reps);
			print_ratiosf(v, reps, "Scaling %u vCPUs / 1 vCPU (nested faults/s)", nr);
			print_ratios("Scaling of the walk floor itself (the ceiling)", w, reps);
			print_ratios("Scaling efficiency (populate scaling / walk floor scaling)",
				     eff[m], reps);
			/* Another ceiling: L1's own TDP populate, 2 vCPUs against
			 * 1, in the same runs (no nested lock at all). */
			for (unsigned i = 0; i < reps; i++) {
				w[i] = (double)tdp1[i].populate_ns * nr /
				       (double)tdp[i].populate_ns;
				x[i] = v[i] / w[i];
			}
			if (m == o->mode_first)
				print_ratiosf(w, reps, "Scaling of TDP populate (L1), %u vCPUs / 1",
					      nr);
			print_ratios("Nested scaling / TDP populate scaling", x, reps);
			/* Blind to sleeps and to the machine's load: extra work
			 * per fault (spinning, cache lines) when 2 run. */
			for (unsigned i = 0; i < reps; i++)
				v[i] = (double)one[m][i].populate_cpu_ns /
				       (double)n[m][i].populate_cpu_ns;
			print_ratiosf(
				v, reps,
				"CPU time per nested fault, 1 vCPU / %u vCPUs (CPU time; sleeps "
				"not counted)",
				nr);
		}
		perf_roots_print(&n[m][reps - 1].roots, "after populate (last run)");
	}
	perf_record_prefix(NULL);
	if (scaling)
		perf_warn_busy();
	if (o->mode_first != o->mode_last) {
		printf("--- global lock against per-root locks (each run's own figures)\n");
		for (unsigned i = 0; i < reps; i++)
			x[i] = (double)n[PERF_LOCK_GLOBAL][i].populate_ns /
			       (double)n[PERF_LOCK_PER_ROOT][i].populate_ns;
		print_ratios("Populate memory time (L2), global lock / per-root locks", x, reps);
		if (scaling) {
			for (unsigned i = 0; i < reps; i++)
				x[i] = eff[PERF_LOCK_PER_ROOT][i] / eff[PERF_LOCK_GLOBAL][i];
			print_ratios("Scaling efficiency, per-root locks / global lock", x, reps);
		}
	}
	{
		const struct vmmu_nested_stats *s = &n[o->mode_first][reps - 1].roots.s;

		printf("EPT02 leaves: 4K %" PRIu64 ", 2M %" PRIu64 ", 1G %" PRIu64
		       "; EPT02 table pages %" PRIu64 " (metadata %" PRIu64
		       " bytes, reverse maps %" PRIu64 " bytes); roots %" PRIu64 "\n",
		       s->ept02_pages_4k, s->ept02_pages_2m, s->ept02_pages_1g, s->shadow_pages,
		       s->meta_bytes, s->rmap_bytes, s->roots);
		printf("Shadow pages created %" PRIu64 ", EPT12 pages write-tracked %" PRIu64
		       ", nested faults %" PRIu64 "\n",
		       s->mmu_cache_miss, s->write_tracked_gfns, s->nested_faults);
	}
}

/*
 * --mixed: vCPU 0 populates its region in L1 (TDP faults) while vCPU 1
 * populates its own in its L2 (nested faults).  vCPU 0's throughput against
 * vCPU 0 alone, and the walk floor's own (vCPU 0 walking while vCPU 1
 * walks its L2, against alone), all in the same run.
 */
struct mixed_result {
	uint64_t alone, mixed_l1, mixed_l2; /* populate */
	uint64_t alone_cpu, mixed_l1_cpu; /* CPU time of the L1 vCPU's thread */
	struct perf_csw alone_csw, mixed_csw[2]; /* its context switches; L2's */
	uint64_t floor_alone, floor_l1, floor_l2;
	struct perf_roots roots;
};

static void mixed_once(const struct nested_opts *o, unsigned mode, struct mixed_result *m)
{
	struct vmmu_vm_config cfg = { .nested_global_lock = mode == PERF_LOCK_GLOBAL };
	uint64_t ns[VMMU_MAX_VCPUS], cpu[VMMU_MAX_VCPUS];
	struct perf_csw csw[VMMU_MAX_VCPUS];
	struct perf_vm p;
	struct perf_l2 l2;

	/* vCPU 0 alone (vCPU 1 waits in its L2). */
	perf_vm_create_cfg(&p, &cfg, 2, o->bytes, o->pretouch, o->backing);
	perf_l2_enter(&p, &l2, true, 2);
	run_pass_each_cpu(&p, 1, PASS_WRITE, ns, cpu, csw);
	m->alone_csw = csw[0];
	m->alone = ns[0];
	m->alone_cpu = cpu[0];
	perf_l2_leave(&p, &l2);
	perf_vm_destroy(&p);

	/* Both at once, in a fresh VM. */
	perf_vm_create_cfg(&p, &cfg, 2, o->bytes, o->pretouch, o->backing);
	perf_l2_enter(&p, &l2, true, 2);
	run_pass_each_cpu(&p, 3, PASS_WRITE, ns, cpu, csw);
	m->mixed_csw[0] = csw[0];
	m->mixed_csw[1] = csw[1];
	m->mixed_l1 = ns[0];
	m->mixed_l2 = ns[1];
	m->mixed_l1_cpu = cpu[0];
	/* The floors are short (a walk per page): the best of a few passes;
	 * the L2 vCPU's of the pass where the L1 vCPU's was best. */
	m->floor_alone = m->floor_l1 = UINT64_MAX;
	for (int k = 0; k < FLOOR_PASSES; k++) {
		flush_all_tlbs(&p);
		run_pass_each(&p, 1, PASS_WRITE, ns);
		m->floor_alone = min_u64(m->floor_alone, ns[0]);
		flush_all_tlbs(&p);
		run_pass_each(&p, 3, PASS_WRITE, ns);
		if (ns[0] < m->floor_l1) {
			m->floor_l1 = ns[0];
			m->floor_l2 = ns[1];
		}
	}
	perf_roots_get(p.vm, &m->roots);
	perf_l2_leave(&p, &l2);
	perf_vm_destroy(&p);
}

static void report_mixed(const struct nested_opts *o)
{
	static struct mixed_result r[2][POPULATE_MAX_REPEATS];
	unsigned reps = o->repeats;
	uint64_t t[POPULATE_MAX_REPEATS];
	double v[POPULATE_MAX_REPEATS], w[POPULATE_MAX_REPEATS], x[2][POPULATE_MAX_REPEATS];

	printf("Testing: mixed, vCPU 0 faults in L1 (TDP) while vCPU 1 faults in its L2 "
	       "(2 MiB EPT12 leaves), %" PRIu64 " MiB each, backing %s, host memory %s, nested "
	       "MMU with %s, %u run(s)\n",
	       o->bytes >> 20, vmmu_backing_name(o->backing),
	       o->pretouch ? "pre-touched" : "not pre-touched",
	       o->mode_first == o->mode_last ? perf_lock_mode_names[o->mode_first] :
					       "per-root locks and the global lock, alternately",
	       reps);
	perf_config("vcpus", "2 (vCPU 0 in L1, vCPU 1 in L2)");
	perf_config("bytes_per_vcpu", "%" PRIu64, o->bytes);
	perf_config("backing", "%s", vmmu_backing_name(o->backing));
	perf_config("repeats", "%u", reps);
	for (unsigned i = 0; i < reps; i++)
		for (unsigned m = o->mode_first; m <= o->mode_last; m++)
			mixed_once(o, m, &r[m][i]);
	for (unsigned m = o->mode_first; m <= o->mode_last; m++) {
		unsigned overlap = 0;

		printf("--- %s\n", perf_lock_mode_names[m]);
		if (o->mode_first != o->mode_last)
			perf_record_prefix("%s", perf_lock_mode_names[m]);
		for (unsigned i = 0; i < reps; i++)
			t[i] = r[m][i].alone;
		print_times("Populate memory time (L1 alone)", t, reps);
		for (unsigned i = 0; i < reps; i++)
			t[i] = r[m][i].mixed_l1;
		print_times("Populate memory time (L1, while L2 faults)", t, reps);
		for (unsigned i = 0; i < reps; i++) {
			t[i] = r[m][i].mixed_l2;
			overlap += r[m][i].mixed_l2 >= r[m][i].mixed_l1;
		}
		print_times("Populate memory time (L2, while L1 faults)", t, reps);
		for (unsigned i = 0; i < reps; i++)
			t[i] = r[m][i].floor_alone;
		print_times("Walk floor time (L1 alone)", t, reps);
		for (unsigned i = 0; i < reps; i++)
			t[i] = r[m][i].floor_l1;
		print_times("Walk floor time (L1, while L2 walks)", t, reps);
		for (unsigned i = 0; i < reps; i++) {
			v[i] = (double)r[m][i].alone / (double)r[m][i].mixed_l1;
			w[i] = (double)r[m][i].floor_alone / (double)r[m][i].floor_l1;
			x[m][i] = v[i] / w[i];
		}
		print_ratios("L1 throughput while L2 faults / L1 alone", v, reps);
		print_ratios("Walk floor's own: L1 walking while L2 walks / alone", w, reps);
		print_ratios("L1 efficiency (throughput ratio / walk floor's ratio)", x[m], reps);
		/* Less noisy on a loaded machine, blind to time spent asleep
		 * waiting for a lock: the L1 thread's CPU time. */
		for (unsigned i = 0; i < reps; i++)
			v[i] = (double)r[m][i].alone_cpu / (double)r[m][i].mixed_l1_cpu;
		print_ratios("L1 CPU time alone / while L2 faults (CPU time; sleeps not counted)",
			     v, reps);
		{
			const struct mixed_result *l = &r[m][reps - 1];

			printf("Context switches in the populate pass (last run): L1 vCPU alone "
			       "%" PRIu64 " sleeps, %" PRIu64 " preemptions or yields; while L2 "
			       "faults %" PRIu64 " and %" PRIu64 "; L2 vCPU %" PRIu64
			       " and %" PRIu64 "\n",
			       l->alone_csw.voluntary, l->alone_csw.involuntary,
			       l->mixed_csw[0].voluntary, l->mixed_csw[0].involuntary,
			       l->mixed_csw[1].voluntary, l->mixed_csw[1].involuntary);
		}
		if (overlap < reps)
			printf("  (in %u of %u runs the L2 vCPU finished before the L1 vCPU: the "
			       "overlap was partial)\n",
			       reps - overlap, reps);
		perf_roots_print(&r[m][reps - 1].roots, "after the mixed populate (last run)");
	}
	perf_record_prefix(NULL);
	perf_warn_busy();
	if (o->mode_first != o->mode_last) {
		printf("--- global lock against per-root locks (each run's own figures)\n");
		for (unsigned i = 0; i < reps; i++)
			v[i] = (double)r[PERF_LOCK_GLOBAL][i].mixed_l1 /
			       (double)r[PERF_LOCK_PER_ROOT][i].mixed_l1;
		print_ratios("L1 populate time while L2 faults, global lock / per-root locks", v,
			     reps);
	}
}

static void usage_populate(void)
{
	printf("usage: vmmu-perf populate [-v vcpus] [-b bytes-per-vcpu] [-s backing] [-u] [-r repeats]\n"
	       "                          [--scaling] [-n [--l2-per-vcpu]] [--mixed]\n"
	       "                          [--global-lock | --compare locks]\n"
	       "  Each vCPU touches every 4 KiB page of its own region once, faulting it in.\n"
	       "  -v N        vCPUs (default 2)\n"
	       "  -b SIZE     bytes per vCPU, suffixes k/m/g (default 1G)\n"
	       "  -s BACKING  anonymous (default), anonymous_thp, anonymous_hugetlb_2mb,\n"
	       "              anonymous_hugetlb_1gb; hugetlb pages are reserved as root\n"
	       "              and the setting restored at exit\n"
	       "  -u          do not pre-touch host memory (host page faults are then\n"
	       "              included in the figure)\n"
	       "  -r N        run N times; each figure is the median (min, max) of the\n"
	       "              runs, each ratio taken within a run (default 3)\n"
	       "  --scaling   also run with 1 vCPU and print the throughput ratio, the walk\n"
	       "              floor's own, and their quotient (the scaling efficiency)\n"
	       "  -n          nested (KVM memstress -n): the vCPUs populate in L2, L1 maps\n"
	       "              L2 with 2 MiB EPT12 leaves; prints ns per nested fault and its\n"
	       "              ratio to a TDP populate fault measured in the same run\n"
	       "  --l2-per-vcpu  with -n, each vCPU in its own L2 (own EPT12 tree over its\n"
	       "              own region, own EPT pointer, so its own EPT02 root)\n"
	       "  --mixed     vCPU 0 faults in L1 (TDP) while vCPU 1 faults in its own L2:\n"
	       "              vCPU 0's throughput against vCPU 0 alone (2 vCPUs)\n"
	       "  --global-lock  nested MMU with its global lock (nested_global_lock)\n"
	       "              instead of per-root locks\n"
	       "  --compare locks  with -n or --mixed: per-root locks and the global lock\n"
	       "              alternately in one run, each mode's figures and their ratio\n");
}

static int cmd_populate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "scaling", no_argument, NULL, 'S' },
		{ "l2-per-vcpu", no_argument, NULL, 'L' },
		{ "mixed", no_argument, NULL, 'M' },
		{ "global-lock", no_argument, NULL, 'G' },
		{ "compare", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned nr_vcpus = 2, repeats = 3;
	uint64_t bytes = 1ull << 30;
	bool pretouch = true, scaling = false, nested = false, per_vcpu = false, mixed = false;
	bool global = false, cmp_locks = false;
	enum vmmu_backing backing = VMMU_BACKING_ANONYMOUS;
	struct populate_result res[POPULATE_MAX_REPEATS], one[POPULATE_MAX_REPEATS];
	uint64_t pop_ns[POPULATE_MAX_REPEATS], floor_ns[POPULATE_MAX_REPEATS];
	double v[2 * POPULATE_MAX_REPEATS], w[POPULATE_MAX_REPEATS], x[POPULATE_MAX_REPEATS];
	int c;

	while ((c = getopt_long(argc, argv, "v:b:s:r:unh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (vmmu_backing_parse(optarg, &backing)) {
				fprintf(stderr, "unknown backing '%s'\n", optarg);
				return 2;
			}
			break;
		case 'v':
			nr_vcpus = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'b':
			bytes = parse_size(optarg);
			break;
		case 'u':
			pretouch = false;
			break;
		case 'n':
			nested = true;
			break;
		case 'r':
			repeats = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'S':
			scaling = true;
			break;
		case 'L':
			per_vcpu = true;
			break;
		case 'M':
			mixed = true;
			break;
		case 'G':
			global = true;
			break;
		case 'C':
			if (strcmp(optarg, "locks")) {
				fprintf(stderr, "--compare: only 'locks' is known\n");
				return 2;
			}
			cmp_locks = true;
			break;
		case 'h':
			usage_populate();
			return 0;
		default:
			usage_populate();
			return 2;
		}
	}
	if (!nr_vcpus || nr_vcpus > VMMU_MAX_VCPUS || bytes < PAGE ||
	    bytes % vmmu_backing_page_size(backing) || !repeats || repeats > POPULATE_MAX_REPEATS) {
		usage_populate();
		return 2;
	}
	if ((per_vcpu && !nested) || ((global || cmp_locks) && !nested && !mixed) ||
	    (global && cmp_locks) || (mixed && nested)) {
		fprintf(stderr, "populate: --l2-per-vcpu needs -n; --global-lock and --compare "
				"locks need -n or --mixed (one of them); -n and --mixed exclude "
				"each other\n");
		return 2;
	}
	if (nested || mixed) {
		struct nested_opts o = { .nr_vcpus = mixed ? 2 : nr_vcpus,
					 .repeats = repeats,
					 .bytes = bytes,
					 .pretouch = pretouch,
					 .per_vcpu = per_vcpu,
					 .scaling = scaling,
					 .backing = backing };

		perf_lock_modes(cmp_locks, global, &o.mode_first, &o.mode_last);
		perf_config("nested_lock", "%s",
			    cmp_locks ? "per-root vs global" : perf_lock_mode_names[o.mode_first]);
		if (mixed)
			report_mixed(&o);
		else
			report_nested(&o);
		return 0;
	}
	printf("Testing: EPT 4-level, A/D on, %u vCPU(s), %" PRIu64 " MiB each, backing "
	       "%s, host memory %s, %u run(s)\n",
	       nr_vcpus, bytes >> 20, vmmu_backing_name(backing),
	       pretouch ? "pre-touched" : "not pre-touched", repeats);
	printf("guest physical test memory: [0x%llx, 0x%llx)\n", TEST_GPA,
	       TEST_GPA + bytes * nr_vcpus);

	perf_config("vcpus", "%u", nr_vcpus);
	perf_config("bytes_per_vcpu", "%" PRIu64, bytes);
	perf_config("backing", "%s", vmmu_backing_name(backing));
	perf_config("pretouch", "%s", pretouch ? "yes" : "no");
	perf_config("repeats", "%u", repeats);
	for (unsigned i = 0; i < repeats; i++) {
		populate_once(nr_vcpus, bytes, pretouch, backing, &res[i]);
		pop_ns[i] = res[i].populate_ns;
		floor_ns[i] = res[i].floor_ns;
	}
	print_times("Populate memory time", pop_ns, repeats);
	print_times("Walk floor time", floor_ns, repeats);
	for (unsigned i = 0; i < repeats; i++) {
		v[i] = (double)pop_ns[i] / (double)res[i].pages_per_vcpu;
		w[i] = (double)floor_ns[i] / (double)res[i].pages_per_vcpu;
		x[i] = (double)pop_ns[i] / (double)floor_ns[i];
	}
	{
		struct perf_summary sv = perf_summarize(v, repeats),
				    sw = perf_summarize(w, repeats);

		printf("Populate: %.1f ns per 4 KiB page per vCPU (min %.1f, max %.1f), "
		       "%.1f ms per GiB per vCPU, %.0f pages/s in all\n",
		       sv.med, sv.min, sv.max, sv.med * (double)(1ull << 30) / PAGE / 1e6,
		       (double)nr_vcpus * 1e9 / sv.med);
		printf("Walk floor: %.1f ns per page per vCPU (min %.1f, max %.1f)\n", sw.med,
		       sw.min, sw.max);
	}
	for (unsigned i = 0; i < repeats; i++) {
		perf_record(PERF_METRIC, "Populate ns per page per vCPU", "ns", v[i]);
		perf_record(PERF_FLOOR, "Walk floor ns per page per vCPU", "ns", w[i]);
	}
	print_ratios("Ratio populate / walk floor", x, repeats);
	/* Less noisy on a loaded machine: time the vCPU threads ran. */
	for (unsigned i = 0; i < repeats; i++) {
		v[i] = (double)res[i].populate_cpu_ns / (double)res[i].pages_per_vcpu;
		x[i] = (double)res[i].populate_cpu_ns / (double)res[i].floor_cpu_ns;
	}
	{
		struct perf_summary sv = perf_summarize(v, repeats);

		printf("Populate, CPU time of the vCPU threads: %.1f ns per fault (min %.1f, max "
		       "%.1f)\n",
		       sv.med, sv.min, sv.max);
	}
	for (unsigned i = 0; i < repeats; i++)
		perf_record(PERF_METRIC, "Populate CPU ns per page per vCPU", "ns", v[i]);
	print_ratios("Ratio populate / walk floor, CPU time", x, repeats);
	printf("Faults: fixed %" PRIu64 ", spurious %" PRIu64 ", retry %" PRIu64 " (last run)\n",
	       res[repeats - 1].pf_fixed, res[repeats - 1].pf_spurious, res[repeats - 1].pf_retry);
	printf("Pages mapped: 4K %" PRIu64 ", 2M %" PRIu64 ", 1G %" PRIu64
	       "; page-table pages %" PRIu64 " (metadata %zu bytes each)\n",
	       res[0].vs.pages_4k, res[0].vs.pages_2m, res[0].vs.pages_1g, res[0].vs.pt_pages,
	       (size_t)64);

	if (scaling && nr_vcpus > 1) {
		double tp_n, tp_1, f_n, f_1;
		struct perf_summary s1;

		/* Run i of 1 vCPU right after run i of N: ratios within a run. */
		for (unsigned i = 0; i < repeats; i++) {
			populate_once(1, bytes, pretouch, backing, &one[i]);
			tp_n = (double)res[i].pages_per_vcpu * nr_vcpus /
			       (double)res[i].populate_ns;
			tp_1 = (double)one[i].pages_per_vcpu / (double)one[i].populate_ns;
			f_n = (double)res[i].pages_per_vcpu * nr_vcpus / (double)res[i].floor_ns;
			f_1 = (double)one[i].pages_per_vcpu / (double)one[i].floor_ns;
			v[i] = tp_n / tp_1;
			w[i] = f_n / f_1;
			x[i] = v[i] / w[i];
			pop_ns[i] = one[i].populate_ns;
		}
		for (unsigned i = 0; i < repeats; i++)
			v[i + repeats] = (double)one[i].populate_ns / (double)one[i].pages_per_vcpu;
		s1 = perf_summarize(v + repeats, repeats);
		printf("Scaling: 1 vCPU %.1f ns per fault (min %.1f, max %.1f)\n", s1.med, s1.min,
		       s1.max);
		print_ratiosf(v, repeats, "Scaling %u vCPUs / 1 vCPU (faults/s)", nr_vcpus);
		/* What the machine itself gives: the walk-only pass, 1 vs N. */
		print_ratios("Scaling of the walk floor itself (the ceiling)", w, repeats);
		print_ratios("Scaling efficiency (populate scaling / walk floor scaling)", x,
			     repeats);
	}
	return 0;
}

VMMU_PERF_EXPERIMENT(populate, "populate",
		     "fault in every page of guest memory once (KVM's populate phase)",
		     cmd_populate)
