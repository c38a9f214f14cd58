// SPDX-License-Identifier: MIT
/*
 * test_memslot.c - KVM_SET_USER_MEMORY_REGION rules (vmmu_set_user_memory_region)
 * and the VM / vCPU creation checks.
 *
 *  - a table of bad inputs, each with the errno KVM gives, and a check that
 *    after each one the slot set is exactly what it was (gpa -> hva of every
 *    page of every slot, and of holes, in both address spaces);
 *  - the valid operations: create, flags change, move, delete, re-create,
 *    the same range in the other address space, 200 random slots compared
 *    with a reference list;
 *  - what a move or delete does to pages vCPUs had mapped: no mapping of the
 *    old range survives, pages_4k goes down by what was mapped, the vCPU
 *    sees the memory at the new gpa;
 *  - read-only slots and MMIO from the hardware model's point of view;
 *  - vmmu_vm_create / vmmu_vcpu_create argument checks.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <vmmu/hw.h>
#include <vmmu/vmmu.h>

#include "../common/test_util.h"

#define PG 4096ull
#define SLOT(as, id) (((uint32_t)(as) << 16) | (uint32_t)(id))
#define GPA_LIMIT_4L (1ull << 48)

/* ------------------------------------------------------------------------
 * Reference model of the slot set and snapshots of the library's view.
 */
struct ref_slot {
	bool used;
	uint32_t slot; /* (as << 16) | id */
	uint64_t gpa, size, hva;
};

#define MAX_REF 512
struct model {
	struct ref_slot s[MAX_REF];
};

struct probe {
	unsigned as;
	uint64_t gpa;
	int rc;
	void *hva;
};

struct snapshot {
	int n;
	struct probe p[1 << 16];
};

static struct ref_slot *model_find(struct model *m, uint32_t slot)
{
	for (int i = 0; i < MAX_REF; i++)
		if (m->s[i].used && m->s[i].slot == slot)
			return &m->s[i];
	return NULL;
}

static void model_set(struct model *m, uint32_t slot, uint64_t gpa, uint64_t size, uint64_t hva)
{
	struct ref_slot *r = model_find(m, slot);

	if (!size) {
		if (r)
			r->used = false;
		return;
	}
	if (!r) {
		for (int i = 0; i < MAX_REF && !r; i++)
			if (!m->s[i].used)
				r = &m->s[i];
	}
	assert_non_null(r);
	*r = (struct ref_slot){ true, slot, gpa, size, hva };
}

/* What the model says gpa_to_hva must return. */
static int model_lookup(const struct model *m, unsigned as, uint64_t gpa, uint64_t *hva)
{
	for (int i = 0; i < MAX_REF; i++) {
		const struct ref_slot *r = &m->s[i];

		if (!r->used || (r->slot >> 16) != as)
			continue;
		if (gpa >= r->gpa && gpa - r->gpa < r->size) {
			*hva = r->hva + (gpa - r->gpa);
			return 0;
		}
	}
	return -ENOENT;
}

static void snap_add(struct snapshot *sn, unsigned as, uint64_t gpa)
{
	if (sn->n >= (int)(sizeof(sn->p) / sizeof(sn->p[0])))
		fail_msg("snapshot too small");
	sn->p[sn->n++] = (struct probe){ .as = as, .gpa = gpa };
}

/* Probe every page boundary of every model slot (and a byte inside it),
 * the pages around each slot, and some fixed holes, in both spaces. */
static void snapshot_take(struct vmmu_vm *vm, const struct model *m, struct snapshot *sn)
{
	sn->n = 0;
	for (unsigned as = 0; as < VMMU_ADDRESS_SPACES; as++) {
		snap_add(sn, as, 0);
		snap_add(sn, as, 0x7ff000);
		snap_add(sn, as, GPA_LIMIT_4L - PG);
		for (int i = 0; i < MAX_REF; i++) {
			const struct ref_slot *r = &m->s[i];

			if (!r->used)
				continue;
			if (r->gpa >= PG)
				snap_add(sn, as, r->gpa - PG);
			for (uint64_t off = 0; off < r->size && off < 256 * PG; off += PG) {
				snap_add(sn, as, r->gpa + off);
				snap_add(sn, as, r->gpa + off + 0x123);
			}
			snap_add(sn, as, r->gpa + r->size - 1);
			snap_add(sn, as, r->gpa + r->size);
		}
	}
	for (int i = 0; i < sn->n; i++) {
		sn->p[i].hva = NULL;
		sn->p[i].rc = vmmu_gpa_to_hva(vm, sn->p[i].as, sn->p[i].gpa, &sn->p[i].hva);
	}
}

/* The library agrees with the model at every probe of a fresh snapshot. */
static void check_against_model(struct vmmu_vm *vm, const struct model *m)
{
	static struct snapshot sn;

	snapshot_take(vm, m, &sn);
	for (int i = 0; i < sn.n; i++) {
		uint64_t want = 0;
		int rc = model_lookup(m, sn.p[i].as, sn.p[i].gpa, &want);

		if (rc != sn.p[i].rc || (rc == 0 && (uint64_t)(uintptr_t)sn.p[i].hva != want)) {
			fail_msg("as %u gpa %#llx: got rc %d hva %p, model rc %d hva %#llx",
				 sn.p[i].as, (unsigned long long)sn.p[i].gpa, sn.p[i].rc,
				 sn.p[i].hva, rc, (unsigned long long)want);
		}
	}
}

static int set_region(struct vmmu_vm *vm, uint32_t slot, uint32_t flags, uint64_t gpa,
		      uint64_t size, uint64_t hva)
{
	struct vmmu_userspace_memory_region r = {
		.slot = slot,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = hva,
	};

	return vmmu_set_user_memory_region(vm, &r);
}

