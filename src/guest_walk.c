// SPDX-License-Identifier: MIT
/*
 * guest_walk.c - the guest page-table walker (see guest_walk.h).
 *
 * Split in two halves:
 *  - role construction, where every rule of the architecture is turned
 *    into masks and bitmaps (branchy, runs once per control-register
 *    change);
 *  - the walk, which only indexes those tables.
 */
#include "guest_walk.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#define BIT(n) (1ULL << (n))
/* bits lo..hi inclusive; empty when lo > hi */
#define BITS(lo, hi) ((lo) > (hi) ? 0ULL : ((~0ULL >> (63 - (hi))) & (~0ULL << (lo))))

/* Bit positions shared by the x86 and EPT entry formats. */
#define PTE_PS BIT(7)		/* x86 PS / EPT "maps a page" */
#define X86_A BIT(5)
#define X86_D BIT(6)
#define X86_NX BIT(63)
#define EPT_A BIT(8)
#define EPT_D BIT(9)
#define EPT_RWX 7ULL
#define PKEY_SHIFT 59

#define ACC_ALL (VMMU_GW_ACC_R | VMMU_GW_ACC_W | VMMU_GW_ACC_U | VMMU_GW_ACC_X)

/* Internal outcome: an A/D compare-and-exchange lost a race. */
#define WALK_RESTART (-1)

static bool role_is_ept(const struct vmmu_gw_role *role)
{
	return role->mode == VMMU_GW_MODE_EPT4 || role->mode == VMMU_GW_MODE_EPT5;
}

/*
 * Role construction.
 */

/* Address bits an entry may not use on this CPU: MAXPHYADDR..51. */
static uint64_t above_maxphy(unsigned int maxphyaddr)
{
	return BITS(maxphyaddr, 51);
}

/* Levels with 512 entries of 8 bytes, indexed by 9 address bits each. */
static void set_64bit_geometry(struct vmmu_gw_role *role)
{
	for (unsigned int level = 1; level <= VMMU_GW_MAX_LEVELS; level++) {
		role->index_shift[level] = (uint8_t)(12 + 9 * (level - 1));
		role->index_mask[level] = 511;
	}
	role->pte_size = 8;
	role->addr_mask = BITS(12, 51);
}

/*
 * Fill perm_fault, pk_deny and fault_code for the x86 formats from the
 * rules of the SDM (vol. 3, "Access rights" and "Protection keys").  This is
 * the only place where those rules are written as conditions.
 */
static void compute_x86_permissions(struct vmmu_gw_role *role, uint32_t pkru)
{
	bool wp = role->cr0 & VMMU_GW_CR0_WP;
	bool smep = role->cr4 & VMMU_GW_CR4_SMEP;
	bool smap = role->cr4 & VMMU_GW_CR4_SMAP;
	bool nxe = role->efer & VMMU_GW_EFER_NXE;
	bool fetch_reported = smep || (nxe && role->mode != VMMU_GW_MODE_32BIT);

	for (int priv = 0; priv < VMMU_GW_NR_PRIV; priv++) {
		for (int kind = 0; kind < VMMU_GW_NR_KIND; kind++) {
			bool user = priv == VMMU_GW_PRIV_USER;
			bool write = kind == VMMU_GW_KIND_WRITE;
			bool fetch = kind == VMMU_GW_KIND_FETCH;
			uint16_t faults = 0;
			uint16_t deny = 0;

			for (unsigned int acc = 0; acc <= ACC_ALL; acc++) {
				bool r = acc & VMMU_GW_ACC_R, w = acc & VMMU_GW_ACC_W;
				bool u = acc & VMMU_GW_ACC_U, x = acc & VMMU_GW_ACC_X;
				bool bad = !r;

				if (user) {
					bad |= !u || (write && !w) || (fetch && !x);
				} else if (fetch) {
					/* SMEP: no kernel execution of user pages */
					bad |= !x || (u && smep);
				} else {
					/*
					 * SMAP: kernel data accesses to user pages need
					 * an explicit access with EFLAGS.AC=1.
					 */
					bad |= u && smap && priv == VMMU_GW_PRIV_SUP;
					/* CR0.WP=0 lets the kernel write anything */
					bad |= write && !w && wp;
				}
				if (bad)
					faults |= (uint16_t)(1U << acc);
			}

			for (unsigned int key = 0; role->pk_active && key < 16; key++) {
				bool ad = (pkru >> (2 * key)) & 1;
				bool wd = (pkru >> (2 * key + 1)) & 1;

				if (fetch)
					continue;
				if (ad || (write && wd && (user || wp)))
					deny |= (uint16_t)(1U << key);
			}

			role->perm_fault[priv][kind] = faults;
			role->pk_deny[priv][kind] = deny;
			role->fault_code[priv][kind] =
				(uint8_t)((write ? VMMU_GW_PFERR_WRITE : 0) |
					  (user ? VMMU_GW_PFERR_USER : 0) |
					  (fetch && fetch_reported ? VMMU_GW_PFERR_FETCH : 0));
		}
	}
}

