/* SPDX-License-Identifier: MIT */
/*
 * perf_memslot.c - vmmu-perf memslot: what deleting a memslot costs with
 * each of the VM's two ways of dropping its mappings
 * (vmmu_vm_config.slot_zap):
 *
 *  - range: zap the slot's gfns in every root, synchronously;
 *  - fast:  make every root obsolete, move the vCPUs to new roots, and let
 *           the VM's zap thread empty the obsolete roots afterwards.
 *
 * Two scenarios per way:
 *  1. delete the fully populated test slot (-v x -b bytes): the time of the
 *     call, and for the fast way also the time until the zap thread has
 *     emptied the obsolete roots;
 *  2. delete a small 2 MiB slot while the big one stays mapped, then let
 *     the vCPUs touch their memory again: the fast way pays for faulting
 *     everything back in, the range way only for the TLB refill.
 * A grace period (synchronize_rcu) is timed on its own as the floor: a
 * delete waits for two of them whatever it zaps.
 */
#define _GNU_SOURCE
#include "perf.h"

#include "mmu_internal.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SMALL_BYTES (2ull << 20)

static const char *const zap_names[] = { "range", "fast" };

static int set_region(struct vmmu_vm *vm, uint32_t slot, uint64_t gpa, uint64_t size,
		      void *hva)
{
	struct vmmu_userspace_memory_region r = { .slot = slot, .guest_phys_addr = gpa,
						  .memory_size = size,
						  .userspace_addr = (uint64_t)(uintptr_t)hva };

	return vmmu_set_user_memory_region(vm, &r);
}

static void run_mode(unsigned mode, unsigned nr_vcpus, uint64_t bytes, bool pretouch,
		     enum vmmu_backing backing)
{
	struct vmmu_vm_config cfg = { .slot_zap = mode };
	uint64_t total = bytes * nr_vcpus, t0, t1, t2, populate, repopulate;
	struct vmmu_vm_stats st;
	struct perf_vm p;
	char what[96];
	void *small;
	int r;

	printf("--- slot_zap=%s\n", zap_names[mode]);

	/* 1. Delete the populated slot. */
	perf_vm_create_cfg(&p, &cfg, nr_vcpus, bytes, pretouch, backing);
	populate = run_pass(&p, nr_vcpus, PASS_WRITE);
	vmmu_vm_stats(p.vm, &st);
	print_time("Populate memory time", populate);
	printf("Mapped: 4K %" PRIu64 ", 2M %" PRIu64 ", 1G %" PRIu64 ", page-table pages %" PRIu64
	       "\n",
	       st.pages_4k, st.pages_2m, st.pages_1g, st.pt_pages);
	t0 = now_ns();
	r = set_region(p.vm, 0, TEST_GPA, 0, p.mem);
	t1 = now_ns();
	if (r)
		die("delete", r);
	vmmu_zap_fast_flush(p.vm);
	t2 = now_ns();
	snprintf(what, sizeof(what), "Memslot delete time (%" PRIu64 " MiB mapped)", total >> 20);
	print_time(what, t1 - t0);
	if (mode == VMMU_SLOT_ZAP_ALL_FAST)
		print_time("Obsolete roots zapped (zap thread, after the delete returned)", t2 - t1);
	vmmu_vm_stats(p.vm, &st);
	if (st.pages_4k || st.pages_2m || st.pages_1g)
		printf("(leaves left after the delete and the zap thread: %" PRIu64 ")\n",
		       st.pages_4k + st.pages_2m + st.pages_1g);
	perf_vm_destroy(&p);

