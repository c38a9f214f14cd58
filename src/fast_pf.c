/* SPDX-License-Identifier: MIT */
/*
 * fast_pf.c - lockless walks, and the page faults fixed without the MMU
 * lock (KVM's fast_page_fault).
 *
 * Two kinds of fault only change the rights of a leaf that already maps the
 * right page, so the fix is one compare-and-exchange on that leaf:
 *
 *  - a write to a leaf write-protected for dirty logging: host-writable and
 *    MMU-writable are set, W is not.  Setting W and logging the page is all
 *    the locked path would do;
 *  - any access to a leaf that access tracking made inaccessible (EPT
 *    without A/D bits): R and X come back from the save area, and W too if
 *    the access is a write and the leaf is MMU-writable.
 *
 * Why this is safe without the MMU lock:
 *  - the tables are direct: the gfn an entry translates is fixed by where
 *    it sits, so a value read and compared cannot stand for another gfn
 *    (the reason KVM keeps shadow pages out of this path);
 *  - every other writer of an entry changes it with an atomic operation
 *    (compare-and-exchange or exchange, tdp_mmu.c, aging.c), so either our
 *    compare-and-exchange fails and we look again, or theirs does, or an
 *    exchange returns the W we set and the bookkeeping sees it.  A zap
 *    freezes the entry first, which never compares equal to a present
 *    leaf;
 *  - W is set only on an MMU-writable leaf: vmmu clears MMU-writable (and
 *    flushes) whenever it must not be written, and the compare-and-exchange
 *    fails if that happened after we read the leaf;
 *  - the page is logged after W is visible, so a harvester that takes the
 *    bit also finds W set and protects it again;
 *  - a huge leaf in a dirty-logged slot never gets W: one write would
 *    dirty 512 (or 262144) pages while only the faulting one is logged.
 *    Logging starts only after a grace period (the slot commit waits for
 *    one), and the whole fix runs in one RCU read section, so a slot read
 *    as not logged cannot have its protection walk run before our
 *    compare-and-exchange is done;
 *  - the tables read stay allocated until the read section ends.
 */
#include "dirty_log.h"
#include "memslot.h"
#include "mmu.h"
#include "spte.h"
#include "trace.h"
#include "vm_internal.h"

/* Attempts before the locked path takes over (KVM's bound as well). */
#define FAST_PF_MAX_TRIES 4

/*
 * Could this fault be one the fast path fixes?  The exit qualification
 * says whether the translation allowed anything at all ("present").  A
 * write to a present translation may be dirty-log write protection.  A
 * fault on a translation that allowed nothing may be access tracking, but
 * only without A/D bits: with them, nothing is ever access-tracked, and a
 * non-present entry really is not mapped.
 */
static bool page_fault_can_be_fast(const struct vmmu_vm *vm, uint64_t exit_qual)
{
	bool present = exit_qual & (VMMU_EPT_READABLE | VMMU_EPT_WRITABLE | VMMU_EPT_EXECUTABLE);

	if (!present)
		return !vm->ad_enabled;
	return exit_qual & VMMU_EPT_ACC_WRITE;
}

/*
 * The leaf value that fixes the fault, or @old itself when the fast path
 * cannot: restore an access-tracked leaf, set W on an MMU-writable one for
 * a write (never on a huge leaf of a dirty-logged slot).  *@slot is looked
 * up on first need.
 */
static uint64_t fast_pf_fixed_spte(struct vmmu_vcpu *vcpu, uint64_t gfn, uint64_t old, int level,
				   bool write, struct vmmu_memslot **slot)
{
	uint64_t new_spte = old;

	if (is_access_track_spte(new_spte))
		new_spte = restore_acc_track_spte(new_spte);
	if (write && is_mmu_writable_spte(new_spte) && !is_writable_pte(new_spte)) {
		if (level > PG_LEVEL_4K) {
			if (!*slot)
				*slot = vmmu_vcpu_gfn_to_memslot(vcpu, gfn);
			/* Only the faulting 4 KiB page would be logged: let
			 * the locked path map it small. */
			if (!*slot || memslot_dirty_logged(*slot))
				return old;
		}
		new_spte |= EPT_WRITABLE;
	}
	return new_spte;
}

