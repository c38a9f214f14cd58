/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "rwlock.h"

#include <string.h>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#if VMMU_DEBUG
/* Locks this thread holds for read; nesting is small and bounded. */
#define HELD_MAX 8
static __thread struct vmmu_rwlock *held_read[HELD_MAX];
static __thread int token;
static int next_token;

int vmmu_thread_token(void)
{
	if (!token)
		token = __atomic_add_fetch(&next_token, 1, __ATOMIC_RELAXED);
	return token;
}

bool vmmu_rwlock_held_read(struct vmmu_rwlock *l)
{
	for (int i = 0; i < HELD_MAX; i++)
		if (held_read[i] == l)
			return true;
	return false;
}

bool vmmu_rwlock_held_write(struct vmmu_rwlock *l)
{
	return READ_ONCE(l->writer_token) == vmmu_thread_token();
}

static void note_read(struct vmmu_rwlock *l, bool acquire)
{
	for (int i = 0; i < HELD_MAX; i++) {
		if (acquire && !held_read[i]) {
			held_read[i] = l;
			return;
		}
		if (!acquire && held_read[i] == l) {
			held_read[i] = NULL;
			return;
		}
	}
	WARN_ON(1); /* read nesting too deep, or unlock of a lock not held */
}
#endif

/* Which reader slot this thread uses. */
static __thread unsigned my_slot = UINT32_MAX;
static unsigned next_slot;

static inline struct vmmu_rwlock_slot *reader_slot(struct vmmu_rwlock *l)
{
	if (vmmu_unlikely(my_slot == UINT32_MAX))
		my_slot = __atomic_fetch_add(&next_slot, 1, __ATOMIC_RELAXED) % VMMU_RWLOCK_SLOTS;
	return &l->slot[my_slot];
}

static void futex_wait(int *addr, int val)
{
	syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake_all(int *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

int vmmu_rwlock_init(struct vmmu_rwlock *l)
{
	memset(l, 0, sizeof(*l));
	return -pthread_mutex_init(&l->wmutex, NULL);
}

void vmmu_rwlock_destroy(struct vmmu_rwlock *l)
{
	pthread_mutex_destroy(&l->wmutex);
}

void vmmu_read_lock(struct vmmu_rwlock *l)
{
	struct vmmu_rwlock_slot *s = reader_slot(l);

#if VMMU_DEBUG
	WARN_ON(vmmu_rwlock_held_read(l) || vmmu_rwlock_held_write(l));
#endif
	for (;;) {
		__atomic_add_fetch(&s->readers, 1, __ATOMIC_SEQ_CST);
		if (!__atomic_load_n(&l->writer, __ATOMIC_SEQ_CST))
			break;
		/* A writer holds or wants the lock: step aside until it is done.
		 * The waiter count and the flag pair up with the writer's
		 * release in vmmu_write_unlock(); see there. */
		__atomic_sub_fetch(&s->readers, 1, __ATOMIC_RELEASE);
		__atomic_add_fetch(&l->waiters, 1, __ATOMIC_SEQ_CST);
		while (__atomic_load_n(&l->writer, __ATOMIC_SEQ_CST))
			futex_wait(&l->writer, 1);
		atomic_dec(&l->waiters);
	}
#if VMMU_DEBUG
	note_read(l, true);
	atomic_inc(&l->readers);
#endif
}

void vmmu_read_unlock(struct vmmu_rwlock *l)
{
#if VMMU_DEBUG
	note_read(l, false);
	atomic_dec(&l->readers);
#endif
	__atomic_sub_fetch(&reader_slot(l)->readers, 1, __ATOMIC_RELEASE);
}

void vmmu_write_lock(struct vmmu_rwlock *l)
{
#if VMMU_DEBUG
	WARN_ON(vmmu_rwlock_held_read(l) || vmmu_rwlock_held_write(l));
#endif
	if (pthread_mutex_trylock(&l->wmutex)) {
		atomic_inc(&l->waiters);
		pthread_mutex_lock(&l->wmutex);
		atomic_dec(&l->waiters);
	}
	__atomic_store_n(&l->writer, 1, __ATOMIC_SEQ_CST);
	/* Waiting for readers to drain is waiting: a reader doing a long walk
	 * must see the lock contended and yield. */
	atomic_inc(&l->waiters);
	for (unsigned i = 0; i < VMMU_RWLOCK_SLOTS; i++) {
		unsigned spins = 0;

		while (__atomic_load_n(&l->slot[i].readers, __ATOMIC_SEQ_CST)) {
			if (++spins < 128)
				cpu_relax();
			else
				vmmu_yield();
		}
	}
	atomic_dec(&l->waiters);
#if VMMU_DEBUG
	WRITE_ONCE(l->writer_token, vmmu_thread_token());
#endif
}

void vmmu_write_unlock(struct vmmu_rwlock *l)
{
#if VMMU_DEBUG
	WRITE_ONCE(l->writer_token, 0);
#endif
	/*
	 * No lost wakeup.  A reader that is about to sleep does: waiters++,
	 * then load writer, then futex_wait(&writer, 1).  We do: writer = 0,
	 * then load waiters, then wake if non-zero.  That is the store-buffer
	 * pattern: with relaxed or release/acquire accesses both loads may
	 * return the old values (each store still in its CPU's store buffer),
	 * so the reader sees writer == 1 and sleeps while we see waiters == 0
	 * and wake nobody; the reader would then sleep until the next writer
	 * happens to wake it.  With all four accesses sequentially consistent
	 * (a seq_cst read-modify-write on the reader's side, a seq_cst store
	 * here, seq_cst loads on both sides) they fall in one total order, so
	 * at least one side sees the other's store: either the reader sees
	 * writer == 0 and does not sleep, or we see its count and wake it.
	 * The futex itself re-checks writer == 1 in the kernel, which covers
	 * a store that lands between the reader's load and its sleep.
	 */
	__atomic_store_n(&l->writer, 0, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&l->waiters, __ATOMIC_SEQ_CST))
		futex_wake_all(&l->writer);
	pthread_mutex_unlock(&l->wmutex);
}
