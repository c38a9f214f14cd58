/* SPDX-License-Identifier: MIT */
/*
 * prefault.c - mapping guest memory before the guest touches it:
 * KVM_PRE_FAULT_MEMORY (vmmu_vcpu_pre_fault_memory) and the direct build
 * of VMMU_MEM_DIRECT_BUILD slots.
 *
 * Neither has a page-table walker of its own.  Both call the body of the
 * fault path (vmmu_do_page_fault) with prefetch read faults, so they obey
 * exactly its rules: memslot lookup, invalidation-sequence snapshot and
 * staleness check under the MMU lock, largest legal leaf, compare-and-
 * exchange installs.  The one difference from a guest fault is that a
 * prefetch asks for a run: every leaf of one table at the goal level that
 * the same rules cover, so that the lookups, the lock and the walk from
 * the root are paid once per table rather than once per page.
 *
 * Loops here retry lost races and invalidations in progress, checking for
 * an interruption between attempts, and never retry on a slot that is
 * being deleted: the fault body answers -EAGAIN for that (KVM learned that
 * a pre-fault looping there can hold up the memslot update for ever).
 */
#include "mmu.h"
#include "mmu_role.h"
#include "vm_internal.h"

#include <string.h>

/* One call of the fault body for [gfn, gfn_end); *mapped_end as fault->mapped_end. */
static int prefault_run(struct vmmu_vcpu *vcpu, uint64_t gfn, uint64_t gfn_end,
			uint64_t *mapped_end)
{
	struct vmmu_page_fault fault = {
		.gpa = gfn << VMMU_PAGE_SHIFT,
		.gfn = gfn,
		.gfn_end = gfn_end,
		.exit_qual = VMMU_EPT_ACC_READ,
		.prefetch = true,
	};
	int r = vmmu_do_page_fault(vcpu, &fault);

	*mapped_end = fault.mapped_end;
	return r;
}

/* Take a pending vmmu_vcpu_interrupt(), if any. */
static bool vcpu_take_interrupt(struct vmmu_vcpu *vcpu)
{
	if (vmmu_likely(!__atomic_load_n(&vcpu->interrupt_pending, __ATOMIC_RELAXED)))
		return false;
	return __atomic_exchange_n(&vcpu->interrupt_pending, 0, __ATOMIC_ACQUIRE) != 0;
}

int vmmu_vcpu_interrupt(struct vmmu_vcpu *vcpu)
{
	if (!vcpu)
		return -EINVAL;
	__atomic_store_n(&vcpu->interrupt_pending, 1, __ATOMIC_RELEASE);
	return 0;
}

int vmmu_vcpu_pre_fault_memory(struct vmmu_vcpu *vcpu, struct vmmu_pre_fault_memory *range)
{
	uint64_t gpa, end;
	bool progress = false;
	int r = 0;

	if (!vcpu || !range || range->flags)
		return -EINVAL;
	gpa = range->gpa;
	end = gpa + range->size;
	if (((gpa | range->size) & (VMMU_PAGE_SIZE - 1)) || !range->size || end < gpa ||
	    end > (vmmu_max_gfn(vcpu->vm) << VMMU_PAGE_SHIFT))
		return -EINVAL;
	/* Addresses are GPAs only for the TDP MMU (KVM: shadow/nested refuse). */
	if (vcpu->mmu_not_tdp)
		return -EOPNOTSUPP;
	/* Called in guest mode: the caller's mistake, an errno. */
	if (READ_ONCE(vcpu->mode) & VMMU_MODE_IN_GUEST)
		return -EBUSY;

	while (gpa < end) {
		uint64_t gfn = gpa >> VMMU_PAGE_SHIFT, mapped_end;

		if (vcpu_take_interrupt(vcpu)) {
			r = -EINTR;
			break;
		}
		r = prefault_run(vcpu, gfn, end >> VMMU_PAGE_SHIFT, &mapped_end);
		if (mapped_end > gfn) {
			/* A huge leaf counts to its end, clipped to the range. */
			gpa = vmmu_min(mapped_end << VMMU_PAGE_SHIFT, end);
			progress = true;
		}
		if (r == VMMU_PF_FIXED || r == VMMU_PF_SPURIOUS)
			continue;
		if (r == VMMU_PF_RETRY) {
			/* A lost race or an invalidation in progress: let it finish. */
			if (mapped_end == gfn)
				vmmu_yield();
			continue;
		}
		if (r == VMMU_PF_EMULATE)
			r = -ENOENT; /* no memslot: nothing to map */
		break;
	}
	range->gpa = gpa;
	range->size = end - gpa;
	return progress ? 0 : r;
}