/* Create in the library and in the model; must succeed. */
static void must_set(struct vmmu_vm *vm, struct model *m, uint32_t slot, uint32_t flags,
		     uint64_t gpa, uint64_t size, uint64_t hva)
{
	int r = set_region(vm, slot, flags, gpa, size, hva);

	if (r)
		fail_msg("set slot %#x gpa %#llx size %#llx hva %#llx: %d", slot,
			 (unsigned long long)gpa, (unsigned long long)size,
			 (unsigned long long)hva, r);
	model_set(m, slot, gpa, size, hva);
}

static struct vmmu_vm *vm_new(unsigned root_level)
{
	struct vmmu_vm_config cfg = { .root_level = root_level };
	struct vmmu_vm *vm = NULL;

	assert_int_equal(vmmu_vm_create(&cfg, &vm), 0);
	assert_non_null(vm);
	return vm;
}

static uint64_t pages_4k(struct vmmu_vm *vm)
{
	struct vmmu_vm_stats st;

	assert_int_equal(vmmu_vm_stats(vm, &st), 0);
	return st.pages_4k;
}

/* ------------------------------------------------------------------------
 * Bad inputs.
 */

/* Slots present while the bad inputs are tried (fake host addresses: no
 * access ever goes through them). */
#define HVA_A 0x10000000000ull
#define HVA_B 0x20000000000ull
#define HVA_C 0x30000000000ull
#define A_GPA 0x100000ull   /* slot 0 in space 0: [1 MiB, 1 MiB + 64 KiB) */
#define A_SIZE 0x10000ull
#define B_GPA 0x200000ull   /* slot 5 in space 0: [2 MiB, 2 MiB + 32 KiB) */
#define B_SIZE 0x8000ull
#define C_GPA 0x100000ull   /* slot 0 in space 1: same range as A */
#define C_SIZE 0x4000ull
#define R_GPA 0x400000ull   /* slot 7 in space 0, read-only */
#define R_SIZE 0x2000ull

struct bad_case {
	const char *what;
	uint32_t slot, flags;
	uint64_t gpa, size, hva;
	int err;
};

