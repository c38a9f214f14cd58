/* SPDX-License-Identifier: MIT */
/*
 * spte.h - values of the entries vmmu writes into its own page tables.
 *
 * Pure functions, no state, no locks.  The format is Intel's EPT entry
 * (the architectural bits are public, in <vmmu/ept.h>: a CPU model needs
 * them), with the software bits KVM uses in the bits the processor ignores:
 *
 *   bit  0      R    readable
 *   bit  1      W    writable
 *   bit  2      X    executable (supervisor-mode execute)
 *   bits 5:3    memory type (leaf only; 6 = write-back)
 *   bit  6      ignore PAT (leaf only)
 *   bit  7      large page (leaf at level 2 or 3)
 *   bit  8      A    accessed (processor sets it when EPT A/D is enabled)
 *   bit  9      D    dirty    (leaf only, likewise)
 *   bit  11     MMU-present (software: "vmmu put something here")
 *   bits 51:12  address of the next table or of the host page
 *   bits 53:52  A/D type (software): 0 A/D enabled, 1 A/D disabled
 *   bits 56:54  saved R/X/... of an access-tracked entry (software)
 *   bit  57     host-writable (software: the host page may be written)
 *   bit  58     MMU-writable  (software: vmmu would allow W here)
 *   bit  63     suppress #VE (unused, kept zero)
 *
 * The address field holds a host virtual address: in userspace the host
 * "physical" page of a guest page is its HVA, and a table's address is the
 * HVA of the 4 KiB page holding it, so the walker reads them directly.
 *
 * Writable state, as in KVM: W implies MMU-writable, MMU-writable implies
 * host-writable.  (HW,MW,W) = (1,1,1) writable; (1,1,0) write-protected for
 * dirty logging, a lockless fault may restore W; (1,0,0) write-protected by
 * vmmu for its own reasons; (0,0,0) the host page is read-only.
 *
 * FROZEN_SPTE is a non-present value that no other path ever writes: an
 * entry holding it is owned by the thread that froze it (see tdp_mmu.c).
 */
#ifndef VMMU_SPTE_H
#define VMMU_SPTE_H

#include <vmmu/ept.h>

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>

#define SPTE_ENT_PER_PAGE VMMU_EPT_ENTRIES
#define SPTE_LEVEL_BITS VMMU_EPT_LEVEL_BITS
#define PG_LEVEL_4K VMMU_EPT_LEVEL_4K
#define PG_LEVEL_2M 2
#define PG_LEVEL_1G 3
#define PG_LEVEL_512G 4
#define PG_LEVEL_256T 5
#define SPTE_MAX_LEVEL VMMU_EPT_MAX_LEVEL
#define SPTE_MAX_HUGEPAGE_LEVEL PG_LEVEL_1G

/* The architectural bits, under the names vmmu's own code uses. */
#define EPT_READABLE VMMU_EPTE_READ
#define EPT_WRITABLE VMMU_EPTE_WRITE
#define EPT_EXECUTABLE VMMU_EPTE_EXEC
#define EPT_RWX_MASK VMMU_EPTE_RWX_MASK
#define EPT_MT_SHIFT VMMU_EPTE_MT_SHIFT
#define EPT_MT_MASK VMMU_EPTE_MT_MASK
#define EPT_MT_WB VMMU_EPT_MT_WB
#define EPT_IPAT VMMU_EPTE_IPAT
#define EPT_LARGE VMMU_EPTE_LARGE
#define EPT_ACCESSED VMMU_EPTE_ACCESSED
#define EPT_DIRTY VMMU_EPTE_DIRTY
#define SPTE_ADDR_MASK VMMU_EPTE_ADDR_MASK /* bits 51:12 */

/* Software bits (ignored by the processor). */
#define SPTE_MMU_PRESENT (1ull << 11)
#define SPTE_AD_SHIFT 52
#define SPTE_AD_MASK (3ull << SPTE_AD_SHIFT)
#define SPTE_AD_ENABLED 0ull
#define SPTE_AD_DISABLED (1ull << SPTE_AD_SHIFT)
#define SPTE_ACC_TRACK_SAVED_SHIFT 54
#define SPTE_ACC_TRACK_SAVED_MASK (EPT_RWX_MASK << SPTE_ACC_TRACK_SAVED_SHIFT)
#define SPTE_HOST_WRITABLE (1ull << 57)
#define SPTE_MMU_WRITABLE (1ull << 58)
#define EPT_SUPPRESS_VE VMMU_EPTE_SUPPRESS_VE

