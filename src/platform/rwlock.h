/* SPDX-License-Identifier: MIT */
/*
 * rwlock.h - the MMU lock: a writer-preferring reader/writer lock that can
 * say whether someone is waiting for it.
 *
 * Writer preference matters: a zap that needs the lock exclusively must not
 * starve behind a stream of vCPU faults taking it shared.
 *
 * Readers are the hot path (every vCPU fault takes the lock for read), so
 * they must not all write one shared word: each thread counts itself in one
 * of VMMU_RWLOCK_SLOTS cache-line-sized slots and then checks the writer
 * flag; a writer raises the flag, then waits for every slot to drain.
 * Both sides use sequentially consistent operations, so either the reader
 * sees the flag (and backs off) or the writer sees the reader's count.
 * Readers wait for a writer on a futex; writers serialize on a mutex.  "Contended" lets
 * long walks yield (drop and retake the lock) when anyone is waiting, the
 * way the kernel's rwlock_needbreak() does.
 *
 * In debug builds the lock remembers who holds it, and the assertion macros
 * (vmmu_lockdep_assert_held_read/_write/_any) check it at the top of
 * functions: the contract of a function, checked when it runs.
 */
#ifndef VMMU_RWLOCK_H
#define VMMU_RWLOCK_H

#include "platform.h"

#include <pthread.h>

#define VMMU_RWLOCK_SLOTS 32

struct vmmu_rwlock_slot {
	int64_t readers;
} __attribute__((aligned(VMMU_CACHELINE)));

struct vmmu_rwlock {
	struct vmmu_rwlock_slot slot[VMMU_RWLOCK_SLOTS];
	int writer __attribute__((aligned(VMMU_CACHELINE))); /* held or wanted */
	pthread_mutex_t wmutex; /* serializes writers */
	int waiters;       /* threads blocked or about to block */
	int force_contended; /* tests: pretend someone always waits */
#if VMMU_DEBUG
	int writer_token;  /* vmmu_thread_token() of the writer, 0 if none */
	int readers;
#endif
};

int vmmu_rwlock_init(struct vmmu_rwlock *l);
void vmmu_rwlock_destroy(struct vmmu_rwlock *l);
void vmmu_read_lock(struct vmmu_rwlock *l);
void vmmu_read_unlock(struct vmmu_rwlock *l);
void vmmu_write_lock(struct vmmu_rwlock *l);
void vmmu_write_unlock(struct vmmu_rwlock *l);

/* True if another thread waits for the lock (reader or writer). */
static inline bool vmmu_rwlock_contended(struct vmmu_rwlock *l)
{
	return READ_ONCE(l->waiters) > 0 || READ_ONCE(l->force_contended);
}

#if VMMU_DEBUG
int vmmu_thread_token(void);
bool vmmu_rwlock_held_read(struct vmmu_rwlock *l);
bool vmmu_rwlock_held_write(struct vmmu_rwlock *l);
#define vmmu_lockdep_assert_held_read(l) WARN_ON(!vmmu_rwlock_held_read(l))
#define vmmu_lockdep_assert_held_write(l) WARN_ON(!vmmu_rwlock_held_write(l))
#define vmmu_lockdep_assert_held(l)                                                \
	WARN_ON(!vmmu_rwlock_held_read(l) && !vmmu_rwlock_held_write(l))
#define vmmu_lockdep_assert_not_held(l)                                            \
	WARN_ON(vmmu_rwlock_held_read(l) || vmmu_rwlock_held_write(l))
#else
#define vmmu_lockdep_assert_held_read(l) ((void)(l))
#define vmmu_lockdep_assert_held_write(l) ((void)(l))
#define vmmu_lockdep_assert_held(l) ((void)(l))
#define vmmu_lockdep_assert_not_held(l) ((void)(l))
#endif

#endif /* VMMU_RWLOCK_H */
