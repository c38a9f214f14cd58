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
 * populate pass in L2, so every fault is a nested fault.
 */
#define EPT12_GPA (16ull << 20)
#define EPT12_BYTES (2ull << 20)

struct nested_result {
	uint64_t populate_ns, floor_ns, pages_per_vcpu;
	struct vmmu_nested_stats ns;
};

static uint64_t *ept12_next_table(uint8_t *mem, uint64_t *next)
{
	uint64_t gpa = *next;

	*next += PAGE;
	if (*next > EPT12_GPA + EPT12_BYTES)
		die("EPT12 area full", -ENOMEM);
	memset(mem + (gpa - EPT12_GPA), 0, PAGE);
	return (uint64_t *)(void *)(mem + (gpa - EPT12_GPA));
}

static uint64_t ept12_build(uint8_t *mem, uint64_t l2_start, uint64_t l2_end)
{
	uint64_t next = EPT12_GPA, root = next;

	ept12_next_table(mem, &next);
	for (uint64_t a = l2_start; a < l2_end;) {
		bool huge = !(a & ((2ull << 20) - 1)) && a + (2ull << 20) <= l2_end;
		int leaf_level = huge ? 2 : 1;
		uint64_t table = root;

		for (int l = 4; l > leaf_level; l--) {
			uint64_t *e = (uint64_t *)(void *)(mem + (table - EPT12_GPA)) +
				      ((a >> (12 + 9 * (l - 1))) & 511);

			if (!*e) {
				uint64_t t = next;

				ept12_next_table(mem, &next);
				*e = t | 7;
			}
			table = *e & ~0xfffull;
		}
		((uint64_t *)(void *)(mem +
				      (table -
				       EPT12_GPA)))[(a >> (12 + 9 * (leaf_level - 1))) & 511] =
			a | 7 | (6ull << 3) | (huge ? 1ull << 7 : 0);
		a += huge ? 2ull << 20 : PAGE;
	}
	return root;
}

static void populate_nested(unsigned nr_vcpus, uint64_t bytes, bool pretouch,
			    enum vmmu_backing backing, struct nested_result *res)
{
	struct vmmu_userspace_memory_region region;
	struct perf_vm p;
	uint8_t *ept_mem;
	uint64_t eptp;
	int r;

	perf_vm_create(&p, nr_vcpus, bytes, pretouch, backing);
	r = vmmu_hostmem_alloc(p.hm, VMMU_BACKING_ANONYMOUS, EPT12_BYTES, 0, (void **)&ept_mem);
	if (r)
		die("vmmu_hostmem_alloc", r);
	region = (struct vmmu_userspace_memory_region){
		.slot = 1,
		.guest_phys_addr = EPT12_GPA,
		.memory_size = EPT12_BYTES,
		.userspace_addr = (uint64_t)(uintptr_t)ept_mem,
	};
	r = vmmu_set_user_memory_region(p.vm, &region);
	if (r)
		die("vmmu_set_user_memory_region", r);
	eptp = ept12_build(ept_mem, TEST_GPA, TEST_GPA + bytes * nr_vcpus) | VMMU_EPTP_MT_WB |
	       VMMU_EPTP_WALK_4 | VMMU_EPTP_AD;
	for (unsigned i = 0; i < nr_vcpus; i++) {
		r = vmmu_hw_nested_enter(p.hw[i], eptp);
		if (r)
			die("vmmu_hw_nested_enter", r);
	}
	res->pages_per_vcpu = bytes / PAGE;
	res->populate_ns = run_pass(&p, nr_vcpus, PASS_WRITE);
	flush_all_tlbs(&p);
	res->floor_ns = run_pass(&p, nr_vcpus, PASS_WRITE);
	vmmu_nested_stats(p.vm, &res->ns);
	for (unsigned i = 0; i < nr_vcpus; i++)
		vmmu_hw_nested_leave(p.hw[i]);
	/* Else the host memory cannot be destroyed (a range is left). */
	vmmu_hostmem_free(p.hm, ept_mem);
	perf_vm_destroy(&p);
}

