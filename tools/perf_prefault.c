/* SPDX-License-Identifier: MIT */
/*
 * perf_prefault.c - vmmu-perf prefault: three ways to map guest memory
 * before a workload, in one run: demand faulting (the guest's first touch
 * faults every page in), KVM_PRE_FAULT_MEMORY (vmmu_vcpu_pre_fault_memory
 * by each vCPU over its own region), and the direct build of a pinned slot
 * (VMMU_MEM_DIRECT_BUILD, with 1 and 2 worker threads).  Each then runs
 * the seed's "memory dirty pattern workload" (every vCPU writes a pattern
 * over its memory, again and again) and a walk-floor pass (TLBs flushed,
 * every page mapped with A/D set: walks only).
 *
 * The honest floor of a first touch after pre-faulting or a direct build:
 * those leave Accessed and Dirty clear on purpose (as KVM does), so the
 * first touch must also set them, one atomic OR per level walked.  The
 * "A/D floor" pass clears A and D in the whole tree (no fault, no vmmu
 * call), flushes the TLBs and times a write pass: walk plus A/D setting,
 * the work a first touch cannot avoid.
 */
#define _GNU_SOURCE
#include "perf.h"

#include "mmu_internal.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum map_mode {
	MAP_DEMAND,
	MAP_PREFAULT,
	MAP_DIRECT1,
	MAP_DIRECT2,
	MAP_NR
};

static const char *const mode_names[MAP_NR] = {
	[MAP_DEMAND] = "demand faulting",
	[MAP_PREFAULT] = "pre-fault",
	[MAP_DIRECT1] = "direct build, 1 worker",
	[MAP_DIRECT2] = "direct build, 2 workers",
};

struct mode_result {
	uint64_t map_ns; /* pre-fault / build; 0 for demand */
	uint64_t map_cpu_ns; /* CPU time of all threads during it */
	uint64_t touch_ns; /* first write pass (for demand: it maps too) */
	uint64_t workload_ns; /* all iterations */
	uint64_t floor_ns; /* one write pass after a TLB flush */
	uint64_t ad_floor_ns; /* the same after clearing A/D in the tree */
	/* The same three as CPU time of the slowest vCPU thread. */
	uint64_t touch_cpu_ns, floor_cpu_ns, ad_floor_cpu_ns;
	uint64_t faults; /* EPT violations during the first touch */
	struct vmmu_vm_stats vs;
};

struct prefault_arg {
	struct perf_vm *p;
	unsigned idx;
	pthread_barrier_t *start;
	uint64_t ns;
	int err;
};

static void *prefault_thread(void *opaque)
{
	struct prefault_arg *a = opaque;
	struct vmmu_pre_fault_memory range = {
		.gpa = TEST_GPA + a->idx * a->p->bytes_per_vcpu,
		.size = a->p->bytes_per_vcpu,
	};
	uint64_t t0;
	int r = 0;

	pthread_barrier_wait(a->start);
	t0 = now_ns();
	while (range.size && !r)
		r = vmmu_vcpu_pre_fault_memory(a->p->vcpus[a->idx], &range);
	a->ns = now_ns() - t0;
	a->err = r;
	return NULL;
}

/* Every vCPU pre-faults its own region; the slowest one's time. */
static uint64_t prefault_all(struct perf_vm *p)
{
	pthread_t th[VMMU_MAX_VCPUS];
	struct prefault_arg args[VMMU_MAX_VCPUS];
	pthread_barrier_t start;
	uint64_t worst = 0;

	pthread_barrier_init(&start, NULL, p->nr_vcpus);
	for (unsigned i = 0; i < p->nr_vcpus; i++) {
		args[i] = (struct prefault_arg){ .p = p, .idx = i, .start = &start };
		pthread_create(&th[i], NULL, prefault_thread, &args[i]);
	}
	for (unsigned i = 0; i < p->nr_vcpus; i++) {
		pthread_join(th[i], NULL);
		if (args[i].err)
			die("vmmu_vcpu_pre_fault_memory", args[i].err);
		if (args[i].ns > worst)
			worst = args[i].ns;
	}
	pthread_barrier_destroy(&start);
	return worst;
}

/* Replace the VM's slot 0 by a direct-build one, timing the creation. */
static uint64_t direct_build(struct perf_vm *p)
{
	struct vmmu_userspace_memory_region region = { .slot = 0 };
	uint64_t t0;
	int r;

	r = vmmu_set_user_memory_region(p->vm, &region);
	if (r)
		die("delete slot 0", r);
	region = (struct vmmu_userspace_memory_region){
		.slot = 0,
		.flags = VMMU_MEM_DIRECT_BUILD,
		.guest_phys_addr = TEST_GPA,
		.memory_size = p->bytes_per_vcpu * p->nr_vcpus,
		.userspace_addr = (uint64_t)(uintptr_t)p->mem,
	};
	t0 = now_ns();
	r = vmmu_set_user_memory_region(p->vm, &region);
	if (r)
		die("direct build", r);
	return now_ns() - t0;
}

