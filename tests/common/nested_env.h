/* SPDX-License-Identifier: MIT */
/*
 * nested_env.h - an L1 world for nested tests: a VM whose L1 memory is a few
 * slots (anonymous, THP, read-only) with MMIO holes between them, EPT12
 * tables built by the test in L1 memory, and a reference EPT walk written
 * independently of vmmu's (the SDM's rules, read straight from L1 memory)
 * that says what an L2 access must end in.  Include after <cmocka.h>.
 */
#ifndef VMMU_TEST_NESTED_ENV_H
#define VMMU_TEST_NESTED_ENV_H

#include <vmmu/hostmem.h>
#include <vmmu/hw.h>
#include <vmmu/nested.h>
#include <vmmu/vmmu.h>

#include "test_util.h"

#include <string.h>

#define NE_MAX_SLOTS 4
#define NE_PT_AREA (2ull << 20) /* EPT12 tables live in L1 [0, 2 MiB) of slot 0 */
#define NE_ADDR 0x000ffffffffff000ull

struct ne_slot {
	uint64_t gpa, size;
	uint8_t *hva;
	uint32_t flags;
	enum vmmu_backing backing;
};

struct nenv {
	struct vmmu_hostmem *hm;
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	struct ne_slot slots[NE_MAX_SLOTS];
	int nslots;
	uint64_t pt_next; /* next free EPT12 table page (L1 gpa) */
};

static inline void ne_add_slot(struct nenv *e, uint64_t gpa, uint64_t size, enum vmmu_backing b,
			       uint32_t flags)
{
	struct ne_slot *s = &e->slots[e->nslots];
	struct vmmu_userspace_memory_region r;

	s->gpa = gpa;
	s->size = size;
	s->flags = flags;
	s->backing = b;
	assert_int_equal(vmmu_hostmem_alloc(e->hm, b, size, 0, (void **)&s->hva), 0);
	r = (struct vmmu_userspace_memory_region){
		.slot = (uint32_t)e->nslots,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)s->hva,
	};
	assert_int_equal(vmmu_set_user_memory_region(e->vm, &r), 0);
	e->nslots++;
}

/* VMMU_TEST_NESTED_GLOBAL_LOCK=1: the nested MMU's global-lock mode
 * (vmmu_vm_config.nested_global_lock), as CMake's *_global runs set it. */
static inline bool ne_global_lock(void)
{
	return test_env_u64("VMMU_TEST_NESTED_GLOBAL_LOCK", 0) != 0;
}

/* A VM with slot 0 at L1 [0, @size0) (anonymous): EPT12 tables and data.
 * Its nested locking mode comes from the environment (ne_global_lock). */
static inline void ne_init(struct nenv *e, uint64_t size0, struct vmmu_vm_config cfg)
{
	memset(e, 0, sizeof(*e));
	assert_int_equal(vmmu_hostmem_create(&e->hm), 0);
	cfg.hostmem = e->hm;
	cfg.nested_global_lock = ne_global_lock();
	assert_int_equal(vmmu_vm_create(&cfg, &e->vm), 0);
	assert_int_equal(vmmu_vcpu_create(e->vm, 0, &e->vcpu), 0);
	assert_int_equal(vmmu_hw_vcpu_create(e->vcpu, NULL, &e->hw), 0);
	ne_add_slot(e, 0, size0, VMMU_BACKING_ANONYMOUS, 0);
	e->pt_next = 4096; /* page 0 stays unused */
}

static inline void ne_fini(struct nenv *e)
{
	struct vmmu_nested_stats st;

	assert_int_equal(vmmu_hw_vcpu_destroy(e->hw), 0);
	assert_int_equal(vmmu_vcpu_destroy(e->vcpu), 0);
	assert_int_equal(vmmu_zap_all(e->vm), 0);
	/* Every EPT02 table back in the pool, every reverse map gone. */
	assert_int_equal(vmmu_nested_stats(e->vm, &st), 0);
	assert_int_equal(st.shadow_pages, 0);
	assert_int_equal(st.ept02_pages_4k + st.ept02_pages_2m + st.ept02_pages_1g, 0);
	assert_int_equal(st.write_tracked_gfns, 0);
	assert_int_equal(vmmu_vm_destroy(e->vm), 0);
	for (int i = 0; i < e->nslots; i++)
		assert_int_equal(vmmu_hostmem_free(e->hm, e->slots[i].hva), 0);
	assert_int_equal(vmmu_hostmem_destroy(e->hm), 0);
}

static inline struct ne_slot *ne_slot_of(struct nenv *e, uint64_t gpa)
{
	for (int i = 0; i < e->nslots; i++)
		if (gpa >= e->slots[i].gpa && gpa < e->slots[i].gpa + e->slots[i].size)
			return &e->slots[i];
	return NULL;
}

static inline uint8_t *ne_hva(struct nenv *e, uint64_t gpa)
{
	struct ne_slot *s = ne_slot_of(e, gpa);

	return s ? s->hva + (gpa - s->gpa) : NULL;
}