static const struct bad_case bad_cases[] = {
	/* alignment */
	{ "gpa not page aligned", SLOT(0, 1), 0, 0x1000800, PG, HVA_C, -EINVAL },
	{ "gpa off by one", SLOT(0, 1), 0, 0x1000001, PG, HVA_C, -EINVAL },
	{ "size not page aligned", SLOT(0, 1), 0, 0x1000000, PG + 1, HVA_C, -EINVAL },
	{ "size below a page", SLOT(0, 1), 0, 0x1000000, 0x800, HVA_C, -EINVAL },
	{ "hva not page aligned", SLOT(0, 1), 0, 0x1000000, PG, HVA_C + 8, -EINVAL },
	{ "delete with unaligned gpa", SLOT(0, 0), 0, A_GPA + 1, 0, HVA_A, -EINVAL },
	/* flags */
	{ "unknown flag bit 2", SLOT(0, 1), 1u << 2, 0x1000000, PG, HVA_C, -EINVAL },
	{ "unknown flag bit 31", SLOT(0, 1), 1u << 31, 0x1000000, PG, HVA_C, -EINVAL },
	{ "unknown flag with known ones", SLOT(0, 1),
	  VMMU_MEM_LOG_DIRTY_PAGES | VMMU_MEM_READONLY | (1u << 7), 0x1000000, PG, HVA_C,
	  -EINVAL },
	/* slot number */
	{ "address space 2", SLOT(2, 1), 0, 0x1000000, PG, HVA_C, -EINVAL },
	{ "address space 0xffff", SLOT(0xffff, 1), 0, 0x1000000, PG, HVA_C, -EINVAL },
	{ "id == VMMU_USER_MEM_SLOTS", SLOT(0, VMMU_USER_MEM_SLOTS), 0, 0x1000000, PG, HVA_C,
	  -EINVAL },
	{ "id 0xffff", SLOT(0, 0xffff), 0, 0x1000000, PG, HVA_C, -EINVAL },
	{ "id out of range in space 1", SLOT(1, VMMU_USER_MEM_SLOTS + 1), 0, 0x1000000, PG,
	  HVA_C, -EINVAL },
	/* overflow and range */
	{ "gpa + size overflows", SLOT(0, 1), 0, 0xfffffffffffff000ull, 2 * PG, HVA_C,
	  -EINVAL },
	{ "gpa + size overflows (huge size)", SLOT(0, 1), 0, 0x1000000, 0xfffffffffffff000ull,
	  HVA_C, -EINVAL },
	{ "hva + size overflows", SLOT(0, 1), 0, 0x1000000, 2 * PG, 0xfffffffffffff000ull,
	  -EINVAL },
	{ "gpa + size > 2^48 by a page", SLOT(0, 1), 0, GPA_LIMIT_4L - PG, 2 * PG, HVA_C,
	  -EINVAL },
	{ "gpa == 2^48", SLOT(0, 1), 0, GPA_LIMIT_4L, PG, HVA_C, -EINVAL },
	{ "gpa at 2^52", SLOT(0, 1), 0, 1ull << 52, PG, HVA_C, -EINVAL },
	{ "gpa at 2^48 in space 1", SLOT(1, 1), 0, GPA_LIMIT_4L, PG, HVA_C, -EINVAL },
	/* overlaps with A (slot 0, space 0) */
	{ "overlap: head of A", SLOT(0, 1), 0, A_GPA - 2 * PG, 3 * PG, HVA_C, -EEXIST },
	{ "overlap: tail of A", SLOT(0, 1), 0, A_GPA + A_SIZE - PG, 4 * PG, HVA_C, -EEXIST },
	{ "overlap: inside A", SLOT(0, 1), 0, A_GPA + 4 * PG, 2 * PG, HVA_C, -EEXIST },
	{ "overlap: contains A", SLOT(0, 1), 0, A_GPA - PG, A_SIZE + 2 * PG, HVA_C, -EEXIST },
	{ "overlap: identical to A", SLOT(0, 1), 0, A_GPA, A_SIZE, HVA_C, -EEXIST },
	{ "overlap: first page of A", SLOT(0, 1), 0, A_GPA, PG, HVA_C, -EEXIST },
	{ "overlap: last page of A", SLOT(0, 1), 0, A_GPA + A_SIZE - PG, PG, HVA_C, -EEXIST },
	{ "overlap: A and B", SLOT(0, 1), 0, A_GPA, B_GPA + B_SIZE - A_GPA, HVA_C, -EEXIST },
	{ "overlap: A's range, A's hva", SLOT(0, 1), 0, A_GPA, A_SIZE, HVA_A, -EEXIST },
	{ "overlap: move B onto A", SLOT(0, 5), 0, A_GPA + PG, B_SIZE, HVA_B, -EEXIST },
	{ "overlap: move B onto A's tail", SLOT(0, 5), 0, A_GPA + A_SIZE - PG, B_SIZE, HVA_B,
	  -EEXIST },
	{ "overlap in space 1 with C", SLOT(1, 1), 0, C_GPA + PG, PG, HVA_C, -EEXIST },
	/* changes that an existing slot does not allow */
	{ "grow A", SLOT(0, 0), 0, A_GPA, A_SIZE + PG, HVA_A, -EINVAL },
	{ "shrink A", SLOT(0, 0), 0, A_GPA, A_SIZE - PG, HVA_A, -EINVAL },
	{ "new hva for A", SLOT(0, 0), 0, A_GPA, A_SIZE, HVA_C, -EINVAL },
	{ "move A with a new size", SLOT(0, 0), 0, 0x5000000, A_SIZE + PG, HVA_A, -EINVAL },
	{ "move A with a new hva", SLOT(0, 0), 0, 0x5000000, A_SIZE, HVA_C, -EINVAL },
	{ "set READONLY on A", SLOT(0, 0), VMMU_MEM_READONLY, A_GPA, A_SIZE, HVA_A, -EINVAL },
	{ "clear READONLY on R", SLOT(0, 7), 0, R_GPA, R_SIZE, HVA_C + 0x100000, -EINVAL },
	{ "clear READONLY on R, log dirty", SLOT(0, 7), VMMU_MEM_LOG_DIRTY_PAGES, R_GPA, R_SIZE,
	  HVA_C + 0x100000, -EINVAL },
	{ "move R and clear READONLY", SLOT(0, 7), 0, 0x6000000, R_SIZE, HVA_C + 0x100000,
	  -EINVAL },
	{ "resize C in space 1", SLOT(1, 0), 0, C_GPA, 2 * C_SIZE, HVA_C, -EINVAL },
	/* delete of a slot that does not exist */
	{ "delete unknown id", SLOT(0, 1), 0, 0x1000000, 0, HVA_C, -EINVAL },
	{ "delete unknown id at A's gpa", SLOT(0, 2), 0, A_GPA, 0, HVA_A, -EINVAL },
	{ "delete id 5 in space 1 (exists in 0)", SLOT(1, 5), 0, B_GPA, 0, HVA_B, -EINVAL },
	{ "delete last valid id", SLOT(0, VMMU_USER_MEM_SLOTS - 1), 0, 0, 0, 0, -EINVAL },
};

static void setup_fixture(struct vmmu_vm *vm, struct model *m)
{
	must_set(vm, m, SLOT(0, 0), 0, A_GPA, A_SIZE, HVA_A);
	must_set(vm, m, SLOT(0, 5), VMMU_MEM_LOG_DIRTY_PAGES, B_GPA, B_SIZE, HVA_B);
	must_set(vm, m, SLOT(1, 0), 0, C_GPA, C_SIZE, HVA_C);
	must_set(vm, m, SLOT(0, 7), VMMU_MEM_READONLY, R_GPA, R_SIZE, HVA_C + 0x100000);
}

