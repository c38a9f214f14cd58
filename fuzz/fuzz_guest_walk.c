// SPDX-License-Identifier: MIT
/*
 * fuzz_guest_walk.c - libFuzzer target for the guest page-table walker.
 *
 * Input: a 32-byte header (mode and control bits, PKRU, MAXPHYADDR, root,
 * address, access) followed by the guest memory image (at most 64 KiB; the
 * guest physical address space is the image, anything else is refused by
 * the accessors).
 *
 * Checks, each an abort:
 *  - every access the walker makes is an aligned 4- or 8-byte entry of the
 *    current format (an out-of-image address is refused, never read);
 *  - compare-and-exchange only targets an entry this walk read, and only
 *    adds the format's Accessed/Dirty bits;
 *  - the outcome matches the SDM reference model of the unit tests (when
 *    the header does not ask for simulated A/D races);
 *  - sanitizers (ASan, UBSan) see nothing.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guest_walk.h"
#include "../tests/unit/guest_walk_ref.h"

#define HDR_SIZE 32
#define MAX_IMAGE (64 * 1024)

struct fuzz_mem {
	uint8_t *buf;
	size_t size;
	unsigned int esize;
	uint64_t ad_bits;
	uint64_t seen[32];
	int nseen;
	uint32_t race_seed; /* nonzero: some compare-and-exchanges lose */
	int nraces;
};

static void check(bool cond)
{
	if (!cond)
		abort();
}

static bool in_image(const struct fuzz_mem *m, uint64_t gpa, unsigned int size)
{
	return gpa < m->size && m->size - gpa >= size;
}

static int fz_read(void *opaque, uint64_t gpa, uint64_t *val, unsigned int size)
{
	struct fuzz_mem *m = opaque;
	uint64_t v = 0;

	check(size == m->esize && gpa % size == 0);
	if (!in_image(m, gpa, size))
		return -1;
	memcpy(&v, m->buf + gpa, size);
	*val = v;
	if (m->nseen < 32)
		m->seen[m->nseen++] = gpa;
	return 0;
}

static int fz_cmpxchg(void *opaque, uint64_t gpa, uint64_t old, uint64_t new_val,
		      unsigned int size)
{
	struct fuzz_mem *m = opaque;
	uint64_t cur = 0;
	bool seen = false;

	check(size == m->esize && gpa % size == 0);
	check((old & ~new_val) == 0 && ((old ^ new_val) & ~m->ad_bits) == 0);
	for (int i = 0; i < m->nseen; i++)
		seen |= m->seen[i] == gpa;
	check(seen);
	if (!in_image(m, gpa, size))
		return -1;
	if (m->race_seed) {
		m->race_seed = m->race_seed * 1103515245u + 12345u;
		if ((m->race_seed >> 16) & 1) {
			m->nraces++;
			m->buf[gpa] ^= 0x80; /* another CPU changes the entry */
		}
	}
	memcpy(&cur, m->buf + gpa, size);
	if (cur != old)
		return 1;
	memcpy(m->buf + gpa, &new_val, size);
	return 0;
}

