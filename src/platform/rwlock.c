/* SPDX-License-Identifier: MIT */
#include "rwlock.h"

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

int vmmu_rwlock_init(struct vmmu_rwlock *l)
{
	pthread_rwlockattr_t attr;
	int r;

	*l = (struct vmmu_rwlock){ 0 };
	if (pthread_rwlockattr_init(&attr))
		return -ENOMEM;
	/* glibc's writer preference that cannot deadlock on reader nesting:
	 * we never take the MMU lock recursively. */
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	r = pthread_rwlock_init(&l->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	return r ? -r : 0;
}

void vmmu_rwlock_destroy(struct vmmu_rwlock *l)
{
	pthread_rwlock_destroy(&l->lock);
}

void vmmu_read_lock(struct vmmu_rwlock *l)
{
#if VMMU_DEBUG
	WARN_ON(vmmu_rwlock_held_read(l) || vmmu_rwlock_held_write(l));
#endif
	if (pthread_rwlock_tryrdlock(&l->lock)) {
		atomic_inc(&l->waiters);
		pthread_rwlock_rdlock(&l->lock);
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
	pthread_rwlock_unlock(&l->lock);
}

void vmmu_write_lock(struct vmmu_rwlock *l)
{
#if VMMU_DEBUG
	WARN_ON(vmmu_rwlock_held_read(l) || vmmu_rwlock_held_write(l));
#endif
	if (pthread_rwlock_trywrlock(&l->lock)) {
		atomic_inc(&l->waiters);
		pthread_rwlock_wrlock(&l->lock);
		atomic_dec(&l->waiters);
	}
#if VMMU_DEBUG
	WRITE_ONCE(l->writer_token, vmmu_thread_token());
#endif
}

void vmmu_write_unlock(struct vmmu_rwlock *l)
{
#if VMMU_DEBUG
	WRITE_ONCE(l->writer_token, 0);
#endif
	pthread_rwlock_unlock(&l->lock);
}