static void test_bad_inputs_table(void **state)
{
	static struct model m;
	static struct snapshot before, after;
	struct vmmu_vm *vm = vm_new(0);

	(void)state;
	memset(&m, 0, sizeof(m));
	setup_fixture(vm, &m);
	check_against_model(vm, &m);
	snapshot_take(vm, &m, &before);

	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		int r = set_region(vm, c->slot, c->flags, c->gpa, c->size, c->hva);

		if (r != c->err)
			fail_msg("case %zu \"%s\": got %d, want %d", i, c->what, r, c->err);
		snapshot_take(vm, &m, &after);
		assert_int_equal(before.n, after.n);
		for (int k = 0; k < before.n; k++) {
			if (before.p[k].rc != after.p[k].rc || before.p[k].hva != after.p[k].hva)
				fail_msg("case \"%s\" changed as %u gpa %#llx: rc %d->%d hva %p->%p",
					 c->what, before.p[k].as,
					 (unsigned long long)before.p[k].gpa, before.p[k].rc,
					 after.p[k].rc, before.p[k].hva, after.p[k].hva);
		}
	}

	/* NULL arguments. */
	{
		struct vmmu_userspace_memory_region r = { .slot = SLOT(0, 1),
							  .guest_phys_addr = 0x1000000,
							  .memory_size = PG,
							  .userspace_addr = HVA_C };

		assert_int_equal(vmmu_set_user_memory_region(NULL, &r), -EINVAL);
		assert_int_equal(vmmu_set_user_memory_region(vm, NULL), -EINVAL);
	}
	/* gpa_to_hva argument checks. */
	{
		void *h;

		assert_int_equal(vmmu_gpa_to_hva(NULL, 0, A_GPA, &h), -EINVAL);
		assert_int_equal(vmmu_gpa_to_hva(vm, 0, A_GPA, NULL), -EINVAL);
		assert_int_equal(vmmu_gpa_to_hva(vm, VMMU_ADDRESS_SPACES, A_GPA, &h), -EINVAL);
	}
	check_against_model(vm, &m);

	/* The same range in the other address space is no overlap. */
	must_set(vm, &m, SLOT(1, 1), 0, A_GPA + C_SIZE, A_SIZE - C_SIZE, HVA_C + 0x200000);
	must_set(vm, &m, SLOT(1, 5), 0, B_GPA, B_SIZE, HVA_B + 0x100000);
	must_set(vm, &m, SLOT(1, 7), 0, R_GPA, R_SIZE, HVA_B + 0x200000);
	check_against_model(vm, &m);
	/* ... while in the same space it still is. */
	assert_int_equal(set_region(vm, SLOT(0, 9), 0, B_GPA, B_SIZE, HVA_C), -EEXIST);
	/* Touching but not overlapping is fine, on both sides. */
	must_set(vm, &m, SLOT(0, 10), 0, A_GPA - 4 * PG, 4 * PG, HVA_C + 0x300000);
	must_set(vm, &m, SLOT(0, 11), 0, A_GPA + A_SIZE, B_GPA - (A_GPA + A_SIZE),
		 HVA_C + 0x400000);
	must_set(vm, &m, SLOT(0, 12), 0, B_GPA + B_SIZE, PG, HVA_C + 0x500000);
	/* The last page below 2^48 and the largest id are valid. */
	must_set(vm, &m, SLOT(0, VMMU_USER_MEM_SLOTS - 1), 0, GPA_LIMIT_4L - PG, PG,
		 HVA_C + 0x600000);
	must_set(vm, &m, SLOT(1, VMMU_USER_MEM_SLOTS - 1), VMMU_MEM_READONLY, 0, PG,
		 HVA_C + 0x700000);
	/* Re-setting a slot exactly as it is changes nothing and succeeds. */
	must_set(vm, &m, SLOT(0, 0), 0, A_GPA, A_SIZE, HVA_A);
	check_against_model(vm, &m);

	assert_int_equal(vmmu_vm_destroy(vm), 0);
}

/* ------------------------------------------------------------------------
 * Valid operations, no vCPU.
 */
static void test_valid_ops(void **state)
{
	static struct model m;
	struct vmmu_vm *vm = vm_new(0);
	void *h;

	(void)state;
	memset(&m, 0, sizeof(m));
	must_set(vm, &m, SLOT(0, 3), 0, 0x40000000, 16 * PG, HVA_A);
	check_against_model(vm, &m);

	/* Flags on and off: translations unchanged. */
	must_set(vm, &m, SLOT(0, 3), VMMU_MEM_LOG_DIRTY_PAGES, 0x40000000, 16 * PG, HVA_A);
	check_against_model(vm, &m);
	assert_int_equal(vmmu_gpa_to_hva(vm, 0, 0x40000000 + 5 * PG + 7, &h), 0);
	assert_ptr_equal(h, (void *)(uintptr_t)(HVA_A + 5 * PG + 7));
	must_set(vm, &m, SLOT(0, 3), 0, 0x40000000, 16 * PG, HVA_A);
	check_against_model(vm, &m);

	/* Move: old range gone, new one maps the same host memory. */
	must_set(vm, &m, SLOT(0, 3), 0, 0x80000000, 16 * PG, HVA_A);
	check_against_model(vm, &m);
	for (uint64_t off = 0; off < 16 * PG; off += PG) {
		assert_int_equal(vmmu_gpa_to_hva(vm, 0, 0x40000000 + off, &h), -ENOENT);
		assert_int_equal(vmmu_gpa_to_hva(vm, 0, 0x80000000 + off, &h), 0);
		assert_ptr_equal(h, (void *)(uintptr_t)(HVA_A + off));
	}
	/* A move onto a range overlapping its own old range is allowed. */
	must_set(vm, &m, SLOT(0, 3), 0, 0x80000000 + 4 * PG, 16 * PG, HVA_A);
	check_against_model(vm, &m);
	/* The freed range can be taken by another slot. */
	must_set(vm, &m, SLOT(0, 4), 0, 0x80000000, 4 * PG, HVA_B);
	check_against_model(vm, &m);

	/* Delete; then the range is free and the id can be re-used. */
	must_set(vm, &m, SLOT(0, 3), 0, 0, 0, 0);
	check_against_model(vm, &m);
	assert_int_equal(vmmu_gpa_to_hva(vm, 0, 0x80000000 + 4 * PG, &h), -ENOENT);
	assert_int_equal(set_region(vm, SLOT(0, 3), 0, 0, 0, 0), -EINVAL); /* gone */
	must_set(vm, &m, SLOT(0, 5), 0, 0x80000000 + 4 * PG, 16 * PG, HVA_C);
	must_set(vm, &m, SLOT(0, 3), VMMU_MEM_READONLY, 0x40000000, 8 * PG, HVA_B + 0x10000);
	check_against_model(vm, &m);
	/* The re-created slot is a new slot: its READONLY flag is its own. */
	must_set(vm, &m, SLOT(0, 3), VMMU_MEM_READONLY | VMMU_MEM_LOG_DIRTY_PAGES, 0x40000000,
		 8 * PG, HVA_B + 0x10000);
	assert_int_equal(set_region(vm, SLOT(0, 3), 0, 0x40000000, 8 * PG, HVA_B + 0x10000),
			 -EINVAL);
	check_against_model(vm, &m);

	assert_int_equal(vmmu_vm_destroy(vm), 0);
}

