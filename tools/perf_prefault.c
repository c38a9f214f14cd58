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
 */
#define _GNU_SOURCE
#include "perf.h"

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
	res->touch_ns = run_pass(&p, nr_vcpus, PASS_WRITE);
	res->faults = ept_violations(&p);
	for (unsigned i = 0; i < iters; i++)
		res->workload_ns += run_pass(&p, nr_vcpus, PASS_WRITE);
	flush_all_tlbs(&p);
	res->floor_ns = run_pass(&p, nr_vcpus, PASS_WRITE);
	vmmu_vm_stats(p.vm, &res->vs);
	perf_vm_destroy(&p);
}

/* The best of @repeats runs, figure by figure: on a shared machine the
 * minimum is the figure least disturbed by other processes. */
static void run_mode(enum map_mode mode, unsigned nr_vcpus, uint64_t bytes, unsigned iters,
		     unsigned repeats, enum vmmu_backing backing, struct mode_result *res)
{
	run_mode_once(mode, nr_vcpus, bytes, iters, backing, res);
	for (unsigned i = 1; i < repeats; i++) {
		struct mode_result r;

		run_mode_once(mode, nr_vcpus, bytes, iters, backing, &r);
		if (r.map_ns < res->map_ns) {
			res->map_ns = r.map_ns;
			res->map_cpu_ns = r.map_cpu_ns;
		}
		res->touch_ns = r.touch_ns < res->touch_ns ? r.touch_ns : res->touch_ns;
		res->workload_ns = r.workload_ns < res->workload_ns ? r.workload_ns :
								      res->workload_ns;
		res->floor_ns = r.floor_ns < res->floor_ns ? r.floor_ns : res->floor_ns;
	}
}

static void print_mode(enum vmmu_backing backing, enum map_mode mode, const struct mode_result *r,
		       unsigned iters)
{
	char what[96];

	printf("[%s]\n", mode_names[mode]);
	perf_record_prefix("%s, %s", vmmu_backing_name(backing), mode_names[mode]);
	if (mode == MAP_PREFAULT)
		print_time("Pre-fault memory time", r->map_ns);
	else if (mode != MAP_DEMAND)
		print_time("Direct build time", r->map_ns);
	/* Below a millisecond thread start-up and other threads dominate. */
	if (mode != MAP_DEMAND && r->map_ns >= 1000000)
		printf("  (CPU time %.3f ms: %.2f CPUs busy on average)\n",
		       (double)r->map_cpu_ns / 1e6, (double)r->map_cpu_ns / (double)r->map_ns);
	print_time(mode == MAP_DEMAND ? "Populate memory time" : "First touch time", r->touch_ns);
	snprintf(what, sizeof(what), "Dirty pattern workload time (%u iterations)", iters);
	print_time(what, r->workload_ns);
	print_time("Walk floor time", r->floor_ns);
	printf("EPT violations on first touch: %" PRIu64 "; pages mapped: 4K %" PRIu64
	       ", 2M %" PRIu64 ", 1G %" PRIu64 "\n",
	       r->faults, r->vs.pages_4k, r->vs.pages_2m, r->vs.pages_1g);
	perf_record_prefix(NULL);
}

/* Print "NAME: R.RRx" and record it (prefixed with the backing). */
static void ratio(const char *name, double v)
{
	printf("%s: %.2fx\n", name, v);
	perf_record(PERF_RATIO, name, "x", v);
}

static void run_backing(unsigned nr_vcpus, uint64_t bytes, unsigned iters, unsigned repeats,
			enum vmmu_backing backing)
{
	struct mode_result res[MAP_NR];
	const struct mode_result *d = &res[MAP_DEMAND], *pf = &res[MAP_PREFAULT];

	printf("== backing %s: %u vCPU(s), %" PRIu64 " MiB each ==\n", vmmu_backing_name(backing),
	       nr_vcpus, bytes >> 20);
	for (int m = 0; m < MAP_NR; m++) {
		run_mode((enum map_mode)m, nr_vcpus, bytes, iters, repeats, backing, &res[m]);
		print_mode(backing, (enum map_mode)m, &res[m], iters);
	}
	perf_record_prefix("%s", vmmu_backing_name(backing));
	ratio("Ratio demand populate / pre-fault (time to map)",
	      (double)d->touch_ns / (double)pf->map_ns);
	ratio("Ratio first touch after pre-fault / walk floor",
	      (double)pf->touch_ns / (double)pf->floor_ns);
	ratio("Ratio first touch after direct build (2 workers) / walk floor",
	      (double)res[MAP_DIRECT2].touch_ns / (double)res[MAP_DIRECT2].floor_ns);
	ratio("Ratio direct build 1 worker / 2 workers",
	      (double)res[MAP_DIRECT1].map_ns / (double)res[MAP_DIRECT2].map_ns);
	ratio("Ratio demand / pre-fault, map + first touch + workload",
	      (double)(d->touch_ns + d->workload_ns) /
		      (double)(pf->map_ns + pf->touch_ns + pf->workload_ns));
	ratio("Ratio demand / direct build (2 workers), map + first touch + workload",
	      (double)(d->touch_ns + d->workload_ns) /
		      (double)(res[MAP_DIRECT2].map_ns + res[MAP_DIRECT2].touch_ns +
			       res[MAP_DIRECT2].workload_ns));
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
	       "  -r N        run each way N times and print the best of each figure\n"
	       "              (default 3)\n");
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
	    bytes % vmmu_backing_page_size(backing) ||
	    (all && bytes % vmmu_backing_page_size(VMMU_BACKING_ANONYMOUS_HUGETLB_1GB) &&
	     bytes % vmmu_backing_page_size(VMMU_BACKING_ANONYMOUS_HUGETLB_2MB))) {
		usage_prefault();
		return 2;
	}
	printf("Testing: EPT 4-level, A/D on, host memory pre-touched, workload %u iterations, "
	       "best of %u runs\n",
	       iters, repeats);
	printf("guest physical test memory: [0x%llx, 0x%llx)\n", TEST_GPA,
	       TEST_GPA + bytes * nr_vcpus);
	perf_config("vcpus", "%u", nr_vcpus);
	perf_config("bytes_per_vcpu", "%" PRIu64, bytes);
	perf_config("backing", "%s",
		    all ? "anonymous, hugetlb when reservable" : vmmu_backing_name(backing));
	perf_config("iterations", "%u", iters);
	perf_config("repeats", "%u (best of)", repeats);
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