/* The fix itself; out of line so that faults the fast path cannot fix
 * (every fault on a non-present entry with A/D bits) pay only the checks
 * in vmmu_fast_page_fault(). */
static __attribute__((noinline)) int fast_page_fault(struct vmmu_vcpu *vcpu, uint64_t gpa,
						     uint64_t exit_qual)
{
	struct vmmu_vm *vm = vcpu->vm;
	uint64_t gfn = gpa >> VMMU_PAGE_SHIFT, acc = exit_qual & EPT_RWX_MASK;
	bool write = exit_qual & VMMU_EPT_ACC_WRITE;
	struct vmmu_memslot *slot = NULL;
	uint64_t *sptep = NULL, old = SPTE_NONPRESENT, new_spte = SPTE_NONPRESENT;
	int r = VMMU_PF_CONTINUE;

	if (!acc)
		acc = EPT_READABLE;

	vmmu_walk_lockless_begin(vcpu);
	/* No root yet, or an obsolete one: the locked path reloads it. */
	if (!vcpu->root || !vcpu->root->role.direct || READ_ONCE(vcpu->root->invalid))
		goto out;
	for (int tries = 0; tries < FAST_PF_MAX_TRIES; tries++) {
		int level = vmmu_get_last_spte(vcpu, gfn, &sptep, &old);

		/* Not mapped, a table being torn down, or frozen by a zap. */
		if (!level || !is_present_leaf(old, level))
			break;
		/* Another vCPU (or the previous attempt's winner) fixed it. */
		if (spte_permits(old, acc)) {
			r = VMMU_PF_SPURIOUS;
			break;
		}
		new_spte = fast_pf_fixed_spte(vcpu, gfn, old, level, write, &slot);
		if (new_spte == old || !spte_permits(new_spte, acc))
			break;
		if (vmmu_unlikely(vm->test_fast_pf_hook))
			vm->test_fast_pf_hook(vcpu, sptep, vm->test_fast_pf_hook_arg);
		if (!__atomic_compare_exchange_n(sptep, &old, new_spte, false, __ATOMIC_ACQ_REL,
						 __ATOMIC_ACQUIRE))
			continue;
		/* W went from 0 to 1: log the page, now that W is visible. */
		if (!is_writable_pte(old) && is_writable_pte(new_spte)) {
			if (!slot)
				slot = vmmu_vcpu_gfn_to_memslot(vcpu, gfn);
			if (slot && memslot_dirty_logged(slot))
				vmmu_mark_page_dirty(vcpu, slot, gfn);
		}
		r = VMMU_PF_FIXED;
		break;
	}
out:
	trace_vmmu(fast_page_fault, vcpu->id, gpa, exit_qual, sptep, old, new_spte, r);
	vmmu_walk_lockless_end(vcpu);

	if (r == VMMU_PF_CONTINUE)
		return r;
	vmmu_vcpu_stat_inc(&vcpu->stats.pf_fast);
	vmmu_vcpu_stat_inc(r == VMMU_PF_FIXED ? &vcpu->stats.pf_fixed : &vcpu->stats.pf_spurious);
	return r;
}

int vmmu_fast_page_fault(struct vmmu_vcpu *vcpu, uint64_t gpa, uint64_t exit_qual)
{
	struct vmmu_vm *vm = vcpu->vm;

	if (vm->cfg.disable_fast_page_fault || !page_fault_can_be_fast(vm, exit_qual))
		return VMMU_PF_CONTINUE;
	return fast_page_fault(vcpu, gpa, exit_qual);
}