#define SPTE_NONPRESENT 0ull
#define FROZEN_SPTE (SPTE_NONPRESENT | 0x5a0ull)

/* Bit layout pinned: these are the positions the (simulated) processor uses. */
static_assert(EPT_LARGE == 0x80, "EPT large-page bit is bit 7");
static_assert(EPT_ACCESSED == 0x100 && EPT_DIRTY == 0x200, "EPT A/D are bits 8/9");
static_assert(SPTE_MMU_PRESENT == 0x800, "MMU-present is bit 11");
static_assert(!((SPTE_MMU_PRESENT | SPTE_AD_MASK | SPTE_ACC_TRACK_SAVED_MASK | SPTE_HOST_WRITABLE |
		 SPTE_MMU_WRITABLE) &
		(VMMU_EPTE_RWX_MASK | VMMU_EPTE_MT_MASK | VMMU_EPTE_IPAT | VMMU_EPTE_LARGE |
		 VMMU_EPTE_ACCESSED | VMMU_EPTE_DIRTY | VMMU_EPTE_USER_EXEC | VMMU_EPTE_ADDR_MASK |
		 VMMU_EPTE_SUPPRESS_VE)),
	      "a software bit overlaps an architectural one");
static_assert(SPTE_HOST_WRITABLE == (1ull << 57) && SPTE_MMU_WRITABLE == (1ull << 58),
	      "writable-state bits are 57/58");
static_assert(!(FROZEN_SPTE & (EPT_RWX_MASK | SPTE_MMU_PRESENT)),
	      "the frozen value must look non-present to the processor and to vmmu");
static_assert(!(SPTE_ACC_TRACK_SAVED_MASK &
		(SPTE_ADDR_MASK | SPTE_AD_MASK | SPTE_HOST_WRITABLE | SPTE_MMU_WRITABLE)),
	      "access-track save area overlaps another field");
static_assert(!(SPTE_ADDR_MASK & (SPTE_AD_MASK | SPTE_MMU_PRESENT | EPT_DIRTY)),
	      "address field overlaps a flag");

/* Access rights as vmmu asks for them when making a leaf. */
#define ACC_EXEC 1u
#define ACC_WRITE 2u
#define ACC_READ 4u
#define ACC_ALL (ACC_EXEC | ACC_WRITE | ACC_READ)

static inline unsigned spte_level_shift(int level)
{
	return 12u + (unsigned)(level - 1) * SPTE_LEVEL_BITS;
}

/* 4 KiB pages covered by one entry at @level. */
static inline uint64_t spte_pages_per(int level)
{
	return vmmu_ept_pages_per(level);
}

static inline unsigned spte_index(uint64_t gfn, int level)
{
	return vmmu_ept_index(gfn, level);
}

static inline bool is_frozen_spte(uint64_t spte)
{
	return spte == FROZEN_SPTE;
}

static inline bool is_shadow_present_pte(uint64_t spte)
{
	return (spte & SPTE_MMU_PRESENT) != 0;
}

static inline bool is_large_pte(uint64_t spte)
{
	return (spte & EPT_LARGE) != 0;
}

static inline bool is_last_spte(uint64_t spte, int level)
{
	return level == PG_LEVEL_4K || is_large_pte(spte);
}

static inline bool is_present_leaf(uint64_t spte, int level)
{
	return is_shadow_present_pte(spte) && is_last_spte(spte, level);
}

static inline uint64_t spte_addr(uint64_t spte)
{
	return spte & SPTE_ADDR_MASK;
}

static inline uint64_t *spte_to_child_pt(uint64_t spte)
{
	return (uint64_t *)(uintptr_t)spte_addr(spte);
}

static inline bool is_writable_pte(uint64_t spte)
{
	return (spte & EPT_WRITABLE) != 0;
}

static inline bool is_mmu_writable_spte(uint64_t spte)
{
	return (spte & SPTE_MMU_WRITABLE) != 0;
}

