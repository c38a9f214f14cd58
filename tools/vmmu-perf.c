/* SPDX-License-Identifier: MIT */
/*
 * vmmu-perf - the experiments of the seeds, measured on vmmu and its
 * hardware model, with KVM selftest vocabulary and metric names.
 *
 * Every run measures its own floors in the same process, and prints the
 * figures as ratios to them, because on a shared machine only ratios taken
 * in one run are stable.
 */
#define _GNU_SOURCE
#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096ull
#define TEST_GPA (1ull << 32) /* test memory starts at 4 GiB guest-physical */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void print_time(const char *what, uint64_t ns)
{
	printf("%s: %" PRIu64 ".%09" PRIu64 "s\n", what, ns / UINT64_C(1000000000), ns % UINT64_C(1000000000));
}

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 0);

	switch (*end) {
	case 'g': case 'G': v <<= 30; break;
	case 'm': case 'M': v <<= 20; break;
	case 'k': case 'K': v <<= 10; break;
	case '\0': break;
	default:
		fprintf(stderr, "bad size '%s'\n", s);
		exit(2);
	}
	return v;
}

static void die(const char *what, int r)
{
	fprintf(stderr, "vmmu-perf: %s: %s\n", what, strerror(-r));
	exit(1);
}

/*
 * A VM with one memslot of vcpus * bytes_per_vcpu at TEST_GPA, and hw vCPUs
 * driven by threads that run one pass at a time.
 */
struct perf_vm {
	struct vmmu_vm *vm;
	struct vmmu_hostmem *hm;
	void *mem;
	uint64_t bytes_per_vcpu;
	unsigned nr_vcpus;
	struct vmmu_vcpu *vcpus[VMMU_MAX_VCPUS];
	struct vmmu_hw_vcpu *hw[VMMU_MAX_VCPUS];
};

enum pass_kind { PASS_WRITE, PASS_READ };

struct pass_arg {
	struct perf_vm *p;
	unsigned idx;
	enum pass_kind kind;
	pthread_barrier_t *start;
	uint64_t ns;
	int err;
};

static void *pass_thread(void *opaque)
{
	struct pass_arg *a = opaque;
	struct perf_vm *p = a->p;
	struct vmmu_hw_vcpu *hw = p->hw[a->idx];
	uint64_t base = TEST_GPA + a->idx * p->bytes_per_vcpu;
	uint64_t t0, v = a->idx;
	int err = 0;

	/* Locals only in the loop: args[] of the vCPUs share cache lines. */
	pthread_barrier_wait(a->start);
	t0 = now_ns();
	for (uint64_t off = 0; off < p->bytes_per_vcpu && !err; off += PAGE) {
		if (a->kind == PASS_WRITE)
			err = vmmu_hw_write(hw, base + off, &v, sizeof(v));
		else
			err = vmmu_hw_read(hw, base + off, &v, sizeof(v));
	}
	vmmu_hw_guest_exit(hw);
	a->ns = now_ns() - t0;
	a->err = err;
	return NULL;
}

/* One pass of every vCPU over its own region; returns the slowest vCPU's time. */
static uint64_t run_pass(struct perf_vm *p, unsigned nr, enum pass_kind kind)
{
	pthread_t th[VMMU_MAX_VCPUS];
	struct pass_arg args[VMMU_MAX_VCPUS];
	pthread_barrier_t start;
	uint64_t worst = 0;

	pthread_barrier_init(&start, NULL, nr);
	for (unsigned i = 0; i < nr; i++) {
		args[i] = (struct pass_arg){ .p = p, .idx = i, .kind = kind, .start = &start };
		pthread_create(&th[i], NULL, pass_thread, &args[i]);
	}
	for (unsigned i = 0; i < nr; i++) {
		pthread_join(th[i], NULL);
		if (args[i].err)
			die("guest access", args[i].err);
		if (args[i].ns > worst)
			worst = args[i].ns;
	}
	pthread_barrier_destroy(&start);
	return worst;
}

/*
 * hugetlb pages must be reserved.  As root, reserve what is missing for the
 * run and give the setting back at exit; otherwise say how.
 */
static char hugetlb_path[128];
static long hugetlb_saved = -1;

static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static bool write_long(const char *path, long v)
{
	FILE *f = fopen(path, "w");
	bool ok;

	if (!f)
		return false;
	ok = fprintf(f, "%ld\n", v) > 0;
	return fclose(f) == 0 && ok;
}

static void hugetlb_restore(void)
{
	if (hugetlb_saved >= 0)
		write_long(hugetlb_path, hugetlb_saved);
}