void vmmu_gw_role_set_pkru(struct vmmu_gw_role *role, uint32_t pkru)
{
	if (!role_is_ept(role))
		compute_x86_permissions(role, pkru);
}

static void init_32bit(struct vmmu_gw_role *role)
{
	/* PSE-36 carries address bits 32..M-1 in bits 13.., M capped at 40 */
	unsigned int m = role->maxphyaddr < 40 ? role->maxphyaddr : 40;

	role->mode = VMMU_GW_MODE_32BIT;
	role->levels = 2;
	role->pte_size = 4;
	role->index_shift[1] = 12;
	role->index_shift[2] = 22;
	role->index_mask[1] = role->index_mask[2] = 1023;
	role->root_mask = BITS(12, 31);
	role->addr_mask = BITS(12, 31);
	role->pse36_bits = (uint8_t)(m - 32);
	if (role->cr4 & VMMU_GW_CR4_PSE)
		role->leaf_levels = (uint8_t)BIT(2);
	/* 4 MiB page: bits 21:(13 + pse36_bits) are reserved */
	role->rsvd_leaf[2] = BITS(13 + role->pse36_bits, 21);
	role->a_mask[1] = role->a_mask[2] = X86_A;
	role->d_mask = X86_D;
}

static void init_pae(struct vmmu_gw_role *role)
{
	/* PAE reserves bits MAXPHYADDR..62, and 63 too unless it is NX */
	uint64_t high = BITS(role->maxphyaddr, 62) | (role->nx_mask ? 0 : X86_NX);

	role->mode = VMMU_GW_MODE_PAE;
	role->levels = 3;
	set_64bit_geometry(role);
	role->index_mask[3] = 3;
	role->root_mask = BITS(5, 31);
	role->leaf_levels = (uint8_t)BIT(2);
	/* PDPTE: no permissions, no A bit; bits 2:1 and 8:5 reserved */
	role->rsvd_table[3] = BITS(role->maxphyaddr, 63) | BITS(1, 2) | BITS(5, 8);
	role->fixed_acc[3] = ACC_ALL;
	role->rsvd_table[2] = high;
	role->rsvd_leaf[2] = high | BITS(13, 20);
	role->rsvd_leaf[1] = high;
	role->a_mask[1] = role->a_mask[2] = X86_A;
	role->d_mask = X86_D;
}

static void init_long(struct vmmu_gw_role *role, bool la57, bool gbpages)
{
	uint64_t high = above_maxphy(role->maxphyaddr) | (role->nx_mask ? 0 : X86_NX);

	role->mode = la57 ? VMMU_GW_MODE_LONG5 : VMMU_GW_MODE_LONG4;
	role->levels = la57 ? 5 : 4;
	role->va_bits = la57 ? 57 : 48;
	set_64bit_geometry(role);
	role->root_mask = BITS(12, 51);
	role->leaf_levels = (uint8_t)(BIT(2) | (gbpages ? BIT(3) : 0));
	for (unsigned int level = 1; level <= role->levels; level++) {
		role->rsvd_table[level] = high;
		role->rsvd_leaf[level] = high;
		role->a_mask[level] = X86_A;
	}
	/* PS is reserved where no page can be mapped */
	role->rsvd_table[5] |= PTE_PS;
	role->rsvd_table[4] |= PTE_PS;
	if (!gbpages)
		role->rsvd_table[3] |= PTE_PS;
	/* large pages: address bits below the page size, except PAT (12) */
	role->rsvd_leaf[3] |= BITS(13, 29);
	role->rsvd_leaf[2] |= BITS(13, 20);
	role->d_mask = X86_D;
}