/* 200 random non-overlapping slots across both address spaces, random
 * lookups compared with the reference list, then random deletes, moves and
 * rejected overlaps. */
static void test_many_random_slots(void **state)
{
	static struct model m;
	struct test_rng rng;
	struct vmmu_vm *vm = vm_new(0);
	const uint64_t span_gfns = 1ull << 16; /* 256 MiB of gpa space: some clash */
	int created = 0, overlaps = 0;

	(void)state;
	memset(&m, 0, sizeof(m));
	test_rng_init(&rng, test_seed() ^ 0x5107);

	while (created < 200) {
		unsigned as = (unsigned)test_rng_below(&rng, 2);
		unsigned id = (unsigned)test_rng_below(&rng, VMMU_USER_MEM_SLOTS);
		uint64_t gfn = test_rng_below(&rng, span_gfns);
		uint64_t npages = test_rng_range(&rng, 1, 64);
		uint64_t hva = 0x100000000000ull + test_rng_below(&rng, 1ull << 30) * PG;
		bool clash = false;
		int r;

		if (model_find(&m, SLOT(as, id)))
			continue;
		for (int i = 0; i < MAX_REF; i++) {
			const struct ref_slot *s = &m.s[i];
			uint64_t g = gfn * PG, e = (gfn + npages) * PG;

			if (s->used && (s->slot >> 16) == as && g < s->gpa + s->size && s->gpa < e)
				clash = true;
		}
		r = set_region(vm, SLOT(as, id), 0, gfn * PG, npages * PG, hva);
		if (clash) {
			assert_int_equal(r, -EEXIST);
			overlaps++;
			continue;
		}
		assert_int_equal(r, 0);
		model_set(&m, SLOT(as, id), gfn * PG, npages * PG, hva);
		created++;
	}
	check_against_model(vm, &m);

	/* Random gfns: mostly holes, compared with the model. */
	for (int i = 0; i < 20000; i++) {
		unsigned as = (unsigned)test_rng_below(&rng, 2);
		uint64_t gpa = test_rng_below(&rng, span_gfns + 64) * PG + test_rng_below(&rng, PG);
		uint64_t want = 0;
		void *h = NULL;
		int wr = model_lookup(&m, as, gpa, &want);
		int r = vmmu_gpa_to_hva(vm, as, gpa, &h);

		assert_int_equal(r, wr);
		if (!r)
			assert_int_equal((uint64_t)(uintptr_t)h, want);
	}

	/* Delete about half, move a few, try overlapping moves. */
	for (int i = 0; i < MAX_REF; i++) {
		struct ref_slot *s = &m.s[i];

		if (!s->used)
			continue;
		switch (test_rng_below(&rng, 4)) {
		case 0:
		case 1:
			must_set(vm, &m, s->slot, 0, s->gpa, 0, s->hva);
			break;
		case 2: {
			uint64_t ng = test_rng_below(&rng, span_gfns) * PG;
			bool clash = false;
			int r;

			for (int k = 0; k < MAX_REF; k++) {
				const struct ref_slot *o = &m.s[k];

				if (o->used && o != s && (o->slot >> 16) == (s->slot >> 16) &&
				    ng < o->gpa + o->size && o->gpa < ng + s->size)
					clash = true;
			}
			r = set_region(vm, s->slot, 0, ng, s->size, s->hva);
			assert_int_equal(r, clash ? -EEXIST : 0);
			if (!r)
				s->gpa = ng;
			break;
		}
		default:
			break;
		}
	}
	check_against_model(vm, &m);
	print_message("200 slots, %d overlapping attempts rejected\n", overlaps);
	assert_int_equal(vmmu_vm_destroy(vm), 0);
}

/* ------------------------------------------------------------------------
 * With vCPUs: mappings of moved and deleted slots.
 */
struct env {
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
};

static void env_init(struct env *e, unsigned root_level)
{
	e->vm = vm_new(root_level);
	assert_int_equal(vmmu_vcpu_create(e->vm, 0, &e->vcpu), 0);
	assert_int_equal(vmmu_hw_vcpu_create(e->vcpu, NULL, &e->hw), 0);
}

static void env_fini(struct env *e)
{
	assert_int_equal(vmmu_hw_vcpu_destroy(e->hw), 0);
	assert_int_equal(vmmu_vm_destroy(e->vm), 0);
}

#define MV_PAGES 64

