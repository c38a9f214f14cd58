// SPDX-License-Identifier: MIT
/*
 * mmu_role.c - the vCPU's MMU context: cpu role, root role, the current
 * root and the cache of previous roots (see mmu_role.h).
 */
#include "mmu_role.h"
#include "tdp_mmu.h"

#include <string.h>

/* Reserved bits of the control registers (SDM vol. 3, 2.5 and 2.2.1). */
#define CR0_RESERVED (~0xffffffffull | 0x1ff80000ull | (1ull << 17) | 0xffc0ull)
#define CR4_RESERVED (~0x1ffffffull | (1ull << 15))
#define EFER_KNOWN                                                                         \
	(VMMU_EFER_SCE | VMMU_EFER_LME | VMMU_EFER_LMA | VMMU_EFER_NXE | (1ull << 12) |   \
	 (1ull << 13) | (1ull << 14) | (1ull << 15))

int vmmu_paging_state_check(const struct vmmu_paging_state *st, unsigned maxphyaddr)
{
	bool pg = st->cr0 & VMMU_CR0_PG;
	bool long_mode = pg && (st->efer & VMMU_EFER_LME);

	if ((st->cr0 & CR0_RESERVED) || (st->cr4 & CR4_RESERVED) || (st->efer & ~EFER_KNOWN))
		return -EINVAL;
	if (pg && !(st->cr0 & VMMU_CR0_PE))
		return -EINVAL;
	if ((st->cr0 & VMMU_CR0_NW) && !(st->cr0 & VMMU_CR0_CD))
		return -EINVAL;
	/* LMA is the processor's own: it is LME and PG, nothing else. */
	if (!!(st->efer & VMMU_EFER_LMA) != long_mode)
		return -EINVAL;
	if (long_mode && !(st->cr4 & VMMU_CR4_PAE))
		return -EINVAL;
	if ((st->cr4 & VMMU_CR4_PCIDE) && !long_mode)
		return -EINVAL;
	/* Bit 63 of CR3 is the PCID no-flush hint, never stored. */
	if (long_mode && (st->cr3 & ((1ull << 63) - 1) & ~((1ull << maxphyaddr) - 1)))
		return -EINVAL;
	if (st->cpl > 3)
		return -EINVAL;
	return 0;
}

union vmmu_cpu_role vmmu_calc_cpu_role(const struct vmmu_paging_state *st, unsigned as_id)
{
	union vmmu_cpu_role role = { .word = 0 };
	bool wp = st->cr0 & VMMU_CR0_WP;

	role.base.smm = as_id ? 1 : 0;
	role.ext.valid = 1;
	if (!(st->cr0 & VMMU_CR0_PG)) {
		/* No guest tables: guest virtual is guest physical. */
		role.base.direct = 1;
		return role;
	}
	role.ext.cr0_pg = 1;
	role.base.cr0_wp = wp;
	role.ext.cr4_pae = !!(st->cr4 & VMMU_CR4_PAE);
	role.ext.cr4_pse = !!(st->cr4 & VMMU_CR4_PSE);
	role.ext.cr4_smep = !!(st->cr4 & VMMU_CR4_SMEP);
	role.ext.cr4_smap = !!(st->cr4 & VMMU_CR4_SMAP);
	role.ext.cr4_pke = !!(st->cr4 & VMMU_CR4_PKE);
	role.ext.cr4_la57 = !!(st->cr4 & VMMU_CR4_LA57);
	role.ext.efer_lma = !!(st->efer & VMMU_EFER_LMA);
	role.base.smep_andnot_wp = role.ext.cr4_smep && !wp;
	role.base.smap_andnot_wp = role.ext.cr4_smap && !wp;
	role.base.has_4_byte_gpte = !role.ext.cr4_pae;
	/* NX only exists with 8-byte entries. */
	role.base.efer_nx = role.ext.cr4_pae && (st->efer & VMMU_EFER_NXE);
	if (role.ext.efer_lma)
		role.base.level = role.ext.cr4_la57 ? 5 : 4;
	else
		role.base.level = role.ext.cr4_pae ? 3 : 2;
	return role;
}

