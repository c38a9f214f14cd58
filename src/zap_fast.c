/* SPDX-License-Identifier: MIT */
/*
 * zap_fast.c - fast invalidation of every mapping (KVM's
 * kvm_mmu_zap_all_fast), and the per-VM thread that empties obsolete roots.
 *
 * Making every root obsolete costs a few microseconds whatever the size of
 * the VM: under the MMU lock held for write each valid root is marked
 * invalid (no fault installs into it after that: faults check their root
 * under the lock), then every vCPU is asked to leave guest mode, drop its
 * root and flush its TLB, and we wait until each vCPU in guest mode has
 * acknowledged.  From then on no processor can reach an obsolete root.
 *
 * Emptying the obsolete roots is the part that grows with the VM.  It is
 * handed to a per-VM thread (KVM had a workqueue for this for a while)
 * that zaps them under the MMU lock held for read, yielding to writers, so
 * vCPUs fault into their fresh roots meanwhile.  Until a root is empty it
 * stays on the root list, so host invalidations (MMU notifiers) still zap
 * its entries.  vmmu_zap_fast_flush() waits for the thread to finish what
 * was asked of it before the call.
 */
#include "mmu.h"
#include "vm_internal.h"

static void *zap_worker(void *arg)
{
	struct vmmu_vm *vm = arg;

	pthread_mutex_lock(&vm->zap_lock);
	while (!vm->zap_stop) {
		uint64_t target = vm->zap_requested;

		if (vm->zap_done == target) {
			pthread_cond_wait(&vm->zap_cond, &vm->zap_lock);
			continue;
		}
		pthread_mutex_unlock(&vm->zap_lock);

		vmmu_read_lock(&vm->mmu_lock);
		vmmu_mmu_zap_invalidated_roots(vm);
		vmmu_read_unlock(&vm->mmu_lock);

		pthread_mutex_lock(&vm->zap_lock);
		vm->zap_done = target;
		pthread_cond_broadcast(&vm->zap_cond);
	}
	pthread_mutex_unlock(&vm->zap_lock);
	return NULL;
}

void vmmu_zap_fast_init(struct vmmu_vm *vm)
{
	pthread_mutex_init(&vm->zap_lock, NULL);
	pthread_cond_init(&vm->zap_cond, NULL);
	vm->zap_requested = vm->zap_done = 0;
	vm->zap_started = vm->zap_stop = false;
}

/* Ask the thread (started on first use) to empty the obsolete roots.  If
 * it cannot be started, zap them here. */
static void zap_fast_kick(struct vmmu_vm *vm)
{
	bool sync = false;

	pthread_mutex_lock(&vm->zap_lock);
	if (!vm->zap_started) {
		if (pthread_create(&vm->zap_thread, NULL, zap_worker, vm))
			sync = true;
		else
			vm->zap_started = true;
	}
	if (!sync) {
		vm->zap_requested++;
		pthread_cond_broadcast(&vm->zap_cond);
	}
	pthread_mutex_unlock(&vm->zap_lock);
	if (sync) {
		vmmu_read_lock(&vm->mmu_lock);
		vmmu_mmu_zap_invalidated_roots(vm);
		vmmu_read_unlock(&vm->mmu_lock);
	}
}

void vmmu_zap_fast_flush(struct vmmu_vm *vm)
{
	uint64_t target;

	pthread_mutex_lock(&vm->zap_lock);
	target = vm->zap_requested;
	while (vm->zap_started && vm->zap_done < target)
		pthread_cond_wait(&vm->zap_cond, &vm->zap_lock);
	pthread_mutex_unlock(&vm->zap_lock);
}

void vmmu_zap_fast_destroy(struct vmmu_vm *vm)
{
	bool started;

	pthread_mutex_lock(&vm->zap_lock);
	vm->zap_stop = true;
	started = vm->zap_started;
	pthread_cond_broadcast(&vm->zap_cond);
	pthread_mutex_unlock(&vm->zap_lock);
	if (started)
		pthread_join(vm->zap_thread, NULL);
	pthread_mutex_destroy(&vm->zap_lock);
	pthread_cond_destroy(&vm->zap_cond);
}

/*
 * Make every root obsolete and move every vCPU off it; the roots are
 * emptied afterwards by the VM's zap thread.  When this returns no vCPU
 * runs on, or holds a TLB entry from, a root that existed at the call.
 * No lock held by the caller (it takes the MMU lock for write).
 */
void vmmu_mmu_zap_all_fast(struct vmmu_vm *vm)
{
	vmmu_mmu_invalidate_all_roots(vm);
	zap_fast_kick(vm);
}