/*
 * Direct build.  Workers claim chunks of the slot (aligned, so that each
 * chunk fills whole tables of its own) from a shared counter and map them
 * with prefetch runs, each through a private vCPU-like context: a root
 * reference and a page-table page cache, no guest mode, invisible to TLB
 * flushes (it has no TLB).
 *
 * What two workers share, and why it costs little: the chunk counter (one
 * atomic per chunk); the pool's lock (one batch per cache top-up; the host
 * backing of fresh pages runs outside it); the MMU lock (read side, a slot
 * per thread); the tables above the leaf tables.  A chunk of 16 MiB links
 * 8 leaf tables, whose entries in the 2M-level table fill exactly one cache
 * line, so two workers never write the same line of a shared table; a
 * smaller chunk would share lines, a larger one leaves a longer tail to the
 * last worker.  Each worker's leaf tables come from its own cache, in runs
 * of consecutive pool pages: the map two workers build is laid out almost
 * as one worker's (measured for 1 GiB: 485 to 497 of 511 neighbouring leaf
 * tables in neighbouring pages, against 498 for one worker or a pre-fault;
 * the first touch costs the same after either).
 */
#define BUILD_CHUNK_PAGES (8ull * SPTE_ENT_PER_PAGE) /* 16 MiB */

struct direct_build {
	struct vmmu_vm *vm;
	struct vmmu_memslot *slot;
	uint64_t first_chunk; /* base_gfn rounded down to a chunk */
	uint64_t end; /* end gfn of the slot */
	uint64_t next; /* next chunk index to claim (atomic) */
	int err; /* first error of any worker (atomic) */
};

static void build_chunk(struct direct_build *b, struct vmmu_vcpu *ctx, uint64_t start, uint64_t end)
{
	uint64_t gfn = start;

	while (gfn < end && !__atomic_load_n(&b->err, __ATOMIC_RELAXED)) {
		uint64_t mapped_end;
		int r = prefault_run(ctx, gfn, end, &mapped_end);

		if (mapped_end > gfn)
			gfn = mapped_end;
		if (r == VMMU_PF_FIXED || r == VMMU_PF_SPURIOUS)
			continue;
		if (r == VMMU_PF_RETRY) {
			if (mapped_end == gfn)
				vmmu_yield();
			continue;
		}
		/* The slot is published, valid and held by slots_lock. */
		if (WARN_ON(r >= 0 || r == -EAGAIN))
			r = -EFAULT;
		__atomic_compare_exchange_n(&b->err, &(int){ 0 }, r, false, __ATOMIC_RELAXED,
					    __ATOMIC_RELAXED);
		return;
	}
}

static void *build_worker(void *arg)
{
	struct direct_build *b = arg;
	struct vmmu_vm *vm = b->vm;
	struct vmmu_vcpu *ctx;
	int r;

	ctx = aligned_alloc(VMMU_CACHELINE, sizeof(*ctx));
	if (!ctx) {
		r = -ENOMEM;
		goto fail;
	}
	memset(ctx, 0, sizeof(*ctx));
	ctx->vm = vm;
	ctx->as_id = b->slot->as_id;
	/* A context with the VM's direct root role, like a fresh vCPU's. */
	vmmu_mmu_init_vcpu(ctx);
	r = vmmu_cache_init(&ctx->pt_cache, (int)vm->cfg.vcpu_cache_capacity, &vmmu_pt_cache_ops,
			    vm);
	if (r) {
		free(ctx);
		goto fail;
	}
	while (!__atomic_load_n(&b->err, __ATOMIC_RELAXED)) {
		uint64_t i = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED);
		uint64_t start = b->first_chunk + i * BUILD_CHUNK_PAGES;

		if (start >= b->end)
			break;
		build_chunk(b, ctx, vmmu_max(start, b->slot->base_gfn),
			    vmmu_min(start + BUILD_CHUNK_PAGES, b->end));
	}
	vmmu_mmu_destroy_vcpu(ctx); /* its root */
	vmmu_cache_destroy(&ctx->pt_cache);
	free(ctx);
	return NULL;
fail:
	__atomic_compare_exchange_n(&b->err, &(int){ 0 }, r, false, __ATOMIC_RELAXED,
				    __ATOMIC_RELAXED);
	return NULL;
}

int vmmu_direct_build(struct vmmu_vm *vm, struct vmmu_memslot *slot)
{
	struct direct_build b = {
		.vm = vm,
		.slot = slot,
		.first_chunk = slot->base_gfn & ~(BUILD_CHUNK_PAGES - 1),
		.end = slot->base_gfn + slot->npages,
	};
	pthread_t threads[VMMU_MAX_DIRECT_BUILD_WORKERS];
	uint64_t chunks = (b.end - b.first_chunk + BUILD_CHUNK_PAGES - 1) / BUILD_CHUNK_PAGES;
	unsigned n = vm->cfg.direct_build_workers ? vm->cfg.direct_build_workers : vmmu_nr_cpus();
	unsigned started = 0;

	n = (unsigned)vmmu_min((uint64_t)vmmu_min(n, VMMU_MAX_DIRECT_BUILD_WORKERS), chunks);
	/* The calling thread is worker 0; fewer threads are fine too. */
	for (unsigned i = 1; i < n; i++) {
		if (pthread_create(&threads[started], NULL, build_worker, &b))
			break;
		started++;
	}
	build_worker(&b);
	for (unsigned i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	return b.err;
}
