/* SPDX-License-Identifier: MIT */
/*
 * prefault_equiv.h - build the same memslots three ways (demand read
 * faults page by page, vmmu_vcpu_pre_fault_memory, VMMU_MEM_DIRECT_BUILD)
 * and check that the leaves are the same: level, host target, and every
 * bit except Accessed/Dirty (a guest fault sets A, a prefetch does not).
 * Shared by test_prefault and test_prefault_hugetlb; needs cmocka.
 */
#ifndef VMMU_TEST_PREFAULT_EQUIV_H
#define VMMU_TEST_PREFAULT_EQUIV_H

#include <vmmu/hostmem.h>
#include <vmmu/vmmu.h>

#include "spte.h"

#include <inttypes.h>
#include <stdint.h>

struct equiv_slot {
	uint32_t flags;
	uint64_t gpa;
	uint64_t size;
	uint64_t mem_off; /* offset of the slot's host memory in the allocation */
};

enum equiv_how {
	BY_DEMAND,
	BY_PREFAULT,
	BY_DIRECT_BUILD
};

static inline struct vmmu_vm *equiv_build(struct vmmu_hostmem *hm, uint8_t *mem,
					  const struct equiv_slot *s, int n, enum equiv_how how,
					  unsigned workers)
{
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;

	assert_int_equal(vmmu_vm_create(&(struct vmmu_vm_config){ .hostmem = hm,
								  .direct_build_workers = workers },
					&vm),
			 0);
	for (int i = 0; i < n; i++) {
		struct vmmu_userspace_memory_region r = {
			.slot = (uint32_t)i,
			.flags = s[i].flags | (how == BY_DIRECT_BUILD ? VMMU_MEM_DIRECT_BUILD : 0),
			.guest_phys_addr = s[i].gpa,
			.memory_size = s[i].size,
			.userspace_addr = (uintptr_t)mem + s[i].mem_off,
		};
		assert_int_equal(vmmu_set_user_memory_region(vm, &r), 0);
	}
	assert_int_equal(vmmu_vcpu_create(vm, 0, &vcpu), 0);
	for (int i = 0; i < n; i++) {
		if (how == BY_DEMAND) {
			for (uint64_t off = 0; off < s[i].size; off += 4096) {
				int r = vmmu_vcpu_page_fault(vcpu, s[i].gpa + off,
							     VMMU_EPT_ACC_READ);

				assert_true(r == VMMU_PF_FIXED || r == VMMU_PF_SPURIOUS);
			}
		} else if (how == BY_PREFAULT) {
			struct vmmu_pre_fault_memory range = { .gpa = s[i].gpa, .size = s[i].size };

			while (range.size)
				assert_int_equal(vmmu_vcpu_pre_fault_memory(vcpu, &range), 0);
			assert_int_equal(range.gpa, s[i].gpa + s[i].size);
		}
	}
	return vm;
}

/* Every page of every slot: the same leaf in @a and @b. */
static inline void equiv_compare(struct vmmu_vm *a, struct vmmu_vm *b, const struct equiv_slot *s,
				 int n)
{
	for (int i = 0; i < n; i++) {
		for (uint64_t off = 0; off < s[i].size; off += 4096) {
			uint64_t gpa = s[i].gpa + off, spte_a, spte_b;
			void *hva_a, *hva_b;
			int level_a, level_b;

			assert_int_equal(vmmu_debug_lookup(a, 0, gpa, &hva_a, &level_a, &spte_a),
					 0);
			assert_int_equal(vmmu_debug_lookup(b, 0, gpa, &hva_b, &level_b, &spte_b),
					 0);
			if (level_a != level_b || hva_a != hva_b ||
			    ((spte_a ^ spte_b) & ~(EPT_ACCESSED | EPT_DIRTY)))
				fail_msg("gpa 0x%" PRIx64
					 ": level %d vs %d, hva %p vs %p, spte 0x%" PRIx64
					 " vs 0x%" PRIx64,
					 gpa, level_a, level_b, hva_a, hva_b, spte_a, spte_b);
		}
	}
}

static inline void equiv_stats_equal(struct vmmu_vm *a, struct vmmu_vm *b)
{
	struct vmmu_vm_stats sa, sb;

	assert_int_equal(vmmu_vm_stats(a, &sa), 0);
	assert_int_equal(vmmu_vm_stats(b, &sb), 0);
	assert_int_equal(sa.pages_4k, sb.pages_4k);
	assert_int_equal(sa.pages_2m, sb.pages_2m);
	assert_int_equal(sa.pages_1g, sb.pages_1g);
}

/* Demand vs pre-fault vs direct build with 1 and 2 workers.  With
 * @first_level, demand faulting must map the first slot's first page at
 * that level (so the comparison is about the leaves we meant). */
static inline void equiv_run(struct vmmu_hostmem *hm, uint8_t *mem, const struct equiv_slot *s,
			     int n, int first_level)
{
	struct vmmu_vm *demand = equiv_build(hm, mem, s, n, BY_DEMAND, 1);
	int level;

	assert_int_equal(vmmu_debug_lookup(demand, 0, s[0].gpa, NULL, &level, NULL), 0);
	if (first_level)
		assert_int_equal(level, first_level);
	struct vmmu_vm *pre = equiv_build(hm, mem, s, n, BY_PREFAULT, 1);
	struct vmmu_vm *direct1 = equiv_build(hm, mem, s, n, BY_DIRECT_BUILD, 1);
	struct vmmu_vm *direct2 = equiv_build(hm, mem, s, n, BY_DIRECT_BUILD, 2);

	equiv_compare(demand, pre, s, n);
	equiv_compare(demand, direct1, s, n);
	equiv_compare(demand, direct2, s, n);
	equiv_stats_equal(demand, pre);
	equiv_stats_equal(demand, direct1);
	equiv_stats_equal(demand, direct2);
	assert_int_equal(vmmu_vm_destroy(demand), 0);
	assert_int_equal(vmmu_vm_destroy(pre), 0);
	assert_int_equal(vmmu_vm_destroy(direct1), 0);
	assert_int_equal(vmmu_vm_destroy(direct2), 0);
}

#endif /* VMMU_TEST_PREFAULT_EQUIV_H */
