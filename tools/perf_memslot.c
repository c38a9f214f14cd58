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
 *
 * -n adds the nested pass (issue 14): every vCPU in its own L2, populated;
 * a 2 MiB slot is deleted with slot_zap=fast, which makes every EPT02 root
 * obsolete, and the vCPUs refault their L2 memory into new roots at once,
 * while the zap thread empties the obsolete ones; against the same refault
 * started after the zap has finished (a second VM, same run).  With
 * per-root locks the two should take the same time.
 */
#define _GNU_SOURCE
#include "perf.h"

#include "mmu_internal.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SMALL_BYTES (2ull << 20)

static const char *const zap_names[] = { "range", "fast" };

static int set_region(struct vmmu_vm *vm, uint32_t slot, uint64_t gpa, uint64_t size, void *hva)
{
	struct vmmu_userspace_memory_region r = { .slot = slot,
						  .guest_phys_addr = gpa,
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
		print_time("Obsolete roots zapped (zap thread, after the delete returned)",
			   t2 - t1);
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

struct refault_result {
	uint64_t populate, delete_ns, refault;
	uint64_t zap_ns; /* from the delete's return to the zap thread's end */
	struct perf_roots roots;
};

struct memslot_opts {
	unsigned nr_vcpus, repeats;
	uint64_t bytes;
	bool pretouch;
	enum vmmu_backing backing;
};

struct zap_watch {
	struct vmmu_vm *vm;
	uint64_t end;
};

static void *zap_watch_thread(void *arg)
{
	struct zap_watch *w = arg;

	vmmu_zap_fast_flush(w->vm);
	w->end = now_ns();
	return NULL;
}

/* Populate every vCPU's L2, delete a 2 MiB slot (all roots obsolete), then
 * refault: at once (@wait_zap false) or after the zap thread is done. */
static void nested_refault_once(const struct memslot_opts *o, unsigned mode, bool wait_zap,
				struct refault_result *r)
{
	struct vmmu_vm_config cfg = { .slot_zap = VMMU_SLOT_ZAP_ALL_FAST,
				      .nested_global_lock = mode == PERF_LOCK_GLOBAL };
	uint64_t total = o->bytes * o->nr_vcpus, gpa = TEST_GPA + total + (1ull << 30), t0, t1;
	struct perf_vm p;
	struct perf_l2 l2;
	void *small;
	int rc;

	perf_vm_create_cfg(&p, &cfg, o->nr_vcpus, o->bytes, o->pretouch, o->backing);
	perf_l2_enter(&p, &l2, true, (1ull << o->nr_vcpus) - 1);
	r->populate = run_pass(&p, o->nr_vcpus, PASS_WRITE);
	rc = vmmu_hostmem_alloc(p.hm, VMMU_BACKING_ANONYMOUS, SMALL_BYTES, 0, &small);
	if (rc)
		die("vmmu_hostmem_alloc", rc);
	rc = set_region(p.vm, 2, gpa, SMALL_BYTES, small);
	if (rc)
		die("create the small slot", rc);
	t0 = now_ns();
	rc = set_region(p.vm, 2, 0, 0, small);
	t1 = now_ns();
	if (rc)
		die("delete the small slot", rc);
	r->delete_ns = t1 - t0;
	if (wait_zap) {
		vmmu_zap_fast_flush(p.vm);
		r->zap_ns = now_ns() - t1;
		r->refault = run_pass(&p, o->nr_vcpus, PASS_WRITE);
	} else {
		/* A thread sleeps until the zap thread is done and notes when. */
		struct zap_watch w = { .vm = p.vm };
		pthread_t th;

		if (pthread_create(&th, NULL, zap_watch_thread, &w))
			die("pthread_create", -EAGAIN);
		r->refault = run_pass(&p, o->nr_vcpus, PASS_WRITE);
		pthread_join(th, NULL);
		r->zap_ns = w.end - t1;
	}
	perf_roots_get(p.vm, &r->roots);
	vmmu_hostmem_free(p.hm, small);
	perf_l2_leave(&p, &l2);
	perf_vm_destroy(&p);
}

#define MEMSLOT_MAX_REPEATS 32

static void run_nested(const struct memslot_opts *o, unsigned first, unsigned last)
{
	static struct refault_result during[2][MEMSLOT_MAX_REPEATS], after[2][MEMSLOT_MAX_REPEATS];
	unsigned reps = o->repeats;
	uint64_t t[MEMSLOT_MAX_REPEATS];
	double v[MEMSLOT_MAX_REPEATS];

	printf("--- nested: %u vCPU(s) each in its own L2, slot_zap=fast, refault while the "
	       "obsolete EPT02 roots are zapped vs after, %u run(s)\n",
	       o->nr_vcpus, reps);
	for (unsigned i = 0; i < reps; i++)
		for (unsigned m = first; m <= last; m++) {
			nested_refault_once(o, m, false, &during[m][i]);
			nested_refault_once(o, m, true, &after[m][i]);
		}
	for (unsigned m = first; m <= last; m++) {
		unsigned overlapped = 0;

		printf("--- nested, %s\n", perf_lock_mode_names[m]);
		perf_record_prefix("nested, %s", perf_lock_mode_names[m]);
		for (unsigned i = 0; i < reps; i++)
			t[i] = during[m][i].populate;
		print_times("Populate memory time (L2)", t, reps);
		for (unsigned i = 0; i < reps; i++)
			t[i] = after[m][i].delete_ns;
		print_times("Small memslot delete time (every root made obsolete)", t, reps);
		for (unsigned i = 0; i < reps; i++)
			t[i] = after[m][i].zap_ns;
		print_times("Obsolete roots zapped (zap thread, after the delete returned)", t,
			    reps);
		for (unsigned i = 0; i < reps; i++)
			t[i] = during[m][i].zap_ns;
		print_times("Obsolete roots zapped, while the vCPUs refault", t, reps);
		for (unsigned i = 0; i < reps; i++) {
			t[i] = during[m][i].refault;
			overlapped += during[m][i].zap_ns > during[m][i].refault;
		}
		print_times("Refault L2 memory time, while the obsolete roots are zapped", t, reps);
		for (unsigned i = 0; i < reps; i++)
			t[i] = after[m][i].refault;
		print_times("Refault L2 memory time, after the zap finished", t, reps);
		for (unsigned i = 0; i < reps; i++)
			v[i] = (double)during[m][i].refault / (double)after[m][i].refault;
		print_ratios("Ratio refault while zapping / refault after the zap", v, reps);
		printf("  (the zap outlasted the refault in %u of %u runs)\n", overlapped, reps);
		perf_roots_print(&during[m][reps - 1].roots,
				 "after the refault while zapping (last run)");
	}
	perf_record_prefix(NULL);
	if (first != last) {
		for (unsigned i = 0; i < reps; i++)
			v[i] = (double)during[PERF_LOCK_GLOBAL][i].refault /
			       (double)during[PERF_LOCK_PER_ROOT][i].refault;
		print_ratios("Refault while zapping, global lock / per-root locks", v, reps);
	}
}

static void usage_memslot(void)
{
	printf("usage: vmmu-perf memslot [-v vcpus] [-b bytes-per-vcpu] [-s backing] [-u] [-m range|fast]\n"
	       "                         [-n [-r repeats] [--global-lock | --compare locks]]\n"
	       "  Populate the test slot, then time its deletion with each slot_zap way;\n"
	       "  then delete a 2 MiB slot beside it and time touching the big slot again.\n"
	       "  -v N        vCPUs (default 2)\n"
	       "  -b SIZE     bytes per vCPU, suffixes k/m/g (default 2G: 4 GiB in all)\n"
	       "  -s BACKING  anonymous (default), anonymous_thp, anonymous_hugetlb_2mb, ...\n"
	       "  -u          do not pre-touch host memory\n"
	       "  -m WAY      only this way (default both; with -n, none unless given)\n"
	       "  -n          the nested pass: each vCPU in its own L2, delete a 2 MiB\n"
	       "              slot with slot_zap=fast, refault L2 memory while the obsolete\n"
	       "              EPT02 roots are zapped, against refaulting after the zap\n"
	       "  -r N        the nested pass N times: median (min, max) (default 3)\n"
	       "  --global-lock  nested MMU with its global lock (nested_global_lock)\n"
	       "  --compare locks  the nested pass with per-root locks and the global lock\n");
}

static int cmd_memslot(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "global-lock", no_argument, NULL, 'G' },
		{ "compare", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned nr_vcpus = 2, repeats = 3, first, last;
	uint64_t bytes = 2ull << 30, t0, gp = UINT64_MAX;
	bool pretouch = true, nested = false, global = false, cmp_locks = false;
	int only = -1, c;
	enum vmmu_backing backing = VMMU_BACKING_ANONYMOUS;

	while ((c = getopt_long(argc, argv, "v:b:s:unr:m:h", opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			nr_vcpus = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'b':
			bytes = parse_size(optarg);
			break;
		case 's':
			if (vmmu_backing_parse(optarg, &backing)) {
				fprintf(stderr, "unknown backing '%s'\n", optarg);
				return 2;
			}
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
		case 'm':
			only = !strcmp(optarg, "fast") ? 1 : !strcmp(optarg, "range") ? 0 : -2;
			if (only == -2) {
				usage_memslot();
				return 2;
			}
			break;
		case 'h':
			usage_memslot();
			return 0;
		default:
			usage_memslot();
			return 2;
		}
	}
	if (!nr_vcpus || nr_vcpus > VMMU_MAX_VCPUS || bytes < PAGE ||
	    bytes % vmmu_backing_page_size(backing) || !repeats || repeats > MEMSLOT_MAX_REPEATS ||
	    (global && cmp_locks) || ((global || cmp_locks) && !nested)) {
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
	/* With -n, the TDP ways only when -m names one. */
	for (unsigned mode = 0; mode < 2; mode++)
		if ((only < 0 && !nested) || (unsigned)only == mode)
			run_mode(mode, nr_vcpus, bytes, pretouch, backing);
	if (nested) {
		struct memslot_opts o = { .nr_vcpus = nr_vcpus,
					  .repeats = repeats,
					  .bytes = bytes,
					  .pretouch = pretouch,
					  .backing = backing };

		perf_lock_modes(cmp_locks, global, &first, &last);
		perf_config("nested_lock", "%s",
			    cmp_locks ? "per-root vs global" : perf_lock_mode_names[first]);
		perf_config("repeats", "%u (nested pass)", repeats);
		run_nested(&o, first, last);
	}
	return 0;
}

VMMU_PERF_EXPERIMENT(memslot, "memslot",
		     "time a memslot delete: zap the slot's range vs make all roots obsolete",
		     cmd_memslot)
