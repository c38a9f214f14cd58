/* SPDX-License-Identifier: MIT */
/*
 * hw.c - the software processor.  It knows the architectural EPT format
 * (<vmmu/ept.h>), the architectural guest page-table walk
 * (<vmmu/guest_walk.h>, a pure module) and the processor interface of
 * <vmmu/vmmu.h> and <vmmu/paging.h>: public headers only, nothing of
 * vmmu's internals, as an emulator's own CPU would.
 *
 * Two TLBs: one maps guest-physical pages (accesses with guest paging off,
 * and the guest's own page-table entries during a 2-D walk, the way the
 * processor caches guest paging-structure translations), one maps guest
 * virtual pages straight to host memory (the combined translation).  The
 * virtual one keeps the guest's rights, not a verdict: permissions are
 * checked against the current CR0.WP, SMEP, SMAP, PKRU, EFLAGS.AC and CPL
 * at every use, so changing those needs no flush.
 */
#include <vmmu/ept.h>
#include <vmmu/guest_walk.h>
#include <vmmu/hw.h>
#include <vmmu/nested.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HW_PAGE_SHIFT 12
#define HW_PAGE_SIZE 4096ull

struct tlb_entry {
	uint64_t tag; /* gfn + 1; 0 = empty */
	uint64_t hva_page; /* host address of the 4 KiB page */
	uint8_t perms; /* VMMU_EPTE_READ | VMMU_EPTE_WRITE | VMMU_EPTE_EXEC */
	uint8_t dirty_ok; /* a write needs no walk to set D */
};

/* A guest-virtual page: the combined translation. */
struct gva_tlb_entry {
	uint64_t tag; /* virtual page number + 1; 0 = empty */
	uint64_t hva_page; /* host address of the 4 KiB page */
	uint8_t guest_acc; /* VMMU_GW_ACC_* of the guest's tables */
	uint8_t ept_perms; /* VMMU_EPTE_READ | VMMU_EPTE_WRITE | VMMU_EPTE_EXEC */
	uint8_t pkey;
	uint8_t dirty_ok; /* guest D and EPT D are both set */
};

/* Walker tables for one set of control bits (a processor computes none,
 * but a software one would redo this on every walk). */
struct role_memo {
	bool used;
	uint64_t cr0, cr4, efer;
	uint32_t pkru;
	struct vmmu_gw_role role;
};

struct vmmu_hw_vcpu {
	struct vmmu_vcpu *vcpu;
	const uint64_t *kick;
	struct vmmu_guest_entry entry;
	bool in_guest;
	bool l2; /* running L2: addresses are L2 guest-physical */
	unsigned gpa_bits; /* of the VM's tables, fixed for its lifetime */
	unsigned tlb_mask;
	struct tlb_entry *tlb;

	/* Guest paging, as of the last guest entry. */
	bool paging_on;
	uint64_t paging_gen;
	struct vmmu_paging_state paging;
	const struct vmmu_gw_role *role;
	struct role_memo memo[2];
	struct gva_tlb_entry *gtlb;
	struct vmmu_hw_fault last_fault;
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
	hw->gtlb = calloc(n, sizeof(*hw->gtlb));
	if (!hw->tlb || !hw->gtlb) {
		free(hw->tlb);
		free(hw->gtlb);
		free(hw);
		return -ENOMEM;
	}
	/* Generation 0 is the reset state (paging off) every vCPU starts in. */
	hw->paging_gen = 0;
	hw->vcpu = vcpu;
	hw->kick = vmmu_vcpu_kick_word(vcpu);
	vmmu_vcpu_gpa_bits(vcpu, &hw->gpa_bits);
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
	free(hw->gtlb);
	free(hw);
	return 0;
}

static void gtlb_flush(struct vmmu_hw_vcpu *hw)
{
	memset(hw->gtlb, 0, (size_t)(hw->tlb_mask + 1) * sizeof(*hw->gtlb));
	stat_inc(&hw->stats.gva_tlb_flushes);
}

