/* SPDX-License-Identifier: MIT */
/*
 * rwlock.h - the MMU lock: a writer-preferring reader/writer lock that can
 * say whether someone is waiting for it.
 *
 * Writer preference matters: a zap that needs the lock exclusively must not
 * starve behind a stream of vCPU faults taking it shared.  "Contended" lets
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

struct vmmu_rwlock {
	pthread_rwlock_t lock;
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