static inline bool is_host_writable_spte(uint64_t spte)
{
	return (spte & SPTE_HOST_WRITABLE) != 0;
}

static inline bool spte_ad_enabled(uint64_t spte)
{
	return (spte & SPTE_AD_MASK) == SPTE_AD_ENABLED;
}

static inline bool is_accessed_spte(uint64_t spte)
{
	return (spte & EPT_ACCESSED) != 0;
}

static inline bool is_dirty_spte(uint64_t spte)
{
	return (spte & EPT_DIRTY) != 0;
}

/*
 * Does @spte let an access with EPT-violation qualification bits @acc
 * (EPT_READABLE/WRITABLE/EXECUTABLE) through?
 */
static inline bool spte_permits(uint64_t spte, uint64_t acc)
{
	return is_shadow_present_pte(spte) && (spte & acc & EPT_RWX_MASK) == (acc & EPT_RWX_MASK);
}

/*
 * Build a leaf mapping host page @host_addr (page aligned, of the size of
 * @level) with rights @acc.  @host_writable says whether the host allows
 * writes at all; W is granted only if both @acc has ACC_WRITE and the host
 * allows it.  @ad_enabled selects the A/D type; a non-prefetch fault sets A
 * right away (the access that faulted will set it anyway), and @dirty sets D
 * when the fault was a write.
 */
static inline uint64_t make_leaf_spte(uint64_t host_addr, int level, unsigned acc,
				      bool host_writable, bool ad_enabled, bool prefetch,
				      bool dirty)
{
	uint64_t spte = SPTE_MMU_PRESENT | (host_addr & SPTE_ADDR_MASK) |
			(EPT_MT_WB << EPT_MT_SHIFT) | EPT_IPAT;

	spte |= ad_enabled ? SPTE_AD_ENABLED : SPTE_AD_DISABLED;
	if (level > PG_LEVEL_4K)
		spte |= EPT_LARGE;
	if (acc & ACC_READ)
		spte |= EPT_READABLE;
	if (acc & ACC_EXEC)
		spte |= EPT_EXECUTABLE;
	if (host_writable) {
		spte |= SPTE_HOST_WRITABLE;
		if (acc & ACC_WRITE)
			spte |= EPT_WRITABLE | SPTE_MMU_WRITABLE;
	}
	if (ad_enabled && !prefetch)
		spte |= EPT_ACCESSED;
	if (ad_enabled && dirty && (spte & EPT_WRITABLE))
		spte |= EPT_DIRTY;
	return spte;
}

/* A link to a child table: all rights, the processor checks the leaf. */
static inline uint64_t make_nonleaf_spte(const uint64_t *child_pt, bool ad_enabled)
{
	return SPTE_MMU_PRESENT | ((uint64_t)(uintptr_t)child_pt & SPTE_ADDR_MASK) | EPT_RWX_MASK |
	       (ad_enabled ? SPTE_AD_ENABLED : SPTE_AD_DISABLED);
}

/*
 * The child at @index of a huge leaf @huge at @level, used when a huge page
 * is split: same rights and bits, covering 1/512 of the range.
 */
static inline uint64_t make_small_spte(uint64_t huge, int level, unsigned index)
{
	uint64_t child_size = 1ull << spte_level_shift(level - 1);
	uint64_t spte = huge + (uint64_t)index * child_size;

	if (level - 1 == PG_LEVEL_4K)
		spte &= ~EPT_LARGE;
	return spte;
}

/* A huge leaf at @level from a small one inside it (huge-page recovery). */
static inline uint64_t make_huge_spte(uint64_t small, int level)
{
	uint64_t size = 1ull << spte_level_shift(level);
	uint64_t addr = spte_addr(small) & ~(size - 1);

	return (small & ~SPTE_ADDR_MASK) | addr | EPT_LARGE;
}

/*
 * Access tracking without EPT A/D bits.  To learn whether a page is still
 * used, vmmu takes every right away from its leaf and waits for the next
 * access to fault.  The leaf stays MMU-present (it still maps the page and
 * counts as a leaf); R and X are parked in the software bits 54 and 56 so
 * the lockless fault path can put them back with one compare-and-exchange.
 * W is dropped without being saved: it returns only through a write fault
 * on an MMU-writable entry, which is where the dirty log is fed.
 *
 *   bit  54  saved R     (R << SPTE_ACC_TRACK_SAVED_SHIFT)
 *   bit  55  always 0    (W is never saved)
 *   bit  56  saved X
 *
 * Only leaves of the A/D-disabled type use this; with A/D bits, "young" is
 * the Accessed bit.
 */
