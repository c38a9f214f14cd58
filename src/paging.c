// SPDX-License-Identifier: MIT
/*
 * paging.c - the public guest-paging API (<vmmu/paging.h>): setting a
 * vCPU's paging state, and translating guest virtual addresses through the
 * guest's tables in guest memory.
 */
#include <vmmu/hostmem.h>

#include "memslot.h"
#include "mmu_role.h"

#include <string.h>

int vmmu_vcpu_set_paging(struct vmmu_vcpu *vcpu, const struct vmmu_paging_state *state)
{
	struct vmmu_mmu_ctx *ctx;
	union vmmu_cpu_role cpu;
	union vmmu_sp_role root;
	bool cpu_changed, root_changed;
	struct vmmu_vm *vm;
	uint64_t pgd;
	int r;

	if (!vcpu || !state)
		return -EINVAL;
	vm = vcpu->vm;
	ctx = &vcpu->mmu;
	r = vmmu_paging_state_check(state, vm->guest_maxphyaddr);
	if (r)
		return r;
	/* Like a MOV to CR0, this is handled outside guest mode. */
	if (READ_ONCE(vcpu->mode) & VMMU_MODE_IN_GUEST)
		return -EBUSY;

	cpu = vmmu_calc_cpu_role(state, vcpu->as_id);
	root = vmmu_calc_root_role(vm, cpu, vm->tdp_enabled);
	pgd = vmmu_cpu_role_pgd(cpu, state->cr3);
	cpu_changed = cpu.word != ctx->cpu_role.word;
	root_changed = root.word != ctx->root_role.word;

	/* The walker's tables depend on the cpu role and PKRU only; they are
	 * rebuilt when a translation needs them. */
	if (cpu_changed || state->pkru != ctx->regs.pkru)
		ctx->walker_stale = true;

	if (vm->cfg.unload_roots_on_role_change && (cpu_changed || root_changed)) {
		/* Before the split: any role change throws the roots away. */
		vmmu_mmu_unload(vcpu);
		ctx->root_role = root;
		ctx->root_pgd = pgd;
	} else if (root_changed || pgd != ctx->root_pgd) {
		vmmu_mmu_new_root(vcpu, pgd, root);
	}

	ctx->regs = *state;
	ctx->cpu_role = cpu;
	ctx->paging_gen++;
	vmmu_vcpu_stat_inc(&ctx->stats.paging_sets);
	if (cpu_changed)
		vmmu_vcpu_stat_inc(&ctx->stats.cpu_role_changes);
	if (root_changed)
		vmmu_vcpu_stat_inc(&ctx->stats.root_role_changes);
	return 0;
}

int vmmu_vcpu_get_paging(struct vmmu_vcpu *vcpu, struct vmmu_paging_state *state,
			 uint64_t *generation)
{
	if (!vcpu || !state)
		return -EINVAL;
	*state = vcpu->mmu.regs;
	if (generation)
		*generation = vcpu->mmu.paging_gen;
	return 0;
}

int vmmu_vcpu_mmu_stats(struct vmmu_vcpu *vcpu, struct vmmu_vcpu_mmu_stats *out)
{
	const struct vmmu_vcpu_mmu_stats *s;

	if (!vcpu || !out)
		return -EINVAL;
	s = &vcpu->mmu.stats;
	out->paging_sets = READ_ONCE(s->paging_sets);
	out->cpu_role_changes = READ_ONCE(s->cpu_role_changes);
	out->root_role_changes = READ_ONCE(s->root_role_changes);
	out->root_loads = READ_ONCE(s->root_loads);
	out->root_unloads = READ_ONCE(s->root_unloads);
	out->root_cache_hits = READ_ONCE(s->root_cache_hits);
	out->root_cache_misses = READ_ONCE(s->root_cache_misses);
	out->root_cache_evictions = READ_ONCE(s->root_cache_evictions);
	out->obsolete_roots_dropped = READ_ONCE(s->obsolete_roots_dropped);
	out->translations = READ_ONCE(s->translations);
	return 0;
}