static bool hugetlb_reserve(enum vmmu_backing b, uint64_t bytes)
{
	uint64_t psize = vmmu_backing_page_size(b);
	char free_path[128];
	long have, nr, want;

	snprintf(hugetlb_path, sizeof(hugetlb_path),
		 "/sys/kernel/mm/hugepages/hugepages-%llukB/nr_hugepages",
		 (unsigned long long)(psize >> 10));
	snprintf(free_path, sizeof(free_path),
		 "/sys/kernel/mm/hugepages/hugepages-%llukB/free_hugepages",
		 (unsigned long long)(psize >> 10));
	have = read_long(free_path);
	nr = read_long(hugetlb_path);
	want = (long)(bytes / psize);
	if (have < 0 || nr < 0)
		return false;
	if (have >= want)
		return true;
	if (hugetlb_saved < 0) {
		hugetlb_saved = nr;
		atexit(hugetlb_restore);
	}
	return write_long(hugetlb_path, nr + (want - have)) && read_long(free_path) >= want;
}

static void perf_vm_create(struct perf_vm *p, unsigned nr_vcpus, uint64_t bytes, bool pretouch,
			   enum vmmu_backing backing)
{
	struct vmmu_userspace_memory_region region;
	struct vmmu_vm_config cfg = { 0 };
	uint64_t total = bytes * nr_vcpus;
	int r;

	memset(p, 0, sizeof(*p));
	p->nr_vcpus = nr_vcpus;
	p->bytes_per_vcpu = bytes;
	r = vmmu_hostmem_create(&p->hm);
	if (r)
		die("vmmu_hostmem_create", r);
	if (backing >= VMMU_BACKING_ANONYMOUS_HUGETLB_2MB && !hugetlb_reserve(backing, total))
		fprintf(stderr, "vmmu-perf: could not reserve %" PRIu64 " MiB of %s pages "
			"(run as root, or write %s)\n", total >> 20, vmmu_backing_name(backing),
			hugetlb_path);
	r = vmmu_hostmem_alloc(p->hm, backing, total, 0, &p->mem);
	if (r)
		die("vmmu_hostmem_alloc", r);
	if (pretouch)
		for (uint64_t off = 0; off < total; off += PAGE)
			((volatile char *)p->mem)[off] = 0;
	cfg.hostmem = p->hm;
	r = vmmu_vm_create(&cfg, &p->vm);
	if (r)
		die("vmmu_vm_create", r);
	region = (struct vmmu_userspace_memory_region){
		.slot = 0,
		.guest_phys_addr = TEST_GPA,
		.memory_size = total,
		.userspace_addr = (uint64_t)(uintptr_t)p->mem,
	};
	r = vmmu_set_user_memory_region(p->vm, &region);
	if (r)
		die("vmmu_set_user_memory_region", r);
	for (unsigned i = 0; i < nr_vcpus; i++) {
		r = vmmu_vcpu_create(p->vm, i, &p->vcpus[i]);
		if (r)
			die("vmmu_vcpu_create", r);
		r = vmmu_hw_vcpu_create(p->vcpus[i], NULL, &p->hw[i]);
		if (r)
			die("vmmu_hw_vcpu_create", r);
	}
}

static void perf_vm_destroy(struct perf_vm *p)
{
	for (unsigned i = 0; i < p->nr_vcpus; i++)
		vmmu_hw_vcpu_destroy(p->hw[i]);
	vmmu_vm_destroy(p->vm);
	vmmu_hostmem_free(p->hm, p->mem);
	vmmu_hostmem_destroy(p->hm);
}

static void flush_all_tlbs(struct perf_vm *p)
{
	for (unsigned i = 0; i < p->nr_vcpus; i++)
		vmmu_hw_tlb_flush(p->hw[i]);
}

struct populate_result {
	uint64_t populate_ns, floor_ns, pages_per_vcpu;
	struct vmmu_vm_stats vs;
	uint64_t pf_fixed, pf_spurious, pf_retry;
};

static void populate_once(unsigned nr_vcpus, uint64_t bytes, bool pretouch,
			  enum vmmu_backing backing, struct populate_result *res)
{
	struct perf_vm p;

	perf_vm_create(&p, nr_vcpus, bytes, pretouch, backing);
	res->pages_per_vcpu = bytes / PAGE;
	res->populate_ns = run_pass(&p, nr_vcpus, PASS_WRITE);
	flush_all_tlbs(&p);
	res->floor_ns = run_pass(&p, nr_vcpus, PASS_WRITE);
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

static void usage_populate(void)
{
	printf("usage: vmmu-perf populate [-v vcpus] [-b bytes-per-vcpu] [-s backing] [-n] [--scaling]\n"
	       "  Each vCPU touches every 4 KiB page of its own region once, faulting it in.\n"
	       "  -v N        vCPUs (default 2)\n"
	       "  -b SIZE     bytes per vCPU, suffixes k/m/g (default 1G)\n"
	       "  -s BACKING  anonymous (default), anonymous_thp, anonymous_hugetlb_2mb,\n"
	       "              anonymous_hugetlb_1gb; hugetlb pages are reserved as root\n"
	       "              and the setting restored at exit\n"
	       "  -n          do not pre-touch host memory (host page faults are then\n"
	       "              included in the figure)\n"
	       "  --scaling   also run with 1 vCPU and print the throughput ratio\n");
}

static int cmd_populate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "scaling", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned nr_vcpus = 2;
	uint64_t bytes = 1ull << 30;
	bool pretouch = true, scaling = false;
	enum vmmu_backing backing = VMMU_BACKING_ANONYMOUS;
	struct populate_result res, one;
	int c;

