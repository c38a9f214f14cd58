/* SPDX-License-Identifier: MIT */
/*
 * guest_walk_ref.h - a deliberately plain model of x86 paging and EPT,
 * written from the Intel SDM (vol. 3, chapter "Paging", sections on
 * access rights, protection keys, page-fault error codes and the
 * Accessed/Dirty flags; chapter "EPT" for the EPT format), used as the
 * oracle of the guest walker's tests and of its fuzzer.
 *
 * It shares nothing with src/guest_walk.c but the public constants: no
 * role, no bitmaps, one mode at a time spelled out, rights computed in the
 * SDM's "may the access happen" form.  It reads a flat memory image and
 * does not write it: instead it lists the A/D updates the processor makes.
 *
 * The same choices as the walker where the SDM leaves room (documented in
 * guest_walk.h): A/D are written only for a successful translation; PAE
 * PDPTEs are read at walk time (a reserved bit gives #PF RSVD); EPT
 * addresses beyond 48 bits under a 4-level EPT are EPT violations.
 */
#ifndef VMMU_GUEST_WALK_REF_H
#define VMMU_GUEST_WALK_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "guest_walk.h"

struct ref_cpu {
	/* x86 */
	uint64_t cr0, cr4, efer;
	uint32_t pkru;
	bool no_gbpages;
	/* EPT (used when ept is true) */
	bool ept;
	bool exec_only_ok;
	unsigned int maxphyaddr;
};

struct ref_out {
	int status; /* enum vmmu_gw_status */
	uint64_t gpa;
	uint32_t code; /* #PF error code or EPT qualification */
	int level;
	unsigned int access; /* VMMU_GW_ACC_* on success */
	uint64_t fault_gpa;
	int nwrites; /* A/D updates, from the root down */
	uint64_t wgpa[5], wval[5];
};

struct ref_mem {
	const uint8_t *buf;
	size_t size;
};

/* mask of bits lo..hi (inclusive) */
static inline uint64_t ref_bits(int lo, int hi)
{
	uint64_t m = 0;

	for (int i = lo; i <= hi; i++)
		m |= 1ULL << i;
	return m;
}

static inline bool ref_bit(uint64_t v, int n)
{
	return (v >> n) & 1;
}

static inline bool ref_read(const struct ref_mem *mem, uint64_t gpa, unsigned int size,
			    uint64_t *val)
{
	uint64_t v = 0;

	if (gpa >= mem->size || mem->size - gpa < size)
		return false;
	for (unsigned int i = 0; i < size; i++)
		v |= (uint64_t)mem->buf[gpa + i] << (8 * i);
	*val = v;
	return true;
}

/*
 * x86: 32-bit, PAE, 4-level and 5-level paging.
 */
