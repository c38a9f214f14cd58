/* SPDX-License-Identifier: MIT */
/*
 * mmu_role.h - cpu role and root role of a vCPU, and its root cache.
 *
 * The cpu role says how the guest's page tables are to be read (paging
 * mode, CR0.WP, NX, SMEP, SMAP, protection keys...); the root role says
 * what vmmu's own table entries mean.  With two-dimensional paging the
 * root role ignores the guest's paging entirely; with shadow paging (not
 * built yet, but the computation is here so the split is explicit) the
 * root role is derived from the cpu role and CR0.WP belongs to it.
 *
 * Root cache: besides vcpu->root a vCPU keeps VMMU_NUM_PREV_ROOTS previous
 * roots, most recently used first, each with a reference.  A root switch
 * (vmmu_mmu_new_root) takes a root back from there when its role (and for
 * shadow roots its guest pgd) matches and it is not obsolete; otherwise it
 * leaves vcpu->root empty for vmmu_mmu_load_root to fill at the next guest
 * entry, and the least recently used entry falls out of the cache.
 * Everything here runs on the vCPU's thread, outside guest mode.
 */
#ifndef VMMU_MMU_ROLE_H
#define VMMU_MMU_ROLE_H

#include "vm_internal.h"

/*
 * 0 if @st is a state the processor accepts with guest-physical width
 * @maxphyaddr, else -EINVAL (the rules are listed at vmmu_vcpu_set_paging).
 */
int vmmu_paging_state_check(const struct vmmu_paging_state *st, unsigned maxphyaddr);

/* The cpu role of a (valid) paging state in address space @as_id. */
union vmmu_cpu_role vmmu_calc_cpu_role(const struct vmmu_paging_state *st, unsigned as_id);

/*
 * The root role for a vCPU with cpu role @cpu.  @tdp: two-dimensional
 * paging, the root maps guest-physical memory directly and looks the same
 * whatever the guest does (level from the VM, A/D from the VM, SMM from the
 * address space).  Otherwise a shadow root, whose format follows the guest:
 * level at least PAE's 3, NX always usable, CR0.WP and the SMEP/SMAP-without-WP
 * bits kept, direct only while guest paging is off.
 */
union vmmu_sp_role vmmu_calc_root_role(struct vmmu_vm *vm, union vmmu_cpu_role cpu, bool tdp);

/* The part of CR3 that names the guest's root table in mode @cpu. */
uint64_t vmmu_cpu_role_pgd(union vmmu_cpu_role cpu, uint64_t cr3);

/*
 * Switch the vCPU to a root of @role for guest root table @pgd (KVM's
 * kvm_mmu_new_pgd with the fast switch): keep the current root if it fits,
 * else take one from the cache (hit) or leave vcpu->root NULL to be loaded
 * at the next entry (miss); the old current root goes to the front of the
 * cache.  Any change of root asks the vCPU to flush its TLB.
 */
void vmmu_mmu_new_root(struct vmmu_vcpu *vcpu, uint64_t pgd, union vmmu_sp_role role);

/* Drop the current root and every cached one (KVM's kvm_mmu_unload). */
void vmmu_mmu_unload(struct vmmu_vcpu *vcpu);

/* Drop cached roots that were invalidated.  Returns how many. */
unsigned vmmu_mmu_drop_obsolete_roots(struct vmmu_vcpu *vcpu);

void vmmu_mmu_init_vcpu(struct vmmu_vcpu *vcpu);
void vmmu_mmu_destroy_vcpu(struct vmmu_vcpu *vcpu);
int vmmu_mmu_load_root(struct vmmu_vcpu *vcpu);

#endif /* VMMU_MMU_ROLE_H */
