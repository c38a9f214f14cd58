// SPDX-License-Identifier: MIT
/*
 * fuzz_api.c - libFuzzer target: sequences of public calls on one VM,
 * checked against a reference model.
 *
 * Input: one configuration byte (A/D bits, write-protect or dirty-bit
 * logging, fast path, dirty-log mode: bitmap, manual protect,
 * manual + INITIALLY_SET or rings; slot zap mode; eager split), then
 * operations of 8 bytes each (opcode and arguments): memslot create, move,
 * flag change and delete (valid and invalid), guest reads, writes and
 * fetches through the hardware model, vmmu_vcpu_page_fault with any
 * qualification, zaps, notifier start/end pairs (and an end without a
 * start), aging, dirty-log get / clear / ring collect and reset, calls of
 * the wrong dirty-log mode, pre-fault, vCPU create and destroy, paging
 * state changes (valid and refused) with a guest-virtual translation.
 *
 * The model (struct ref) knows the slots, the host memory behind them and,
 * per page, what must and what may be in the next harvest.  Checked, each
 * an abort:
 *  - every errno is the one the header documents for the input;
 *  - a read returns the bytes the model wrote at the host address of the
 *    gpa, a write reaches that address; MMIO and read-only slots give
 *    -EFAULT, addresses beyond the tables -EINVAL;
 *  - a harvest reports every page written since the last harvest (no lost
 *    dirty page) and nothing the model cannot explain (a page written or
 *    write-faulted since then, or all pages right after INITIALLY_SET);
 *  - a refused call changes nothing: the slots seen through
 *    vmmu_gpa_to_hva are the model's;
 *  - every translation is valid: vmmu_debug_lookup of each page of the
 *    universe maps only gpas of a slot, to the model's host address, and
 *    never writably in a read-only slot;
 *  - the pool is back to zero after the VM is destroyed.
 * Single-threaded and deterministic: one vCPU, whose hardware model leaves
 * guest mode after every access (VM-wide calls wait for vCPUs in guest
 * mode).  Guest accesses stay guest-physical: paging is turned on only for
 * one vmmu_vcpu_translate and then off again.
 *
 * Defects of vmmu that are being fixed can be tolerated while the fix is
 * not merged: VMMU_FUZZ_API_KNOWN=notify_end,slot_move_bitmap,harvest_flush
 * (comma-separated) relaxes the matching check.  Default: strict, i.e. the
 * documented behaviour.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmmu/hw.h>
#include <vmmu/paging.h>
#include <vmmu/vmmu.h>

#include "mmu_internal.h"

#define PAGE 4096ull
#define NSLOTS 4 /* ids 0..3 in address space 0 */
#define SLOT_MAX 16 /* pages */
#define HOST_PAGES (NSLOTS * SLOT_MAX)
#define UNI_GFN 0x100ull /* the universe of gfns: [UNI_GFN, UNI_GFN + UNI_PAGES) */
#define UNI_PAGES 64ull
#define RING_SIZE 1024

struct ref_slot {
	bool present;
	uint64_t base; /* gfn */
	uint64_t npages;
	uint32_t flags;
	bool must[SLOT_MAX]; /* written since the last harvest */
	bool may[SLOT_MAX]; /* written or write-faulted (or INITIALLY_SET) */
};

struct ref {
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	struct vmmu_hw_vcpu *hw;
	struct vmmu_vcpu *vcpu1;
	uint8_t *host;
	int mode; /* 0 bitmap, 1 manual, 2 manual + initially set, 3 ring */
	bool initially_set;
	uint32_t ring_pos;
	int notify_active;
	struct ref_slot s[NSLOTS];
	/* Rings: pages that may have an entry (kept across slot deletion). */
	bool ring_may[NSLOTS][SLOT_MAX];
};

static bool known_notify_end, known_slot_move_bitmap, known_harvest_flush;

static void check(bool cond, const char *what, int line)
{
	if (!cond) {
		fprintf(stderr, "fuzz_api: check failed at line %d: %s\n", line, what);
		abort();
	}
}
#define CHECK(c) check((c), #c, __LINE__)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *k = getenv("VMMU_FUZZ_API_KNOWN");

	(void)argc;
	(void)argv;
	if (k) {
		known_notify_end = strstr(k, "notify_end");
		known_slot_move_bitmap = strstr(k, "slot_move_bitmap");
		known_harvest_flush = strstr(k, "harvest_flush");
	}
	return 0;
}