	/* 2. Delete a small slot next to the big one, then touch again. */
	perf_vm_create_cfg(&p, &cfg, nr_vcpus, bytes, pretouch, backing);
	run_pass(&p, nr_vcpus, PASS_WRITE);
	r = vmmu_hostmem_alloc(p.hm, VMMU_BACKING_ANONYMOUS, SMALL_BYTES, 0, &small);
	if (r)
		die("vmmu_hostmem_alloc", r);
	r = set_region(p.vm, 1, TEST_GPA + total + (1ull << 30), SMALL_BYTES, small);
	if (r)
		die("create the small slot", r);
	for (uint64_t off = 0; off < SMALL_BYTES; off += PAGE) {
		uint64_t v = off;

		r = vmmu_hw_write(p.hw[0], TEST_GPA + total + (1ull << 30) + off, &v, 8);
		if (r)
			die("touch the small slot", r);
	}
	vmmu_hw_guest_exit(p.hw[0]);
	t0 = now_ns();
	r = set_region(p.vm, 1, 0, 0, small);
	t1 = now_ns();
	if (r)
		die("delete the small slot", r);
	vmmu_zap_fast_flush(p.vm);
	print_time("Small memslot delete time (2 MiB slot, big slot stays mapped)", t1 - t0);
	repopulate = run_pass(&p, nr_vcpus, PASS_WRITE);
	print_time("Touch big slot again after the small delete", repopulate);
	printf("Cost of the small delete to the big slot: %.2fx its populate time\n",
	       (double)repopulate / (double)populate);
	vmmu_hostmem_free(p.hm, small);
	perf_vm_destroy(&p);
}

static void usage_memslot(void)
{
	printf("usage: vmmu-perf memslot [-v vcpus] [-b bytes-per-vcpu] [-s backing] [-n] [-m range|fast]\n"
	       "  Populate the test slot, then time its deletion with each slot_zap way;\n"
	       "  then delete a 2 MiB slot beside it and time touching the big slot again.\n"
	       "  -v N        vCPUs (default 2)\n"
	       "  -b SIZE     bytes per vCPU, suffixes k/m/g (default 2G: 4 GiB in all)\n"
	       "  -s BACKING  anonymous (default), anonymous_thp, anonymous_hugetlb_2mb, ...\n"
	       "  -n          do not pre-touch host memory\n"
	       "  -m WAY      only this way (default both)\n");
}

static int cmd_memslot(int argc, char **argv)
{
	unsigned nr_vcpus = 2;
	uint64_t bytes = 2ull << 30, t0, gp = UINT64_MAX;
	bool pretouch = true;
	int only = -1, c;
	enum vmmu_backing backing = VMMU_BACKING_ANONYMOUS;

	while ((c = getopt(argc, argv, "v:b:s:nm:h")) != -1) {
		switch (c) {
		case 'v': nr_vcpus = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'b': bytes = parse_size(optarg); break;
		case 's':
			if (vmmu_backing_parse(optarg, &backing)) {
				fprintf(stderr, "unknown backing '%s'\n", optarg);
				return 2;
			}
			break;
		case 'n': pretouch = false; break;
		case 'm':
			only = !strcmp(optarg, "fast") ? 1 : !strcmp(optarg, "range") ? 0 : -2;
			if (only == -2) {
				usage_memslot();
				return 2;
			}
			break;
		case 'h': usage_memslot(); return 0;
		default: usage_memslot(); return 2;
		}
	}
	if (!nr_vcpus || nr_vcpus > VMMU_MAX_VCPUS || bytes < PAGE ||
	    bytes % vmmu_backing_page_size(backing)) {
		usage_memslot();
		return 2;
	}
	printf("Testing: %u vCPU(s), %" PRIu64 " MiB each, backing %s\n", nr_vcpus, bytes >> 20,
	       vmmu_backing_name(backing));
	perf_config("vcpus", "%u", nr_vcpus);
	perf_config("bytes_per_vcpu", "%" PRIu64, bytes);
	perf_config("backing", "%s", vmmu_backing_name(backing));
	/* The floor: one grace period, best of 5. */
	for (int i = 0; i < 5; i++) {
		t0 = now_ns();
		vmmu_synchronize_rcu();
		gp = vmmu_min(gp, now_ns() - t0);
	}
	print_time("Grace period (synchronize_rcu) time", gp);
	perf_record(PERF_FLOOR, "Grace period floor (synchronize_rcu)", "s", (double)gp / 1e9);
	for (unsigned mode = 0; mode < 2; mode++)
		if (only < 0 || (unsigned)only == mode)
			run_mode(mode, nr_vcpus, bytes, pretouch, backing);
	return 0;
}

VMMU_PERF_EXPERIMENT(memslot, "memslot",
		     "time a memslot delete: zap the slot's range vs make all roots obsolete",
		     cmd_memslot)
