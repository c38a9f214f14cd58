/* SPDX-License-Identifier: MIT */
/*
 * perf_populate.c - vmmu-perf populate: fault in every page of guest memory
 * once (the populate phase of KVM's selftests) and compare with the walk
 * floor measured in the same run.
 */
#define _GNU_SOURCE
#include "perf.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

	perf_config("vcpus", "%u", nr_vcpus);
	perf_config("bytes_per_vcpu", "%" PRIu64, bytes);
	perf_config("backing", "%s", vmmu_backing_name(backing));
	perf_config("pretouch", "%s", pretouch ? "yes" : "no");
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
	perf_record(PERF_METRIC, "Populate ns per page per vCPU", "ns",
		    (double)res.populate_ns / (double)res.pages_per_vcpu);
	perf_record(PERF_FLOOR, "Walk floor ns per page per vCPU", "ns",
		    (double)res.floor_ns / (double)res.pages_per_vcpu);
	perf_record(PERF_RATIO, "Ratio populate / walk floor", "x",
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
		perf_record(PERF_RATIO, "Scaling N vCPUs / 1 vCPU", "x", tp_n / tp_1);
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

VMMU_PERF_EXPERIMENT(populate, "populate",
		     "fault in every page of guest memory once (KVM's populate phase)",
		     cmd_populate)