static void tlb_flush_all(struct vmmu_hw_vcpu *hw)
{
	memset(hw->tlb, 0, (size_t)(hw->tlb_mask + 1) * sizeof(*hw->tlb));
	gtlb_flush(hw);
	stat_inc(&hw->stats.tlb_flushes);
}

/* Control bits the guest walk depends on. */
#define WALK_CR0 (VMMU_CR0_PE | VMMU_CR0_PG | VMMU_CR0_WP)
#define WALK_CR4 \
	(VMMU_CR4_PSE | VMMU_CR4_PAE | VMMU_CR4_LA57 | VMMU_CR4_SMEP | VMMU_CR4_SMAP | VMMU_CR4_PKE)
#define WALK_EFER (VMMU_EFER_LME | VMMU_EFER_LMA | VMMU_EFER_NXE)
/* Changes that make cached virtual translations wrong (the rest, WP, SMEP,
 * SMAP, PKRU, AC and CPL, are checked at use). */
#define FLUSH_CR0 (VMMU_CR0_PE | VMMU_CR0_PG)
#define FLUSH_CR4 \
	(VMMU_CR4_PSE | VMMU_CR4_PAE | VMMU_CR4_LA57 | VMMU_CR4_PKE | VMMU_CR4_PGE | VMMU_CR4_PCIDE)
#define FLUSH_EFER (VMMU_EFER_LMA | VMMU_EFER_NXE)

static const struct vmmu_gw_role *memo_role(struct vmmu_hw_vcpu *hw,
					    const struct vmmu_paging_state *st)
{
	uint64_t cr0 = st->cr0 & WALK_CR0, cr4 = st->cr4 & WALK_CR4, efer = st->efer & WALK_EFER;
	struct role_memo *m;

	for (int i = 0; i < 2; i++) {
		m = &hw->memo[i];
		if (m->used && m->cr0 == cr0 && m->cr4 == cr4 && m->efer == efer &&
		    m->pkru == st->pkru)
			return &m->role;
	}
	/* Replace the entry not in use right now. */
	m = hw->role == &hw->memo[0].role ? &hw->memo[1] : &hw->memo[0];
	if (vmmu_gw_role_init(&m->role, &(struct vmmu_gw_regs){
						.cr0 = cr0,
						.cr4 = cr4,
						.efer = efer,
						.pkru = st->pkru,
						.maxphyaddr = hw->entry.root_level == 5 ? 52 : 48,
					})) {
		m->used = false;
		return NULL;
	}
	m->used = true;
	m->cr0 = cr0;
	m->cr4 = cr4;
	m->efer = efer;
	m->pkru = st->pkru;
	return &m->role;
}

/*
 * Take the vCPU's paging state if it changed since the last entry (a MOV
 * to a control register that exited, or KVM_SET_SREGS from the VMM), and
 * flush the virtual TLB where the architecture says the change makes its
 * contents wrong.
 */