/*
 * Guest memory for the walker, reached through the memslots (KVM's
 * kvm_vcpu_read_guest and the user-address cmpxchg of its walker).  Runs
 * inside an RCU read section, so the slots it looks at stay alive.
 */
struct guest_mem {
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu; /* whose dirty ring logs A/D updates */
	unsigned as_id;
};

/* The host address of the guest entry at @gpa, or 0 if there is none;
 * *@slotp (if not NULL) gets its memslot. */
static uint64_t guest_pte_hva(struct guest_mem *gm, uint64_t gpa, bool write,
			      struct vmmu_memslot **slotp)
{
	struct vmmu_memslot *slot = vmmu_gfn_to_memslot(gm->vm, gm->as_id, gpa >> VMMU_PAGE_SHIFT);
	uint64_t hva;

	if (slotp)
		*slotp = slot;
	if (!slot || slot->invalid)
		return 0;
	if (write && (slot->flags & VMMU_MEM_READONLY))
		return 0;
	hva = memslot_gfn_to_hva(slot, gpa >> VMMU_PAGE_SHIFT) + (gpa & (VMMU_PAGE_SIZE - 1));
	/* Host memory handed back to the host is not guest memory any more. */
	if (gm->vm->hostmem) {
		int w = vmmu_hostmem_writable(gm->vm->hostmem, hva);

		if (w < 0 || (write && !w))
			return 0;
	}
	return hva;
}

static int guest_read_pte(void *opaque, uint64_t gpa, uint64_t *val, unsigned size)
{
	uint64_t hva = guest_pte_hva(opaque, gpa, false, NULL);

	if (!hva)
		return 1;
	if (size == 8)
		*val = __atomic_load_n((uint64_t *)(uintptr_t)hva, __ATOMIC_ACQUIRE);
	else
		*val = __atomic_load_n((uint32_t *)(uintptr_t)hva, __ATOMIC_ACQUIRE);
	return 0;
}

/*
 * The walker's A/D update.  The table page is written behind the back of
 * the EPT tables (through its host address, not by a guest write that
 * would fault or set D), so it is logged here, as KVM's walker marks the
 * table's gfn dirty: otherwise a migration would copy the page without the
 * bits the guest relies on.
 */
