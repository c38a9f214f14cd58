/* SPDX-License-Identifier: MIT */
/*
 * perf_demand_paging.c - vmmu-perf demand-paging: KVM's demand_paging_test.
 *
 * Guest memory starts missing on the host.  Each vCPU writes one word in
 * every 4 KiB page of its own region, so every page costs an EPT violation
 * and a host page-in: by the host kernel's page fault (default), or with
 * -u by a userfaultfd handler thread that fills it with UFFDIO_COPY
 * (backing anonymous_uffd; the vCPU waits in vmmu's fault path, with no
 * MMU lock held, until its page is there).  Prints KVM's lines: each vCPU's
 * execution time and paging rate, the total time, the overall rate.
 */
#define _GNU_SOURCE
#include "perf.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill_pattern(void *arg, uint64_t hva, void *page)
{
	(void)arg;
	(void)hva;
	memset(page, 0xab, PAGE); /* KVM's guest_data_prototype */
}

static void usage_demand_paging(void)
{
	printf("usage: vmmu-perf demand-paging [-u] [-r handlers] [-v vcpus] [-b bytes-per-vcpu] [-s backing]\n"
	       "  Every vCPU writes each 4 KiB page of its region once; the host memory\n"
	       "  is missing until then.\n"
	       "  -u          demand paging with userfaultfd (backing anonymous_uffd)\n"
	       "  -r N        userfaultfd handler threads (default 1)\n"
	       "  -v N        vCPUs (default 1)\n"
	       "  -b SIZE     bytes per vCPU, suffixes k/m/g (default 1G)\n"
	       "  -s BACKING  without -u: anonymous (default), anonymous_thp, ...\n");
}

static void *vcpu_pass(void *opaque)
{
	struct pass_arg *a = opaque;
	struct vmmu_hw_vcpu *hw = a->p->hw[a->idx];
	uint64_t base = TEST_GPA + a->idx * a->p->bytes_per_vcpu, v = a->idx, t0;

	pthread_barrier_wait(a->start);
	t0 = now_ns();
	for (uint64_t off = 0; off < a->p->bytes_per_vcpu && !a->err; off += PAGE)
		a->err = vmmu_hw_write(hw, base + off, &v, sizeof(v));
	vmmu_hw_guest_exit(hw);
	a->ns = now_ns() - t0;
	return NULL;
}