int vmmu_gw_role_init(struct vmmu_gw_role *role, const struct vmmu_gw_regs *regs)
{
	bool pg, lma;

	if (!role || !regs)
		return -EINVAL;
	if (regs->maxphyaddr < 32 || regs->maxphyaddr > 52)
		return -EINVAL;
	pg = regs->cr0 & VMMU_GW_CR0_PG;
	lma = regs->efer & VMMU_GW_EFER_LMA;
	if (pg && !(regs->cr0 & VMMU_GW_CR0_PE))
		return -EINVAL;
	if (lma && (!pg || !(regs->cr4 & VMMU_GW_CR4_PAE) || !(regs->efer & VMMU_GW_EFER_LME)))
		return -EINVAL;

	memset(role, 0, sizeof(*role));
	role->cr0 = regs->cr0;
	role->cr4 = regs->cr4;
	role->efer = regs->efer;
	role->maxphyaddr = regs->maxphyaddr;
	role->present_mask = 1;

	if (!pg) {
		role->mode = VMMU_GW_MODE_NONPAGING;
	} else if (!(regs->cr4 & VMMU_GW_CR4_PAE)) {
		init_32bit(role);
	} else {
		/* NX exists only with 8-byte entries */
		role->nx_mask = (regs->efer & VMMU_GW_EFER_NXE) ? X86_NX : 0;
		if (lma) {
			init_long(role, regs->cr4 & VMMU_GW_CR4_LA57, !regs->no_gbpages);
			role->pk_active = regs->cr4 & VMMU_GW_CR4_PKE;
		} else {
			init_pae(role);
		}
	}
	compute_x86_permissions(role, regs->pkru);
	role->valid = true;
	return 0;
}

int vmmu_gw_role_init_ept(struct vmmu_gw_role *role, uint64_t eptp, bool ad_supported,
			  bool exec_only_ok, unsigned int maxphyaddr)
{
	unsigned int memtype = eptp & 7, walk_len = ((eptp >> 3) & 7) + 1;
	bool ad = eptp & BIT(6);

	if (!role || maxphyaddr < 32 || maxphyaddr > 52)
		return -EINVAL;
	if ((memtype != 0 && memtype != 6) || (walk_len != 4 && walk_len != 5))
		return -EINVAL;
	if ((ad && !ad_supported) || (eptp & (BITS(7, 11) | BITS(maxphyaddr, 63))))
		return -EINVAL;

	memset(role, 0, sizeof(*role));
	role->mode = walk_len == 5 ? VMMU_GW_MODE_EPT5 : VMMU_GW_MODE_EPT4;
	role->levels = (uint8_t)walk_len;
	role->maxphyaddr = (uint8_t)maxphyaddr;
	set_64bit_geometry(role);
	role->root_mask = BITS(12, 51);
	role->present_mask = EPT_RWX;
	role->leaf_levels = (uint8_t)(BIT(2) | BIT(3));
	for (unsigned int level = 1; level <= role->levels; level++) {
		/* a table pointer has no memory type, ignore-PAT or PS */
		role->rsvd_table[level] = above_maxphy(maxphyaddr) | BITS(3, 7);
		role->rsvd_leaf[level] = above_maxphy(maxphyaddr);
		role->a_mask[level] = ad ? EPT_A : 0;
	}
	role->rsvd_leaf[3] |= BITS(12, 29);
	role->rsvd_leaf[2] |= BITS(12, 20);
	role->d_mask = ad ? EPT_D : 0;

	/* write without read is never valid; execute-only only if offered */
	role->ept_bad_xwr = (uint8_t)(BIT(2) | BIT(6) | (exec_only_ok ? 0 : BIT(4)));
	/* memory types 2, 3 and 7 do not exist */
	role->ept_bad_memtype = (uint8_t)(BIT(2) | BIT(3) | BIT(7));

	for (int kind = 0; kind < VMMU_GW_NR_KIND; kind++) {
		static const uint8_t need[VMMU_GW_NR_KIND] = {
			[VMMU_GW_KIND_READ] = VMMU_GW_ACC_R,
			[VMMU_GW_KIND_WRITE] = VMMU_GW_ACC_W,
			[VMMU_GW_KIND_FETCH] = VMMU_GW_ACC_X,
		};
		uint16_t faults = 0;

		for (unsigned int acc = 0; acc <= ACC_ALL; acc++)
			if (!(acc & need[kind]))
				faults |= (uint16_t)(1U << acc);
		/* who accesses does not matter to EPT: same row for all */
		for (int priv = 0; priv < VMMU_GW_NR_PRIV; priv++) {
			role->perm_fault[priv][kind] = faults;
			role->fault_code[priv][kind] = (uint8_t)(VMMU_GW_EPTQ_READ << kind);
		}
	}
	role->valid = true;
	return 0;
}