static uint64_t ept_violations(struct perf_vm *p)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < p->nr_vcpus; i++) {
		struct vmmu_hw_stats s;

		vmmu_hw_stats(p->hw[i], &s);
		n += s.ept_violations;
	}
	return n;
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Clear Accessed and Dirty in every present entry below @pt (nothing
 * else runs: the vCPUs are out of guest mode and no logging is on). */
static void clear_ad(uint64_t *pt, int level)
{
	for (unsigned i = 0; i < SPTE_ENT_PER_PAGE; i++) {
		uint64_t e = __atomic_load_n(&pt[i], __ATOMIC_RELAXED);

		if (!is_shadow_present_pte(e))
			continue;
		__atomic_and_fetch(&pt[i], ~(EPT_ACCESSED | EPT_DIRTY), __ATOMIC_RELAXED);
		if (!is_last_spte(e, level))
			clear_ad(spte_to_child_pt(e), level - 1);
	}
}

/* The A/D floor: a write pass over a mapped tree whose A/D bits are clear. */
static uint64_t ad_floor_pass(struct perf_vm *p, uint64_t *cpu_ns)
{
	struct vmmu_sp *root = p->vcpus[0]->root;

	clear_ad(sp_spt(p->vm, root), (int)root->role.level);
	flush_all_tlbs(p);
	return run_pass_cpu(p, p->nr_vcpus, PASS_WRITE, cpu_ns);
}

/*
 * Read every page of guest memory once from the host, outside the guest.
 * Measured: the first pass over guest memory after the VM was created is
 * slower than later ones for reasons of the host alone (the same pass with
 * a host read of every page just before it is 20-40 % faster in CPU time;
 * with a guest read pass before it and A/D cleared again, it costs what the
 * A/D floor costs).  The floors run after other passes, on host memory
 * read recently; so that first touch and floors meet the host in the same
 * state, the first touch gets this read too.  Not timed.
 */
static void host_read_all(struct perf_vm *p)
{
	volatile uint64_t sum = 0;

	for (uint64_t off = 0; off < p->bytes_per_vcpu * p->nr_vcpus; off += PAGE)
		sum += ((volatile uint64_t *)p->mem)[off / sizeof(uint64_t)];
	(void)sum;
}

static void run_mode_once(enum map_mode mode, unsigned nr_vcpus, uint64_t bytes, unsigned iters,
			  enum vmmu_backing backing, struct mode_result *res)
{
	struct vmmu_vm_config cfg = {
		.direct_build_workers = mode == MAP_DIRECT2 ? 2 : 1,
	};
	struct perf_vm p;
	uint64_t cpu0;

	memset(res, 0, sizeof(*res));
	perf_vm_create_cfg(&p, &cfg, nr_vcpus, bytes, true, backing);
	cpu0 = cpu_ns();
	if (mode == MAP_PREFAULT)
		res->map_ns = prefault_all(&p);
	else if (mode == MAP_DIRECT1 || mode == MAP_DIRECT2)
		res->map_ns = direct_build(&p);
	res->map_cpu_ns = cpu_ns() - cpu0;
	if (mode != MAP_DEMAND)
		host_read_all(&p);
	res->touch_ns = run_pass_cpu(&p, nr_vcpus, PASS_WRITE, &res->touch_cpu_ns);
	res->faults = ept_violations(&p);
	for (unsigned i = 0; i < iters; i++)
		res->workload_ns += run_pass(&p, nr_vcpus, PASS_WRITE);
	flush_all_tlbs(&p);
	res->floor_ns = run_pass_cpu(&p, nr_vcpus, PASS_WRITE, &res->floor_cpu_ns);
	res->ad_floor_ns = ad_floor_pass(&p, &res->ad_floor_cpu_ns);
	vmmu_vm_stats(p.vm, &res->vs);
	perf_vm_destroy(&p);
}

#define PREFAULT_MAX_REPEATS 32

/* Figure @field of @n results, as an array for print_times(). */
#define FIELD(arr, n, field, out)                        \
	do {                                             \
		for (unsigned __i = 0; __i < (n); __i++) \
			(out)[__i] = (arr)[__i].field;   \
	} while (0)