static inline int ref_x86_walk(const struct ref_cpu *cpu, const struct ref_mem *mem, uint64_t cr3,
			       uint64_t va, uint32_t flags, struct ref_out *o)
{
	bool write = flags & VMMU_GW_ACCESS_WRITE;
	bool fetch = flags & VMMU_GW_ACCESS_FETCH;
	bool implicit = flags & VMMU_GW_ACCESS_IMPLICIT;
	bool user = (flags & VMMU_GW_ACCESS_USER) && !implicit;
	bool ac = flags & VMMU_GW_ACCESS_AC;
	bool wp = cpu->cr0 & VMMU_GW_CR0_WP;
	bool pae = cpu->cr4 & VMMU_GW_CR4_PAE;
	bool lma = cpu->efer & VMMU_GW_EFER_LMA;
	bool la57 = lma && (cpu->cr4 & VMMU_GW_CR4_LA57);
	bool nxe = cpu->efer & VMMU_GW_EFER_NXE;
	bool xd_exists = pae && nxe; /* bit 63 is XD */
	int m = (int)cpu->maxphyaddr;
	unsigned int esize = pae ? 8 : 4;
	uint64_t ent[6] = { 0 }, eaddr[6] = { 0 };
	int top, level;
	uint64_t table, gpa = 0;
	bool all_us = true, all_rw = true, any_xd = false;
	uint32_t code;

	memset(o, 0, sizeof(*o));
	if (!(cpu->cr0 & VMMU_GW_CR0_PG)) {
		o->status = VMMU_GW_OK;
		o->gpa = va & 0xffffffffULL;
		o->access = VMMU_GW_ACC_R | VMMU_GW_ACC_W | VMMU_GW_ACC_U | VMMU_GW_ACC_X;
		return o->status;
	}

	/* Error code bits that only depend on the access. */
	code = (write ? VMMU_GW_PFERR_WRITE : 0) | (user ? VMMU_GW_PFERR_USER : 0);
	if (fetch && ((cpu->cr4 & VMMU_GW_CR4_SMEP) || (pae && nxe)))
		code |= VMMU_GW_PFERR_FETCH;

	if (lma) {
		int width = la57 ? 57 : 48;
		uint64_t upper = va >> (width - 1); /* bits 63..width-1 */

		if (upper != 0 && upper != (~0ULL >> (width - 1))) {
			o->status = VMMU_GW_NONCANONICAL;
			return o->status;
		}
		top = la57 ? 5 : 4;
	} else {
		va &= 0xffffffffULL;
		top = pae ? 3 : 2;
	}

	if (!pae)
		table = cr3 & 0xfffff000ULL;
	else if (!lma)
		table = cr3 & 0xffffffe0ULL;
	else
		table = cr3 & ref_bits(12, 51);

	for (level = top; level >= 1; level--) {
		uint64_t idx, e, rsvd = 0;
		bool leaf = false;

		if (!pae)
			idx = (va >> (level == 2 ? 22 : 12)) & 0x3ff;
		else if (!lma && level == 3)
			idx = (va >> 30) & 3;
		else
			idx = (va >> (12 + 9 * (level - 1))) & 0x1ff;
		eaddr[level] = table + idx * esize;
		o->level = level;
		if (!ref_read(mem, eaddr[level], esize, &e)) {
			o->status = VMMU_GW_TABLE_FAULT;
			o->fault_gpa = eaddr[level];
			return o->status;
		}
		ent[level] = e;
		if (!ref_bit(e, 0)) {
			o->status = VMMU_GW_PAGE_FAULT;
			o->code = code;
			return o->status;
		}

		if (!pae) {
			/* 32-bit paging: only a 4 MiB PDE has reserved bits */
			if (level == 2 && (cpu->cr4 & VMMU_GW_CR4_PSE) && ref_bit(e, 7)) {
				int mm = m < 40 ? m : 40;

				leaf = true;
				rsvd = ref_bits(mm - 19, 21);
			}
			if (level == 1)
				leaf = true;
		} else if (!lma && level == 3) {
			/* PAE PDPTE */
			rsvd = ref_bits(1, 2) | ref_bits(5, 8) | ref_bits(m, 63);
		} else {
			int hi = lma ? 51 : 62;

			rsvd = ref_bits(m, hi);
			if (!xd_exists)
				rsvd |= 1ULL << 63;
			if (level == 1) {
				leaf = true;
			} else if (ref_bit(e, 7)) {
				if (level == 2) {
					leaf = true;
					rsvd |= ref_bits(13, 20);
				} else if (level == 3 && !cpu->no_gbpages) {
					leaf = true;
					rsvd |= ref_bits(13, 29);
				} else {
					rsvd |= 1ULL << 7; /* PS not allowed here */
				}
			}
		}
		if (e & rsvd) {
			o->status = VMMU_GW_PAGE_FAULT;
			o->code = code | VMMU_GW_PFERR_PRESENT | VMMU_GW_PFERR_RSVD;
			return o->status;
		}

		if (!(pae && !lma && level == 3)) { /* PDPTEs carry no rights */
			all_rw &= ref_bit(e, 1);
			all_us &= ref_bit(e, 2);
			if (xd_exists)
				any_xd |= ref_bit(e, 63);
		}

		if (leaf) {
			if (!pae && level == 2) {
				int mm = m < 40 ? m : 40;
				uint64_t hi_addr = (e >> 13) & ((1ULL << (mm - 32)) - 1);

				gpa = (e & 0xffc00000ULL) | (hi_addr << 32) | (va & 0x3fffff);
			} else if (!pae) {
				gpa = (e & 0xfffff000ULL) | (va & 0xfff);
			} else {
				int off = 12 + 9 * (level - 1);

				gpa = (e & ref_bits(off, 51)) | (va & ref_bits(0, off - 1));
			}
			break;
		}
		table = e & (pae ? ref_bits(12, 51) : 0xfffff000ULL);
	}

	/* Access rights (SDM "Determination of access rights"). */
	{
		bool smap = cpu->cr4 & VMMU_GW_CR4_SMAP;
		bool smep = cpu->cr4 & VMMU_GW_CR4_SMEP;
		bool user_addr = all_us;
		bool exec_ok = !(xd_exists && any_xd);
		bool allowed, pk_denied = false;

		if (user) {
			if (!user_addr)
				allowed = false;
			else if (write)
				allowed = all_rw;
			else if (fetch)
				allowed = exec_ok;
			else
				allowed = true;
		} else if (fetch) {
			allowed = exec_ok && !(user_addr && smep);
		} else {
			bool smap_blocks = user_addr && smap && (implicit || !ac);

			if (smap_blocks)
				allowed = false;
			else if (write)
				allowed = all_rw || !wp;
			else
				allowed = true;
		}

		/* Protection keys: 4/5-level paging, CR4.PKE, user-mode data pages */
		if (lma && (cpu->cr4 & VMMU_GW_CR4_PKE) && user_addr && !fetch) {
			int key = (int)((ent[level] >> 59) & 15);
			bool adk = (cpu->pkru >> (2 * key)) & 1;
			bool wdk = (cpu->pkru >> (2 * key + 1)) & 1;

			if (adk)
				pk_denied = true;
			else if (write && wdk && (user || wp))
				pk_denied = true;
		}

		o->access = VMMU_GW_ACC_R | (all_rw ? VMMU_GW_ACC_W : 0) |
			    (all_us ? VMMU_GW_ACC_U : 0) | (exec_ok ? VMMU_GW_ACC_X : 0);
		if (!allowed || pk_denied) {
			o->status = VMMU_GW_PAGE_FAULT;
			o->code = code | VMMU_GW_PFERR_PRESENT | (pk_denied ? VMMU_GW_PFERR_PK : 0);
			return o->status;
		}
	}

	/* Success: A on every entry used (none in PAE PDPTEs), D on the leaf of a write. */
	for (int l = top; l >= level; l--) {
		uint64_t e = ent[l];

		if (pae && !lma && l == 3)
			continue;
		e |= 1ULL << 5;
		if (l == level && write)
			e |= 1ULL << 6;
		if (e != ent[l]) {
			o->wgpa[o->nwrites] = eaddr[l];
			o->wval[o->nwrites] = e;
			o->nwrites++;
		}
	}
	o->status = VMMU_GW_OK;
	o->gpa = gpa;
	return o->status;
}

