/* SPDX-License-Identifier: MIT */
/*
 * perf_common.c - helpers shared by the vmmu-perf experiments (perf.h).
 */
#define _GNU_SOURCE
#include "perf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void print_time(const char *what, uint64_t ns)
{
	printf("%s: %" PRIu64 ".%09" PRIu64 "s\n", what, ns / UINT64_C(1000000000),
	       ns % UINT64_C(1000000000));
	perf_record(strstr(what, "floor") ? PERF_FLOOR : PERF_METRIC, what, "s", (double)ns / 1e9);
}

struct perf_summary perf_summarize(const double *v, unsigned n)
{
	struct perf_summary r = { .med = perf_median(v, n), .min = v[0], .max = v[0] };

	for (unsigned i = 1; i < n; i++) {
		r.min = v[i] < r.min ? v[i] : r.min;
		r.max = v[i] > r.max ? v[i] : r.max;
	}
	r.noisy = r.min > 0 && (r.max - r.min) * 100 > r.min * PERF_NOISE_PCT;
	return r;
}

static void print_noise(const struct perf_summary *s)
{
	if (s->noisy)
		printf("  (noisy: max is %.0f%% above min; more -r, or a quieter machine)\n",
		       (s->max - s->min) * 100 / s->min);
}

void print_times(const char *what, const uint64_t *ns, unsigned n)
{
	double v[n];
	struct perf_summary s;

	if (n == 1) {
		print_time(what, ns[0]);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		v[i] = (double)ns[i] / 1e9;
		perf_record(strstr(what, "floor") ? PERF_FLOOR : PERF_METRIC, what, "s", v[i]);
	}
	s = perf_summarize(v, n);
	printf("%s: %.9fs (min %.9fs, max %.9fs, %u runs)\n", what, s.med, s.min, s.max, n);
	print_noise(&s);
}

void print_ratios(const char *what, const double *v, unsigned n)
{
	struct perf_summary s = perf_summarize(v, n);

	for (unsigned i = 0; i < n; i++)
		perf_record(PERF_RATIO, what, "x", v[i]);
	if (n == 1) {
		printf("%s: %.2fx\n", what, v[0]);
		return;
	}
	printf("%s: %.2fx (min %.2fx, max %.2fx, %u runs)\n", what, s.med, s.min, s.max, n);
	print_noise(&s);
}

void print_ratiosf(const double *v, unsigned n, const char *fmt, ...)
{
	char what[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	print_ratios(what, v, n);
}

uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 0);

	switch (*end) {
	case 'g':
	case 'G':
		v <<= 30;
		break;
	case 'm':
	case 'M':
		v <<= 20;
		break;
	case 'k':
	case 'K':
		v <<= 10;
		break;
	case '\0':
		break;
	default:
		fprintf(stderr, "bad size '%s'\n", s);
		exit(2);
	}
	return v;
}

void die(const char *what, int r)
{
	fprintf(stderr, "vmmu-perf: %s: %s\n", what, strerror(-r));
	exit(1);
}

static void *pass_thread(void *opaque)
{
	struct pass_arg *a = opaque;
	struct perf_vm *p = a->p;
	struct vmmu_hw_vcpu *hw = p->hw[a->idx];
	uint64_t base = TEST_GPA + a->idx * p->bytes_per_vcpu;
	uint64_t t0, c0, v = a->idx;
	int err = 0;

	/* Locals only in the loop: args[] of the vCPUs share cache lines. */
	pthread_barrier_wait(a->start);
	c0 = thread_cpu_ns();
	t0 = now_ns();
	for (uint64_t off = 0; off < p->bytes_per_vcpu && !err; off += PAGE) {
		if (a->kind == PASS_WRITE)
			err = vmmu_hw_write(hw, base + off, &v, sizeof(v));
		else
			err = vmmu_hw_read(hw, base + off, &v, sizeof(v));
	}
	vmmu_hw_guest_exit(hw);
	a->ns = now_ns() - t0;
	a->cpu_ns = thread_cpu_ns() - c0;
	a->err = err;
	return NULL;
}

