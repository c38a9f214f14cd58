/* SPDX-License-Identifier: MIT */
/*
 * perf.h - what the experiments of vmmu-perf share: timing, option
 * parsing, hugetlb reservation, and a VM with hw vCPUs driven in passes.
 *
 * An experiment is one tools/perf_<name>.c file that registers itself with
 * VMMU_PERF_EXPERIMENT(); vmmu-perf.c dispatches on the name.
 */
#ifndef VMMU_TOOLS_PERF_H
#define VMMU_TOOLS_PERF_H

#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define PAGE 4096ull
#define TEST_GPA (1ull << 32) /* test memory starts at 4 GiB guest-physical */

struct perf_experiment {
	const char *name;
	const char *summary; /* one line for the experiment list */
	int (*run)(int argc, char **argv); /* argv[0] is the experiment name */
	struct perf_experiment *next;
};
void perf_register(struct perf_experiment *e);

#define VMMU_PERF_EXPERIMENT(ident, nm, sum, fn)                                \
	static struct perf_experiment perf_exp_##ident = { .name = (nm),         \
							   .summary = (sum),     \
							   .run = (fn) };        \
	__attribute__((constructor)) static void perf_exp_register_##ident(void) \
	{                                                                       \
		perf_register(&perf_exp_##ident);                                 \
	}

uint64_t now_ns(void);
/* "what: S.NNNNNNNNNs", KVM selftest style. */
void print_time(const char *what, uint64_t ns);
/* Bytes with an optional k/m/g suffix; exits with status 2 on bad input. */
uint64_t parse_size(const char *s);
/* Print "vmmu-perf: what: strerror(-r)" and exit(1). */
void die(const char *what, int r) __attribute__((noreturn));

/*
 * Make sure @bytes of hugetlb pages of backing @b are free: as root, raise
 * nr_hugepages for the run and restore it at exit.  False if impossible.
 */
bool hugetlb_reserve(enum vmmu_backing b, uint64_t bytes);

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

/* @cfg may be NULL (defaults); its hostmem is replaced by the VM's own. */
void perf_vm_create_cfg(struct perf_vm *p, const struct vmmu_vm_config *cfg, unsigned nr_vcpus,
			uint64_t bytes, bool pretouch, enum vmmu_backing backing);
void perf_vm_create(struct perf_vm *p, unsigned nr_vcpus, uint64_t bytes, bool pretouch,
		    enum vmmu_backing backing);
void perf_vm_destroy(struct perf_vm *p);
/* One pass of every vCPU over its own region; returns the slowest vCPU's time. */
uint64_t run_pass(struct perf_vm *p, unsigned nr, enum pass_kind kind);
void flush_all_tlbs(struct perf_vm *p);

#endif /* VMMU_TOOLS_PERF_H */