static uint8_t *slot_hva(struct ref *r, unsigned id)
{
	return r->host + (uint64_t)id * SLOT_MAX * PAGE;
}

/* The slot holding @gfn, or -1. */
static int ref_slot_of(struct ref *r, uint64_t gfn)
{
	for (int i = 0; i < NSLOTS; i++)
		if (r->s[i].present && gfn >= r->s[i].base && gfn < r->s[i].base + r->s[i].npages)
			return i;
	return -1;
}

static bool logged(const struct ref_slot *s)
{
	return s->flags & VMMU_MEM_LOG_DIRTY_PAGES;
}

/* The slots vmmu sees are the model's, and every translation is valid. */
static void check_state(struct ref *r)
{
	for (uint64_t g = UNI_GFN - 1; g <= UNI_GFN + UNI_PAGES; g++) {
		int i = ref_slot_of(r, g);
		void *hva = NULL, *lhva = NULL;
		int rc = vmmu_gpa_to_hva(r->vm, 0, g * PAGE, &hva), level;
		uint64_t spte;

		if (i < 0) {
			CHECK(rc == -ENOENT);
		} else {
			CHECK(rc == 0);
			CHECK(hva == slot_hva(r, i) + (g - r->s[i].base) * PAGE);
		}
		rc = vmmu_debug_lookup(r->vm, 0, g * PAGE, &lhva, &level, &spte);
		CHECK(rc == 0 || rc == -ENOENT);
		if (rc == 0) {
			CHECK(i >= 0);
			CHECK(level == 1);
			CHECK(lhva == slot_hva(r, i) + (g - r->s[i].base) * PAGE);
			if (r->s[i].flags & VMMU_MEM_READONLY)
				CHECK(!(spte & 2)); /* EPT W */
		}
	}
}

static void do_set_slot(struct ref *r, const uint8_t *a)
{
	unsigned id = a[0] % 5;
	uint64_t base = UNI_GFN + a[1] % (UNI_PAGES - 4);
	uint64_t npages = 1 + a[2] % SLOT_MAX;
	uint32_t flags = a[3] & (VMMU_MEM_LOG_DIRTY_PAGES | VMMU_MEM_READONLY);
	unsigned kind = a[4] % 16;
	struct vmmu_userspace_memory_region reg = { 0 };
	int expect = 0, rc;

	struct ref_slot *s;

	if (id == 4)
		id = 3;
	s = &r->s[id];

	reg.slot = id;
	reg.flags = flags;
	reg.guest_phys_addr = base * PAGE;
	reg.memory_size = npages * PAGE;
	reg.userspace_addr = (uintptr_t)slot_hva(r, id);
	if (s->present && kind < 6) {
		/* Same slot: move, change flags, or delete. */
		reg.memory_size = s->npages * PAGE;
		if (kind < 2)
			reg.memory_size = 0; /* delete */
		else if (kind < 4)
			reg.guest_phys_addr = s->base * PAGE; /* flags only */
		reg.flags = (flags & VMMU_MEM_LOG_DIRTY_PAGES) | (s->flags & VMMU_MEM_READONLY);
	}
	switch (kind) {
	case 6:
		reg.guest_phys_addr += 1; /* unaligned */
		expect = -EINVAL;
		break;
	case 7:
		reg.flags |= 1u << 5; /* unknown flag */
		expect = -EINVAL;
		break;
	case 8:
		reg.slot = (2u << 16) | id; /* bad address space */
		expect = -EINVAL;
		break;
	case 9:
		reg.slot = VMMU_USER_MEM_SLOTS; /* bad id */
		expect = -EINVAL;
		break;
	case 10:
		reg.userspace_addr += 8; /* unaligned hva */
		expect = -EINVAL;
		break;
	default:
		break;
	}
	if (!expect) {
		if (reg.memory_size == 0) {
			if (!s->present)
				expect = -EINVAL;
		} else if (s->present && (reg.memory_size != s->npages * PAGE ||
					  ((reg.flags ^ s->flags) & VMMU_MEM_READONLY))) {
			expect = -EINVAL;
		} else {
			uint64_t b = reg.guest_phys_addr / PAGE, n = reg.memory_size / PAGE;

			for (int j = 0; j < NSLOTS; j++)
				if (j != (int)id && r->s[j].present &&
				    b < r->s[j].base + r->s[j].npages && r->s[j].base < b + n)
					expect = -EEXIST;
		}
	}
	rc = vmmu_set_user_memory_region(r->vm, &reg);
	CHECK(rc == expect);
	if (rc)
		return;
	if (reg.memory_size == 0) {
		memset(s, 0, sizeof(*s));
		return;
	}
	bool was_logged = s->present && logged(s);

	if (!s->present)
		memset(s, 0, sizeof(*s));
	s->present = true;
	s->base = reg.guest_phys_addr / PAGE;
	s->npages = reg.memory_size / PAGE;
	s->flags = reg.flags;
	if (!logged(s)) {
		memset(s->must, 0, sizeof(s->must));
		memset(s->may, 0, sizeof(s->may));
	} else if (!was_logged) {
		/* Logging starts: a fresh bitmap (all ones with INITIALLY_SET). */
		for (unsigned p = 0; p < SLOT_MAX; p++) {
			s->must[p] = r->initially_set && p < s->npages;
			s->may[p] = s->must[p];
		}
	} else if (known_slot_move_bitmap) {
		/* Known defect: a move or flag change allocates a fresh
		 * bitmap.  Nothing pending can be required any more. */
		memset(s->must, 0, sizeof(s->must));
		for (unsigned p = 0; p < s->npages; p++)
			s->may[p] = true;
	}
	/* Otherwise logging stays on: the bitmap is carried over (KVM). */
}