union vmmu_sp_role vmmu_calc_root_role(struct vmmu_vm *vm, union vmmu_cpu_role cpu, bool tdp)
{
	union vmmu_sp_role role;

	if (tdp) {
		/* Nothing of the guest's paging, so a WP toggle keeps the root. */
		role = vmmu_root_role(vm, cpu.base.smm);
		role.guest_mode = cpu.base.guest_mode;
		return role;
	}
	/*
	 * Shadow paging: entries are built from the guest's, so the bits that
	 * change how (CR0.WP, SMEP/SMAP without WP, the 4-byte format) are
	 * part of the role.  32-bit guests are shadowed with PAE-format tables
	 * and the host's NX bit is always used.
	 */
	role = cpu.base;
	if (role.level < 3)
		role.level = 3;
	role.efer_nx = 1;
	role.ad_disabled = !vm->ad_enabled;
	return role;
}

uint64_t vmmu_cpu_role_pgd(union vmmu_cpu_role cpu, uint64_t cr3)
{
	if (!cpu.ext.cr0_pg)
		return 0;
	if (cpu.ext.efer_lma)
		return cr3 & 0x000ffffffffff000ull;
	if (cpu.ext.cr4_pae)
		return cr3 & 0xffffffe0ull;
	return cr3 & 0xfffff000ull;
}

static void request_tlb_flush(struct vmmu_vcpu *vcpu)
{
	__atomic_fetch_or(&vcpu->requests, VMMU_REQ_TLB_FLUSH, __ATOMIC_SEQ_CST);
}

static bool root_obsolete(const struct vmmu_sp *sp)
{
	return READ_ONCE(sp->invalid) != 0;
}

static bool root_usable(const struct vmmu_root_info *ri, uint64_t pgd, union vmmu_sp_role role)
{
	/* A direct root maps gfns, whatever table the guest points at. */
	return ri->sp && ri->sp->role.word == role.word && (role.direct || ri->pgd == pgd) &&
	       !root_obsolete(ri->sp);
}

static void put_root(struct vmmu_vcpu *vcpu, struct vmmu_sp *sp)
{
	vmmu_tdp_mmu_put_root(vcpu->vm, sp);
}

unsigned vmmu_mmu_drop_obsolete_roots(struct vmmu_vcpu *vcpu)
{
	struct vmmu_mmu_ctx *ctx = &vcpu->mmu;
	unsigned n = 0, dropped = 0;

	for (unsigned i = 0; i < VMMU_NUM_PREV_ROOTS; i++) {
		struct vmmu_root_info ri = ctx->prev_roots[i];

		if (ri.sp && root_obsolete(ri.sp)) {
			put_root(vcpu, ri.sp);
			vmmu_vcpu_stat_inc(&ctx->stats.obsolete_roots_dropped);
			dropped++;
			continue;
		}
		ctx->prev_roots[n++] = ri; /* keeps the order, empties last */
	}
	while (n < VMMU_NUM_PREV_ROOTS)
		ctx->prev_roots[n++] = (struct vmmu_root_info){ 0 };
	return dropped;
}