static void test_move_delete_with_mappings(void **state)
{
	struct env e;
	size_t sz = MV_PAGES * PG;
	uint8_t *mem = test_mmap(sz), *mem2 = test_mmap(sz);
	const uint64_t g0 = 0x40000000, g1 = 0x7fe00000, g2 = 0x10000000;
	uint64_t base4k;
	void *h;
	int lvl;

	(void)state;
	assert_non_null(mem);
	assert_non_null(mem2);
	env_init(&e, 0);
	assert_int_equal(set_region(e.vm, SLOT(0, 1), 0, g0, sz, (uintptr_t)mem), 0);
	/* A neighbour that must keep its mapping. */
	assert_int_equal(set_region(e.vm, SLOT(0, 2), 0, g2, sz, (uintptr_t)mem2), 0);
	assert_int_equal(vmmu_hw_write(e.hw, g2, "n", 1), 0);
	base4k = pages_4k(e.vm);
	assert_int_equal(base4k, 1);

	/* Fault in 3 of every 4 pages by writing a tag to each. */
	uint64_t mapped = 0;
	for (uint64_t i = 0; i < MV_PAGES; i++) {
		uint64_t v = 0xabc0000000ull | i;

		if (i % 4 == 3)
			continue;
		assert_int_equal(vmmu_hw_write(e.hw, g0 + i * PG + 16, &v, 8), 0);
		mapped++;
	}
	assert_int_equal(pages_4k(e.vm), base4k + mapped);
	for (uint64_t i = 0; i < MV_PAGES; i++) {
		int r = vmmu_debug_lookup(e.vm, 0, g0 + i * PG + 5, &h, &lvl, NULL);

		if (i % 4 == 3) {
			assert_int_equal(r, -ENOENT);
			continue;
		}
		assert_int_equal(r, 0);
		assert_int_equal(lvl, 1);
		assert_ptr_equal(h, mem + i * PG + 5);
	}
	/* A flags change keeps the translation of the slot. */
	assert_int_equal(vmmu_hw_guest_exit(e.hw), 0);
	assert_int_equal(set_region(e.vm, SLOT(0, 1), VMMU_MEM_LOG_DIRTY_PAGES, g0, sz,
				    (uintptr_t)mem),
			 0);
	assert_int_equal(set_region(e.vm, SLOT(0, 1), 0, g0, sz, (uintptr_t)mem), 0);
	assert_int_equal(vmmu_gpa_to_hva(e.vm, 0, g0 + 3 * PG, &h), 0);
	assert_ptr_equal(h, mem + 3 * PG);

	/* Move.  The vCPU must leave guest mode: the flush waits for it. */
	assert_int_equal(vmmu_hw_guest_exit(e.hw), 0);
	assert_int_equal(set_region(e.vm, SLOT(0, 1), 0, g1, sz, (uintptr_t)mem), 0);
	for (uint64_t i = 0; i < MV_PAGES; i++) {
		assert_int_equal(vmmu_debug_lookup(e.vm, 0, g0 + i * PG, &h, &lvl, NULL), -ENOENT);
		assert_int_equal(vmmu_debug_lookup(e.vm, 0, g1 + i * PG, &h, &lvl, NULL), -ENOENT);
		assert_int_equal(vmmu_gpa_to_hva(e.vm, 0, g0 + i * PG, &h), -ENOENT);
		assert_int_equal(vmmu_gpa_to_hva(e.vm, 0, g1 + i * PG, &h), 0);
		assert_ptr_equal(h, mem + i * PG);
	}
	assert_int_equal(pages_4k(e.vm), base4k);
	/* The neighbour is intact. */
	assert_int_equal(vmmu_debug_lookup(e.vm, 0, g2, &h, &lvl, NULL), 0);
	assert_ptr_equal(h, mem2);

	/* The old gpa is MMIO now (even though the TLB had it); the new gpa
	 * shows the data written before the move. */
	{
		uint64_t v = 0;

		assert_int_equal(vmmu_hw_read(e.hw, g0 + 16, &v, 8), -EFAULT);
		assert_int_equal(vmmu_hw_write(e.hw, g0 + 16, &v, 8), -EFAULT);
		for (uint64_t i = 0; i < MV_PAGES; i++) {
			assert_int_equal(vmmu_hw_read(e.hw, g1 + i * PG + 16, &v, 8), 0);
			assert_int_equal(v, i % 4 == 3 ? 0 : (0xabc0000000ull | i));
		}
	}
	assert_int_equal(pages_4k(e.vm), base4k + MV_PAGES);

	/* Delete with everything mapped. */
	assert_int_equal(vmmu_hw_guest_exit(e.hw), 0);
	assert_int_equal(set_region(e.vm, SLOT(0, 1), 0, g1, 0, (uintptr_t)mem), 0);
	for (uint64_t i = 0; i < MV_PAGES; i++) {
		assert_int_equal(vmmu_debug_lookup(e.vm, 0, g1 + i * PG, &h, &lvl, NULL), -ENOENT);
		assert_int_equal(vmmu_gpa_to_hva(e.vm, 0, g1 + i * PG, &h), -ENOENT);
	}
	assert_int_equal(pages_4k(e.vm), base4k);
	assert_int_equal(vmmu_debug_lookup(e.vm, 0, g2, &h, &lvl, NULL), 0);
	{
		uint64_t v = 1;

		assert_int_equal(vmmu_hw_read(e.hw, g1 + 16, &v, 8), -EFAULT);
	}

	/* Re-create the same id at the same gpa over other memory: the vCPU
	 * sees the new memory. */
	memset(mem2 + PG, 0x5a, PG);
	assert_int_equal(vmmu_hw_guest_exit(e.hw), 0);
	assert_int_equal(set_region(e.vm, SLOT(0, 1), 0, g1, PG, (uintptr_t)(mem2 + PG)), 0);
	{
		uint64_t v = 0;

		assert_int_equal(vmmu_hw_read(e.hw, g1 + 16, &v, 8), 0);
		assert_int_equal(v, 0x5a5a5a5a5a5a5a5aull);
		v = 77;
		assert_int_equal(vmmu_hw_write(e.hw, g1 + 24, &v, 8), 0);
		assert_int_equal(*(uint64_t *)(mem2 + PG + 24), 77);
		assert_int_equal(*(uint64_t *)(mem + 24), 0);
	}
	assert_int_equal(vmmu_debug_lookup(e.vm, 0, g1, &h, &lvl, NULL), 0);
	assert_ptr_equal(h, mem2 + PG);
	assert_int_equal(pages_4k(e.vm), base4k + 1);

	env_fini(&e);
	test_munmap(mem, sz);
	test_munmap(mem2, sz);
}

/* Read-only slot: reads work and see host memory, writes are -EFAULT and
 * change nothing, also after the page was mapped by a read.  No slot: MMIO. */