static int cmd_demand_paging(int argc, char **argv)
{
	unsigned nr_vcpus = 1, handlers = 1;
	uint64_t bytes = 1ull << 30, total, t0, t_all, pages;
	bool uffd = false;
	enum vmmu_backing backing = VMMU_BACKING_ANONYMOUS;
	struct vmmu_userspace_memory_region region;
	struct pass_arg args[VMMU_MAX_VCPUS];
	pthread_t th[VMMU_MAX_VCPUS];
	pthread_barrier_t start;
	struct perf_vm p;
	int c, r;

	while ((c = getopt(argc, argv, "ur:v:b:s:h")) != -1) {
		switch (c) {
		case 'u': uffd = true; break;
		case 'r': handlers = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'v': nr_vcpus = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'b': bytes = parse_size(optarg); break;
		case 's':
			if (vmmu_backing_parse(optarg, &backing)) {
				fprintf(stderr, "unknown backing '%s'\n", optarg);
				return 2;
			}
			break;
		case 'h': usage_demand_paging(); return 0;
		default: usage_demand_paging(); return 2;
		}
	}
	if (uffd) {
		if (backing != VMMU_BACKING_ANONYMOUS && backing != VMMU_BACKING_ANONYMOUS_UFFD) {
			fprintf(stderr, "-u works with 4 KiB anonymous memory only\n");
			return 2;
		}
		backing = VMMU_BACKING_ANONYMOUS_UFFD;
	}
	if (!nr_vcpus || nr_vcpus > VMMU_MAX_VCPUS || !handlers || handlers > 64 ||
	    bytes < PAGE || bytes % vmmu_backing_page_size(backing)) {
		usage_demand_paging();
		return 2;
	}
	total = bytes * nr_vcpus;
	pages = bytes / PAGE;
	printf("Testing: %u vCPU(s), %" PRIu64 " MiB each, backing %s", nr_vcpus, bytes >> 20,
	       vmmu_backing_name(backing));
	if (uffd)
		printf(", %u userfaultfd handler thread(s)", handlers);
	printf("\nguest physical test memory: [0x%llx, 0x%llx)\n", TEST_GPA, TEST_GPA + total);
	perf_config("vcpus", "%u", nr_vcpus);
	perf_config("bytes_per_vcpu", "%" PRIu64, bytes);
	perf_config("backing", "%s", vmmu_backing_name(backing));
	perf_config("userfaultfd_handlers", "%u", uffd ? handlers : 0);

	/* The VM by hand: the uffd handlers are set up before the memory. */
	memset(&p, 0, sizeof(p));
	p.nr_vcpus = nr_vcpus;
	p.bytes_per_vcpu = bytes;
	if ((r = vmmu_hostmem_create(&p.hm)))
		die("vmmu_hostmem_create", r);
	if (uffd && (r = vmmu_hostmem_set_uffd(p.hm, &(struct vmmu_uffd_config){
							      .nr_handlers = handlers,
							      .fill = fill_pattern })))
		die("vmmu_hostmem_set_uffd", r);
	if ((backing == VMMU_BACKING_ANONYMOUS_HUGETLB_2MB ||
	     backing == VMMU_BACKING_ANONYMOUS_HUGETLB_1GB) && !hugetlb_reserve(backing, total))
		fprintf(stderr, "vmmu-perf: could not reserve %s pages\n", vmmu_backing_name(backing));
	if ((r = vmmu_hostmem_alloc(p.hm, backing, total, 0, &p.mem)))
		die("vmmu_hostmem_alloc", r);
	if ((r = vmmu_vm_create(&(struct vmmu_vm_config){ .hostmem = p.hm }, &p.vm)))
		die("vmmu_vm_create", r);
	region = (struct vmmu_userspace_memory_region){ .slot = 0, .guest_phys_addr = TEST_GPA,
							.memory_size = total,
							.userspace_addr = (uintptr_t)p.mem };
	if ((r = vmmu_set_user_memory_region(p.vm, &region)))
		die("vmmu_set_user_memory_region", r);
	for (unsigned i = 0; i < nr_vcpus; i++) {
		if ((r = vmmu_vcpu_create(p.vm, i, &p.vcpus[i])))
			die("vmmu_vcpu_create", r);
		if ((r = vmmu_hw_vcpu_create(p.vcpus[i], NULL, &p.hw[i])))
			die("vmmu_hw_vcpu_create", r);
	}
	printf("Finished creating vCPUs%s\n", uffd ? " and starting uffd threads" : "");

	pthread_barrier_init(&start, NULL, nr_vcpus + 1);
	for (unsigned i = 0; i < nr_vcpus; i++) {
		args[i] = (struct pass_arg){ .p = &p, .idx = i, .kind = PASS_WRITE, .start = &start };
		pthread_create(&th[i], NULL, vcpu_pass, &args[i]);
	}
	pthread_barrier_wait(&start);
	t0 = now_ns();
	printf("Started all vCPUs\n");
	for (unsigned i = 0; i < nr_vcpus; i++)
		pthread_join(th[i], NULL);
	t_all = now_ns() - t0;
	printf("All vCPU threads joined\n");
	pthread_barrier_destroy(&start);
	for (unsigned i = 0; i < nr_vcpus; i++) {
		char what[64];

		if (args[i].err)
			die("guest access", args[i].err);
		snprintf(what, sizeof(what), "vCPU %u execution time", i);
		print_time(what, args[i].ns);
		printf("vCPU %u paging rate: %f pgs/sec\n", i,
		       (double)pages * 1e9 / (double)args[i].ns);
	}
	print_time("Total guest execution time", t_all);
	printf("Overall demand paging rate: %f pgs/sec\n",
	       (double)pages * nr_vcpus * 1e9 / (double)t_all);
	printf("Per-vcpu demand paging rate: %f pgs/sec/vcpu\n",
	       (double)pages * 1e9 / (double)t_all);
	if (uffd) {
		uint64_t filled = 0;

		vmmu_hostmem_uffd_pages(p.hm, p.mem, &filled);
		printf("Pages filled by userfaultfd handlers: %" PRIu64 "\n", filled);
	}
	perf_vm_destroy(&p);
	return 0;
}

VMMU_PERF_EXPERIMENT(demand_paging, "demand-paging",
		     "KVM's demand_paging_test: first touch of missing memory, -u for userfaultfd",
		     cmd_demand_paging)