static void report_nested(unsigned nr_vcpus, uint64_t bytes, bool pretouch,
			  enum vmmu_backing backing)
{
	struct populate_result tdp;
	struct nested_result n;
	double per_nested, per_tdp;

	printf("Testing: nested (L1 maps L2 with 2 MiB EPT12 leaves, identity), %u vCPU(s), "
	       "%" PRIu64 " MiB each, backing %s, host memory %s\n",
	       nr_vcpus, bytes >> 20, vmmu_backing_name(backing),
	       pretouch ? "pre-touched" : "not pre-touched");
	populate_nested(nr_vcpus, bytes, pretouch, backing, &n);
	populate_once(nr_vcpus, bytes, pretouch, backing, &tdp);
	per_nested = (double)n.populate_ns / (double)n.pages_per_vcpu;
	per_tdp = (double)tdp.populate_ns / (double)tdp.pages_per_vcpu;
	print_time("Populate memory time (L2, nested)", n.populate_ns);
	print_time("Populate memory time (L1, TDP)", tdp.populate_ns);
	print_time("Walk floor time (L2)", n.floor_ns);
	printf("Nested fault: %.1f ns per 4 KiB page per vCPU (%" PRIu64 " nested faults), "
	       "TDP fault: %.1f ns; ratio nested / TDP: %.2fx\n",
	       per_nested, n.ns.nested_faults, per_tdp, per_nested / per_tdp);
	printf("EPT02 leaves: 4K %" PRIu64 ", 2M %" PRIu64 ", 1G %" PRIu64
	       "; EPT02 table pages %" PRIu64 " (metadata %" PRIu64 " bytes, reverse maps %" PRIu64
	       " bytes)\n",
	       n.ns.ept02_pages_4k, n.ns.ept02_pages_2m, n.ns.ept02_pages_1g, n.ns.shadow_pages,
	       n.ns.meta_bytes, n.ns.rmap_bytes);
	printf("Shadow pages created %" PRIu64 ", EPT12 pages write-tracked %" PRIu64 "\n",
	       n.ns.mmu_cache_miss, n.ns.write_tracked_gfns);
}

static void usage_populate(void)
{
	printf("usage: vmmu-perf populate [-v vcpus] [-b bytes-per-vcpu] [-s backing] [-u] [-n] [-r repeats]\n"
	       "                          [--scaling]\n"
	       "  Each vCPU touches every 4 KiB page of its own region once, faulting it in.\n"
	       "  -v N        vCPUs (default 2)\n"
	       "  -b SIZE     bytes per vCPU, suffixes k/m/g (default 1G)\n"
	       "  -s BACKING  anonymous (default), anonymous_thp, anonymous_hugetlb_2mb,\n"
	       "              anonymous_hugetlb_1gb; hugetlb pages are reserved as root\n"
	       "              and the setting restored at exit\n"
	       "  -u          do not pre-touch host memory (host page faults are then\n"
	       "              included in the figure)\n"
	       "  -n          nested (KVM memstress -n): the vCPUs populate in L2, L1 maps\n"
	       "              L2 with 2 MiB EPT12 leaves; prints ns per nested fault and its\n"
	       "              ratio to a TDP populate fault measured in the same run\n"
	       "  -r N        run N times; each figure is the median (min, max) of the\n"
	       "              runs, each ratio taken within a run (default 3)\n"
	       "  --scaling   also run with 1 vCPU and print the throughput ratio, the walk\n"
	       "              floor's own, and their quotient (the scaling efficiency)\n");
}

#define POPULATE_MAX_REPEATS 64

static int cmd_populate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "scaling", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned nr_vcpus = 2, repeats = 3;
	uint64_t bytes = 1ull << 30;
	bool pretouch = true, scaling = false, nested = false;
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
	if (nested) {
		report_nested(nr_vcpus, bytes, pretouch, backing);
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
