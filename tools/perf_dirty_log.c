/* SPDX-License-Identifier: MIT */
/*
 * perf_dirty_log.c - vmmu-perf dirty-log: KVM's dirty_log_perf_test on vmmu.
 *
 * Populate guest memory, enable dirty logging on its slot, then for each
 * iteration let every vCPU dirty its region (a write percentage of its
 * pages, the rest read) and harvest: get dirty log, and in manual-protect
 * mode clear it.  Finally disable logging (huge pages are recovered).  The
 * metric lines carry KVM's names so results read side by side with the
 * seeds.  --compare eager runs eager splitting off and on alternately in
 * one process and prints the seeds' before/after table, with the same
 * experiment on 4 KiB-backed memory as the reference.
 */
#define _GNU_SOURCE
#include "perf.h"

#include "mmu_internal.h"

#include <errno.h>
#include <stddef.h>
#include <getopt.h>
#include <vmmu/nested.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MAX_ITER 64

struct dl_opts {
	unsigned nr_vcpus;
	uint64_t bytes;
	unsigned iterations;
	unsigned write_percent;
	enum vmmu_backing backing;
	bool manual, initially_set, eager, ring, wrprot;
	bool nested; /* -n: the vCPUs run in L2 (KVM memstress -n) */
	bool per_vcpu; /* --l2-per-vcpu: each vCPU in its own L2 */
	bool global_lock; /* vmmu_vm_config.nested_global_lock */
	bool quiet;
};

struct dl_result {
	uint64_t populate, enable, disable, floor, memset_floor, memset_fresh, reenable;
	uint64_t dirty[MAX_ITER + 1], get[MAX_ITER + 1], clear[MAX_ITER + 1];
	uint64_t pages_dirty[MAX_ITER + 1];
	struct vmmu_vm_stats populated, enabled, disabled;
	/* -n: EPT02 after populate, after enabling, after iteration 1. */
	struct vmmu_nested_stats nest_pop, nest_enabled, nest_it1;
	struct perf_roots roots_it1; /* -n: the roots after iteration 1 */
};

/*
 * -n with eager splitting: the call that split the huge EPT02 leaves (the
 * enable, or with initially-all-set iteration 1's clear), its time and the
 * table pages it wrote (one per huge leaf split).  False if none split.
 */
static bool nested_split_cost(const struct dl_result *r, const char **call, uint64_t *ns,
			      uint64_t *tables)
{
	if (r->nest_enabled.split_huge_pages) {
		*call = "Enabling dirty logging";
		*ns = r->enable;
		*tables = r->nest_enabled.split_huge_pages;
		return true;
	}
	if (r->nest_it1.split_huge_pages) {
		*call = "Iteration 1 clear dirty log";
		*ns = r->clear[1];
		*tables = r->nest_it1.split_huge_pages;
		return true;
	}
	return false;
}

struct dl_pass {
	struct perf_vm *p;
	unsigned idx;
	unsigned write_percent;
	uint64_t seed;
	pthread_barrier_t *start;
	int *done;
	uint64_t ns;
	int err;
};

static void *dl_pass_thread(void *opaque)
{
	struct dl_pass *a = opaque;
	struct perf_vm *p = a->p;
	struct vmmu_hw_vcpu *hw = p->hw[a->idx];
	uint64_t base = TEST_GPA + a->idx * p->bytes_per_vcpu, rng = a->seed | 1, t0;
	uint64_t v = a->idx;
	int err = 0;

	pthread_barrier_wait(a->start);
	t0 = now_ns();
	for (uint64_t off = 0; off < p->bytes_per_vcpu && !err; off += PAGE) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		for (;;) {
			if (rng % 100 < a->write_percent)
				err = vmmu_hw_write(hw, base + off, &v, sizeof(v));
			else
				err = vmmu_hw_read(hw, base + off, &v, sizeof(v));
			if (err != -ENOBUFS)
				break;
			/* Dirty ring soft-full: wait for the collector. */
			sched_yield();
		}
	}
	vmmu_hw_guest_exit(hw);
	a->ns = now_ns() - t0;
	a->err = err;
	__atomic_fetch_add(a->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Collect and reset every ring; returns entries harvested. */
static uint64_t harvest_rings(struct perf_vm *p, uint32_t *next)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < p->nr_vcpus; i++) {
		struct vmmu_dirty_gfn *ring;
		uint32_t size;

		if (vmmu_vcpu_dirty_ring(p->vcpus[i], &ring, &size))
			die("vmmu_vcpu_dirty_ring", -ENXIO);
		for (;;) {
			struct vmmu_dirty_gfn *e = &ring[next[i] & (size - 1)];

			if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) &
			      VMMU_DIRTY_GFN_F_DIRTY))
				break;
			__atomic_store_n(&e->flags, VMMU_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
			next[i]++;
			n++;
		}
	}
	if (n)
		vmmu_reset_dirty_rings(p->vm, NULL);
	return n;
}

/* One pass of all vCPUs; with rings, the caller's thread harvests while
 * they run.  Returns the slowest vCPU's time. */