static void note_write(struct ref *r, uint64_t gfn, bool written)
{
	int i = ref_slot_of(r, gfn);

	if (i < 0 || !logged(&r->s[i]))
		return;
	r->ring_may[i][gfn - r->s[i].base] = true;
	if (written)
		r->s[i].must[gfn - r->s[i].base] = true;
	r->s[i].may[gfn - r->s[i].base] = true;
}

static uint64_t op_gfn(uint8_t b)
{
	return UNI_GFN - 1 + b % (UNI_PAGES + 2);
}

static void do_access(struct ref *r, const uint8_t *a, int kind)
{
	uint64_t gfn = op_gfn(a[0]);
	unsigned len = 1u << (a[1] % 4), off = (unsigned)(a[2] * 8) % PAGE;
	uint64_t val = (uint64_t)a[3] * 0x0101010101010101ull ^ ((uint64_t)a[4] << 8);
	uint8_t buf[8] = { 0 };
	int i = ref_slot_of(r, gfn), expect = 0, rc;
	uint8_t *hva = NULL;

	if (a[5] & 0x80) { /* beyond the guest-physical width */
		gfn = 1ull << 48 >> 12;
		i = -1;
	}
	if (i >= 0)
		hva = slot_hva(r, i) + (gfn - r->s[i].base) * PAGE + off;
	if (a[5] & 0x80)
		expect = -EINVAL;
	else if (i < 0 || (kind == 1 && (r->s[i].flags & VMMU_MEM_READONLY)))
		expect = -EFAULT;
	memcpy(buf, &val, len);
	if (kind == 1)
		rc = vmmu_hw_write(r->hw, gfn * PAGE + off, buf, len);
	else if (kind == 0)
		rc = vmmu_hw_read(r->hw, gfn * PAGE + off, buf, len);
	else
		rc = vmmu_hw_fetch(r->hw, gfn * PAGE + off, buf, len);
	CHECK(vmmu_hw_guest_exit(r->hw) == 0);
	CHECK(rc == expect);
	if (rc)
		return;
	if (kind == 1) {
		CHECK(memcmp(hva, &val, len) == 0);
		note_write(r, gfn, true);
	} else {
		CHECK(memcmp(hva, buf, len) == 0);
	}
}

static void do_page_fault(struct ref *r, const uint8_t *a)
{
	uint64_t gfn = op_gfn(a[0]), qual = a[1] & 0x3f;
	int i = ref_slot_of(r, gfn), rc;

	if (a[2] & 0x80)
		gfn = 1ull << 48 >> 12;
	rc = vmmu_vcpu_page_fault(r->vcpu, gfn * PAGE + a[3], qual);
	if (a[2] & 0x80) {
		CHECK(rc == -EINVAL);
		return;
	}
	if (i < 0 || ((qual & VMMU_EPT_ACC_WRITE) && (r->s[i].flags & VMMU_MEM_READONLY))) {
		CHECK(rc == VMMU_PF_EMULATE);
		return;
	}
	CHECK(rc == VMMU_PF_FIXED || rc == VMMU_PF_SPURIOUS || rc == VMMU_PF_RETRY);
	if (qual & VMMU_EPT_ACC_WRITE)
		note_write(r, gfn, false);
}