/*
 * EPT.
 */
static inline int ref_ept_walk(const struct ref_cpu *cpu, const struct ref_mem *mem,
			       uint64_t eptp, uint64_t gpa_in, uint32_t flags, struct ref_out *o)
{
	bool write = flags & VMMU_GW_ACCESS_WRITE;
	bool fetch = flags & VMMU_GW_ACCESS_FETCH;
	bool ad = ref_bit(eptp, 6);
	int top = (int)((eptp >> 3) & 7) + 1;
	int m = (int)cpu->maxphyaddr;
	uint32_t acc_bit = write ? 2 : fetch ? 4 : 1;
	uint64_t table = eptp & ref_bits(12, 51);
	uint64_t ent[6] = { 0 }, eaddr[6] = { 0 };
	bool r_all = true, w_all = true, x_all = true;
	int level;

	memset(o, 0, sizeof(*o));
	if (top == 4 && (gpa_in >> 48)) {
		o->status = VMMU_GW_EPT_VIOLATION;
		o->level = 4;
		o->code = acc_bit;
		return o->status;
	}
	for (level = top; level >= 1; level--) {
		uint64_t e, rsvd;
		bool leaf;
		unsigned int xwr;

		eaddr[level] = table + ((gpa_in >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
		o->level = level;
		if (!ref_read(mem, eaddr[level], 8, &e)) {
			o->status = VMMU_GW_TABLE_FAULT;
			o->fault_gpa = eaddr[level];
			return o->status;
		}
		ent[level] = e;
		xwr = (unsigned int)(e & 7);
		if (xwr == 0) { /* not present: the AND of R/W/X is 0 */
			o->status = VMMU_GW_EPT_VIOLATION;
			o->code = acc_bit;
			return o->status;
		}
		leaf = level == 1 || ((level == 2 || level == 3) && ref_bit(e, 7));
		rsvd = ref_bits(m, 51);
		if (!leaf)
			rsvd |= ref_bits(3, 7);
		else if (level == 2)
			rsvd |= ref_bits(12, 20);
		else if (level == 3)
			rsvd |= ref_bits(12, 29);
		if ((e & rsvd) || (ref_bit(e, 1) && !ref_bit(e, 0)) ||
		    (xwr == 4 && !cpu->exec_only_ok)) {
			o->status = VMMU_GW_EPT_MISCONFIG;
			o->fault_gpa = eaddr[level];
			return o->status;
		}
		if (leaf) {
			unsigned int mt = (unsigned int)((e >> 3) & 7);

			if (mt == 2 || mt == 3 || mt == 7) {
				o->status = VMMU_GW_EPT_MISCONFIG;
				o->fault_gpa = eaddr[level];
				return o->status;
			}
		}
		r_all &= ref_bit(e, 0);
		w_all &= ref_bit(e, 1);
		x_all &= ref_bit(e, 2);
		if (leaf)
			break;
		table = e & ref_bits(12, 51);
	}

	o->access = (r_all ? VMMU_GW_ACC_R : 0) | (w_all ? VMMU_GW_ACC_W : 0) |
		    (x_all ? VMMU_GW_ACC_X : 0);
	if ((write && !w_all) || (fetch && !x_all) || (!write && !fetch && !r_all)) {
		o->status = VMMU_GW_EPT_VIOLATION;
		o->code = acc_bit | (r_all ? 8u : 0) | (w_all ? 16u : 0) | (x_all ? 32u : 0);
		return o->status;
	}
	if (ad) {
		for (int l = top; l >= level; l--) {
			uint64_t e = ent[l] | (1ULL << 8);

			if (l == level && write)
				e |= 1ULL << 9;
			if (e != ent[l]) {
				o->wgpa[o->nwrites] = eaddr[l];
				o->wval[o->nwrites] = e;
				o->nwrites++;
			}
		}
	}
	{
		int off = 12 + 9 * (level - 1);

		o->gpa = (ent[level] & ref_bits(off, 51)) | (gpa_in & ref_bits(0, off - 1));
	}
	o->status = VMMU_GW_OK;
	return o->status;
}

#endif /* VMMU_GUEST_WALK_REF_H */