static void adopt_paging(struct vmmu_hw_vcpu *hw)
{
	struct vmmu_paging_state st, *old = &hw->paging;
	const struct vmmu_gw_role *role;
	uint64_t gen;

	if (vmmu_vcpu_get_paging(hw->vcpu, &st, &gen) || gen == hw->paging_gen)
		return;
	role = memo_role(hw, &st);
	if (!role) /* vmmu accepted it, so the walker must too */
		abort();
	if (st.cr3 != old->cr3 || ((st.cr0 ^ old->cr0) & FLUSH_CR0) ||
	    ((st.cr4 ^ old->cr4) & FLUSH_CR4) || ((st.efer ^ old->efer) & FLUSH_EFER))
		gtlb_flush(hw);
	hw->paging = st;
	hw->paging_gen = gen;
	hw->role = role;
	hw->paging_on = st.cr0 & VMMU_CR0_PG;
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
	adopt_paging(hw);
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

enum walk_result {
	WALK_OK,
	WALK_VIOLATION,
	WALK_PML_FULL
};

/*
 * Walk the EPT tree for @gfn with access @acc (VMMU_EPTE_READ/WRITABLE/
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
	uint64_t cum = VMMU_EPTE_RWX_MASK;

	for (int level = hw->entry.root_level;; level--) {
		uint64_t *ptep = &pt[vmmu_ept_index(gfn, level)];
		uint64_t e = __atomic_load_n(ptep, __ATOMIC_ACQUIRE);
		bool leaf = level == VMMU_EPT_LEVEL_4K || (e & VMMU_EPTE_LARGE);

		cum &= e & VMMU_EPTE_RWX_MASK;
		if ((cum & acc) != acc) {
			*qual = acc | (cum << 3);
			return WALK_VIOLATION;
		}
		if (hw->entry.ad_enabled) {
			uint64_t want = e | VMMU_EPTE_ACCESSED;

			if (leaf && (acc & VMMU_EPTE_WRITE))
				want |= VMMU_EPTE_DIRTY;
			/* Setting D on a leaf is logged (PML); a full log is
			 * a VM exit before the write. */
			bool log = hw->entry.pml && (want & ~e & VMMU_EPTE_DIRTY);

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
			uint64_t off = gfn & (vmmu_ept_pages_per(level) - 1);

			out->tag = gfn + 1;
			out->hva_page = vmmu_ept_addr(e) + (off << HW_PAGE_SHIFT);
			out->perms = (uint8_t)cum;
			out->dirty_ok = !hw->entry.ad_enabled || (e & VMMU_EPTE_DIRTY);
			return WALK_OK;
		}
		pt = (uint64_t *)(uintptr_t)vmmu_ept_addr(e);
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

static bool gpa_in_range(const struct vmmu_hw_vcpu *hw, uint64_t gpa)
{
	/* In L2, also what the EPT02 root's levels translate (a 4-level EPT12
	 * in a VM with 5-level tables). */
	if (hw->l2 && hw->entry.root_level &&
	    12u + 9u * (unsigned)hw->entry.root_level < hw->gpa_bits)
		return !(gpa >> (12u + 9u * (unsigned)hw->entry.root_level));
	return !(gpa >> hw->gpa_bits);
}

/* vmmu said "emulate": a write may be one to a write-tracked page. */
#define HW_EMULATE 2

/*
 * An EPT violation at @gpa: exit to vmmu, which maps it.  0 when the access
 * should be retried, HW_EMULATE, or the error to return (-EXDEV: in L2, the
 * exit belongs to L1).
 */
static int hw_ept_exit(struct vmmu_hw_vcpu *hw, uint64_t gpa, uint64_t qual)
{
	int r;

	stat_inc(&hw->stats.ept_violations);
	vmmu_hw_guest_exit(hw);
	r = vmmu_vcpu_page_fault(hw->vcpu, gpa, qual);
	if (r < 0)
		return r;
	if (r == VMMU_PF_EMULATE)
		return HW_EMULATE;
	if (r == VMMU_PF_NESTED_EXIT)
		return -EXDEV;
	return 0;
}

/*
 * The GPA TLB entry for @gpa allowing @acc, walking EPT on a miss: WALK_OK
 * with *out, WALK_VIOLATION with *qual, or WALK_PML_FULL.
 */
static enum walk_result gpa_translate(struct vmmu_hw_vcpu *hw, uint64_t gpa, uint64_t acc,
				      struct tlb_entry **out, uint64_t *qual, bool count_hit)
{
	uint64_t gfn = gpa >> HW_PAGE_SHIFT;
	struct tlb_entry *t = &hw->tlb[gfn & hw->tlb_mask];
	enum walk_result wr;

	*out = t;
	if (t->tag == gfn + 1 && (t->perms & acc) == acc &&
	    (!(acc & VMMU_EPTE_WRITE) || t->dirty_ok)) {
		if (count_hit)
			stat_inc(&hw->stats.tlb_hits);
		return WALK_OK;
	}
	wr = hw_walk(hw, gfn, acc, t, qual);
	if (wr != WALK_OK)
		t->tag = 0;
	return wr;
}

/*
 * A walk that did not end in a translation: a PML-full exit (vmmu empties
 * the log when the vCPU leaves guest mode) or an EPT violation.  0 when
 * the access should be retried, or the error to return.
 */