uint64_t run_pass(struct perf_vm *p, unsigned nr, enum pass_kind kind)
{
	uint64_t cpu;

	return run_pass_cpu(p, nr, kind, &cpu);
}

uint64_t run_pass_cpu(struct perf_vm *p, unsigned nr, enum pass_kind kind, uint64_t *cpu_ns)
{
	pthread_t th[VMMU_MAX_VCPUS];
	struct pass_arg args[VMMU_MAX_VCPUS];
	pthread_barrier_t start;
	uint64_t worst = 0;

	*cpu_ns = 0;
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
		if (args[i].cpu_ns > *cpu_ns)
			*cpu_ns = args[i].cpu_ns;
	}
	pthread_barrier_destroy(&start);
	return worst;
}

/*
 * hugetlb pages must be reserved.  As root, reserve what is missing for the
 * run and give the setting back at exit; otherwise say how.  One saved
 * setting per page size: a run may use both.
 */
static char hugetlb_path[128]; /* the last one used, for messages */
static struct {
	char path[128];
	long saved;
} hugetlb_saved[2] = { { "", -1 }, { "", -1 } };

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
	for (int i = 0; i < 2; i++)
		if (hugetlb_saved[i].saved >= 0)
			write_long(hugetlb_saved[i].path, hugetlb_saved[i].saved);
}

bool hugetlb_reserve(enum vmmu_backing b, uint64_t bytes)
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
	{
		int i = b == VMMU_BACKING_ANONYMOUS_HUGETLB_1GB;
		static bool registered;

		if (hugetlb_saved[i].saved < 0) {
			snprintf(hugetlb_saved[i].path, sizeof(hugetlb_saved[i].path), "%s",
				 hugetlb_path);
			hugetlb_saved[i].saved = nr;
		}
		if (!registered) {
			registered = true;
			atexit(hugetlb_restore);
		}
	}
	return write_long(hugetlb_path, nr + (want - have)) && read_long(free_path) >= want;
}

void perf_vm_create_cfg(struct perf_vm *p, const struct vmmu_vm_config *vcfg, unsigned nr_vcpus,
			uint64_t bytes, bool pretouch, enum vmmu_backing backing)
{
	struct vmmu_userspace_memory_region region;
	struct vmmu_vm_config cfg = vcfg ? *vcfg : (struct vmmu_vm_config){ 0 };
	uint64_t total = bytes * nr_vcpus;
	int r;

	memset(p, 0, sizeof(*p));
	p->nr_vcpus = nr_vcpus;
	p->bytes_per_vcpu = bytes;
	r = vmmu_hostmem_create(&p->hm);
	if (r)
		die("vmmu_hostmem_create", r);
	if ((backing == VMMU_BACKING_ANONYMOUS_HUGETLB_2MB ||
	     backing == VMMU_BACKING_ANONYMOUS_HUGETLB_1GB) &&
	    !hugetlb_reserve(backing, total))
		fprintf(stderr,
			"vmmu-perf: could not reserve %" PRIu64 " MiB of %s pages "
			"(run as root, or write %s)\n",
			total >> 20, vmmu_backing_name(backing), hugetlb_path);
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

void perf_vm_create(struct perf_vm *p, unsigned nr_vcpus, uint64_t bytes, bool pretouch,
		    enum vmmu_backing backing)
{
	perf_vm_create_cfg(p, NULL, nr_vcpus, bytes, pretouch, backing);
}

void perf_vm_destroy(struct perf_vm *p)
{
	for (unsigned i = 0; i < p->nr_vcpus; i++)
		vmmu_hw_vcpu_destroy(p->hw[i]);
	vmmu_vm_destroy(p->vm);
	vmmu_hostmem_free(p->hm, p->mem);
	vmmu_hostmem_destroy(p->hm);
}

void flush_all_tlbs(struct perf_vm *p)
{
	for (unsigned i = 0; i < p->nr_vcpus; i++)
		vmmu_hw_tlb_flush(p->hw[i]);
}