static int guest_cmpxchg_pte(void *opaque, uint64_t gpa, uint64_t old, uint64_t new_val,
			     unsigned size)
{
	struct guest_mem *gm = opaque;
	struct vmmu_memslot *slot;
	uint64_t hva = guest_pte_hva(gm, gpa, true, &slot);
	bool ok;

	if (!hva)
		return -1;
	if (size == 8) {
		ok = __atomic_compare_exchange_n((uint64_t *)(uintptr_t)hva, &old, new_val, false,
						 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	} else {
		uint32_t o = (uint32_t)old;

		ok = __atomic_compare_exchange_n((uint32_t *)(uintptr_t)hva, &o, (uint32_t)new_val,
						 false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	}
	if (ok && memslot_dirty_logged(slot))
		vmmu_mark_page_dirty(gm->vcpu, slot, gpa >> VMMU_PAGE_SHIFT);
	return ok ? 0 : 1;
}

static const struct vmmu_gw_mem_ops guest_mem_ops = {
	.read_pte = guest_read_pte,
	.cmpxchg_pte = guest_cmpxchg_pte,
};

/* Rebuild the walker's tables from the current paging state if needed. */
static int refresh_walker(struct vmmu_vcpu *vcpu)
{
	struct vmmu_mmu_ctx *ctx = &vcpu->mmu;
	struct vmmu_gw_regs regs = {
		.cr0 = ctx->regs.cr0,
		.cr3 = ctx->regs.cr3,
		.cr4 = ctx->regs.cr4,
		.efer = ctx->regs.efer,
		.pkru = ctx->regs.pkru,
		.maxphyaddr = vcpu->vm->guest_maxphyaddr,
	};
	int r;

	if (!ctx->walker_stale)
		return 0;
	r = vmmu_gw_role_init(&ctx->walker, &regs);
	if (WARN_ON(r)) /* the state was checked when it was set */
		return r;
	ctx->walker_stale = false;
	return 0;
}

#define XLATE_KNOWN (VMMU_XLATE_WRITE | VMMU_XLATE_USER | VMMU_XLATE_FETCH | VMMU_XLATE_IMPLICIT)

static_assert(VMMU_XLATE_WRITE == VMMU_GW_ACCESS_WRITE && VMMU_XLATE_USER == VMMU_GW_ACCESS_USER &&
		      VMMU_XLATE_FETCH == VMMU_GW_ACCESS_FETCH &&
		      VMMU_XLATE_IMPLICIT == VMMU_GW_ACCESS_IMPLICIT,
	      "translate flags are the walker's");
static_assert(VMMU_ACC_W == VMMU_GW_ACC_W && VMMU_ACC_U == VMMU_GW_ACC_U &&
		      VMMU_ACC_X == VMMU_GW_ACC_X,
	      "rights are the walker's");

int vmmu_vcpu_translate(struct vmmu_vcpu *vcpu, uint64_t gva, unsigned access,
			struct vmmu_translation *out)
{
	struct guest_mem gm;
	struct vmmu_gw_result res;
	struct vmmu_mmu_ctx *ctx;
	uint32_t gw_access;
	int r;

	if (!vcpu || !out || (access & ~XLATE_KNOWN))
		return -EINVAL;
	if ((access & VMMU_XLATE_WRITE) && (access & VMMU_XLATE_FETCH))
		return -EINVAL;
	/* In L2 guest-physical addresses are L2's: the walk below reads L1. */
	if (vcpu->mmu_not_tdp)
		return -EOPNOTSUPP;
	if ((access & VMMU_XLATE_IMPLICIT) && (access & (VMMU_XLATE_USER | VMMU_XLATE_FETCH)))
		return -EINVAL;
	/* A/D updates are logged: a walk sets at most one bit per level, far
	 * less than the reserve behind the ring's soft limit. */
	if (vmmu_dirty_ring_soft_full(vcpu))
		return -ENOBUFS;
	ctx = &vcpu->mmu;
	r = refresh_walker(vcpu);
	if (r)
		return r;

	gw_access = access;
	if (ctx->regs.eflags_ac)
		gw_access |= VMMU_GW_ACCESS_AC;
	gm = (struct guest_mem){ .vm = vcpu->vm, .vcpu = vcpu, .as_id = vcpu->as_id };
	vmmu_rcu_read_lock();
	r = vmmu_gw_walk(&ctx->walker, &guest_mem_ops, &gm, ctx->regs.cr3, gva, gw_access, &res);
	vmmu_rcu_read_unlock();
	if (r < 0)
		return r;
	vmmu_vcpu_stat_inc(&ctx->stats.translations);

	memset(out, 0, sizeof(*out));
	switch (r) {
	case VMMU_GW_OK:
		out->gpa = res.gpa;
		out->level = res.level;
		out->access = res.access & (VMMU_ACC_W | VMMU_ACC_U | VMMU_ACC_X);
		out->pkey = res.pkey;
		return 0;
	case VMMU_GW_PAGE_FAULT:
		out->exception = VMMU_EXC_PF;
		out->error_code = res.error_code;
		out->level = res.level;
		return 0;
	case VMMU_GW_NONCANONICAL:
		out->exception = VMMU_EXC_GP;
		return 0;
	case VMMU_GW_TABLE_FAULT:
		return -EFAULT;
	case VMMU_GW_RETRY:
		return -EAGAIN;
	default:
		/* EPT statuses cannot come out of an x86 role. */
		WARN_ON(1);
		return -EFAULT;
	}
}