static void test_readonly_and_mmio(void **state)
{
	struct env e;
	uint8_t *mem = test_mmap(4 * PG);
	uint64_t v;
	void *h;
	int lvl;
	uint64_t spte;

	(void)state;
	assert_non_null(mem);
	env_init(&e, 0);
	memset(mem, 0x11, 4 * PG);
	assert_int_equal(set_region(e.vm, SLOT(0, 1), VMMU_MEM_READONLY, 0x100000, 4 * PG,
				    (uintptr_t)mem),
			 0);

	/* Write first, never mapped: -EFAULT. */
	v = 0xdead;
	assert_int_equal(vmmu_hw_write(e.hw, 0x100000 + 8, &v, 8), -EFAULT);
	assert_int_equal(*(uint64_t *)(mem + 8), 0x1111111111111111ull);
	/* Read: works. */
	v = 0;
	assert_int_equal(vmmu_hw_read(e.hw, 0x100000 + 8, &v, 8), 0);
	assert_int_equal(v, 0x1111111111111111ull);
	assert_int_equal(vmmu_debug_lookup(e.vm, 0, 0x100000 + 8, &h, &lvl, &spte), 0);
	assert_ptr_equal(h, mem + 8);
	assert_int_equal(lvl, 1);
	/* Write after the read mapped it: still -EFAULT, nothing written. */
	v = 0xdead;
	assert_int_equal(vmmu_hw_write(e.hw, 0x100000 + 8, &v, 8), -EFAULT);
	assert_int_equal(vmmu_hw_write(e.hw, 0x100000 + 4 * PG - 1, "x", 1), -EFAULT);
	for (size_t i = 0; i < 4 * PG; i++)
		if (mem[i] != 0x11)
			fail_msg("read-only slot written at offset %zu", i);
	/* A write spanning two pages of the slot fails too. */
	assert_int_equal(vmmu_hw_write(e.hw, 0x100000 + PG - 4, &v, 8), -EFAULT);
	/* Reads still work afterwards; a fetch works (read-only is not no-exec). */
	assert_int_equal(vmmu_hw_read(e.hw, 0x100000 + 2 * PG, &v, 8), 0);
	assert_int_equal(v, 0x1111111111111111ull);
	assert_int_equal(vmmu_hw_fetch(e.hw, 0x100000 + 3 * PG, &v, 4), 0);

	/* No slot at all: reads and writes are MMIO (-EFAULT), nothing mapped. */
	assert_int_equal(vmmu_hw_write(e.hw, 0x200000, &v, 8), -EFAULT);
	assert_int_equal(vmmu_hw_read(e.hw, 0x200000, &v, 8), -EFAULT);
	assert_int_equal(vmmu_hw_write(e.hw, 0x100000 - 8, &v, 8), -EFAULT);
	assert_int_equal(vmmu_debug_lookup(e.vm, 0, 0x200000, &h, &lvl, NULL), -ENOENT);
	/* Beyond the 48-bit width: -EINVAL. */
	assert_int_equal(vmmu_hw_read(e.hw, GPA_LIMIT_4L, &v, 8), -EINVAL);
	assert_int_equal(vmmu_debug_lookup(e.vm, 0, GPA_LIMIT_4L, &h, &lvl, NULL), -EINVAL);

	{
		struct vmmu_vcpu_stats st;

		assert_int_equal(vmmu_vcpu_stats(e.vcpu, &st), 0);
		assert_true(st.pf_emulate >= 5);
	}
	env_fini(&e);
	test_munmap(mem, 4 * PG);
}

/* The last page of the 48-bit space is usable, to its last byte. */
static void test_top_of_address_space(void **state)
{
	struct env e;
	uint8_t *mem = test_mmap(2 * PG);
	uint64_t v = 0x0102030405060708ull, r = 0;
	const uint64_t g = GPA_LIMIT_4L - 2 * PG;

	(void)state;
	assert_non_null(mem);
	env_init(&e, 0);
	assert_int_equal(set_region(e.vm, SLOT(0, 1), 0, g, 2 * PG, (uintptr_t)mem), 0);
	assert_int_equal(vmmu_hw_write(e.hw, g, &v, 8), 0);
	assert_int_equal(*(uint64_t *)mem, v);
	/* The last 8 bytes below 2^48. */
	assert_int_equal(vmmu_hw_write(e.hw, GPA_LIMIT_4L - 8, &v, 8), 0);
	assert_int_equal(*(uint64_t *)(mem + 2 * PG - 8), v);
	assert_int_equal(vmmu_hw_read(e.hw, GPA_LIMIT_4L - 8, &r, 8), 0);
	assert_int_equal(r, v);
	assert_int_equal(vmmu_hw_read(e.hw, GPA_LIMIT_4L - 1, &r, 1), 0);
	/* One byte past it. */
	assert_int_equal(vmmu_hw_read(e.hw, GPA_LIMIT_4L - 4, &r, 8), -EINVAL);
	env_fini(&e);
	test_munmap(mem, 2 * PG);
}

/* ------------------------------------------------------------------------
 * VM and vCPU creation.
 */
