/* SPDX-License-Identifier: MIT */
/*
 * perf_nested.c - what the nested (-n) experiments share (perf.h): L1's
 * EPT12 tables mapping L2 identity-style, one tree for all vCPUs or one
 * per vCPU (--l2-per-vcpu: each vCPU its own L2, its own EPT pointer, so
 * its own EPT02 root), the lock modes of --compare locks, and the per-root
 * statistics.
 */
#define _GNU_SOURCE
#include "perf.h"

#include <vmmu/nested.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

const char *const perf_lock_mode_names[2] = { "per-root locks", "global lock" };

/* A zeroed 4 KiB table from the EPT12 area; returns its L1 address. */
static uint64_t ept12_table(struct perf_l2 *l2)
{
	uint64_t gpa = l2->next;

	l2->next += PAGE;
	if (l2->next > PERF_EPT12_GPA + PERF_EPT12_BYTES)
		die("EPT12 area full", -ENOMEM);
	memset(l2->mem + (gpa - PERF_EPT12_GPA), 0, PAGE);
	return gpa;
}

static uint64_t *ept12_entry(struct perf_l2 *l2, uint64_t table, unsigned idx)
{
	return (uint64_t *)(void *)(l2->mem + (table - PERF_EPT12_GPA)) + idx;
}

/* An EPT12 tree mapping [start, end) identity-style, 2 MiB leaves where
 * the range allows; returns its EPT pointer. */
static uint64_t ept12_tree(struct perf_l2 *l2, uint64_t start, uint64_t end)
{
	uint64_t root = ept12_table(l2);

	for (uint64_t a = start; a < end;) {
		bool huge = !(a & ((2ull << 20) - 1)) && a + (2ull << 20) <= end;
		int leaf = huge ? 2 : 1;
		uint64_t table = root;

		for (int l = 4; l > leaf; l--) {
			uint64_t *e = ept12_entry(l2, table, (a >> (12 + 9 * (l - 1))) & 511);

			if (!*e)
				*e = ept12_table(l2) | 7;
			table = *e & ~0xfffull;
		}
		*ept12_entry(l2, table, (a >> (12 + 9 * (leaf - 1))) & 511) =
			a | 7 | (6ull << 3) | (huge ? 1ull << 7 : 0);
		a += huge ? 2ull << 20 : PAGE;
	}
	return root | VMMU_EPTP_MT_WB | VMMU_EPTP_WALK_4 | VMMU_EPTP_AD;
}

void perf_l2_enter(struct perf_vm *p, struct perf_l2 *l2, bool per_vcpu, uint64_t mask)
{
	struct vmmu_userspace_memory_region mr;
	uint64_t eptp = 0;
	int r;

	memset(l2, 0, sizeof(*l2));
	r = vmmu_hostmem_alloc(p->hm, VMMU_BACKING_ANONYMOUS, PERF_EPT12_BYTES, 0,
			       (void **)&l2->mem);
	if (r)
		die("vmmu_hostmem_alloc", r);
	mr = (struct vmmu_userspace_memory_region){
		.slot = PERF_EPT12_SLOT,
		.guest_phys_addr = PERF_EPT12_GPA,
		.memory_size = PERF_EPT12_BYTES,
		.userspace_addr = (uint64_t)(uintptr_t)l2->mem,
	};
	r = vmmu_set_user_memory_region(p->vm, &mr);
	if (r)
		die("vmmu_set_user_memory_region", r);
	l2->next = PERF_EPT12_GPA;
	if (!per_vcpu)
		eptp = ept12_tree(l2, TEST_GPA, TEST_GPA + p->bytes_per_vcpu * p->nr_vcpus);
	for (unsigned i = 0; i < p->nr_vcpus; i++) {
		uint64_t base = TEST_GPA + i * p->bytes_per_vcpu;

		if (!(mask & (1ull << i)))
			continue;
		l2->eptp[i] = per_vcpu ? ept12_tree(l2, base, base + p->bytes_per_vcpu) : eptp;
		r = vmmu_hw_nested_enter(p->hw[i], l2->eptp[i]);
		if (r)
			die("vmmu_hw_nested_enter", r);
		l2->in_l2 |= 1ull << i;
	}
}

void perf_l2_leave(struct perf_vm *p, struct perf_l2 *l2)
{
	for (unsigned i = 0; i < p->nr_vcpus; i++)
		if (l2->in_l2 & (1ull << i))
			vmmu_hw_nested_leave(p->hw[i]);
	l2->in_l2 = 0;
	/* Else the host memory cannot be destroyed (a range is left). */
	if (l2->mem)
		vmmu_hostmem_free(p->hm, l2->mem);
	l2->mem = NULL;
}

void perf_lock_modes(int compare, int global, unsigned *first, unsigned *last)
{
	*first = compare || !global ? PERF_LOCK_PER_ROOT : PERF_LOCK_GLOBAL;
	*last = compare || global ? PERF_LOCK_GLOBAL : PERF_LOCK_PER_ROOT;
}

void perf_roots_get(struct vmmu_vm *vm, struct perf_roots *out)
{
	int n;

	memset(out, 0, sizeof(*out));
	vmmu_nested_stats(vm, &out->s);
	n = vmmu_nested_root_stats(vm, out->r, PERF_MAX_ROOTS);
	out->n = n > 0 ? (unsigned)n : 0;
}