#define SPTE_ACC_TRACK_SAVE_BITS (EPT_READABLE | EPT_EXECUTABLE)
static_assert(SPTE_ACC_TRACK_SAVED_SHIFT == 54, "access-track save area starts at bit 54");
static_assert((SPTE_ACC_TRACK_SAVE_BITS << SPTE_ACC_TRACK_SAVED_SHIFT) ==
		      ((1ull << 54) | (1ull << 56)),
	      "saved R/X live in bits 54 and 56");
static_assert(!((SPTE_ACC_TRACK_SAVED_MASK >> SPTE_ACC_TRACK_SAVED_SHIFT) & ~EPT_RWX_MASK),
	      "the save area holds exactly the three access bits");
static_assert(!(SPTE_ACC_TRACK_SAVED_MASK &
		(EPT_LARGE | EPT_ACCESSED | EPT_DIRTY | SPTE_MMU_PRESENT | EPT_SUPPRESS_VE)),
	      "access-track save area overlaps a hardware or presence bit");

/* A present leaf whose rights were taken away by access tracking. */
static inline bool is_access_track_spte(uint64_t spte)
{
	return is_shadow_present_pte(spte) && !spte_ad_enabled(spte) && !(spte & EPT_RWX_MASK);
}

/*
 * Has the page behind leaf @spte been used since it was last aged?  With
 * A/D bits, the Accessed bit; without, anything but the access-tracked
 * encoding.
 */
static inline bool spte_is_young(uint64_t spte)
{
	if (!is_shadow_present_pte(spte))
		return false;
	if (spte_ad_enabled(spte))
		return is_accessed_spte(spte);
	return !is_access_track_spte(spte);
}

/*
 * Take the rights away from an A/D-disabled leaf (see above).  Idempotent:
 * an entry already tracked is returned unchanged.
 */
static inline uint64_t mark_spte_for_access_track(uint64_t spte)
{
	if (is_access_track_spte(spte))
		return spte;
	spte &= ~SPTE_ACC_TRACK_SAVED_MASK;
	spte |= (spte & SPTE_ACC_TRACK_SAVE_BITS) << SPTE_ACC_TRACK_SAVED_SHIFT;
	return spte & ~EPT_RWX_MASK;
}

/* Undo mark_spte_for_access_track(): R and X back, save area empty, no W. */
static inline uint64_t restore_acc_track_spte(uint64_t spte)
{
	uint64_t saved = (spte >> SPTE_ACC_TRACK_SAVED_SHIFT) & SPTE_ACC_TRACK_SAVE_BITS;

	return (spte & ~SPTE_ACC_TRACK_SAVED_MASK) | saved;
}

/*
 * Age one leaf: the value that makes it "not young", or @spte itself when
 * it is not young already.  Clearing A needs no TLB flush (a stale TLB
 * entry only makes aging less precise); neither the dirty state nor
 * MMU-writable is touched.
 */
static inline uint64_t spte_age(uint64_t spte)
{
	if (!spte_is_young(spte))
		return spte;
	if (spte_ad_enabled(spte))
		return spte & ~EPT_ACCESSED;
	return mark_spte_for_access_track(spte);
}

/*
 * Leaf changes that require a TLB flush before anyone relies on them:
 * the mapping goes away, the target changes, or vmmu takes back the right
 * to make it writable.  Clearing W alone while MMU-writable stays set
 * (dirty logging) can wait until the dirty log is handed out.
 */
static inline bool leaf_spte_change_needs_tlb_flush(uint64_t old, uint64_t new_)
{
	if (!is_shadow_present_pte(old))
		return false;
	if (!is_shadow_present_pte(new_))
		return true;
	if (spte_addr(old) != spte_addr(new_))
		return true;
	return is_mmu_writable_spte(old) && !is_mmu_writable_spte(new_);
}

#endif /* VMMU_SPTE_H */