static inline uint64_t *ne_pte(struct nenv *e, uint64_t table, uint64_t l2gpa, int level)
{
	unsigned idx = (unsigned)(l2gpa >> (12 + 9 * (level - 1))) & 511;

	return (uint64_t *)(void *)ne_hva(e, table + idx * 8ull);
}

static inline uint64_t ne_alloc_table(struct nenv *e)
{
	uint64_t gpa = e->pt_next;

	assert_true(gpa + 4096 <= NE_PT_AREA);
	e->pt_next += 4096;
	memset(ne_hva(e, gpa), 0, 4096);
	return gpa;
}

#define EPT12_RWX 7ull
#define EPT12_WB (6ull << 3)
#define EPT12_PS (1ull << 7)
#define EPT12_A (1ull << 8)
#define EPT12_D (1ull << 9)

/*
 * Written by the host (before L2 runs, or followed by INVEPT): the entry
 * mapping @l2gpa at @level becomes @entry; missing tables above it are
 * created with all rights.  Returns false if a leaf above is in the way.
 */
static inline bool ne_set(struct nenv *e, uint64_t eptp, uint64_t l2gpa, int level, uint64_t entry)
{
	int levels = (int)((eptp >> 3) & 7) + 1;
	uint64_t table = eptp & NE_ADDR;

	for (int l = levels; l > level; l--) {
		uint64_t *p = ne_pte(e, table, l2gpa, l);

		if (!(*p & 7)) {
			*p = ne_alloc_table(e) | EPT12_RWX;
		} else if ((*p & EPT12_PS) && l <= 3) {
			return false;
		}
		table = *p & NE_ADDR;
	}
	*ne_pte(e, table, l2gpa, level) = entry;
	return true;
}

/* What an L2 access must end in, by the SDM. */
enum {
	REF_OK,
	REF_VIOLATION,
	REF_MISCONFIG
};
struct ref_result {
	int kind;
	uint64_t l1gpa;
	uint64_t qual;
	uint64_t tables[5]; /* EPT12 tables the walk read, root first */
	int ntables;
};

/* @acc: 1 read, 2 write, 4 fetch (the exit-qualification bits). */
static inline struct ref_result ne_ref_walk(struct nenv *e, uint64_t eptp, uint64_t l2gpa,
					    unsigned acc)
{
	int levels = (int)((eptp >> 3) & 7) + 1;
	uint64_t table = eptp & NE_ADDR;
	unsigned rights = 7;
	uint64_t tables[5];
	int nt = 0;
	struct ref_result res;

	for (int l = levels;; l--) {
		uint64_t ent = __atomic_load_n(ne_pte(e, table, l2gpa, l), __ATOMIC_RELAXED);

		tables[nt++] = table;
		unsigned xwr = (unsigned)(ent & 7);
		bool leaf = l == 1 || ((ent & EPT12_PS) && l <= 3);

		if (!xwr) {
			res = (struct ref_result){ REF_VIOLATION, 0, acc, { 0 }, 0 };
			goto out;
		}
		if (xwr == 2 || xwr == 6) {
			res = (struct ref_result){ REF_MISCONFIG, 0, 0, { 0 }, 0 };
			goto out;
		}
		if (leaf) {
			unsigned mt = (unsigned)(ent >> 3) & 7;
			uint64_t size = 1ull << (12 + 9 * (l - 1));

			if (mt == 2 || mt == 3 || mt == 7) {
				res = (struct ref_result){ REF_MISCONFIG, 0, 0, { 0 }, 0 };
				goto out;
			}
			if (ent & NE_ADDR & (size - 1)) {
				res = (struct ref_result){ REF_MISCONFIG, 0, 0, { 0 }, 0 };
				goto out;
			}
			rights &= xwr;
			if ((rights & acc) != acc) {
				res = (struct ref_result){
					REF_VIOLATION, 0, acc | (rights << 3), { 0 }, 0
				};
				goto out;
			}
			{
				res = (struct ref_result){
					REF_OK, (ent & NE_ADDR) | (l2gpa & (size - 1)), 0, { 0 }, 0
				};
				goto out;
			}
		}
		if (ent & 0xf8) {
			res = (struct ref_result){ REF_MISCONFIG, 0, 0, { 0 }, 0 };
			goto out;
		}
		rights &= xwr;
		table = ent & NE_ADDR;
	}
out:
	memcpy(res.tables, tables, sizeof(tables));
	res.ntables = nt;
	return res;
}

/* An L2 access through the hardware model: its return value. */
static inline int ne_access(struct nenv *e, uint64_t l2gpa, unsigned acc, uint8_t *val)
{
	int r;

	if (acc == 2)
		r = vmmu_hw_write(e->hw, l2gpa, val, 1);
	else if (acc == 4)
		r = vmmu_hw_fetch(e->hw, l2gpa, val, 1);
	else
		r = vmmu_hw_read(e->hw, l2gpa, val, 1);
	return r;
}

#endif /* VMMU_TEST_NESTED_ENV_H */
