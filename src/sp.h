/* SPDX-License-Identifier: MIT */
/*
 * sp.h - what vmmu knows about each of its page-table pages: the role
 * (what the table means) and the metadata kept beside it in the pool.
 * Shared by every engine that builds tables (today the TDP MMU) and by the
 * MMU front, which loads roots into vCPUs.
 */
#ifndef VMMU_SP_H
#define VMMU_SP_H

#include "platform/platform.h"
#include "platform/rcu.h"

#include <assert.h>
#include <urcu/list.h>

struct vmmu_vm;

/*
 * What a page table means.  Two tables are interchangeable only if their
 * roles (and gfns) match; a root is shared by every vCPU whose root role
 * matches.
 */
union vmmu_sp_role {
	uint32_t word;
	struct {
		uint32_t level : 4;
		uint32_t smm : 1; /* address space 1 */
		uint32_t ad_disabled : 1; /* entries use the A/D-disabled type */
		uint32_t direct : 1; /* maps gfns directly (TDP) */
		uint32_t guest_mode : 1; /* belongs to a nested guest */
		/*
		 * Shadow paging only (always 0 in a TDP root role): the guest
		 * format and the control bits that change how shadow entries
		 * must be built.  In a cpu role they describe the guest.
		 */
		uint32_t has_4_byte_gpte : 1; /* 32-bit non-PAE guest tables */
		uint32_t cr0_wp : 1;
		uint32_t efer_nx : 1;
		uint32_t smep_andnot_wp : 1;
		uint32_t smap_andnot_wp : 1;
		uint32_t reserved : 19;
	};
};

/*
 * Metadata of one page-table page (KVM's struct kvm_mmu_page), kept in the
 * pool's parallel array.  At most 64 bytes: one cache line per table.
 */
struct vmmu_sp {
	struct vmmu_vm *vm;
	uint64_t gfn; /* first gfn this table covers */
	union vmmu_sp_role role;
	int32_t root_refcount; /* roots only */
	struct cds_list_head link; /* roots: the VM's root list */
	vmmu_rcu_head rcu_head;
	uint8_t invalid; /* roots: obsolete, no new entries */
};
static_assert(sizeof(struct vmmu_sp) <= 64, "page-table metadata over budget");

#endif /* VMMU_SP_H */