	while ((c = getopt_long(argc, argv, "v:b:s:nh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (vmmu_backing_parse(optarg, &backing)) {
				fprintf(stderr, "unknown backing '%s'\n", optarg);
				return 2;
			}
			break;
		case 'v': nr_vcpus = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'b': bytes = parse_size(optarg); break;
		case 'n': pretouch = false; break;
		case 'S': scaling = true; break;
		case 'h': usage_populate(); return 0;
		default: usage_populate(); return 2;
		}
	}
	if (!nr_vcpus || nr_vcpus > VMMU_MAX_VCPUS || bytes < PAGE ||
	    bytes % vmmu_backing_page_size(backing)) {
		usage_populate();
		return 2;
	}
	printf("Testing: EPT 4-level, A/D on, %u vCPU(s), %" PRIu64 " MiB each, backing "
	       "%s, host memory %s\n",
	       nr_vcpus, bytes >> 20, vmmu_backing_name(backing),
	       pretouch ? "pre-touched" : "not pre-touched");
	printf("guest physical test memory: [0x%llx, 0x%llx)\n", TEST_GPA,
	       TEST_GPA + bytes * nr_vcpus);

	populate_once(nr_vcpus, bytes, pretouch, backing, &res);
	print_time("Populate memory time", res.populate_ns);
	print_time("Walk floor time", res.floor_ns);
	printf("Populate: %.1f ns per 4 KiB page per vCPU, %.1f ms per GiB per vCPU, "
	       "%.0f pages/s in all\n",
	       (double)res.populate_ns / (double)res.pages_per_vcpu,
	       (double)res.populate_ns / 1e6 / ((double)bytes / (1ull << 30)),
	       (double)res.pages_per_vcpu * nr_vcpus * 1e9 / (double)res.populate_ns);
	printf("Walk floor: %.1f ns per page per vCPU\n",
	       (double)res.floor_ns / (double)res.pages_per_vcpu);
	printf("Ratio populate / walk floor: %.2fx\n",
	       (double)res.populate_ns / (double)res.floor_ns);
	printf("Faults: fixed %" PRIu64 ", spurious %" PRIu64 ", retry %" PRIu64 "\n",
	       res.pf_fixed, res.pf_spurious, res.pf_retry);
	printf("Pages mapped: 4K %" PRIu64 ", 2M %" PRIu64 ", 1G %" PRIu64
	       "; page-table pages %" PRIu64 " (metadata %zu bytes each)\n",
	       res.vs.pages_4k, res.vs.pages_2m, res.vs.pages_1g, res.vs.pt_pages,
	       (size_t)64);

	if (scaling && nr_vcpus > 1) {
		double tp_n, tp_1;

		populate_once(1, bytes, pretouch, backing, &one);
		tp_n = (double)res.pages_per_vcpu * nr_vcpus / (double)res.populate_ns;
		tp_1 = (double)one.pages_per_vcpu / (double)one.populate_ns;
		printf("Scaling: 1 vCPU %.0f faults/s (%.1f ns per fault, walk floor %.1f ns), "
		       "%u vCPUs %.0f faults/s: %.2fx\n",
		       tp_1 * 1e9, (double)one.populate_ns / (double)one.pages_per_vcpu,
		       (double)one.floor_ns / (double)one.pages_per_vcpu, nr_vcpus, tp_n * 1e9,
		       tp_n / tp_1);
		/* What the machine itself gives: the walk-only pass, 1 vs N. */
		printf("Scaling of the walk floor itself: %.2fx (the ceiling for the line above)\n",
		       ((double)res.pages_per_vcpu * nr_vcpus / (double)res.floor_ns) /
			       ((double)one.pages_per_vcpu / (double)one.floor_ns));
	}
	return 0;
}

static void usage(void)
{
	printf("usage: vmmu-perf <experiment> [options]   (vmmu-perf <experiment> -h for more)\n"
	       "experiments:\n"
	       "  populate   fault in every page of guest memory once (KVM's populate phase)\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage();
		return 2;
	}
	if (!strcmp(argv[1], "populate"))
		return cmd_populate(argc - 1, argv + 1);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage();
		return 0;
	}
	fprintf(stderr, "vmmu-perf: unknown experiment '%s'\n", argv[1]);
	usage();
	return 2;
}