static void print_mode(enum vmmu_backing backing, enum map_mode mode, const struct mode_result *r,
		       unsigned n, unsigned iters)
{
	uint64_t v[PREFAULT_MAX_REPEATS];
	double cpu[PREFAULT_MAX_REPEATS];
	char what[96];

	printf("[%s]\n", mode_names[mode]);
	perf_record_prefix("%s, %s", vmmu_backing_name(backing), mode_names[mode]);
	FIELD(r, n, map_ns, v);
	if (mode == MAP_PREFAULT)
		print_times("Pre-fault memory time", v, n);
	else if (mode != MAP_DEMAND)
		print_times("Direct build time", v, n);
	/* Below a millisecond thread start-up and other threads dominate. */
	if (mode != MAP_DEMAND && v[0] >= 1000000) {
		for (unsigned i = 0; i < n; i++)
			cpu[i] = (double)r[i].map_cpu_ns / 1e6;
		struct perf_summary s = perf_summarize(cpu, n);

		printf("  CPU time %.3f ms (min %.3f, max %.3f)\n", s.med, s.min, s.max);
	}
	FIELD(r, n, touch_ns, v);
	print_times(mode == MAP_DEMAND ? "Populate memory time" : "First touch time", v, n);
	FIELD(r, n, workload_ns, v);
	snprintf(what, sizeof(what), "Dirty pattern workload time (%u iterations)", iters);
	print_times(what, v, n);
	FIELD(r, n, floor_ns, v);
	print_times("Walk floor time", v, n);
	FIELD(r, n, ad_floor_ns, v);
	print_times("A/D floor time (walk + setting A/D on a mapped tree)", v, n);
	printf("EPT violations on first touch: %" PRIu64 "; pages mapped: 4K %" PRIu64
	       ", 2M %" PRIu64 ", 1G %" PRIu64 "\n",
	       r[0].faults, r[0].vs.pages_4k, r[0].vs.pages_2m, r[0].vs.pages_1g);
	perf_record_prefix(NULL);
}

/* Ratio NUM / DEN within each run, summarized. */
#define RATIO(name, n, expr)                       \
	do {                                       \
		double __v[PREFAULT_MAX_REPEATS];  \
		for (unsigned i = 0; i < (n); i++) \
			__v[i] = (expr);           \
		print_ratios((name), __v, (n));    \
	} while (0)

static void run_backing(unsigned nr_vcpus, uint64_t bytes, unsigned iters, unsigned repeats,
			enum vmmu_backing backing)
{
	static struct mode_result res[MAP_NR][PREFAULT_MAX_REPEATS];
	const struct mode_result *d = res[MAP_DEMAND], *pf = res[MAP_PREFAULT];
	const struct mode_result *d1 = res[MAP_DIRECT1], *d2 = res[MAP_DIRECT2];

	printf("== backing %s: %u vCPU(s), %" PRIu64 " MiB each ==\n", vmmu_backing_name(backing),
	       nr_vcpus, bytes >> 20);
	/* Run i of every mode before run i + 1 of any: a ratio between two
	 * modes compares figures taken close together. */
	for (unsigned i = 0; i < repeats; i++)
		for (int m = 0; m < MAP_NR; m++)
			run_mode_once((enum map_mode)m, nr_vcpus, bytes, iters, backing,
				      &res[m][i]);
	for (int m = 0; m < MAP_NR; m++)
		print_mode(backing, (enum map_mode)m, res[m], repeats, iters);
	perf_record_prefix("%s", vmmu_backing_name(backing));
	RATIO("Ratio demand populate / pre-fault (time to map)", repeats,
	      (double)d[i].touch_ns / (double)pf[i].map_ns);
	RATIO("Ratio first touch after pre-fault / walk floor", repeats,
	      (double)pf[i].touch_ns / (double)pf[i].floor_ns);
	RATIO("Ratio first touch after pre-fault / A/D floor", repeats,
	      (double)pf[i].touch_ns / (double)pf[i].ad_floor_ns);
	RATIO("Ratio first touch after pre-fault / A/D floor, CPU time", repeats,
	      (double)pf[i].touch_cpu_ns / (double)pf[i].ad_floor_cpu_ns);
	RATIO("Ratio first touch after direct build (2 workers) / walk floor", repeats,
	      (double)d2[i].touch_ns / (double)d2[i].floor_ns);
	RATIO("Ratio first touch after direct build (2 workers) / A/D floor", repeats,
	      (double)d2[i].touch_ns / (double)d2[i].ad_floor_ns);
	RATIO("Ratio first touch after direct build (2 workers) / A/D floor, CPU time", repeats,
	      (double)d2[i].touch_cpu_ns / (double)d2[i].ad_floor_cpu_ns);
	RATIO("Ratio first touch after direct build (2 workers) / after pre-fault, CPU time",
	      repeats, (double)d2[i].touch_cpu_ns / (double)pf[i].touch_cpu_ns);
	RATIO("Ratio direct build 1 worker / 2 workers", repeats,
	      (double)d1[i].map_ns / (double)d2[i].map_ns);
	RATIO("Ratio direct build CPU time 2 workers / 1 worker", repeats,
	      (double)d2[i].map_cpu_ns / (double)d1[i].map_cpu_ns);
	RATIO("Ratio demand / pre-fault, map + first touch + workload", repeats,
	      (double)(d[i].touch_ns + d[i].workload_ns) /
		      (double)(pf[i].map_ns + pf[i].touch_ns + pf[i].workload_ns));
	RATIO("Ratio demand / direct build (2 workers), map + first touch + workload", repeats,
	      (double)(d[i].touch_ns + d[i].workload_ns) /
		      (double)(d2[i].map_ns + d2[i].touch_ns + d2[i].workload_ns));
	perf_record_prefix(NULL);
}