static void do_zap(struct ref *r, const uint8_t *a)
{
	uint64_t s = op_gfn(a[0]), e = op_gfn(a[1]);

	if (a[2] & 1) {
		CHECK(vmmu_zap_all(r->vm) == 0);
		return;
	}
	CHECK(vmmu_zap_gfn_range(r->vm, s, e) == (s > e ? -EINVAL : 0));
}

static void do_notify(struct ref *r, const uint8_t *a)
{
	uint64_t s = (uintptr_t)r->host + (a[0] % HOST_PAGES) * PAGE;
	uint64_t e = s + (a[1] % 8) * PAGE + (a[2] & 1 ? 1 : 0);

	if ((a[3] % 8) == 0) {
		/* An end without a start: a caller's mistake. */
		if (!known_notify_end)
			CHECK(vmmu_notify_invalidate_range_end(r->vm, s, e) == -EINVAL);
		return;
	}
	if ((a[3] % 8) == 1) {
		CHECK(vmmu_notify_invalidate_range_start(r->vm, e + PAGE, s) == -EINVAL);
		return;
	}
	CHECK(vmmu_notify_invalidate_range_start(r->vm, s, e) == 0);
	/* Nothing of the range is mapped while it is invalidated. */
	for (uint64_t g = UNI_GFN; g < UNI_GFN + UNI_PAGES; g++) {
		int i = ref_slot_of(r, g);
		uint64_t h;
		void *hva;
		int level;
		uint64_t spte;

		if (i < 0)
			continue;
		h = (uintptr_t)slot_hva(r, i) + (g - r->s[i].base) * PAGE;
		if (h + PAGE > s && h < e)
			CHECK(vmmu_debug_lookup(r->vm, 0, g * PAGE, &hva, &level, &spte) ==
			      -ENOENT);
	}
	CHECK(vmmu_notify_invalidate_range_end(r->vm, s, e) == 0);
}

static void do_age(struct ref *r, const uint8_t *a)
{
	uint64_t s = (uintptr_t)r->host + (a[0] % HOST_PAGES) * PAGE;
	uint64_t e = s + (a[1] % 16) * PAGE;
	bool young = true;
	int rc;

	switch (a[2] % 4) {
	case 0:
		rc = vmmu_notify_clear_young(r->vm, s, e, &young);
		break;
	case 1:
		rc = vmmu_notify_clear_flush_young(r->vm, s, e, &young);
		break;
	case 2:
		rc = vmmu_notify_test_young(r->vm, s, e, &young);
		break;
	default:
		rc = vmmu_notify_clear_young(r->vm, e + 1, s, &young);
		CHECK(rc == -EINVAL && young);
		return;
	}
	CHECK(rc == 0);
}

/* Compare one slot's harvested bitmap with the model. */
static void check_harvest(struct ref *r, int id, const uint64_t *bm)
{
	struct ref_slot *s = &r->s[id];

	for (unsigned p = 0; p < s->npages; p++) {
		bool got = bm[p / 64] >> (p % 64) & 1;

		if (s->must[p] && !got && !known_harvest_flush) {
			fprintf(stderr, "fuzz_api: lost dirty page %u of slot %d\n", p, id);
			CHECK(!"lost dirty page");
		}
		if (got && !s->may[p]) {
			fprintf(stderr, "fuzz_api: page %u of slot %d reported, never written\n", p,
				id);
			CHECK(!"unexplained dirty page");
		}
	}
}

