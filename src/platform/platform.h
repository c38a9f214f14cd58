/* SPDX-License-Identifier: MIT */
/*
 * platform.h - the only layer that knows about the operating system.
 *
 * Everything above this layer uses these helpers for atomics, warnings,
 * time and debug assertions, never OS headers directly.  Entries of page
 * tables are plain uint64_t accessed through the __atomic builtins: clang
 * refuses liburcu's macros on _Atomic objects, and plain words keep the
 * layout identical to what the (simulated) processor reads.
 */
#ifndef VMMU_PLATFORM_H
#define VMMU_PLATFORM_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef VMMU_DEBUG
#define VMMU_DEBUG 0
#endif

#define VMMU_PAGE_SHIFT 12
#define VMMU_PAGE_SIZE (1UL << VMMU_PAGE_SHIFT)
#define VMMU_PAGE_MASK (~(VMMU_PAGE_SIZE - 1))
#define VMMU_CACHELINE 64

#define vmmu_likely(x) __builtin_expect(!!(x), 1)
#define vmmu_unlikely(x) __builtin_expect(!!(x), 0)
#define VMMU_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define vmmu_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define vmmu_min(a, b) ((a) < (b) ? (a) : (b))
#define vmmu_max(a, b) ((a) > (b) ? (a) : (b))

/* Relaxed, acquire and release accessors on plain words. */
#define READ_ONCE(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define WRITE_ONCE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define atomic_inc(p) __atomic_add_fetch((p), 1, __ATOMIC_RELAXED)
#define atomic_dec(p) __atomic_sub_fetch((p), 1, __ATOMIC_RELAXED)
#define atomic_add(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define smp_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/*
 * A broken invariant is loud.  In debug builds (tests, sanitizers) it aborts
 * so the test that provoked it fails with a backtrace; in release builds it
 * prints once per call site and carries on, like the kernel's WARN_ON_ONCE.
 */
void vmmu_warn_report(const char *file, int line, const char *cond);
#define WARN_ON(cond)                                                              \
	({                                                                         \
		bool __w = !!(cond);                                               \
		if (vmmu_unlikely(__w))                                            \
			vmmu_warn_report(__FILE__, __LINE__, #cond);               \
		__w;                                                               \
	})

/* Monotonic time in nanoseconds. */
uint64_t vmmu_now_ns(void);

/* Yield the processor to another thread (used by spin-waits). */
void vmmu_yield(void);

/* Processors online (at least 1). */
unsigned vmmu_nr_cpus(void);

/* ASan poisoning of pooled memory, no-ops without AddressSanitizer. */
#if defined(__SANITIZE_ADDRESS__)
#define VMMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VMMU_ASAN 1
#endif
#endif
#ifdef VMMU_ASAN
#include <sanitizer/asan_interface.h>
#define vmmu_poison(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define vmmu_unpoison(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define vmmu_poison(p, n) ((void)(p), (void)(n))
#define vmmu_unpoison(p, n) ((void)(p), (void)(n))
#endif

/* ThreadSanitizer annotations for synchronization liburcu hides from it. */
#if defined(__SANITIZE_THREAD__)
#define VMMU_TSAN_ON 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VMMU_TSAN_ON 1
#endif
#endif
#ifdef VMMU_TSAN_ON
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define vmmu_tsan_acquire(a) __tsan_acquire((void *)(a))
#define vmmu_tsan_release(a) __tsan_release((void *)(a))
#else
#define vmmu_tsan_acquire(a) ((void)0)
#define vmmu_tsan_release(a) ((void)0)
#endif

#endif /* VMMU_PLATFORM_H */
