/* SPDX-License-Identifier: MIT */
#include "rcu.h"

#include <pthread.h>

__thread int vmmu_rcu_registered;
__thread int vmmu_rcu_depth;
char vmmu_rcu_tsan_sync;

static pthread_key_t rcu_key;
static pthread_once_t rcu_once = PTHREAD_ONCE_INIT;

static void rcu_thread_exit(void *arg)
{
	(void)arg;
	if (vmmu_rcu_registered) {
		urcu_memb_unregister_thread();
		vmmu_rcu_registered = 0;
	}
}

static void rcu_key_init(void)
{
	if (pthread_key_create(&rcu_key, rcu_thread_exit))
		abort();
}

void vmmu_rcu_register_slow(void)
{
	pthread_once(&rcu_once, rcu_key_init);
	urcu_memb_register_thread();
	vmmu_rcu_registered = 1;
	/* Any non-NULL value makes the destructor run at thread exit. */
	pthread_setspecific(rcu_key, (void *)1);
}

void vmmu_synchronize_rcu(void)
{
	if (WARN_ON(vmmu_rcu_depth > 0))
		return;
	if (!vmmu_rcu_registered)
		vmmu_rcu_register_slow();
	urcu_memb_synchronize_rcu();
	vmmu_tsan_acquire(&vmmu_rcu_tsan_sync);
}

void vmmu_rcu_barrier(void)
{
	if (WARN_ON(vmmu_rcu_depth > 0))
		return;
	if (!vmmu_rcu_registered)
		vmmu_rcu_register_slow();
	urcu_memb_barrier();
	vmmu_tsan_acquire(&vmmu_rcu_tsan_sync);
}