static uint64_t dl_run_pass(struct perf_vm *p, unsigned write_percent, uint64_t seed, bool ring,
			    uint32_t *ring_next, uint64_t *ring_ns, uint64_t *ring_entries)
{
	pthread_t th[VMMU_MAX_VCPUS];
	struct dl_pass args[VMMU_MAX_VCPUS];
	pthread_barrier_t start;
	uint64_t worst = 0;
	int done = 0;

	pthread_barrier_init(&start, NULL, p->nr_vcpus);
	for (unsigned i = 0; i < p->nr_vcpus; i++) {
		args[i] = (struct dl_pass){ .p = p,
					    .idx = i,
					    .write_percent = write_percent,
					    .seed = seed * 0x9e3779b97f4a7c15ull + i,
					    .start = &start,
					    .done = &done };
		pthread_create(&th[i], NULL, dl_pass_thread, &args[i]);
	}
	while (ring && __atomic_load_n(&done, __ATOMIC_ACQUIRE) < (int)p->nr_vcpus) {
		uint64_t t0 = now_ns(), n = harvest_rings(p, ring_next);

		*ring_entries += n;
		if (n)
			*ring_ns += now_ns() - t0;
		else
			sched_yield();
	}
	for (unsigned i = 0; i < p->nr_vcpus; i++) {
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
 * Nested mode: L1 keeps EPT12 in a second slot and maps L2 identity-style
 * with 2 MiB leaves where it can (perf_l2_enter); every vCPU enters L2, so
 * each pass runs through EPT02 and dirty logging of L1's slot 0 sees L2's
 * writes.  --l2-per-vcpu: each vCPU in its own L2 (own EPT02 root).
 */
static void print_nested(const char *when, struct vmmu_vm *vm)
{
	struct vmmu_nested_stats s;

	vmmu_nested_stats(vm, &s);
	printf("EPT02 %s: 4K %" PRIu64 ", 2M %" PRIu64 ", 1G %" PRIu64 ", table pages %" PRIu64
	       ", nested faults %" PRIu64 "\n",
	       when, s.ept02_pages_4k, s.ept02_pages_2m, s.ept02_pages_1g, s.shadow_pages,
	       s.nested_faults);
}

static void set_logging(struct perf_vm *p, bool on)
{
	struct vmmu_userspace_memory_region mr = {
		.slot = 0,
		.flags = on ? VMMU_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = TEST_GPA,
		.memory_size = p->bytes_per_vcpu * p->nr_vcpus,
		.userspace_addr = (uint64_t)(uintptr_t)p->mem,
	};
	int r = vmmu_set_user_memory_region(p->vm, &mr);

	if (r)
		die("vmmu_set_user_memory_region", r);
}

/* memset of 2 MiB: the page-table bytes that splitting 1 GiB writes. */
static uint64_t memset_2m_ns(void)
{
	static char *buf;
	uint64_t best = UINT64_MAX;

	if (!buf && !(buf = aligned_alloc(4096, 2u << 20)))
		die("aligned_alloc", -ENOMEM);
	for (int i = 0; i < 5; i++) {
		uint64_t t0 = now_ns();

		memset(buf, i, 2u << 20);
		__asm__ volatile("" : : "r"(buf) : "memory");
		t0 = now_ns() - t0;
		if (t0 < best)
			best = t0;
	}
	return best;
}

/*
 * memset of @bytes of fresh, never-touched anonymous memory, mapped as the
 * page-table pool maps its reservation (2 MiB aligned, offered to
 * transparent huge pages): the host's page faults (or huge page clearing)
 * are in the figure, as they are for the page-table pages a first eager
 * split takes from the pool.  The honest floor of that split.
 */
static uint64_t memset_fresh_ns(uint64_t bytes)
{
	const uint64_t huge = 2ull << 20;
	char *raw, *buf;
	uint64_t t0;

	if (!bytes)
		return 0;
	raw = mmap(NULL, bytes + huge, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		die("mmap", -errno);
	buf = (char *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
#ifdef MADV_HUGEPAGE
	(void)madvise(buf, bytes, MADV_HUGEPAGE);
#endif
	t0 = now_ns();
	memset(buf, 1, bytes);
	__asm__ volatile("" : : "r"(buf) : "memory");
	t0 = now_ns() - t0;
	munmap(raw, bytes + huge);
	return t0;
}

static void print_stats(const char *when, const struct vmmu_vm_stats *s)
{
	printf("Pages mapped %s: 4K %" PRIu64 ", 2M %" PRIu64 ", 1G %" PRIu64
	       ", page-table pages %" PRIu64 "\n",
	       when, s->pages_4k, s->pages_2m, s->pages_1g, s->pt_pages);
}

static void dl_run(const struct dl_opts *o, struct dl_result *res)
{
	struct vmmu_vm_config cfg = { 0 };
	uint64_t total = o->bytes * o->nr_vcpus, words, *bitmap;
	uint64_t get_total = 0, clear_total = 0;
	uint32_t ring_next[VMMU_MAX_VCPUS] = { 0 };
	struct perf_vm p;
	char what[96];
	struct perf_l2 l2;
	uint64_t t0;

	memset(res, 0, sizeof(*res));
	cfg.nested_global_lock = o->global_lock;
	cfg.dirty_log_wrprot = o->wrprot;
	cfg.disable_eager_split = !o->eager;
	if (o->manual)
		cfg.manual_dirty_log_protect =
			VMMU_DIRTY_LOG_MANUAL_PROTECT |
			(o->initially_set ? VMMU_DIRTY_LOG_INITIALLY_SET : 0);
	if (o->ring)
		cfg.dirty_ring_size = 65536;
	perf_vm_create_cfg(&p, &cfg, o->nr_vcpus, o->bytes, true, o->backing);
	if (o->nested)
		perf_l2_enter(&p, &l2, o->per_vcpu, (1ull << o->nr_vcpus) - 1);
	words = (total / PAGE + 63) / 64;
	bitmap = calloc(words, sizeof(*bitmap));
	if (!bitmap)
		die("calloc", -ENOMEM);

	res->populate = dl_run_pass(&p, 100, 1, false, NULL, NULL, NULL);
	vmmu_vm_stats(p.vm, &res->populated);
	if (o->nested)
		vmmu_nested_stats(p.vm, &res->nest_pop);
	if (!o->quiet) {
		print_time("Populate memory time", res->populate);
		print_stats("after populate", &res->populated);
		if (o->nested)
			print_nested("after populate", p.vm);
	}

	t0 = now_ns();
	set_logging(&p, true);
	res->enable = now_ns() - t0;
	vmmu_vm_stats(p.vm, &res->enabled);
	if (o->nested)
		vmmu_nested_stats(p.vm, &res->nest_enabled);
	if (!o->quiet) {
		print_time("Enabling dirty logging time", res->enable);
		print_stats("after enabling dirty logging", &res->enabled);
		if (o->nested)
			print_nested("after enabling dirty logging", p.vm);
	}

	for (unsigned it = 1; it <= o->iterations; it++) {
		uint64_t ring_ns = 0, ring_entries = 0;

		res->dirty[it] = dl_run_pass(&p, o->write_percent, it + 1, o->ring, ring_next,
					     &ring_ns, &ring_entries);
		if (o->ring) {
			t0 = now_ns();
			ring_entries += harvest_rings(&p, ring_next);
			res->get[it] = ring_ns + (now_ns() - t0);
			res->pages_dirty[it] = ring_entries;
		} else {
			int r;

			t0 = now_ns();
			r = vmmu_get_dirty_log(p.vm, 0, bitmap);
			res->get[it] = now_ns() - t0;
			if (r)
				die("vmmu_get_dirty_log", r);
			for (uint64_t w = 0; w < words; w++)
				res->pages_dirty[it] += (uint64_t)__builtin_popcountll(bitmap[w]);
			if (o->manual) {
				t0 = now_ns();
				r = vmmu_clear_dirty_log(p.vm, 0, 0, (uint32_t)(total / PAGE),
							 bitmap);
				res->clear[it] = now_ns() - t0;
				if (r)
					die("vmmu_clear_dirty_log", r);
			}
		}
		get_total += res->get[it];
		clear_total += res->clear[it];
		if (o->nested && it == 1) {
			vmmu_nested_stats(p.vm, &res->nest_it1);
			perf_roots_get(p.vm, &res->roots_it1);
		}
		if (o->quiet)
			continue;
		snprintf(what, sizeof(what), "Iteration %u dirty memory time", it);
		print_time(what, res->dirty[it]);
		snprintf(what, sizeof(what), "Iteration %u get dirty log time", it);
		print_time(what, res->get[it]);
		if (o->manual) {
			snprintf(what, sizeof(what), "Iteration %u clear dirty log time", it);
			print_time(what, res->clear[it]);
		}
		printf("Iteration %u: %" PRIu64 " pages dirty%s\n", it, res->pages_dirty[it],
		       o->ring ? " (ring entries)" : "");
		if (o->nested && it == 1) {
			print_nested("after iteration 1", p.vm);
			perf_roots_print(&res->roots_it1, "after iteration 1");
		}
	}

	t0 = now_ns();
	set_logging(&p, false);
	res->disable = now_ns() - t0;
	vmmu_vm_stats(p.vm, &res->disabled);

	/* Eager splitting again, now with page-table pages the pool already
	 * has (recovery freed them): no host page faults in the figure. */
	if (res->enabled.pt_pages > res->populated.pt_pages && o->eager && !o->initially_set) {
		vmmu_rcu_barrier();
		t0 = now_ns();
		set_logging(&p, true);
		res->reenable = now_ns() - t0;
		set_logging(&p, false);
	}
	/* Nested: huge EPT02 leaves come back once the range is zapped (the
	 * nested MMU rebuilds them on faults), then the split runs again on
	 * recycled table pages. */
	if (o->nested && o->eager && !o->initially_set && res->nest_enabled.split_huge_pages) {
		int r = vmmu_zap_gfn_range(p.vm, TEST_GPA / PAGE, TEST_GPA / PAGE + total / PAGE);

		if (r)
			die("vmmu_zap_gfn_range", r);
		vmmu_rcu_barrier();
		dl_run_pass(&p, 0, 98, false, NULL, NULL, NULL);
		vmmu_rcu_barrier();
		t0 = now_ns();
		set_logging(&p, true);
		res->reenable = now_ns() - t0;
		set_logging(&p, false);
	}

	/* The floor: one more pass over memory that is fully mapped and
	 * writable, TLBs cold, as in the populate experiment. */
	flush_all_tlbs(&p);
	dl_run_pass(&p, 100, 99, false, NULL, NULL, NULL); /* writable again */
	flush_all_tlbs(&p);
	res->floor = dl_run_pass(&p, o->write_percent, 100, false, NULL, NULL, NULL);
	res->memset_floor = memset_2m_ns();
	if (res->enabled.pt_pages > res->populated.pt_pages)
		res->memset_fresh =
			memset_fresh_ns((res->enabled.pt_pages - res->populated.pt_pages) * PAGE);
	if (!o->quiet) {
		print_time("Disabling dirty logging time", res->disable);
		print_stats("after disabling dirty logging", &res->disabled);
		printf("Get dirty log over %u iterations took %" PRIu64 ".%09" PRIu64 "s. "
		       "(Avg %" PRIu64 ".%09" PRIu64 "s/iteration)\n",
		       o->iterations, get_total / 1000000000, get_total % 1000000000,
		       get_total / o->iterations / 1000000000,
		       get_total / o->iterations % 1000000000);
		if (o->manual)
			printf("Clear dirty log over %u iterations took %" PRIu64 ".%09" PRIu64
			       "s. (Avg %" PRIu64 ".%09" PRIu64 "s/iteration)\n",
			       o->iterations, clear_total / 1000000000, clear_total % 1000000000,
			       clear_total / o->iterations / 1000000000,
			       clear_total / o->iterations % 1000000000);
		print_time("Walk floor time", res->floor);
		for (unsigned it = 1; it <= o->iterations; it++) {
			printf("Ratio iteration %u dirty memory / walk floor: %.2fx\n", it,
			       (double)res->dirty[it] / (double)res->floor);
			perf_recordf(PERF_RATIO, "x", (double)res->dirty[it] / (double)res->floor,
				     "Ratio iteration %u dirty memory / walk floor", it);
		}
		if (o->manual && o->iterations >= 2 && res->pages_dirty[2])
			printf("Clear dirty log (iteration 2): %.1f ns per 4 KiB page of the slot, "
			       "%.1f ns per dirty page\n",
			       (double)res->clear[2] / (double)(total / PAGE),
			       (double)res->clear[2] / (double)res->pages_dirty[2]);
		if (res->enabled.pt_pages > res->populated.pt_pages) {
			uint64_t tables = res->enabled.pt_pages - res->populated.pt_pages;
			double ms = (double)res->memset_floor * (double)tables / 512.0;

			printf("Eager split wrote %" PRIu64
			       " page-table pages (%.1f MiB); memset of "
			       "as many bytes: %.6fs hot, %.6fs fresh (never touched)\n",
			       tables, (double)tables / 256.0, ms / 1e9,
			       (double)res->memset_fresh / 1e9);
			printf("Ratio enabling dirty logging / memset of as many fresh bytes: %.2fx\n",
			       (double)res->enable / (double)res->memset_fresh);
			perf_record(PERF_RATIO,
				    "Ratio enabling dirty logging / memset of as many fresh bytes",
				    "x", (double)res->enable / (double)res->memset_fresh);
			printf("Ratio enabling dirty logging / memset of as many hot bytes: %.2fx\n",
			       (double)res->enable / ms);
			if (res->reenable) {
				printf("Enabling dirty logging again, page-table pages recycled: %.6fs, "
				       "%.2fx the hot memset\n",
				       (double)res->reenable / 1e9, (double)res->reenable / ms);
				perf_record(
					PERF_RATIO,
					"Ratio enabling again (recycled pages) / memset of as many "
					"hot bytes",
					"x", (double)res->reenable / ms);
			}
		}
		if (o->nested) {
			const char *call;
			uint64_t ns, tables;

			if (nested_split_cost(res, &call, &ns, &tables)) {
				double ms = (double)res->memset_floor * (double)tables / 512.0;

				printf("EPT02 eager split: %" PRIu64 " huge leaves, %" PRIu64
				       " table pages written (%.1f MiB) in the %s call, %.6fs; memset "
				       "of as many bytes: %.6fs; ratio %.2fx\n",
				       tables, tables, (double)tables / 256.0, call,
				       (double)ns / 1e9, ms / 1e9, (double)ns / ms);
				if (res->reenable)
					printf("EPT02 eager split again (range zapped, huge leaves "
					       "faulted back, table pages recycled): %.6fs, %.2fx that "
					       "memset\n",
					       (double)res->reenable / 1e9,
					       (double)res->reenable / ms);
			}
		}
	}
	free(bitmap);
	if (o->nested)
		perf_l2_leave(&p, &l2);
	perf_vm_destroy(&p);
}

#define DL_MAX_REPEATS 32

/* The median of @n figures (what the tables show). */
static uint64_t med_u64(const uint64_t *v, unsigned n)
{
	double d[DL_MAX_REPEATS];

	for (unsigned i = 0; i < n; i++)
		d[i] = (double)v[i];
	return (uint64_t)perf_median(d, n);
}

struct cmp_row {
	const char *name;
	uint64_t off, on, ref; /* medians */
	size_t field; /* offsetof(struct dl_result, the figure) */
};

static uint64_t dl_field(const struct dl_result *r, size_t field)
{
	uint64_t v;

	memcpy(&v, (const char *)r + field, sizeof(v));
	return v;
}

static void plot(const char *file, const struct cmp_row *rows, unsigned n)
{
	FILE *g = popen("gnuplot", "w");

	if (!g) {
		fprintf(stderr, "vmmu-perf: gnuplot not found, no plot\n");
		return;
	}
	fprintf(g,
		"set terminal png size 1000,500\nset output '%s'\n"
		"set style data histograms\nset style fill solid 0.8\n"
		"set ylabel 'seconds'\nset xtics rotate by -20\n"
		"set title 'vmmu-perf dirty-log: eager page splitting off vs on'\n"
		"plot '-' using 2:xtic(1) title 'eager off', '-' using 2 title 'eager on', "
		"'-' using 2 title '4 KiB backing'\n",
		file);
	for (int k = 0; k < 3; k++) {
		for (unsigned i = 0; i < n; i++)
			fprintf(g, "\"%s\" %.9f\n", rows[i].name,
				(double)(k == 0 ? rows[i].off :
					 k == 1 ? rows[i].on :
						  rows[i].ref) /
					1e9);
		fprintf(g, "e\n");
	}
	if (pclose(g))
		fprintf(stderr, "vmmu-perf: gnuplot failed\n");
	else
		printf("plot written to %s\n", file);
}

/* Eager splitting off and on, alternately, @reps runs each; the same
 * workload on 4 KiB-backed memory is the reference.  The table shows
 * medians; every figure follows with its median, min and max, and each
 * ratio is taken within a run. */
static void compare_eager(struct dl_opts o, unsigned reps, bool csv, const char *png)
{
	static struct dl_result r_off[DL_MAX_REPEATS], r_on[DL_MAX_REPEATS], r_ref[DL_MAX_REPEATS];
	static const char *const what[3] = { "eager off", "eager on", "4 KiB backing" };
	const struct dl_result *const rs[3] = { r_off, r_on, r_ref };
	struct dl_opts ref = o;
	struct cmp_row rows[8];
	uint64_t a[3][DL_MAX_REPEATS];
	double x[DL_MAX_REPEATS];
	unsigned n = 0;

	o.quiet = ref.quiet = true;
	ref.backing = VMMU_BACKING_ANONYMOUS;
	ref.eager = true;
	for (unsigned i = 0; i < reps; i++) {
		o.eager = false;
		dl_run(&o, &r_off[i]);
		o.eager = true;
		dl_run(&o, &r_on[i]);
		dl_run(&ref, &r_ref[i]);
	}
#define GATHER(field)                                  \
	for (unsigned w_ = 0; w_ < 3; w_++)            \
		for (unsigned k_ = 0; k_ < reps; k_++) \
	a[w_][k_] = rs[w_][k_].field
#define ROW(label, fld)                                                                        \
	do {                                                                                   \
		GATHER(fld);                                                                   \
		rows[n++] = (struct cmp_row){ label, med_u64(a[0], reps), med_u64(a[1], reps), \
					      med_u64(a[2], reps),                             \
					      offsetof(struct dl_result, fld) };               \
	} while (0)
	ROW("Populate memory time", populate);
	ROW("Enabling dirty logging time", enable);
	ROW("Iteration 1 dirty memory time", dirty[1]);
	if (o.manual)
		ROW("Iteration 1 clear dirty log time", clear[1]);
	if (o.iterations >= 2) {
		ROW("Iteration 2 dirty memory time", dirty[2]);
		if (o.manual)
			ROW("Iteration 2 clear dirty log time", clear[2]);
	}
	ROW("Disabling dirty logging time", disable);
#undef ROW
	printf("\nEager page splitting, %u vCPU(s) x %" PRIu64 " MiB, backing %s, %s%s, "
	       "%u%% writes, median of %u runs each\n",
	       o.nr_vcpus, o.bytes >> 20, vmmu_backing_name(o.backing),
	       o.manual ? (o.initially_set ? "manual protect + initially set" : "manual protect") :
			  "get dirty log",
	       o.wrprot ? ", write-protect mode" : ", dirty-bit mode", o.write_percent, reps);
	printf("| %-34s | %15s | %15s | %10s | %15s |\n", "Metric", "Eager split off",
	       "Eager split on", "off / on", "4 KiB backing");
	printf("|------------------------------------|-----------------|-----------------|"
	       "------------|-----------------|\n");
	for (unsigned i = 0; i < n; i++)
		printf("| %-34s | %13.6f s | %13.6f s | %9.2fx | %13.6f s |\n", rows[i].name,
		       (double)rows[i].off / 1e9, (double)rows[i].on / 1e9,
		       (double)rows[i].off / (double)(rows[i].on ? rows[i].on : 1),
		       (double)rows[i].ref / 1e9);
	/* Every figure: median (min, max) of the runs; ratios within a run. */
	printf("\n");
	for (unsigned w = 0; w < 3; w++) {
		char name[96];

#define FIG(label, field)                                               \
	do {                                                            \
		GATHER(field);                                          \
		snprintf(name, sizeof(name), "%s: %s", what[w], label); \
		print_times(name, a[w], reps);                          \
	} while (0)
		FIG("Populate memory time", populate);
		FIG("Enabling dirty logging time", enable);
		for (unsigned it = 1; it <= o.iterations; it++) {
			char label[64];

			snprintf(label, sizeof(label), "Iteration %u dirty memory time", it);
			FIG(label, dirty[it]);
			if (o.manual) {
				snprintf(label, sizeof(label), "Iteration %u clear dirty log time",
					 it);
				FIG(label, clear[it]);
			}
		}
		FIG("Disabling dirty logging time", disable);
		FIG("Walk floor time", floor);
#undef FIG
	}
	for (unsigned i = 0; i < n; i++) {
		for (unsigned k = 0; k < reps; k++) {
			uint64_t on = dl_field(&r_on[k], rows[i].field);

			x[k] = (double)dl_field(&r_off[k], rows[i].field) / (double)(on ? on : 1);
		}
		print_ratiosf(x, reps, "%s: eager off / on", rows[i].name);
	}
	/* The dirty pass against its own walk floor. */
	for (unsigned k = 0; k < reps; k++)
		x[k] = (double)r_on[k].dirty[1] / (double)r_on[k].floor;
	print_ratios("eager on: Iteration 1 dirty memory / walk floor", x, reps);
	for (unsigned k = 0; k < reps; k++)
		x[k] = (double)r_off[k].dirty[1] / (double)r_off[k].floor;
	print_ratios("eager off: Iteration 1 dirty memory / walk floor", x, reps);
	{
		/* The first pass after pages were protected: iteration 1, or
		 * 2 with initially-all-set (where iteration 1's clear protects). */
		unsigned it = o.manual && o.initially_set && o.iterations >= 2 ? 2 : 1;

		for (unsigned k = 0; k < reps; k++)
			x[k] = (double)r_on[k].dirty[it] / (double)r_ref[k].dirty[it];
		print_ratiosf(x, reps,
			      "Iteration %u dirty memory time, eager on, %s / 4 KiB backing", it,
			      vmmu_backing_name(o.backing));
	}
	printf("Pages mapped after enabling, eager off: 2M %" PRIu64 ", 4K %" PRIu64
	       "; eager on: 2M %" PRIu64 ", 4K %" PRIu64 "\n",
	       r_off[0].enabled.pages_2m, r_off[0].enabled.pages_4k, r_on[0].enabled.pages_2m,
	       r_on[0].enabled.pages_4k);
	if (o.nested) {
		const char *call;
		uint64_t ns[DL_MAX_REPEATS] = { 0 }, tables = 0;
		bool split = true;

		printf("EPT02 leaves after populate: 2M %" PRIu64 ", 4K %" PRIu64
		       "; after iteration 1, eager off: 2M %" PRIu64 ", 4K %" PRIu64
		       ", nested faults %" PRIu64 "; eager on: 2M %" PRIu64 ", 4K %" PRIu64
		       ", nested faults %" PRIu64 ", split top-ups %" PRIu64 "\n",
		       r_on[0].nest_pop.ept02_pages_2m, r_on[0].nest_pop.ept02_pages_4k,
		       r_off[0].nest_it1.ept02_pages_2m, r_off[0].nest_it1.ept02_pages_4k,
		       r_off[0].nest_it1.nested_faults - r_off[0].nest_pop.nested_faults,
		       r_on[0].nest_it1.ept02_pages_2m, r_on[0].nest_it1.ept02_pages_4k,
		       r_on[0].nest_it1.nested_faults - r_on[0].nest_pop.nested_faults,
		       r_on[0].nest_it1.split_topups);
		for (unsigned k = 0; k < reps && split; k++)
			split = nested_split_cost(&r_on[k], &call, &ns[k], &tables);
		/* Seed 001: what the three split caches hold once the split is
		 * over, and how often the walk dropped the lock to top them up. */
		for (unsigned k = 0; k < reps && split; k++) {
			const struct vmmu_nested_stats *s = r_on[k].nest_enabled.split_huge_pages ?
								    &r_on[k].nest_enabled :
								    &r_on[k].nest_it1;

			perf_recordf(PERF_METRIC, "B",
				     (double)(s->split_desc_cache_bytes +
					      s->split_page_header_cache_bytes +
					      s->split_shadow_page_cache_bytes),
				     "EPT02 split caches: bytes held after the split");
			perf_recordf(PERF_RATIO, "x",
				     (double)s->split_topups / (double)s->split_huge_pages,
				     "EPT02 split: top-ups per huge leaf split");
			if (k == 0)
				printf("EPT02 split caches after the split: desc %" PRIu64
				       " objects (%" PRIu64 " B), page headers %" PRIu64
				       " (%" PRIu64 " B), table pages %" PRIu64 " (%" PRIu64
				       " B); %" PRIu64 " top-ups for %" PRIu64 " huge leaves\n",
				       s->split_desc_cache_objs, s->split_desc_cache_bytes,
				       s->split_page_header_cache_objs,
				       s->split_page_header_cache_bytes,
				       s->split_shadow_page_cache_objs,
				       s->split_shadow_page_cache_bytes, s->split_topups,
				       s->split_huge_pages);
		}
		if (split) {
			double ms[DL_MAX_REPEATS], y[DL_MAX_REPEATS];
			bool again = true;

			/* Each run's split against its own memset. */
			for (unsigned k = 0; k < reps; k++) {
				ms[k] = (double)r_on[k].memset_floor * (double)tables / 512.0;
				x[k] = (double)ns[k] / ms[k];
				again = again && r_on[k].reenable;
				y[k] = (double)r_on[k].reenable / ms[k];
			}
			printf("EPT02 eager split: %" PRIu64 " huge leaves, %.1f MiB of tables "
			       "written in the %s call: %.6fs (median); memset of as many bytes: "
			       "%.6fs (run 1)\n",
			       tables, (double)tables / 256.0, call,
			       (double)med_u64(ns, reps) / 1e9, ms[0] / 1e9);
			print_times("EPT02 eager split time", ns, reps);
			print_ratios("EPT02 eager split / memset of the tables written", x, reps);
			if (again)
				print_ratios("EPT02 eager split (recycled pages) / memset of the "
					     "tables written",
					     y, reps);
		}
	}
#undef GATHER
	if (csv) {
		printf("\nmetric,eager_off_s,eager_on_s,backing_4k_s\n");
		for (unsigned i = 0; i < n; i++)
			printf("%s,%.9f,%.9f,%.9f\n", rows[i].name, (double)rows[i].off / 1e9,
			       (double)rows[i].on / 1e9, (double)rows[i].ref / 1e9);
	}
	if (png)
		plot(png, rows, n);
}

/*
 * -r N (N > 1) or --compare locks: every figure of N runs (of each lock
 * mode, alternately), median (min, max); each ratio taken within a run.
 */
static void dl_summary(struct dl_opts o, unsigned reps, unsigned first, unsigned last)
{
	static struct dl_result r[2][DL_MAX_REPEATS];
	uint64_t t[DL_MAX_REPEATS];
	double x[DL_MAX_REPEATS];
	char name[96];

	o.quiet = true;
	for (unsigned i = 0; i < reps; i++)
		for (unsigned m = first; m <= last; m++) {
			o.global_lock = m == PERF_LOCK_GLOBAL;
			dl_run(&o, &r[m][i]);
		}
	for (unsigned m = first; m <= last; m++) {
		const struct dl_result *rm = r[m];

		if (o.nested) {
			printf("--- %s\n", perf_lock_mode_names[m]);
			if (first != last)
				perf_record_prefix("%s", perf_lock_mode_names[m]);
		}
#define FIG(label, field)                              \
	do {                                           \
		for (unsigned k_ = 0; k_ < reps; k_++) \
			t[k_] = rm[k_].field;          \
		print_times(label, t, reps);           \
	} while (0)
		FIG("Populate memory time", populate);
		FIG("Enabling dirty logging time", enable);
		for (unsigned it = 1; it <= o.iterations; it++) {
			snprintf(name, sizeof(name), "Iteration %u dirty memory time", it);
			FIG(name, dirty[it]);
			snprintf(name, sizeof(name), "Iteration %u get dirty log time", it);
			FIG(name, get[it]);
			if (o.manual) {
				snprintf(name, sizeof(name), "Iteration %u clear dirty log time",
					 it);
				FIG(name, clear[it]);
			}
		}
		FIG("Disabling dirty logging time", disable);
		FIG("Walk floor time", floor);
#undef FIG
		for (unsigned it = 1; it <= o.iterations; it++) {
			for (unsigned k = 0; k < reps; k++)
				x[k] = (double)rm[k].dirty[it] / (double)rm[k].floor;
			print_ratiosf(x, reps, "Ratio iteration %u dirty memory / walk floor", it);
		}
		printf("Iteration 1: %" PRIu64 " pages dirty (last run)\n",
		       rm[reps - 1].pages_dirty[1]);
		if (o.nested)
			perf_roots_print(&rm[reps - 1].roots_it1, "after iteration 1 (last run)");
	}
	perf_record_prefix(NULL);
	if (first != last) {
		printf("--- global lock against per-root locks (each run's own figures)\n");
		for (unsigned k = 0; k < reps; k++)
			x[k] = (double)r[PERF_LOCK_GLOBAL][k].dirty[1] /
			       (double)r[PERF_LOCK_PER_ROOT][k].dirty[1];
		print_ratios("Iteration 1 dirty memory time, global lock / per-root locks", x,
			     reps);
		for (unsigned k = 0; k < reps; k++)
			x[k] = (double)r[PERF_LOCK_GLOBAL][k].populate /
			       (double)r[PERF_LOCK_PER_ROOT][k].populate;
		print_ratios("Populate memory time, global lock / per-root locks", x, reps);
	}
}

static void usage_dirty_log(void)
{
	printf("usage: vmmu-perf dirty-log [-v vcpus] [-b bytes-per-vcpu] [-i iterations]\n"
	       "                           [-s backing] [-w write-percent] [-g] [--no-initially-set]\n"
	       "                           [--no-eager] [--ring] [--wrprot] [-r repeats]\n"
	       "                           [-n [--l2-per-vcpu] [--global-lock | --compare locks]]\n"
	       "                           [--compare eager [--repeat N] [--csv] [--plot FILE.png]]\n"
	       "  KVM's dirty_log_perf_test: populate, enable dirty logging, dirty and harvest\n"
	       "  for each iteration, disable dirty logging.\n"
	       "  -v N        vCPUs (default 1)\n"
	       "  -b SIZE     bytes per vCPU (default 1G)\n"
	       "  -i N        iterations (default 2, at most %d)\n"
	       "  -s BACKING  anonymous (default), anonymous_thp, anonymous_hugetlb_2mb,\n"
	       "              anonymous_hugetlb_1gb\n"
	       "  -w PCT      percentage of pages written per pass, the rest read (default 100)\n"
	       "  -g          no manual protect: get dirty log clears and protects (as KVM's -g)\n"
	       "  --no-initially-set  manual protect without initially-all-set\n"
	       "  --no-eager  no eager page splitting (huge pages split on write faults)\n"
	       "  --ring      dirty rings instead of bitmaps (harvested while vCPUs run)\n"
	       "  --wrprot    write-protect mode even though the model has EPT A/D bits\n"
	       "  -n          nested (KVM memstress -n): the vCPUs run in L2, which L1 maps\n"
	       "              with 2 MiB EPT12 leaves; huge EPT02 leaves are split eagerly\n"
	       "              (or, with --no-eager, by write faults)\n"
	       "  -r N        run N times: every figure is the median (min, max) of the runs,\n"
	       "              each ratio taken within a run (default 1: one run in detail)\n"
	       "  --l2-per-vcpu  with -n, each vCPU in its own L2 (own EPT12 tree, own EPT\n"
	       "              pointer, so its own EPT02 root)\n"
	       "  --global-lock  with -n, the nested MMU's global lock (nested_global_lock)\n"
	       "  --compare locks  with -n, per-root locks and the global lock alternately,\n"
	       "              -r runs of each, and their Iteration 1 dirty memory ratio\n"
	       "  --compare eager  eager splitting off and on alternately, seed-style table\n"
	       "  --repeat N  with --compare eager, N runs of each (default 3)\n",
	       MAX_ITER);
}

static int cmd_dirty_log(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "no-initially-set", no_argument, NULL, 'I' },
		{ "no-eager", no_argument, NULL, 'E' },
		{ "ring", no_argument, NULL, 'R' },
		{ "wrprot", no_argument, NULL, 'W' },
		{ "compare", required_argument, NULL, 'C' },
		{ "repeat", required_argument, NULL, 'N' },
		{ "csv", no_argument, NULL, 'V' },
		{ "plot", required_argument, NULL, 'P' },
		{ "l2-per-vcpu", no_argument, NULL, 'L' },
		{ "global-lock", no_argument, NULL, 'G' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct dl_opts o = { .nr_vcpus = 1,
			     .bytes = 1ull << 30,
			     .iterations = 2,
			     .write_percent = 100,
			     .backing = VMMU_BACKING_ANONYMOUS,
			     .manual = true,
			     .initially_set = true,
			     .eager = true };
	bool compare = false, csv = false, cmp_locks = false;
	const char *png = NULL;
	unsigned reps = 3, repeats = 1, first, last;
	struct dl_result res;
	int c;

	while ((c = getopt_long(argc, argv, "v:b:i:s:w:r:gnh", opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			o.nr_vcpus = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'b':
			o.bytes = parse_size(optarg);
			break;
		case 'i':
			o.iterations = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'w':
			o.write_percent = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 's':
			if (vmmu_backing_parse(optarg, &o.backing)) {
				fprintf(stderr, "unknown backing '%s'\n", optarg);
				return 2;
			}
			break;
		case 'g':
			o.manual = false;
			o.initially_set = false;
			break;
		case 'n':
			o.nested = true;
			break;
		case 'r':
			repeats = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'L':
			o.per_vcpu = true;
			break;
		case 'G':
			o.global_lock = true;
			break;
		case 'I':
			o.initially_set = false;
			break;
		case 'E':
			o.eager = false;
			break;
		case 'R':
			o.ring = true;
			o.manual = false;
			o.initially_set = false;
			break;
		case 'W':
			o.wrprot = true;
			break;
		case 'C':
			if (!strcmp(optarg, "eager"))
				compare = true;
			else if (!strcmp(optarg, "locks"))
				cmp_locks = true;
			else {
				fprintf(stderr, "--compare: 'eager' or 'locks'\n");
				return 2;
			}
			break;
		case 'N':
			reps = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'V':
			csv = true;
			break;
		case 'P':
			png = optarg;
			break;
		case 'h':
			usage_dirty_log();
			return 0;
		default:
			usage_dirty_log();
			return 2;
		}
	}
	if (!o.nr_vcpus || o.nr_vcpus > VMMU_MAX_VCPUS || o.bytes < PAGE ||
	    o.bytes % vmmu_backing_page_size(o.backing) || !o.iterations ||
	    o.iterations > MAX_ITER || o.write_percent > 100 || !reps || reps > DL_MAX_REPEATS ||
	    !repeats || repeats > DL_MAX_REPEATS || o.bytes * o.nr_vcpus / PAGE > UINT32_MAX ||
	    ((o.per_vcpu || o.global_lock || cmp_locks) && !o.nested) ||
	    (o.global_lock && cmp_locks) || (compare && cmp_locks)) {
		usage_dirty_log();
		return 2;
	}
	printf("Testing: %s%s%u vCPU(s), %" PRIu64 " MiB each, backing %s, %u iterations, "
	       "%u%% writes, %s, %s, eager page splitting %s\n",
	       o.nested ? "nested (L2 through EPT02), " : "",
	       !o.nested  ? "" :
	       o.per_vcpu ? (cmp_locks ? "one L2 per vCPU, per-root locks vs the global lock, " :
			     o.global_lock ? "one L2 per vCPU, global lock, " :
					     "one L2 per vCPU, per-root locks, ") :
			    (cmp_locks	   ? "one L2, per-root locks vs the global lock, " :
			     o.global_lock ? "one L2, global lock, " :
					     "one L2, per-root locks, "),
	       o.nr_vcpus, o.bytes >> 20, vmmu_backing_name(o.backing), o.iterations,
	       o.write_percent,
	       o.ring	? "dirty rings" :
	       o.manual ? (o.initially_set ? "manual protect + initially set" : "manual protect") :
			  "get dirty log (no manual protect)",
	       o.wrprot ? "write-protect mode" : "dirty-bit mode (D bits + PML)",
	       compare ? "off vs on" :
	       o.eager ? "on" :
			 "off");
	perf_config("vcpus", "%u", o.nr_vcpus);
	perf_config("bytes_per_vcpu", "%" PRIu64, o.bytes);
	perf_config("backing", "%s", vmmu_backing_name(o.backing));
	perf_config("iterations", "%u", o.iterations);
	perf_config("write_percent", "%u", o.write_percent);
	perf_config("harvest", "%s",
		    o.ring   ? "dirty rings" :
		    o.manual ? (o.initially_set ? "manual protect + initially set" :
						  "manual protect") :
			       "get dirty log");
	perf_config("dirty_tracking", "%s", o.wrprot ? "write-protect" : "dirty bits");
	perf_config("eager_split", "%s", compare ? "off vs on" : o.eager ? "on" : "off");
	if (o.nested) {
		perf_config("nested", "%s", o.per_vcpu ? "one L2 per vCPU" : "one L2");
		perf_config("nested_lock", "%s",
			    cmp_locks	  ? "per-root vs global" :
			    o.global_lock ? "global" :
					    "per-root");
	}
	if (compare) {
		perf_config("repeats", "%u (median of)", reps);
		compare_eager(o, reps, csv, png);
		return 0;
	}
	if (repeats > 1 || cmp_locks) {
		perf_config("repeats", "%u", repeats);
		perf_lock_modes(cmp_locks, o.global_lock, &first, &last);
		dl_summary(o, repeats, first, last);
		return 0;
	}
	dl_run(&o, &res);
	if (csv) {
		printf("\niteration,dirty_memory_s,get_dirty_log_s,clear_dirty_log_s,pages_dirty\n");
		for (unsigned it = 1; it <= o.iterations; it++)
			printf("%u,%.9f,%.9f,%.9f,%" PRIu64 "\n", it, (double)res.dirty[it] / 1e9,
			       (double)res.get[it] / 1e9, (double)res.clear[it] / 1e9,
			       res.pages_dirty[it]);
	}
	return 0;
}

VMMU_PERF_EXPERIMENT(dirty_log, "dirty-log",
		     "KVM's dirty_log_perf_test: dirty logging, harvesting, eager splitting",
		     cmd_dirty_log)