/*
 * The walk.
 */

/* Access class of the flags: user, strict supervisor, supervisor with AC. */
static const uint8_t priv_of[8] = {
	/* index: USER | IMPLICIT << 1 | AC << 2 */
	[0] = VMMU_GW_PRIV_SUP,
	[1] = VMMU_GW_PRIV_USER,
	[2] = VMMU_GW_PRIV_SUP,
	[4] = VMMU_GW_PRIV_SUP_AC,
	[5] = VMMU_GW_PRIV_USER,
	[6] = VMMU_GW_PRIV_SUP,
	/* 3 and 7 (USER with IMPLICIT) are refused before the lookup */
};

/* Rights one entry grants, in VMMU_GW_ACC_* form. */
static unsigned int entry_access(const struct vmmu_gw_role *role, uint64_t pte, bool ept)
{
	if (ept)
		return (unsigned int)((pte & 3) | ((pte & 4) << 1));
	return VMMU_GW_ACC_R | (unsigned int)(pte & 6) | ((pte & role->nx_mask) ? 0 : VMMU_GW_ACC_X);
}

static uint64_t leaf_gpa(const struct vmmu_gw_role *role, uint64_t pte, unsigned int level,
			 uint64_t addr)
{
	uint64_t offset = BITS(0, role->index_shift[level] - 1);

	if (role->mode == VMMU_GW_MODE_32BIT && level == 2)
		return (pte & BITS(22, 31)) |
		       (((pte >> 13) & BITS(0, role->pse36_bits - 1)) << 32) | (addr & offset);
	return (pte & role->addr_mask & ~offset) | (addr & offset);
}

/*
 * Set A on every entry of the translation that lacks it and D on the leaf
 * of a write, oldest level first.  Returns VMMU_GW_OK, WALK_RESTART if an
 * entry changed since it was read, or VMMU_GW_TABLE_FAULT.
 */
static int update_accessed_dirty(const struct vmmu_gw_role *role,
				 const struct vmmu_gw_mem_ops *ops, void *opaque, bool write,
				 struct vmmu_gw_result *out)
{
	for (unsigned int level = role->levels; level >= out->level; level--) {
		uint64_t old = out->pte[level];
		uint64_t new_val = old | role->a_mask[level];
		int r;

		if (level == out->level && write)
			new_val |= role->d_mask;
		if (new_val == old)
			continue;
		r = ops->cmpxchg_pte(opaque, out->pte_gpa[level], old, new_val, role->pte_size);
		if (r > 0)
			return WALK_RESTART;
		if (r < 0) {
			out->fault_gpa = out->pte_gpa[level];
			out->fault_write = true;
			return VMMU_GW_TABLE_FAULT;
		}
		out->pte[level] = new_val;
	}
	return VMMU_GW_OK;
}