static int hw_walk_exit(struct vmmu_hw_vcpu *hw, enum walk_result wr, uint64_t gpa, uint64_t qual)
{
	if (wr == WALK_PML_FULL) {
		vmmu_hw_guest_exit(hw);
		return 0;
	}
	return hw_ept_exit(hw, gpa, qual);
}

/* Enter guest mode, or service a kick, before an access. */
static inline int hw_ready(struct vmmu_hw_vcpu *hw)
{
	if (__builtin_expect(!hw->in_guest || __atomic_load_n(hw->kick, __ATOMIC_RELAXED), 0))
		return hw->in_guest ? hw_handle_kick(hw) : vmmu_hw_guest_enter(hw);
	return 0;
}

/* One access inside one guest-physical page (guest paging off). */
static int hw_access_page(struct vmmu_hw_vcpu *hw, uint64_t gpa, uint64_t acc, void *buf,
			  size_t len)
{
	struct tlb_entry *t;
	int r;

	for (;;) {
		enum walk_result wr;
		uint64_t qual;

		r = hw_ready(hw);
		if (r)
			return r;
		wr = gpa_translate(hw, gpa, acc, &t, &qual, true);
		if (wr == WALK_OK)
			break;
		r = hw_walk_exit(hw, wr, gpa, qual);
		if (r == HW_EMULATE && (acc & VMMU_EPTE_WRITE) && !hw->l2) {
			/* The emulator performs the write (a write-tracked
			 * page: L1 writing its EPT12 tables). */
			r = vmmu_vcpu_emulate_write(hw->vcpu, gpa, buf, len);
			if (!r) {
				stat_inc(&hw->stats.accesses);
				return 0;
			}
			if (r == -EAGAIN)
				continue; /* tracked no more: an ordinary fault */
			return r;
		}
		if (r)
			return r == HW_EMULATE ? -EFAULT : r;
	}
	stat_inc(&hw->stats.accesses);
	hw_copy((void *)(uintptr_t)(t->hva_page + (gpa & (HW_PAGE_SIZE - 1))), buf, len,
		acc & VMMU_EPTE_WRITE);
	return 0;
}

/*
 * The 2-D walk.  Every entry of the guest's tables is at a guest-physical
 * address, which is itself translated through EPT (the GPA TLB first); an
 * EPT violation there stops the guest walk, and is reported to vmmu like
 * any other before the access is retried from the start.
 */
struct walk2d {
	struct vmmu_hw_vcpu *hw;
	uint64_t fault_gpa; /* EPT exit on a guest-table access */
	uint64_t qual;
	enum walk_result wr;
	bool bad; /* a table beyond the guest-physical width */
};

static int hw_gpte_read(void *opaque, uint64_t gpa, uint64_t *val, unsigned size)
{
	struct walk2d *w = opaque;
	struct tlb_entry *t;
	uintptr_t hva;

	if (!gpa_in_range(w->hw, gpa)) {
		w->bad = true;
		return 1;
	}
	w->wr = gpa_translate(w->hw, gpa, VMMU_EPTE_READ, &t, &w->qual, false);
	if (w->wr != WALK_OK) {
		w->fault_gpa = gpa;
		return 1;
	}
	hva = (uintptr_t)(t->hva_page + (gpa & (HW_PAGE_SIZE - 1)));
	if (size == 8)
		*val = __atomic_load_n((uint64_t *)hva, __ATOMIC_ACQUIRE);
	else
		*val = __atomic_load_n((uint32_t *)hva, __ATOMIC_ACQUIRE);
	return 0;
}

