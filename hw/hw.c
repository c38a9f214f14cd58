/* SPDX-License-Identifier: MIT */
/*
 * hw.c - the software processor.  It knows the architectural EPT format
 * (from spte.h) and the processor interface of <vmmu/vmmu.h>, nothing of
 * vmmu's internals.
 */
#include <vmmu/hw.h>

#include "spte.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HW_PAGE_SHIFT 12
#define HW_PAGE_SIZE 4096ull

struct tlb_entry {
	uint64_t tag;      /* gfn + 1; 0 = empty */
	uint64_t hva_page; /* host address of the 4 KiB page */
	uint8_t perms;     /* EPT_READABLE | EPT_WRITABLE | EPT_EXECUTABLE */
	uint8_t dirty_ok;  /* a write needs no walk to set D */
};

struct vmmu_hw_vcpu {
	struct vmmu_vcpu *vcpu;
	const uint64_t *kick;
	struct vmmu_guest_entry entry;
	bool in_guest;
	unsigned tlb_mask;
	struct tlb_entry *tlb;
	/* Written on every access: keep it off other vCPUs' cache lines. */
	struct vmmu_hw_stats stats __attribute__((aligned(64)));
} __attribute__((aligned(64)));

static inline void stat_inc(uint64_t *c)
{
	/* Owner-only counter, read by others with relaxed loads. */
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

int vmmu_hw_vcpu_create(struct vmmu_vcpu *vcpu, const struct vmmu_hw_config *cfg,
			struct vmmu_hw_vcpu **out)
{
	unsigned n = cfg && cfg->tlb_entries ? cfg->tlb_entries : 512;
	struct vmmu_hw_vcpu *hw;

	if (!vcpu || !out || (n & (n - 1)) || n > (1u << 20))
		return -EINVAL;
	hw = aligned_alloc(64, sizeof(*hw));
	if (!hw)
		return -ENOMEM;
	memset(hw, 0, sizeof(*hw));
	hw->tlb = calloc(n, sizeof(*hw->tlb));
	if (!hw->tlb) {
		free(hw);
		return -ENOMEM;
	}
	hw->vcpu = vcpu;
	hw->kick = vmmu_vcpu_kick_word(vcpu);
	hw->tlb_mask = n - 1;
	*out = hw;
	return 0;
}

int vmmu_hw_vcpu_destroy(struct vmmu_hw_vcpu *hw)
{
	if (!hw)
		return -EINVAL;
	vmmu_hw_guest_exit(hw);
	free(hw->tlb);
	free(hw);
	return 0;
}

static void tlb_flush_all(struct vmmu_hw_vcpu *hw)
{
	memset(hw->tlb, 0, (size_t)(hw->tlb_mask + 1) * sizeof(*hw->tlb));
	stat_inc(&hw->stats.tlb_flushes);
}

int vmmu_hw_tlb_flush(struct vmmu_hw_vcpu *hw)
{
	if (!hw)
		return -EINVAL;
	tlb_flush_all(hw);
	return 0;
}

int vmmu_hw_guest_enter(struct vmmu_hw_vcpu *hw)
{
	int r;

	if (!hw)
		return -EINVAL;
	if (hw->in_guest)
		return 0;
	r = vmmu_vcpu_enter_guest(hw->vcpu, &hw->entry);
	if (r)
		return r;
	if (hw->entry.flush_tlb)
		tlb_flush_all(hw);
	hw->in_guest = true;
	return 0;
}

int vmmu_hw_guest_exit(struct vmmu_hw_vcpu *hw)
{
	if (!hw)
		return -EINVAL;
	if (!hw->in_guest)
		return 0;
	hw->in_guest = false;
	stat_inc(&hw->stats.exits);
	return vmmu_vcpu_exit_guest(hw->vcpu);
}

/* Service a kick: leave guest mode (the acknowledgement) and come back. */
static int hw_handle_kick(struct vmmu_hw_vcpu *hw)
{
	vmmu_hw_guest_exit(hw);
	return vmmu_hw_guest_enter(hw);
}

enum walk_result { WALK_OK, WALK_VIOLATION, WALK_PML_FULL };

/*
 * Walk the EPT tree for @gfn with access @acc (EPT_READABLE/WRITABLE/
 * EXECUTABLE).  Each entry is read once, atomically.  The rights of the
 * translation are the AND over all levels.  With A/D enabled, A is set on
 * every entry used and D on the leaf for a write, by compare-and-exchange
 * against the value read: like the processor's locked update, it never
 * writes to an entry that changed meanwhile (the walk restarts instead),
 * and it only happens when the entry allows the access.
 */
static enum walk_result hw_walk(struct vmmu_hw_vcpu *hw, uint64_t gfn, uint64_t acc,
				struct tlb_entry *out, uint64_t *qual)
{
	stat_inc(&hw->stats.walks);
restart:;
	uint64_t *pt = hw->entry.root;
	uint64_t cum = EPT_RWX_MASK;

	for (int level = hw->entry.root_level;; level--) {
		uint64_t *ptep = &pt[spte_index(gfn, level)];
		uint64_t e = __atomic_load_n(ptep, __ATOMIC_ACQUIRE);
		bool leaf = level == PG_LEVEL_4K || (e & EPT_LARGE);

		cum &= e & EPT_RWX_MASK;
		if ((cum & acc) != acc) {
			*qual = acc | (cum << 3);
			return WALK_VIOLATION;
		}
		if (hw->entry.ad_enabled) {
			uint64_t want = e | EPT_ACCESSED;

			if (leaf && (acc & EPT_WRITABLE))
				want |= EPT_DIRTY;
			/* Setting D on a leaf is logged (PML); a full log is
			 * a VM exit before the write. */
			bool log = hw->entry.pml && (want & ~e & EPT_DIRTY);

			if (log && *hw->entry.pml_count >= hw->entry.pml_size)
				return WALK_PML_FULL;
			if (want != e) {
				if (!__atomic_compare_exchange_n(ptep, &e, want, false,
								 __ATOMIC_ACQ_REL,
								 __ATOMIC_ACQUIRE))
					goto restart;
				stat_inc(&hw->stats.ad_updates);
				e = want;
			}
			if (log)
				hw->entry.pml[(*hw->entry.pml_count)++] = gfn << HW_PAGE_SHIFT;
		}
		if (leaf) {
			uint64_t off = gfn & (spte_pages_per(level) - 1);

			out->tag = gfn + 1;
			out->hva_page = spte_addr(e) + (off << HW_PAGE_SHIFT);
			out->perms = (uint8_t)cum;
			out->dirty_ok = !hw->entry.ad_enabled || (e & EPT_DIRTY);
			return WALK_OK;
		}
		pt = spte_to_child_pt(e);
	}
}

/* Copy between guest memory at @hva and @buf, atomically when aligned. */
static void hw_copy(void *hva, void *buf, size_t len, bool write)
{
	uintptr_t a = (uintptr_t)hva;

	if (len == 8 && !(a & 7)) {
		uint64_t v;
		if (write) {
			memcpy(&v, buf, 8);
			__atomic_store_n((uint64_t *)hva, v, __ATOMIC_RELAXED);
		} else {
			v = __atomic_load_n((uint64_t *)hva, __ATOMIC_RELAXED);
			memcpy(buf, &v, 8);
		}
	} else if (len == 4 && !(a & 3)) {
		uint32_t v;
		if (write) {
			memcpy(&v, buf, 4);
			__atomic_store_n((uint32_t *)hva, v, __ATOMIC_RELAXED);
		} else {
			v = __atomic_load_n((uint32_t *)hva, __ATOMIC_RELAXED);
			memcpy(buf, &v, 4);
		}
	} else if (len == 2 && !(a & 1)) {
		uint16_t v;
		if (write) {
			memcpy(&v, buf, 2);
			__atomic_store_n((uint16_t *)hva, v, __ATOMIC_RELAXED);
		} else {
			v = __atomic_load_n((uint16_t *)hva, __ATOMIC_RELAXED);
			memcpy(buf, &v, 2);
		}
	} else {
		/* Byte by byte: tearing is allowed, data races are not. */
		uint8_t *h = hva, *b = buf;
		for (size_t i = 0; i < len; i++) {
			if (write)
				__atomic_store_n(&h[i], b[i], __ATOMIC_RELAXED);
			else
				b[i] = __atomic_load_n(&h[i], __ATOMIC_RELAXED);
		}
	}
}

/* One access inside one page. */
static int hw_access_page(struct vmmu_hw_vcpu *hw, uint64_t gpa, uint64_t acc, void *buf,
			  size_t len)
{
	uint64_t gfn = gpa >> HW_PAGE_SHIFT;
	struct tlb_entry *t = &hw->tlb[gfn & hw->tlb_mask];
	int r;

	for (;;) {
		enum walk_result wr;
		uint64_t qual;

		if (__builtin_expect(!hw->in_guest || __atomic_load_n(hw->kick, __ATOMIC_RELAXED), 0)) {
			r = hw->in_guest ? hw_handle_kick(hw) : vmmu_hw_guest_enter(hw);
			if (r)
				return r;
		}
		if (t->tag == gfn + 1 && (t->perms & acc) == acc &&
		    (!(acc & EPT_WRITABLE) || t->dirty_ok)) {
			stat_inc(&hw->stats.tlb_hits);
			break;
		}
		wr = hw_walk(hw, gfn, acc, t, &qual);
		if (wr == WALK_OK)
			break;
		if (wr == WALK_PML_FULL) {
			/* PML-full exit: vmmu empties the log; then retry. */
			t->tag = 0;
			vmmu_hw_guest_exit(hw);
			continue;
		}
		/* EPT violation: exit to vmmu, then retry the access. */
		t->tag = 0;
		stat_inc(&hw->stats.ept_violations);
		vmmu_hw_guest_exit(hw);
		r = vmmu_vcpu_page_fault(hw->vcpu, gpa, qual);
		if (r < 0)
			return r;
		if (r == VMMU_PF_EMULATE)
			return -EFAULT;
	}
	stat_inc(&hw->stats.accesses);
	hw_copy((void *)(uintptr_t)(t->hva_page + (gpa & (HW_PAGE_SIZE - 1))), buf, len,
		acc & EPT_WRITABLE);
	return 0;
}

static int hw_access(struct vmmu_hw_vcpu *hw, uint64_t gpa, uint64_t acc, void *buf,
		     size_t len)
{
	uint8_t *b = buf;

	int r;

	if (!hw || (!buf && len))
		return -EINVAL;
	if (!len)
		return 0;
	/* The address width comes from the root: enter to learn it. */
	if (!hw->in_guest) {
		r = vmmu_hw_guest_enter(hw);
		if (r)
			return r;
	}
	if (gpa + len - 1 < gpa ||
	    (gpa + len - 1) >> (12 + 9 * (unsigned)hw->entry.root_level))
		return -EINVAL;
	while (len) {
		size_t chunk = HW_PAGE_SIZE - (gpa & (HW_PAGE_SIZE - 1));

		if (chunk > len)
			chunk = len;
		r = hw_access_page(hw, gpa, acc, b, chunk);
		if (r)
			return r;
		gpa += chunk;
		b += chunk;
		len -= chunk;
	}
	return 0;
}

int vmmu_hw_read(struct vmmu_hw_vcpu *hw, uint64_t gpa, void *buf, size_t len)
{
	return hw_access(hw, gpa, EPT_READABLE, buf, len);
}

int vmmu_hw_write(struct vmmu_hw_vcpu *hw, uint64_t gpa, const void *buf, size_t len)
{
	return hw_access(hw, gpa, EPT_WRITABLE, (void *)(uintptr_t)buf, len);
}

int vmmu_hw_fetch(struct vmmu_hw_vcpu *hw, uint64_t gpa, void *buf, size_t len)
{
	return hw_access(hw, gpa, EPT_EXECUTABLE, buf, len);
}

int vmmu_hw_stats(struct vmmu_hw_vcpu *hw, struct vmmu_hw_stats *out)
{
	if (!hw || !out)
		return -EINVAL;
	out->accesses = __atomic_load_n(&hw->stats.accesses, __ATOMIC_RELAXED);
	out->tlb_hits = __atomic_load_n(&hw->stats.tlb_hits, __ATOMIC_RELAXED);
	out->walks = __atomic_load_n(&hw->stats.walks, __ATOMIC_RELAXED);
	out->ept_violations = __atomic_load_n(&hw->stats.ept_violations, __ATOMIC_RELAXED);
	out->ad_updates = __atomic_load_n(&hw->stats.ad_updates, __ATOMIC_RELAXED);
	out->tlb_flushes = __atomic_load_n(&hw->stats.tlb_flushes, __ATOMIC_RELAXED);
	out->exits = __atomic_load_n(&hw->stats.exits, __ATOMIC_RELAXED);
	return 0;
}

struct vmmu_vcpu *vmmu_hw_vcpu_mmu(struct vmmu_hw_vcpu *hw)
{
	return hw ? hw->vcpu : NULL;
}