static void do_dirty(struct ref *r, const uint8_t *a)
{
	unsigned id = a[0] % NSLOTS;
	struct ref_slot *s = &r->s[id];
	uint64_t bm[1] = { 0 };
	int expect_get;

	if (r->mode == 3) {
		struct vmmu_dirty_gfn *ring;
		uint32_t n;
		uint64_t nr = 0;
		bool seen[NSLOTS][SLOT_MAX] = { { false } };

		CHECK(vmmu_get_dirty_log(r->vm, id, bm) == -ENXIO);
		CHECK(vmmu_clear_dirty_log(r->vm, id, 0, 0, bm) == -ENXIO);
		CHECK(vmmu_vcpu_dirty_ring(r->vcpu, &ring, &n) == 0 && n == RING_SIZE);
		/* Collect every DIRTY entry, mark it RESET, reset. */
		for (;;) {
			struct vmmu_dirty_gfn *e = &ring[r->ring_pos % n];
			uint32_t f = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
			unsigned sid = e->slot & 0xffff;

			if (!(f & VMMU_DIRTY_GFN_F_DIRTY))
				break;
			CHECK((e->slot >> 16) == 0 && sid < NSLOTS);
			/* The page belongs to the slot as it was when
			 * logged; a deleted or moved slot may have left
			 * entries behind that the model no longer knows. */
			if (r->s[sid].present && e->offset < SLOT_MAX)
				seen[sid][e->offset] = true;
			__atomic_store_n(&e->flags, VMMU_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
			r->ring_pos++;
		}
		CHECK(vmmu_reset_dirty_rings(r->vm, &nr) == 0);
		for (int i = 0; i < NSLOTS; i++) {
			if (!r->s[i].present)
				continue;
			for (unsigned p = 0; p < r->s[i].npages; p++) {
				if (r->s[i].must[p] && !seen[i][p] && !known_harvest_flush) {
					fprintf(stderr, "fuzz_api: ring lost page %u of slot %d\n",
						p, i);
					CHECK(!"lost dirty page (ring)");
				}
				if (seen[i][p] && !r->ring_may[i][p])
					CHECK(!"unexplained ring entry");
			}
			memset(r->s[i].must, 0, sizeof(r->s[i].must));
			memset(r->s[i].may, 0, sizeof(r->s[i].may));
		}
		memset(r->ring_may, 0, sizeof(r->ring_may));
		return;
	}
	expect_get = s->present && logged(s) ? 0 : -ENOENT;
	if (a[1] & 0x80) {
		/* Wrong calls: bad address space; rings on a bitmap VM. */
		CHECK(vmmu_get_dirty_log(r->vm, (2u << 16) | id, bm) == -EINVAL);
		CHECK(vmmu_reset_dirty_rings(r->vm, NULL) == -ENXIO);
		if (r->mode == 0)
			CHECK(vmmu_clear_dirty_log(r->vm, id, 0, 64, bm) == -EINVAL);
		return;
	}
	if (r->mode == 0 || (a[1] & 1)) {
		CHECK(vmmu_get_dirty_log(r->vm, id, bm) == expect_get);
		if (expect_get)
			return;
		check_harvest(r, (int)id, bm);
		if (r->mode == 0) {
			memset(s->must, 0, sizeof(s->must));
			memset(s->may, 0, sizeof(s->may));
		}
		return;
	}
	/* Manual protect: clear what the caller asks (a random subset). */
	{
		uint64_t want = (uint64_t)a[2] | (uint64_t)a[3] << 8;
		uint32_t num = (a[4] & 1) ? 64 : (uint32_t)(s->present ? s->npages : 1);
		uint64_t first = (a[4] & 2) ? 1 : 0;
		int expect;

		if (!s->present || !logged(s))
			expect = -ENOENT;
		else if (first || (num % 64 && first + num != s->npages) || num > s->npages)
			expect = -EINVAL;
		else
			expect = 0;
		if (first)
			expect = -EINVAL; /* checked before the slot */
		bm[0] = want;
		CHECK(vmmu_clear_dirty_log(r->vm, id, first, num, bm) == expect);
		if (expect)
			return;
		for (unsigned p = 0; p < s->npages && p < num; p++) {
			if (want >> p & 1) {
				/* The caller clears a page it fetched: any
				 * write before this call is the caller's. */
				s->must[p] = false;
				s->may[p] = false;
			}
		}
	}
}

static void do_prefault(struct ref *r, const uint8_t *a)
{
	struct vmmu_pre_fault_memory range = { 0 };
	uint64_t gfn = op_gfn(a[0]);
	uint64_t n = a[1] % 8;
	int rc, expect = 0;

	range.gpa = gfn * PAGE;
	range.size = n * PAGE;
	if (a[2] & 1)
		range.flags = 1;
	if (n == 0 || range.flags)
		expect = -EINVAL;
	else if (ref_slot_of(r, gfn) < 0)
		expect = -ENOENT;
	rc = vmmu_vcpu_pre_fault_memory(r->vcpu, &range);
	CHECK(rc == expect);
	if (rc)
		CHECK(range.gpa == gfn * PAGE && range.size == n * PAGE);
	else
		CHECK(range.gpa > gfn * PAGE && range.gpa + range.size == (gfn + n) * PAGE);
}

static void do_vcpu(struct ref *r, const uint8_t *a)
{
	struct vmmu_vcpu *v = NULL;

	switch (a[0] % 4) {
	case 0:
		if (r->vcpu1) {
			CHECK(vmmu_vcpu_create(r->vm, 1, &v) == -EEXIST);
		} else {
			CHECK(vmmu_vcpu_create(r->vm, 1, &r->vcpu1) == 0);
		}
		break;
	case 1:
		if (r->vcpu1) {
			CHECK(vmmu_vcpu_destroy(r->vcpu1) == 0);
			r->vcpu1 = NULL;
		}
		break;
	case 2:
		CHECK(vmmu_vcpu_create(r->vm, VMMU_MAX_VCPUS, &v) == -EINVAL);
		CHECK(vmmu_vcpu_create(r->vm, 0, &v) == -EEXIST);
		break;
	default:
		CHECK(vmmu_vcpu_destroy(NULL) == -EINVAL);
		CHECK(vmmu_zap_all(r->vm) == 0);
		break;
	}
}

/*
 * A paging state from fuzz bytes, checked against the refusals paging.h
 * lists; accepted states with paging on get one vmmu_vcpu_translate, then
 * paging goes off again (the accesses of this target are guest-physical).
 * The translate may set A/D bits in guest tables anywhere in guest memory:
 * every page of a logged slot may then be reported (none must be).
 */
static void do_paging(struct ref *r, const uint8_t *a)
{
	struct vmmu_paging_state st = { 0 }, before, after;
	uint64_t gen0, gen1;
	bool bad = false, lma, lme, pg;
	int rc;

	if (a[0] & 1)
		st.cr0 |= 1; /* PE */
	if (a[0] & 2)
		st.cr0 |= 1ull << 31; /* PG */
	if (a[0] & 4)
		st.cr0 |= 1ull << 16; /* WP */
	if (a[0] & 8)
		st.cr0 |= 1ull << 29; /* NW */
	if (a[0] & 16)
		st.cr0 |= 1ull << 30; /* CD */
	if (a[0] & 32)
		st.cr0 |= 1ull << 6; /* reserved */
	if (a[1] & 1)
		st.cr4 |= 1ull << 4; /* PSE */
	if (a[1] & 2)
		st.cr4 |= 1ull << 5; /* PAE */
	if (a[1] & 4)
		st.cr4 |= 1ull << 17; /* PCIDE */
	if (a[1] & 8)
		st.cr4 |= 1ull << 15; /* reserved */
	if (a[1] & 16)
		st.efer |= VMMU_EFER_LME;
	if (a[1] & 32)
		st.efer |= VMMU_EFER_LMA;
	if (a[1] & 64)
		st.efer |= VMMU_EFER_NXE;
	if (a[1] & 128)
		st.efer |= 1ull << 1; /* reserved */
	st.cr3 = (UNI_GFN + a[2] % UNI_PAGES) * PAGE;
	if (a[3] & 1)
		st.cr3 |= 1ull << 50; /* beyond MAXPHYADDR */
	st.cpl = (a[3] >> 1) % 5;
	st.pkru = a[4];

	pg = st.cr0 >> 31 & 1;
	lme = st.efer & VMMU_EFER_LME;
	lma = st.efer & VMMU_EFER_LMA;
	bad |= (st.cr0 & (1ull << 6)) || (st.cr4 & (1ull << 15)) || (st.efer & 2);
	bad |= pg && !(st.cr0 & 1);
	bad |= (st.cr0 & (1ull << 29)) && !(st.cr0 & (1ull << 30));
	bad |= lma != (lme && pg);
	bad |= lme && pg && !(st.cr4 & (1ull << 5));
	bad |= (st.cr4 & (1ull << 17)) && !lma;
	bad |= lma && (st.cr3 & (1ull << 50));
	bad |= st.cpl > 3;

	CHECK(vmmu_vcpu_get_paging(r->vcpu, &before, &gen0) == 0);
	rc = vmmu_vcpu_set_paging(r->vcpu, &st);
	CHECK(rc == (bad ? -EINVAL : 0));
	CHECK(vmmu_vcpu_get_paging(r->vcpu, &after, &gen1) == 0);
	if (rc) {
		/* Refused: nothing changed. */
		CHECK(gen1 == gen0 && memcmp(&before, &after, sizeof(before)) == 0);
		return;
	}
	CHECK(gen1 != gen0);
	if (pg) {
		struct vmmu_translation t;
		unsigned acc = a[5] & 1 ? VMMU_XLATE_WRITE : 0;

		rc = vmmu_vcpu_translate(r->vcpu, (uint64_t)a[6] << 12, acc, &t);
		CHECK(rc == 0 || rc == -EFAULT);
		for (int i = 0; i < NSLOTS; i++)
			if (r->s[i].present && logged(&r->s[i]))
				for (unsigned p = 0; p < r->s[i].npages; p++) {
					r->s[i].may[p] = true;
					r->ring_may[i][p] = true;
				}
	}
	memset(&st, 0, sizeof(st));
	CHECK(vmmu_vcpu_set_paging(r->vcpu, &st) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmmu_vm_config cfg = { 0 };
	struct ref r;
	uint8_t c;

	if (size < 1 || size > 1 + 8 * 256)
		return 0;
	memset(&r, 0, sizeof(r));
	c = data[0];
	cfg.disable_ept_ad = c & 1;
	cfg.dirty_log_wrprot = c & 2;
	cfg.disable_fast_page_fault = c & 4;
	r.mode = (c >> 3) & 3;
	if (r.mode == 1)
		cfg.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT;
	if (r.mode == 2)
		cfg.manual_dirty_log_protect = VMMU_DIRTY_LOG_MANUAL_PROTECT |
					       VMMU_DIRTY_LOG_INITIALLY_SET;
	if (r.mode == 3)
		cfg.dirty_ring_size = RING_SIZE;
	r.initially_set = r.mode == 2;
	cfg.slot_zap = (c >> 5) & 1;
	cfg.disable_eager_split = (c >> 6) & 1;
	cfg.max_pt_pages = 256;
	cfg.direct_build_workers = 1;

	r.host = aligned_alloc(PAGE, HOST_PAGES * PAGE);
	CHECK(r.host);
	memset(r.host, 0, HOST_PAGES * PAGE);
	CHECK(vmmu_vm_create(&cfg, &r.vm) == 0);
	CHECK(vmmu_vcpu_create(r.vm, 0, &r.vcpu) == 0);
	CHECK(vmmu_hw_vcpu_create(r.vcpu, NULL, &r.hw) == 0);

	for (size_t off = 1; off + 8 <= size; off += 8) {
		const uint8_t *op = data + off;

		switch (op[0] % 13) {
		case 0:
		case 1:
			do_set_slot(&r, op + 1);
			break;
		case 2:
		case 3:
			do_access(&r, op + 1, 1);
			break;
		case 4:
			do_access(&r, op + 1, op[1] & 1 ? 2 : 0);
			break;
		case 5:
			do_page_fault(&r, op + 1);
			break;
		case 6:
			do_zap(&r, op + 1);
			break;
		case 7:
			do_notify(&r, op + 1);
			break;
		case 8:
			do_age(&r, op + 1);
			break;
		case 9:
			do_dirty(&r, op + 1);
			break;
		case 10:
			do_prefault(&r, op + 1);
			break;
		case 11:
			do_vcpu(&r, op + 1);
			break;
		default:
			do_paging(&r, op + 1);
			break;
		}
		check_state(&r);
	}

	CHECK(vmmu_hw_vcpu_destroy(r.hw) == 0);
	CHECK(vmmu_vcpu_destroy(r.vcpu) == 0);
	if (r.vcpu1)
		CHECK(vmmu_vcpu_destroy(r.vcpu1) == 0);
	CHECK(vmmu_zap_all(r.vm) == 0);
	vmmu_rcu_barrier();
	CHECK(vmmu_pool_in_use(&r.vm->pool) == 0);
	CHECK(vmmu_vm_destroy(r.vm) == 0);
	free(r.host);
	return 0;
}