static void usage_prefault(void)
{
	printf("usage: vmmu-perf prefault [-v vcpus] [-b bytes-per-vcpu] [-s backing] [-i iterations]\n"
	       "                          [-r repeats]\n"
	       "  Maps guest memory by demand faulting, by pre-faulting and by direct build\n"
	       "  (1 and 2 workers), then runs a dirty-pattern workload on each.\n"
	       "  -v N        vCPUs (default 1)\n"
	       "  -b SIZE     bytes per vCPU, suffixes k/m/g (default 1G)\n"
	       "  -s BACKING  anonymous, anonymous_thp, anonymous_hugetlb_2mb,\n"
	       "              anonymous_hugetlb_1gb (default: anonymous, then both\n"
	       "              hugetlb sizes if their pages can be reserved)\n"
	       "  -i N        workload iterations (default 3)\n"
	       "  -r N        run each way N times: each figure is the median (min, max)\n"
	       "              of the runs, each ratio taken within a run (default 3)\n");
}

static int cmd_prefault(int argc, char **argv)
{
	unsigned nr_vcpus = 1, iters = 3, repeats = 3;
	uint64_t bytes = 1ull << 30;
	bool all = true;
	enum vmmu_backing backing = VMMU_BACKING_ANONYMOUS;
	int c;

	while ((c = getopt(argc, argv, "v:b:s:i:r:h")) != -1) {
		switch (c) {
		case 's':
			if (vmmu_backing_parse(optarg, &backing)) {
				fprintf(stderr, "unknown backing '%s'\n", optarg);
				return 2;
			}
			all = false;
			break;
		case 'v':
			nr_vcpus = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'b':
			bytes = parse_size(optarg);
			break;
		case 'i':
			iters = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'r':
			repeats = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'h':
			usage_prefault();
			return 0;
		default:
			usage_prefault();
			return 2;
		}
	}
	if (!nr_vcpus || nr_vcpus > VMMU_MAX_VCPUS || bytes < PAGE || !repeats ||
	    repeats > PREFAULT_MAX_REPEATS || bytes % vmmu_backing_page_size(backing) ||
	    (all && bytes % vmmu_backing_page_size(VMMU_BACKING_ANONYMOUS_HUGETLB_1GB) &&
	     bytes % vmmu_backing_page_size(VMMU_BACKING_ANONYMOUS_HUGETLB_2MB))) {
		usage_prefault();
		return 2;
	}
	printf("Testing: EPT 4-level, A/D on, host memory pre-touched, workload %u iterations, "
	       "%u runs (median, min, max)\n",
	       iters, repeats);
	printf("guest physical test memory: [0x%llx, 0x%llx)\n", TEST_GPA,
	       TEST_GPA + bytes * nr_vcpus);
	perf_config("vcpus", "%u", nr_vcpus);
	perf_config("bytes_per_vcpu", "%" PRIu64, bytes);
	perf_config("backing", "%s",
		    all ? "anonymous, hugetlb when reservable" : vmmu_backing_name(backing));
	perf_config("iterations", "%u", iters);
	perf_config("repeats", "%u (median)", repeats);
	if (!all) {
		run_backing(nr_vcpus, bytes, iters, repeats, backing);
		return 0;
	}
	run_backing(nr_vcpus, bytes, iters, repeats, VMMU_BACKING_ANONYMOUS);
	for (enum vmmu_backing b = VMMU_BACKING_ANONYMOUS_HUGETLB_2MB;
	     b <= VMMU_BACKING_ANONYMOUS_HUGETLB_1GB; b++) {
		if (bytes % vmmu_backing_page_size(b) || !hugetlb_reserve(b, bytes * nr_vcpus)) {
			printf("== backing %s: skipped (size not a multiple of its pages, or pages "
			       "not reservable: run as root) ==\n",
			       vmmu_backing_name(b));
			continue;
		}
		run_backing(nr_vcpus, bytes, iters, repeats, b);
	}
	return 0;
}

VMMU_PERF_EXPERIMENT(
	prefault, "prefault",
	"demand faulting vs pre-faulting vs direct build, then a dirty-pattern workload",
	cmd_prefault)