void vmmu_mmu_new_root(struct vmmu_vcpu *vcpu, uint64_t pgd, union vmmu_sp_role role)
{
	struct vmmu_mmu_ctx *ctx = &vcpu->mmu;
	struct vmmu_root_info cur = { .pgd = ctx->root_pgd, .sp = vcpu->root };
	struct vmmu_root_info next[VMMU_NUM_PREV_ROOTS + 1];
	struct vmmu_root_info hit = { 0 };
	unsigned n = 0;

	ctx->root_role = role;
	if (root_usable(&cur, pgd, role)) {
		ctx->root_pgd = pgd;
		return;
	}

	/*
	 * The new cache, most recent first: the root we are leaving (unless
	 * it is missing or obsolete), then the old entries minus the one we
	 * take.  What does not fit is the least recently used: it goes.
	 */
	if (cur.sp && !root_obsolete(cur.sp))
		next[n++] = cur;
	else if (cur.sp)
		put_root(vcpu, cur.sp);
	for (unsigned i = 0; i < VMMU_NUM_PREV_ROOTS; i++) {
		struct vmmu_root_info ri = ctx->prev_roots[i];

		if (!ri.sp)
			continue;
		if (!hit.sp && root_usable(&ri, pgd, role))
			hit = ri;
		else
			next[n++] = ri;
	}
	if (n > VMMU_NUM_PREV_ROOTS) {
		put_root(vcpu, next[VMMU_NUM_PREV_ROOTS].sp);
		vmmu_vcpu_stat_inc(&ctx->stats.root_cache_evictions);
		n = VMMU_NUM_PREV_ROOTS;
	}
	for (unsigned i = 0; i < VMMU_NUM_PREV_ROOTS; i++)
		ctx->prev_roots[i] = i < n ? next[i] : (struct vmmu_root_info){ 0 };

	if (hit.sp)
		vmmu_vcpu_stat_inc(&ctx->stats.root_cache_hits);
	else
		vmmu_vcpu_stat_inc(&ctx->stats.root_cache_misses);
	/* On a miss vmmu_mmu_load_root fills the root at the next entry. */
	vcpu->root = hit.sp;
	ctx->root_pgd = pgd;
	/* The TLB holds translations of the root we left. */
	request_tlb_flush(vcpu);
}

void vmmu_mmu_unload(struct vmmu_vcpu *vcpu)
{
	struct vmmu_mmu_ctx *ctx = &vcpu->mmu;

	if (vcpu->root)
		put_root(vcpu, vcpu->root);
	vcpu->root = NULL;
	for (unsigned i = 0; i < VMMU_NUM_PREV_ROOTS; i++) {
		if (ctx->prev_roots[i].sp)
			put_root(vcpu, ctx->prev_roots[i].sp);
		ctx->prev_roots[i] = (struct vmmu_root_info){ 0 };
	}
	vmmu_vcpu_stat_inc(&ctx->stats.root_unloads);
	request_tlb_flush(vcpu);
}

/*
 * Make vcpu->root a valid root of the current root role: called at guest
 * entry and by the fault path when it is missing or obsolete, and when the
 * vCPU was asked to reload.  Cached roots that became obsolete are dropped
 * on the way (KVM's KVM_REQ_MMU_FREE_OBSOLETE_ROOTS).  No lock held.
 */
int vmmu_mmu_load_root(struct vmmu_vcpu *vcpu)
{
	struct vmmu_vm *vm = vcpu->vm;
	struct vmmu_sp *root;
	int r;

	vmmu_mmu_drop_obsolete_roots(vcpu);
	if (vcpu->root && !root_obsolete(vcpu->root))
		return 0;
	/* Only direct roots exist until there is a shadow MMU.  NESTED: a
	 * shadow root role gets its root from the nested engine here. */
	if (WARN_ON(!vcpu->mmu.root_role.direct))
		return -EINVAL;
	r = vmmu_tdp_mmu_get_root(vm, vcpu->mmu.root_role, &root);
	if (r)
		return r;
	if (vcpu->root)
		put_root(vcpu, vcpu->root);
	vcpu->root = root;
	vmmu_vcpu_stat_inc(&vcpu->mmu.stats.root_loads);
	return 0;
}

void vmmu_mmu_init_vcpu(struct vmmu_vcpu *vcpu)
{
	struct vmmu_mmu_ctx *ctx = &vcpu->mmu;
	struct vmmu_vm *vm = vcpu->vm;

	memset(ctx, 0, sizeof(*ctx));
	ctx->cpu_role = vmmu_calc_cpu_role(&ctx->regs, vcpu->as_id);
	ctx->root_role = vmmu_calc_root_role(vm, ctx->cpu_role, vm->tdp_enabled);
	ctx->walker_stale = true;
}

void vmmu_mmu_destroy_vcpu(struct vmmu_vcpu *vcpu)
{
	vmmu_mmu_unload(vcpu); /* the current and the cached roots */
}