static void test_vm_create_config(void **state)
{
	struct vmmu_vm *vm = NULL;
	struct vmmu_vm_config cfg;

	(void)state;
	for (unsigned lvl = 1; lvl < 8; lvl++) {
		if (lvl == 4 || lvl == 5)
			continue;
		cfg = (struct vmmu_vm_config){ .root_level = lvl };
		vm = NULL;
		assert_int_equal(vmmu_vm_create(&cfg, &vm), -EINVAL);
		assert_null(vm);
	}
	assert_int_equal(vmmu_vm_create(NULL, NULL), -EINVAL);

	/* NULL config = defaults (4 levels). */
	assert_int_equal(vmmu_vm_create(NULL, &vm), 0);
	assert_int_equal(set_region(vm, SLOT(0, 0), 0, GPA_LIMIT_4L - PG, PG, HVA_A), 0);
	assert_int_equal(set_region(vm, SLOT(0, 1), 0, GPA_LIMIT_4L, PG, HVA_B), -EINVAL);
	assert_int_equal(vmmu_vm_destroy(vm), 0);
	assert_int_equal(vmmu_vm_destroy(NULL), -EINVAL);

	/* 4 explicitly. */
	cfg = (struct vmmu_vm_config){ .root_level = 4 };
	assert_int_equal(vmmu_vm_create(&cfg, &vm), 0);
	assert_int_equal(set_region(vm, SLOT(0, 1), 0, GPA_LIMIT_4L, PG, HVA_B), -EINVAL);
	assert_int_equal(vmmu_vm_destroy(vm), 0);

	/* 5 levels: 57-bit gpas. */
	cfg = (struct vmmu_vm_config){ .root_level = 5 };
	assert_int_equal(vmmu_vm_create(&cfg, &vm), 0);
	assert_int_equal(set_region(vm, SLOT(0, 1), 0, GPA_LIMIT_4L, PG, HVA_B), 0);
	assert_int_equal(set_region(vm, SLOT(0, 2), 0, (1ull << 57) - PG, PG, HVA_C), 0);
	assert_int_equal(set_region(vm, SLOT(0, 3), 0, 1ull << 57, PG, HVA_A), -EINVAL);
	assert_int_equal(set_region(vm, SLOT(0, 3), 0, (1ull << 57) - PG, 2 * PG, HVA_A),
			 -EINVAL);
	assert_int_equal(vmmu_vm_destroy(vm), 0);

	/* Cache capacity bounds. */
	cfg = (struct vmmu_vm_config){ .vcpu_cache_capacity = 2 };
	assert_int_equal(vmmu_vm_create(&cfg, &vm), -EINVAL);
	cfg = (struct vmmu_vm_config){ .vcpu_cache_capacity = 4 };
	assert_int_equal(vmmu_vm_create(&cfg, &vm), 0);
	assert_int_equal(vmmu_vm_destroy(vm), 0);
}

/* A 5-level VM maps guest memory above 2^48, from the very first access
 * of a fresh vCPU (the hardware model enters guest mode on demand). */
static void test_5level_high_gpa(void **state)
{
	struct env e;
	uint8_t *mem = test_mmap(2 * PG);
	const uint64_t g = 1ull << 52;
	uint64_t v = 0x5555aaaa5555aaaaull, r = 0;
	void *h;
	int lvl;

	(void)state;
	assert_non_null(mem);
	env_init(&e, 5);
	assert_int_equal(set_region(e.vm, SLOT(0, 1), 0, g, 2 * PG, (uintptr_t)mem), 0);
	assert_int_equal(vmmu_hw_write(e.hw, g + PG + 8, &v, 8), 0);
	assert_int_equal(*(uint64_t *)(mem + PG + 8), v);
	assert_int_equal(vmmu_hw_read(e.hw, g + PG + 8, &r, 8), 0);
	assert_int_equal(r, v);
	assert_int_equal(vmmu_debug_lookup(e.vm, 0, g + PG + 8, &h, &lvl, NULL), 0);
	assert_ptr_equal(h, mem + PG + 8);
	assert_int_equal(lvl, 1);
	env_fini(&e);
	test_munmap(mem, 2 * PG);
}

static void test_vcpu_create(void **state)
{
	struct vmmu_vm *vm = vm_new(0);
	struct vmmu_vcpu *a = NULL, *b = NULL, *c = NULL, *d = NULL;

	(void)state;
	assert_int_equal(vmmu_vcpu_create(vm, VMMU_MAX_VCPUS, &a), -EINVAL);
	assert_null(a);
	assert_int_equal(vmmu_vcpu_create(vm, 0xffffffffu, &a), -EINVAL);
	assert_int_equal(vmmu_vcpu_create(NULL, 0, &a), -EINVAL);
	assert_int_equal(vmmu_vcpu_create(vm, 0, NULL), -EINVAL);
	assert_null(a);

	assert_int_equal(vmmu_vcpu_create(vm, 0, &a), 0);
	assert_int_equal(vmmu_vcpu_create(vm, VMMU_MAX_VCPUS - 1, &b), 0);
	assert_int_equal(vmmu_vcpu_create(vm, 0, &c), -EEXIST);
	assert_null(c);
	assert_int_equal(vmmu_vcpu_create(vm, VMMU_MAX_VCPUS - 1, &c), -EEXIST);
	assert_null(c);
	/* After destroy the id is free again. */
	assert_int_equal(vmmu_vcpu_destroy(a), 0);
	assert_int_equal(vmmu_vcpu_create(vm, 0, &c), 0);
	assert_int_equal(vmmu_vcpu_create(vm, 0, &d), -EEXIST);
	assert_int_equal(vmmu_vcpu_destroy(NULL), -EINVAL);
	(void)b;
	/* b and c are destroyed with the VM. */
	assert_int_equal(vmmu_vm_destroy(vm), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_inputs_table),
		cmocka_unit_test(test_valid_ops),
		cmocka_unit_test(test_many_random_slots),
		cmocka_unit_test(test_move_delete_with_mappings),
		cmocka_unit_test(test_readonly_and_mmio),
		cmocka_unit_test(test_top_of_address_space),
		cmocka_unit_test(test_vm_create_config),
		cmocka_unit_test(test_5level_high_gpa),
		cmocka_unit_test(test_vcpu_create),
	};

	test_seed();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