static int walk_once(const struct vmmu_gw_role *role, const struct vmmu_gw_mem_ops *ops,
		     void *opaque, uint64_t root, uint64_t addr, unsigned int priv,
		     unsigned int kind, struct vmmu_gw_result *out)
{
	bool ept = role_is_ept(role);
	unsigned int code = role->fault_code[priv][kind];
	unsigned int acc = ACC_ALL;
	uint64_t table = root & role->root_mask;
	unsigned int level = role->levels;
	unsigned int pkey = 0;
	uint64_t pte;

	for (;; level--) {
		uint64_t gpa = table + ((addr >> role->index_shift[level]) & role->index_mask[level]) *
					       role->pte_size;
		bool leaf;

		out->level = (uint8_t)level;
		out->pte_gpa[level] = gpa;
		if (ops->read_pte(opaque, gpa, &pte, role->pte_size)) {
			out->fault_gpa = gpa;
			return VMMU_GW_TABLE_FAULT;
		}
		out->pte[level] = pte;

		if (!(pte & role->present_mask)) {
			/* the AND of R/W/X includes this all-zero entry */
			out->error_code = code;
			return ept ? VMMU_GW_EPT_VIOLATION : VMMU_GW_PAGE_FAULT;
		}
		leaf = level == 1 || ((pte & PTE_PS) && ((role->leaf_levels >> level) & 1));
		if (pte & (leaf ? role->rsvd_leaf[level] : role->rsvd_table[level])) {
			if (ept)
				goto misconfig;
			out->error_code = code | VMMU_GW_PFERR_PRESENT | VMMU_GW_PFERR_RSVD;
			return VMMU_GW_PAGE_FAULT;
		}
		if (ept && (((role->ept_bad_xwr >> (pte & EPT_RWX)) & 1) ||
			    (leaf && ((role->ept_bad_memtype >> ((pte >> 3) & 7)) & 1))))
			goto misconfig;

		acc &= entry_access(role, pte, ept) | role->fixed_acc[level];
		if (leaf)
			break;
		table = pte & role->addr_mask;
	}

	out->access = (uint8_t)acc;
	if (role->pk_active)
		pkey = (unsigned int)(pte >> PKEY_SHIFT) & 15;
	if (((role->perm_fault[priv][kind] >> acc) & 1) |
	    ((acc >> 2) & (role->pk_deny[priv][kind] >> pkey) & 1)) {
		if (ept) {
			out->error_code = code | ((acc & 3) << 3) | ((acc & VMMU_GW_ACC_X) << 2);
			return VMMU_GW_EPT_VIOLATION;
		}
		out->error_code = code | VMMU_GW_PFERR_PRESENT;
		/* PK is reported whenever the key forbids, whatever else did */
		if ((acc & VMMU_GW_ACC_U) && ((role->pk_deny[priv][kind] >> pkey) & 1))
			out->error_code |= VMMU_GW_PFERR_PK;
		return VMMU_GW_PAGE_FAULT;
	}

	out->gpa = leaf_gpa(role, pte, level, addr);
	out->pkey = (uint8_t)pkey;
	if (ept) {
		out->ept_memtype = (uint8_t)((pte >> 3) & 7);
		out->ept_ipat = (pte >> 6) & 1;
	}
	return update_accessed_dirty(role, ops, opaque, kind == VMMU_GW_KIND_WRITE, out);

misconfig:
	out->fault_gpa = out->pte_gpa[level];
	return VMMU_GW_EPT_MISCONFIG;
}

int vmmu_gw_walk(const struct vmmu_gw_role *role, const struct vmmu_gw_mem_ops *ops,
		 void *opaque, uint64_t root, uint64_t addr, uint32_t access,
		 struct vmmu_gw_result *out)
{
	const uint32_t write_fetch = VMMU_GW_ACCESS_WRITE | VMMU_GW_ACCESS_FETCH;
	unsigned int priv, kind, restarts;

	if (!role || !role->valid || !ops || !ops->read_pte || !ops->cmpxchg_pte || !out)
		return -EINVAL;
	if ((access & write_fetch) == write_fetch)
		return -EINVAL;
	if ((access & VMMU_GW_ACCESS_IMPLICIT) &&
	    (access & (VMMU_GW_ACCESS_USER | VMMU_GW_ACCESS_FETCH)))
		return -EINVAL;

	if (role_is_ept(role) && (addr & BITS(role->maxphyaddr, 63)))
		return -EINVAL;

	kind = ((access >> 1) & 1) | ((access >> 3) & 2);
	priv = priv_of[((access >> 2) & 1) | ((access >> 7) & 6)];
	memset(out, 0, sizeof(*out));

	if (role->mode == VMMU_GW_MODE_NONPAGING) {
		out->gpa = addr & BITS(0, 31);
		out->access = ACC_ALL;
		return VMMU_GW_OK;
	}
	if (role_is_ept(role)) {
		if (addr & BITS(12 + 9 * role->levels, 63)) {
			/* beyond what a 4-level EPT translates */
			out->level = role->levels;
			out->error_code = role->fault_code[priv][kind];
			return VMMU_GW_EPT_VIOLATION;
		}
	} else if (role->va_bits) {
		unsigned int unused = 64 - role->va_bits;

		if ((uint64_t)((int64_t)(addr << unused) >> unused) != addr)
			return VMMU_GW_NONCANONICAL;
	} else {
		addr &= BITS(0, 31);
	}

	for (restarts = 0;; restarts++) {
		int r = walk_once(role, ops, opaque, root, addr, priv, kind, out);

		out->restarts = (uint8_t)restarts;
		if (r != WALK_RESTART)
			return r;
		if (restarts == VMMU_GW_MAX_RESTARTS)
			return VMMU_GW_RETRY;
		memset(out, 0, sizeof(*out));
	}
}