/* The processor's locked update of a guest entry's A/D bits. */
static int hw_gpte_cmpxchg(void *opaque, uint64_t gpa, uint64_t old, uint64_t new_val,
			   unsigned size)
{
	struct walk2d *w = opaque;
	struct tlb_entry *t;
	uintptr_t hva;
	bool ok;

	if (!gpa_in_range(w->hw, gpa)) {
		w->bad = true;
		return -1;
	}
	w->wr = gpa_translate(w->hw, gpa, VMMU_EPTE_WRITE, &t, &w->qual, false);
	if (w->wr != WALK_OK) {
		w->fault_gpa = gpa;
		return -1;
	}
	hva = (uintptr_t)(t->hva_page + (gpa & (HW_PAGE_SIZE - 1)));
	if (size == 8) {
		ok = __atomic_compare_exchange_n((uint64_t *)hva, &old, new_val, false,
						 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	} else {
		uint32_t o = (uint32_t)old;

		ok = __atomic_compare_exchange_n((uint32_t *)hva, &o, (uint32_t)new_val, false,
						 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	}
	if (ok)
		stat_inc(&w->hw->stats.guest_ad_updates);
	return ok ? 0 : 1;
}

static const struct vmmu_gw_mem_ops hw_gpte_ops = {
	.read_pte = hw_gpte_read,
	.cmpxchg_pte = hw_gpte_cmpxchg,
};

#define GUEST_PTE_DIRTY (1ull << 6)

static unsigned acc_kind(uint64_t acc)
{
	if (acc & VMMU_EPTE_WRITE)
		return VMMU_GW_KIND_WRITE;
	return (acc & VMMU_EPTE_EXEC) ? VMMU_GW_KIND_FETCH : VMMU_GW_KIND_READ;
}

static unsigned hw_priv(const struct vmmu_hw_vcpu *hw)
{
	if (hw->paging.cpl == 3)
		return VMMU_GW_PRIV_USER;
	return hw->paging.eflags_ac ? VMMU_GW_PRIV_SUP_AC : VMMU_GW_PRIV_SUP;
}

/* May the cached translation @gt be used for @acc under the current
 * control bits?  If not, a walk decides (and reports the exact fault). */
static bool gtlb_permits(const struct vmmu_hw_vcpu *hw, const struct gva_tlb_entry *gt,
			 uint64_t acc)
{
	const struct vmmu_gw_role *role = hw->role;
	unsigned priv = hw_priv(hw), kind = acc_kind(acc);
	unsigned a = gt->guest_acc;

	if ((role->perm_fault[priv][kind] >> a) & 1)
		return false;
	if ((a & VMMU_GW_ACC_U) && ((role->pk_deny[priv][kind] >> gt->pkey) & 1))
		return false;
	if ((gt->ept_perms & acc) != acc)
		return false;
	return !(acc & VMMU_EPTE_WRITE) || gt->dirty_ok;
}

static void record_fault(struct vmmu_hw_vcpu *hw, uint8_t vector, uint32_t code, uint64_t gva)
{
	hw->last_fault = (struct vmmu_hw_fault){
		.vector = vector,
		.error_code = code,
		.address = gva,
	};
	stat_inc(&hw->stats.guest_faults);
}

/*
 * Translate @gva for @acc into @gt.  0: done; 1: vmmu fixed an EPT
 * violation or a race was lost, retry; negative: the error to return.
 */
static int hw_walk_2d(struct vmmu_hw_vcpu *hw, uint64_t gva, uint64_t acc, struct gva_tlb_entry *gt)
{
	unsigned kind = acc_kind(acc), priv = hw_priv(hw);
	uint32_t access = 0;
	struct walk2d w = { .hw = hw };
	struct vmmu_gw_result res;
	enum walk_result wr;
	struct tlb_entry *t;
	uint64_t qual;
	int r;

	if (kind == VMMU_GW_KIND_WRITE)
		access |= VMMU_GW_ACCESS_WRITE;
	if (kind == VMMU_GW_KIND_FETCH)
		access |= VMMU_GW_ACCESS_FETCH;
	if (priv == VMMU_GW_PRIV_USER)
		access |= VMMU_GW_ACCESS_USER;
	if (priv == VMMU_GW_PRIV_SUP_AC)
		access |= VMMU_GW_ACCESS_AC;

	stat_inc(&hw->stats.gva_walks);
	r = vmmu_gw_walk(hw->role, &hw_gpte_ops, &w, hw->paging.cr3, gva, access, &res);
	switch (r) {
	case VMMU_GW_OK:
		break;
	case VMMU_GW_PAGE_FAULT:
		record_fault(hw, VMMU_EXC_PF, res.error_code, gva);
		return -EACCES;
	case VMMU_GW_NONCANONICAL:
		record_fault(hw, VMMU_EXC_GP, 0, gva);
		return -EACCES;
	case VMMU_GW_TABLE_FAULT:
		if (w.bad)
			return -EFAULT;
		r = hw_walk_exit(hw, w.wr, w.fault_gpa, w.qual);
		return r == HW_EMULATE ? -EFAULT : r ? r : 1;
	case VMMU_GW_RETRY:
		return 1;
	default:
		return r < 0 ? r : -EFAULT;
	}

	/* The second dimension: the page itself. */
	if (!gpa_in_range(hw, res.gpa))
		return -EFAULT;
	wr = gpa_translate(hw, res.gpa, acc, &t, &qual, false);
	if (wr != WALK_OK) {
		r = hw_walk_exit(hw, wr, res.gpa, qual);
		return r == HW_EMULATE ? -EFAULT : r ? r : 1;
	}
	gt->tag = (gva >> HW_PAGE_SHIFT) + 1;
	gt->hva_page = t->hva_page;
	gt->guest_acc = res.access;
	gt->pkey = res.pkey;
	gt->ept_perms = t->perms;
	gt->dirty_ok = (res.pte[res.level] & GUEST_PTE_DIRTY) && t->dirty_ok;
	return 0;
}

/* One access inside one guest-virtual page (guest paging on). */
static int hw_access_gva_page(struct vmmu_hw_vcpu *hw, uint64_t gva, uint64_t acc, void *buf,
			      size_t len)
{
	uint64_t vpn = gva >> HW_PAGE_SHIFT;
	struct gva_tlb_entry *gt = &hw->gtlb[vpn & hw->tlb_mask];
	int r;

	for (;;) {
		r = hw_ready(hw);
		if (r)
			return r;
		if (gt->tag == vpn + 1 && gtlb_permits(hw, gt, acc)) {
			stat_inc(&hw->stats.tlb_hits);
			break;
		}
		gt->tag = 0;
		r = hw_walk_2d(hw, gva, acc, gt);
		if (r < 0)
			return r;
		if (!r)
			break;
	}
	stat_inc(&hw->stats.accesses);
	hw_copy((void *)(uintptr_t)(gt->hva_page + (gva & (HW_PAGE_SIZE - 1))), buf, len,
		acc & VMMU_EPTE_WRITE);
	return 0;
}

static int hw_access(struct vmmu_hw_vcpu *hw, uint64_t addr, uint64_t acc, void *buf, size_t len)
{
	uint8_t *b = buf;
	bool virt;
	int r;

	if (!hw || (!buf && len))
		return -EINVAL;
	if (!len)
		return 0;
	if (addr + len - 1 < addr)
		return -EINVAL;
	/*
	 * Check the address before entering guest mode, which can fail for
	 * reasons that have nothing to do with it (-ENOBUFS).  Outside guest
	 * mode the paging mode that counts is the one the next entry adopts.
	 */
	if (hw->in_guest) {
		virt = hw->paging_on;
	} else {
		struct vmmu_paging_state st;

		r = vmmu_vcpu_get_paging(hw->vcpu, &st, NULL);
		if (r)
			return r;
		virt = st.cr0 & VMMU_CR0_PG;
	}
	if (!virt && !gpa_in_range(hw, addr + len - 1))
		return -EINVAL;
	if (!hw->in_guest) {
		r = vmmu_hw_guest_enter(hw);
		if (r)
			return r;
	}
	/* In L2 the paging state is L2's (vmmu swaps it at entry and exit),
	 * and its 2-D walk goes through EPT02. */
	virt = hw->paging_on;
	while (len) {
		size_t chunk = HW_PAGE_SIZE - (addr & (HW_PAGE_SIZE - 1));

		if (chunk > len)
			chunk = len;
		if (virt)
			r = hw_access_gva_page(hw, addr, acc, b, chunk);
		else
			r = hw_access_page(hw, addr, acc, b, chunk);
		if (r)
			return r;
		addr += chunk;
		b += chunk;
		len -= chunk;
	}
	return 0;
}

int vmmu_hw_read(struct vmmu_hw_vcpu *hw, uint64_t addr, void *buf, size_t len)
{
	return hw_access(hw, addr, VMMU_EPTE_READ, buf, len);
}

int vmmu_hw_write(struct vmmu_hw_vcpu *hw, uint64_t addr, const void *buf, size_t len)
{
	return hw_access(hw, addr, VMMU_EPTE_WRITE, (void *)(uintptr_t)buf, len);
}

int vmmu_hw_fetch(struct vmmu_hw_vcpu *hw, uint64_t addr, void *buf, size_t len)
{
	return hw_access(hw, addr, VMMU_EPTE_EXEC, buf, len);
}

int vmmu_hw_set_paging(struct vmmu_hw_vcpu *hw, const struct vmmu_paging_state *state)
{
	if (!hw || !state)
		return -EINVAL;
	/* The write to the control register exits; vmmu takes it from there
	 * and the new state is picked up at the next entry. */
	vmmu_hw_guest_exit(hw);
	return vmmu_vcpu_set_paging(hw->vcpu, state);
}

int vmmu_hw_last_fault(struct vmmu_hw_vcpu *hw, struct vmmu_hw_fault *out)
{
	if (!hw || !out)
		return -EINVAL;
	*out = hw->last_fault;
	return 0;
}

int vmmu_hw_invlpg(struct vmmu_hw_vcpu *hw, uint64_t gva)
{
	struct gva_tlb_entry *gt;

	if (!hw)
		return -EINVAL;
	gt = &hw->gtlb[(gva >> HW_PAGE_SHIFT) & hw->tlb_mask];
	if (gt->tag == (gva >> HW_PAGE_SHIFT) + 1)
		gt->tag = 0;
	return 0;
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
	out->gva_walks = __atomic_load_n(&hw->stats.gva_walks, __ATOMIC_RELAXED);
	out->guest_ad_updates = __atomic_load_n(&hw->stats.guest_ad_updates, __ATOMIC_RELAXED);
	out->guest_faults = __atomic_load_n(&hw->stats.guest_faults, __ATOMIC_RELAXED);
	out->gva_tlb_flushes = __atomic_load_n(&hw->stats.gva_tlb_flushes, __ATOMIC_RELAXED);
	return 0;
}

struct vmmu_vcpu *vmmu_hw_vcpu_mmu(struct vmmu_hw_vcpu *hw)
{
	return hw ? hw->vcpu : NULL;
}

/*
 * Nested virtualization: the processor's side of a VM entry to L2, a VM
 * exit to L1 and INVEPT.  Cached translations never cross between L1 and
 * L2: the TLBs are emptied at each switch (a processor would tag them).
 */
int vmmu_hw_nested_enter(struct vmmu_hw_vcpu *hw, uint64_t eptp)
{
	int r;

	if (!hw)
		return -EINVAL;
	vmmu_hw_guest_exit(hw);
	r = vmmu_vcpu_nested_enter(hw->vcpu, eptp);
	if (r)
		return r;
	hw->l2 = true;
	tlb_flush_all(hw);
	return 0;
}

int vmmu_hw_nested_leave(struct vmmu_hw_vcpu *hw)
{
	int r;

	if (!hw)
		return -EINVAL;
	vmmu_hw_guest_exit(hw);
	r = vmmu_vcpu_nested_leave(hw->vcpu);
	if (r)
		return r;
	hw->l2 = false;
	tlb_flush_all(hw);
	return 0;
}

int vmmu_hw_invept(struct vmmu_hw_vcpu *hw, unsigned type, uint64_t eptp)
{
	int r;

	if (!hw)
		return -EINVAL;
	vmmu_hw_guest_exit(hw);
	r = vmmu_vcpu_invept(hw->vcpu, type, eptp);
	if (r)
		return r;
	tlb_flush_all(hw);
	return 0;
}
