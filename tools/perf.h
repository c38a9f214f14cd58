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
#include <vmmu/nested.h>
#include <vmmu/vmmu.h>

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef VMMU_PERF_VERSION
#define VMMU_PERF_VERSION "0.1.0"
#endif

#define PAGE 4096ull
#define TEST_GPA (1ull << 32) /* test memory starts at 4 GiB guest-physical */

struct perf_experiment {
	const char *name;
	const char *summary; /* one line for the experiment list */
	int (*run)(int argc, char **argv); /* argv[0] is the experiment name */
	struct perf_experiment *next;
};
void perf_register(struct perf_experiment *e);

#define VMMU_PERF_EXPERIMENT(ident, nm, sum, fn)                                 \
	static struct perf_experiment perf_exp_##ident = { .name = (nm),         \
							   .summary = (sum),     \
							   .run = (fn) };        \
	__attribute__((constructor)) static void perf_exp_register_##ident(void) \
	{                                                                        \
		perf_register(&perf_exp_##ident);                                \
	}

/*
 * Machine-readable results (perf_json.c).  Every experiment records what it
 * prints; `--json FILE` (handled by vmmu-perf.c for every experiment) writes
 * the records when the experiment returns.  Recording a name again adds a
 * repeat (the JSON gives median, min and max).  A floor is what a metric is
 * measured against in the same run (walk floor, memset); a ratio has unit
 * "x".  print_time() records its line (as a floor when the name says so).
 */
enum perf_kind {
	PERF_METRIC,
	PERF_FLOOR,
	PERF_RATIO
};
void perf_record(enum perf_kind kind, const char *name, const char *unit, double value);
void perf_recordf(enum perf_kind kind, const char *unit, double value, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* "prefix: " before the names recorded from now on (NULL: none), for an
 * experiment that prints the same lines once per mode. */
void perf_record_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* One configuration entry ("vcpus" = "2"); set again to replace. */
void perf_config(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* @fn writes more members (",\n  \"rows\": [...]") into the top object. */
void perf_json_extra(void (*fn)(FILE *f, void *arg), void *arg);
int perf_json_write(FILE *f, const char *experiment, int argc, char **argv, int status);
void perf_json_str(FILE *f, const char *s);
void perf_json_num(FILE *f, double v);
double perf_median(const double *v, size_t n);

/* A parsed JSON value (the reader behind `compare` and `tour`). */
enum jv_type {
	JV_NULL,
	JV_BOOL,
	JV_NUMBER,
	JV_STRING,
	JV_ARRAY,
	JV_OBJECT
};
struct jv {
	enum jv_type type;
	double num; /* JV_NUMBER, JV_BOOL (0/1) */
	char *str; /* JV_STRING */
	struct jv *items; /* JV_ARRAY, JV_OBJECT */
	char **keys; /* JV_OBJECT: keys[i] names items[i] */
	size_t n;
};
struct jv *jv_parse(const char *text, size_t len, char *err, size_t errlen);
struct jv *jv_parse_file(const char *path, char *err, size_t errlen);
void jv_free(struct jv *v);
const struct jv *jv_get(const struct jv *obj, const char *key);
double jv_num(const struct jv *v, double dflt);
const char *jv_str(const struct jv *v, const char *dflt);

/* The registered experiment called @name, or NULL. */
struct perf_experiment *perf_find(const char *name);
/* The path of this program (for the tour, which runs each experiment as a
 * child so a crash or an exit() in one row leaves the others). */
const char *perf_self(void);

uint64_t now_ns(void);
/* "what: S.NNNNNNNNNs", KVM selftest style; also perf_record()s it. */
void print_time(const char *what, uint64_t ns);

/*
 * Figures repeated with -r: each prints the median of the runs with their
 * min and max, records every run (the JSON gives median/min/max too), and
 * says "noisy" when max exceeds min by more than PERF_NOISE_PCT percent.
 * A ratio is computed within each run first, then summarized.
 * print_times: "what: median S (min S, max S, N runs)".
 * print_ratios: "what: median x (min x, max x, N runs)".
 * perf_summary: the median, min and max of @v, and whether it is noisy.
 */
#define PERF_NOISE_PCT 20
struct perf_summary {
	double med, min, max;
	bool noisy;
};
struct perf_summary perf_summarize(const double *v, unsigned n);
void print_times(const char *what, const uint64_t *ns, unsigned n);
void print_ratios(const char *what, const double *v, unsigned n);
/* The same with a printf-style name. */
void print_ratiosf(const double *v, unsigned n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

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

enum pass_kind {
	PASS_WRITE,
	PASS_READ
};

struct pass_arg {
	struct perf_vm *p;
	unsigned idx;
	enum pass_kind kind;
	pthread_barrier_t *start;
	uint64_t ns;
	uint64_t cpu_ns; /* the thread's CPU time during the pass */
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
/*
 * The same, and *@cpu_ns the largest CPU time one vCPU thread used in it:
 * on a loaded machine the wall time includes the time other processes ran
 * instead of the vCPU, the thread's CPU time does not.
 */
uint64_t run_pass_cpu(struct perf_vm *p, unsigned nr, enum pass_kind kind, uint64_t *cpu_ns);
/* CLOCK_THREAD_CPUTIME_ID in ns. */
uint64_t thread_cpu_ns(void);
void flush_all_tlbs(struct perf_vm *p);
/* One pass of the vCPUs in @mask (bit i: vCPU i) over their own regions,
 * all started together; ns[i] gets vCPU i's time (0 when not in @mask). */
void run_pass_each(struct perf_vm *p, uint64_t mask, enum pass_kind kind, uint64_t *ns);
/* The same, and cpu_ns[i] the CPU time of vCPU i's thread in the pass,
 * csw[i] (if @csw) its context switches: voluntary ones are sleeps (a
 * futex: a lock or a condition waited for), involuntary ones preemptions
 * and sched_yield() calls (vmmu yields while it waits for another vCPU). */
struct perf_csw {
	uint64_t voluntary, involuntary;
};
void run_pass_each_cpu(struct perf_vm *p, uint64_t mask, enum pass_kind kind, uint64_t *ns,
		       uint64_t *cpu_ns, struct perf_csw *csw);

/*
 * Nested experiments (-n, perf_nested.c): L1 keeps EPT12 tables in slot
 * PERF_EPT12_SLOT and maps L2 identity-style with 2 MiB EPT12 leaves where
 * it can.  perf_l2_enter() puts the vCPUs of @mask in L2: with @per_vcpu
 * each gets its own EPT12 tree over its own region and its own EPT pointer
 * (its own L2, so its own EPT02 root), else one tree over all regions that
 * every vCPU shares.  perf_l2_leave() takes them back to L1 and frees the
 * EPT12 area (do it before perf_vm_destroy).
 */
#define PERF_EPT12_SLOT 1
#define PERF_EPT12_GPA (16ull << 20)
#define PERF_EPT12_BYTES (2ull << 20)
struct perf_l2 {
	uint8_t *mem;
	uint64_t next; /* next free table (L1 address) */
	uint64_t eptp[VMMU_MAX_VCPUS];
	uint64_t in_l2; /* vCPUs entered */
};
void perf_l2_enter(struct perf_vm *p, struct perf_l2 *l2, bool per_vcpu, uint64_t mask);
void perf_l2_leave(struct perf_vm *p, struct perf_l2 *l2);

/*
 * The nested MMU's two lock modes (vmmu_vm_config.nested_global_lock):
 * per-root locks (the default) and the global lock.  perf_lock_modes():
 * the modes to run, from --compare locks (both) and --global-lock.
 */
enum {
	PERF_LOCK_PER_ROOT = 0,
	PERF_LOCK_GLOBAL = 1
};
extern const char *const perf_lock_mode_names[2];
void perf_lock_modes(int compare, int global, unsigned *first, unsigned *last);
/* The nested MMU's VM totals and its live roots' own figures;
 * perf_roots_print(): "Nested roots WHEN: ..." and one line per root
 * (faults, lock taken, contended, waited). */
#define PERF_MAX_ROOTS 8
struct perf_roots {
	struct vmmu_nested_stats s;
	struct vmmu_nested_root_stats r[PERF_MAX_ROOTS];
	unsigned n;
};
void perf_roots_get(struct vmmu_vm *vm, struct perf_roots *out);
/* A note when the machine has more runnable work than CPUs (the vCPU
 * threads then rarely run side by side): for experiments that compare 2
 * vCPUs running at once with 1. */
void perf_warn_busy(void);
void perf_roots_print(const struct perf_roots *rs, const char *when);

#endif /* VMMU_TOOLS_PERF_H */