void perf_roots_print(const struct perf_roots *rs, const char *when)
{
	const struct vmmu_nested_stats *s = &rs->s;

	printf("Nested roots %s: %" PRIu64 " live, %" PRIu64 " created; root locks contended "
	       "%" PRIu64 " times, %.3f ms waited\n",
	       when, s->roots, s->roots_created, s->root_lock_contended,
	       (double)s->root_lock_wait_ns / 1e6);
	for (unsigned i = 0; i < rs->n; i++) {
		const struct vmmu_nested_root_stats *r = &rs->r[i];

		printf("  root eptp 0x%" PRIx64 "%s: faults %" PRIu64 ", lock taken %" PRIu64
		       ", contended %" PRIu64 " (%.3f ms waited), table pages %" PRIu64 "\n",
		       r->eptp, r->invalid ? " (obsolete)" : "", r->faults, r->lock_acquired,
		       r->lock_contended, (double)r->lock_wait_ns / 1e6, r->shadow_pages);
	}
}

void perf_warn_busy(void)
{
	double load = 0;
	int autogroup = 0;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	FILE *f = fopen("/proc/loadavg", "r");

	if (f) {
		if (fscanf(f, "%lf", &load) != 1)
			load = 0;
		fclose(f);
	}
	f = fopen("/proc/sys/kernel/sched_autogroup_enabled", "r");
	if (f) {
		if (fscanf(f, "%d", &autogroup) != 1)
			autogroup = 0;
		fclose(f);
	}
	if (cpus > 0 && load > (double)cpus)
		printf("Note: load average %.1f on %ld CPUs%s: the vCPU threads of this process "
		       "share %s, so 2 of them run side by side only part of the time; wall-time "
		       "ratios of 2 vCPUs against 1 measure the machine as much as vmmu (the "
		       "CPU-time ratios and the lock counts do not)\n",
		       load, cpus, autogroup ? ", scheduler autogroups on" : "",
		       autogroup ? "one autogroup's CPU share" : "the CPUs with other jobs");
}

struct each_arg {
	struct perf_vm *p;
	unsigned idx;
	enum pass_kind kind;
	pthread_barrier_t *start;
	uint64_t ns, cpu_ns;
	struct perf_csw csw;
	int err;
};

static void thread_csw(struct perf_csw *c)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	c->voluntary = (uint64_t)ru.ru_nvcsw;
	c->involuntary = (uint64_t)ru.ru_nivcsw;
}

static void *each_thread(void *opaque)
{
	struct each_arg *a = opaque;
	struct vmmu_hw_vcpu *hw = a->p->hw[a->idx];
	uint64_t base = TEST_GPA + a->idx * a->p->bytes_per_vcpu, bytes = a->p->bytes_per_vcpu;
	uint64_t t0, c0, v = a->idx;
	enum pass_kind kind = a->kind;
	int err = 0;

	struct perf_csw s0, s1;

	pthread_barrier_wait(a->start);
	thread_csw(&s0);
	c0 = thread_cpu_ns();
	t0 = now_ns();
	for (uint64_t off = 0; off < bytes && !err; off += PAGE) {
		if (kind == PASS_WRITE)
			err = vmmu_hw_write(hw, base + off, &v, sizeof(v));
		else
			err = vmmu_hw_read(hw, base + off, &v, sizeof(v));
	}
	vmmu_hw_guest_exit(hw);
	a->ns = now_ns() - t0;
	a->cpu_ns = thread_cpu_ns() - c0;
	thread_csw(&s1);
	a->csw.voluntary = s1.voluntary - s0.voluntary;
	a->csw.involuntary = s1.involuntary - s0.involuntary;
	a->err = err;
	return NULL;
}

void run_pass_each(struct perf_vm *p, uint64_t mask, enum pass_kind kind, uint64_t *ns)
{
	uint64_t cpu[VMMU_MAX_VCPUS];

	run_pass_each_cpu(p, mask, kind, ns, cpu, NULL);
}

void run_pass_each_cpu(struct perf_vm *p, uint64_t mask, enum pass_kind kind, uint64_t *ns,
		       uint64_t *cpu_ns, struct perf_csw *csw)
{
	pthread_t th[VMMU_MAX_VCPUS];
	struct each_arg args[VMMU_MAX_VCPUS];
	pthread_barrier_t start;
	unsigned nr = 0;

	for (unsigned i = 0; i < p->nr_vcpus; i++)
		nr += !!(mask & (1ull << i));
	if (!nr)
		return;
	pthread_barrier_init(&start, NULL, nr);
	for (unsigned i = 0; i < p->nr_vcpus; i++) {
		ns[i] = cpu_ns[i] = 0;
		if (!(mask & (1ull << i)))
			continue;
		args[i] = (struct each_arg){ .p = p, .idx = i, .kind = kind, .start = &start };
		pthread_create(&th[i], NULL, each_thread, &args[i]);
	}
	for (unsigned i = 0; i < p->nr_vcpus; i++) {
		if (!(mask & (1ull << i)))
			continue;
		pthread_join(th[i], NULL);
		if (args[i].err)
			die("guest access", args[i].err);
		ns[i] = args[i].ns;
		cpu_ns[i] = args[i].cpu_ns;
		if (csw)
			csw[i] = args[i].csw;
	}
	pthread_barrier_destroy(&start);
}