static const struct vmmu_gw_mem_ops fz_ops = { fz_read, fz_cmpxchg };

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t image[MAX_IMAGE];
	struct fuzz_mem m = { .buf = image };
	struct vmmu_gw_role role;
	struct vmmu_gw_result res;
	struct ref_cpu cpu = { 0 };
	struct ref_out ref;
	struct ref_mem rmem;
	uint8_t mode, ctl;
	uint64_t root, addr;
	uint32_t access, pkru;
	unsigned int maxphy;
	int r;

	if (size < HDR_SIZE)
		return 0;
	mode = data[0] % 7;
	ctl = data[1];
	maxphy = 32 + data[2] % 21;
	access = ((uint32_t)data[3] << 1) &
		 (VMMU_GW_ACCESS_WRITE | VMMU_GW_ACCESS_USER | VMMU_GW_ACCESS_FETCH);
	access |= ((uint32_t)data[3] & 0xc0) << 2; /* IMPLICIT, AC */
	memcpy(&pkru, data + 4, 4);
	root = get64(data + 8);
	addr = get64(data + 16);
	m.race_seed = data[24] & 1 ? get64(data + 24) >> 32 | 1 : 0;
	if (!(data[24] & 2)) /* mostly keep the root inside the image */
		root &= (MAX_IMAGE - 1) | ~((1ULL << 52) - 1);
	m.size = size - HDR_SIZE < MAX_IMAGE ? size - HDR_SIZE : MAX_IMAGE;
	memcpy(image, data + HDR_SIZE, m.size);

	if (mode >= 5) {
		/* EPT: root is the EPTP, with sane low bits most of the time */
		bool ad = ctl & 1, xo = ctl & 2;

		if (!(ctl & 4))
			root = (root & ~0xfffULL & ((1ULL << maxphy) - 1) & (MAX_IMAGE - 1)) |
			       ((mode == 5 ? 3ULL : 4ULL) << 3) | 6 | (ad ? 1ULL << 6 : 0);
		if (vmmu_gw_role_init_ept(&role, root, true, xo, maxphy))
			return 0;
		m.esize = 8;
		m.ad_bits = (1ULL << 8) | (1ULL << 9);
		cpu.ept = true;
		cpu.exec_only_ok = xo;
		if (!(ctl & 8))
			addr &= (1ULL << maxphy) - 1;
	} else {
		static const uint64_t cr4_of[5] = {
			0, 0, VMMU_GW_CR4_PAE, VMMU_GW_CR4_PAE, VMMU_GW_CR4_PAE | VMMU_GW_CR4_LA57,
		};
		struct vmmu_gw_regs regs = {
			.cr0 = (mode ? VMMU_GW_CR0_PE | VMMU_GW_CR0_PG : 0) |
			       (ctl & 1 ? VMMU_GW_CR0_WP : 0),
			.cr4 = cr4_of[mode] | (ctl & 2 ? VMMU_GW_CR4_PSE : 0) |
			       (ctl & 4 ? VMMU_GW_CR4_SMEP : 0) | (ctl & 8 ? VMMU_GW_CR4_SMAP : 0) |
			       (ctl & 16 ? VMMU_GW_CR4_PKE : 0),
			.efer = (mode >= 3 ? VMMU_GW_EFER_LME | VMMU_GW_EFER_LMA : 0) |
				(ctl & 32 ? VMMU_GW_EFER_NXE : 0),
			.pkru = pkru,
			.maxphyaddr = (uint8_t)maxphy,
			.no_gbpages = ctl & 64,
		};

		if (ctl & 128) /* address near the top, to meet the canonical check */
			addr = (uint64_t)((int64_t)(addr << 8) >> 8);
		check(vmmu_gw_role_init(&role, &regs) == 0);
		m.esize = mode == 1 ? 4 : 8;
		m.ad_bits = (1ULL << 5) | (1ULL << 6);
		cpu.cr0 = regs.cr0;
		cpu.cr4 = regs.cr4;
		cpu.efer = regs.efer;
		cpu.pkru = pkru;
		cpu.no_gbpages = regs.no_gbpages;
	}
	cpu.maxphyaddr = maxphy;

	/* the reference sees the image before the walker's A/D updates */
	rmem.buf = data + HDR_SIZE;
	rmem.size = m.size;
	if (cpu.ept)
		ref_ept_walk(&cpu, &rmem, root, addr, access, &ref);
	else
		ref_x86_walk(&cpu, &rmem, root, addr, access, &ref);

	r = vmmu_gw_walk(&role, &fz_ops, &m, root, addr, access, &res);
	if (r < 0)
		return 0; /* refused combination of access flags or EPT address */
	check(r <= VMMU_GW_RETRY);
	/*
	 * Races, and restarts from a table that aliases another level's table
	 * (its A/D update changed an entry this walk used), make the outcome
	 * depend on timing: only the checks above apply then.
	 */
	if (m.nraces || res.restarts)
		return 0;
	check(r == ref.status);
	if (r == VMMU_GW_OK)
		check(res.gpa == ref.gpa && res.level == ref.level && res.access == ref.access);
	if (r == VMMU_GW_PAGE_FAULT || r == VMMU_GW_EPT_VIOLATION)
		check(res.error_code == ref.code);
	if (r == VMMU_GW_TABLE_FAULT || r == VMMU_GW_EPT_MISCONFIG)
		check(res.fault_gpa == ref.fault_gpa);
	for (int i = 0; i < ref.nwrites; i++) {
		uint64_t v = 0;
		bool later = false;

		for (int j = i + 1; j < ref.nwrites; j++)
			later |= ref.wgpa[j] == ref.wgpa[i];
		if (later)
			continue; /* the same entry is used at two levels */

		memcpy(&v, image + ref.wgpa[i], m.esize);
		check(v == ref.wval[i]);
	}
	return 0;
}
