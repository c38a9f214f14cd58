/* SPDX-License-Identifier: MIT */
/*
 * paging.h - a vCPU's guest paging state, and translating guest virtual
 * addresses the way the processor (and KVM's emulator) would.
 *
 * The guest's own page tables live in guest memory: vmmu reads them through
 * the memslots, and sets their Accessed and Dirty bits there with atomic
 * compare-and-exchange, as the processor does.
 *
 * Roles.  vmmu keeps two descriptions per vCPU: the *cpu role* (the guest's
 * paging mode and the control bits that change how its tables are read:
 * CR0.PG/WP, CR4.PAE/PSE/LA57/SMEP/SMAP/PKE, EFER.LMA/NXE) and the *root
 * role* (the format of vmmu's own tables).  With two-dimensional paging the
 * root role does not depend on the guest's paging at all, so changing only
 * the cpu role (a guest toggling CR0.WP, say) keeps the vCPU's root and its
 * TLB.  When the root role does change, the previous root goes into a
 * per-vCPU cache of VMMU_NUM_PREV_ROOTS roots (KVM's prev_roots) and is
 * taken back from there, if it is still valid, when the vCPU returns to it.
 * vmmu_vm_config.unload_roots_on_role_change restores the behaviour from
 * before the split (every role change unloads the roots and flushes the
 * vCPU's TLB), for measurement.
 *
 * Like the rest of the vCPU API these calls are made by the thread that
 * runs the vCPU, outside guest mode (as after a VM exit).
 */
#ifndef VMMU_PAGING_H
#define VMMU_PAGING_H

#include <vmmu/vmmu.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Architectural bits vmmu looks at. */
#define VMMU_CR0_PE (1ull << 0)
#define VMMU_CR0_MP (1ull << 1)
#define VMMU_CR0_EM (1ull << 2)
#define VMMU_CR0_TS (1ull << 3)
#define VMMU_CR0_ET (1ull << 4)
#define VMMU_CR0_NE (1ull << 5)
#define VMMU_CR0_WP (1ull << 16)
#define VMMU_CR0_AM (1ull << 18)
#define VMMU_CR0_NW (1ull << 29)
#define VMMU_CR0_CD (1ull << 30)
#define VMMU_CR0_PG (1ull << 31)

#define VMMU_CR4_PSE (1ull << 4)
#define VMMU_CR4_PAE (1ull << 5)
#define VMMU_CR4_PGE (1ull << 7)
#define VMMU_CR4_LA57 (1ull << 12)
#define VMMU_CR4_PCIDE (1ull << 17)
#define VMMU_CR4_SMEP (1ull << 20)
#define VMMU_CR4_SMAP (1ull << 21)
#define VMMU_CR4_PKE (1ull << 22)

#define VMMU_EFER_SCE (1ull << 0)
#define VMMU_EFER_LME (1ull << 8)
#define VMMU_EFER_LMA (1ull << 10)
#define VMMU_EFER_NXE (1ull << 11)

/* The paging part of KVM_SET_SREGS, plus what permission checks need. */
struct vmmu_paging_state {
	uint64_t cr0;
	uint64_t cr3;
	uint64_t cr4;
	uint64_t efer;
	uint32_t pkru;
	uint8_t cpl; /* current privilege level, 0..3 */
	bool eflags_ac; /* EFLAGS.AC (SMAP override for explicit accesses) */
};

/*
 * Set the vCPU's paging state (KVM_SET_SREGS for the control registers,
 * plus PKRU, EFLAGS.AC and the CPL).  A new vCPU starts with everything 0:
 * paging off, guest virtual = guest physical.
 *
 * The guest-physical address width (MAXPHYADDR) vmmu gives the guest is
 * that of the VM's tables: 48 bits with 4-level EPT, 52 with 5-level.
 *
 * PAE: the four PDPTEs are read from guest memory at every walk, not loaded
 * when CR3 is written; a reserved bit in one is reported as a #PF with
 * RSVD set by vmmu_vcpu_translate, where the processor would have refused
 * the MOV to CR3 with #GP.
 *
 *   0        done
 *   -EINVAL  NULL argument; or a combination the processor refuses (and
 *            then nothing changes): a reserved bit set in CR0 (bits 63:32,
 *            28:19, 17, 15:6), CR4 (bits 63:25, 15) or EFER (bits
 *            other than SCE, LME, LMA, NXE, SVME, LMSLE, FFXSR, TCE);
 *            CR0.PG without CR0.PE; CR0.NW without CR0.CD; EFER.LMA not
 *            equal to (EFER.LME and CR0.PG); long mode (LME and PG)
 *            without CR4.PAE; CR4.PCIDE outside long mode; in long mode a
 *            CR3 with bits set between MAXPHYADDR and 62; cpl above 3.
 *   -EBUSY   the vCPU is in guest mode (a CPU leaves it before it hands
 *            over a control-register write); nothing changes.
 */
int vmmu_vcpu_set_paging(struct vmmu_vcpu *vcpu, const struct vmmu_paging_state *state);

/*
 * Read the vCPU's paging state back.  *generation (may be NULL) changes
 * every time vmmu_vcpu_set_paging succeeds, so a processor model can tell
 * cheaply that the state it cached is out of date.  0, -EINVAL (NULL).
 */
int vmmu_vcpu_get_paging(struct vmmu_vcpu *vcpu, struct vmmu_paging_state *state,
			 uint64_t *generation);

/* Access flags of vmmu_vcpu_translate (same bit positions as the #PF code). */
#define VMMU_XLATE_WRITE (1u << 1) /* data write (else a data read) */
#define VMMU_XLATE_USER (1u << 2) /* user-mode access (as at CPL 3) */
#define VMMU_XLATE_FETCH (1u << 4) /* instruction fetch */
#define VMMU_XLATE_IMPLICIT \
	(1u << 8) /* implicit supervisor access (GDT, TSS...):
				       * SMAP applies whatever EFLAGS.AC says */

/* #PF error-code bits. */
#define VMMU_PFERR_PRESENT (1u << 0)
#define VMMU_PFERR_WRITE (1u << 1)
#define VMMU_PFERR_USER (1u << 2)
#define VMMU_PFERR_RSVD (1u << 3)
#define VMMU_PFERR_FETCH (1u << 4)
#define VMMU_PFERR_PK (1u << 5)

/* Exception vectors a translation can end in. */
#define VMMU_EXC_NONE 0
#define VMMU_EXC_GP 13 /* long mode, non-canonical address */
#define VMMU_EXC_PF 14

/* Rights of a translation: the AND over the levels of the guest's tables. */
#define VMMU_ACC_W (1u << 1) /* writable */
#define VMMU_ACC_U (1u << 2) /* user-mode page */
#define VMMU_ACC_X (1u << 3) /* executable (not execute-disabled) */

struct vmmu_translation {
	uint64_t gpa; /* translated: the guest physical address */
	uint32_t error_code; /* VMMU_EXC_PF: the #PF error code (VMMU_PFERR_*) */
	uint8_t exception; /* VMMU_EXC_*: NONE when translated */
	uint8_t level; /* translated: level of the guest leaf (1: 4 KiB,
			      * 2: 2 or 4 MiB, 3: 1 GiB), 0 with paging off;
			      * #PF: level of the entry that faulted */
	uint8_t access; /* translated: VMMU_ACC_* */
	uint8_t pkey; /* translated: protection key of the page */
};

/*
 * Translate guest virtual address @gva for one access (KVM_TRANSLATE plus
 * the permission checks of KVM's emulator): walks the guest's tables from
 * CR3 in guest memory with the current paging state (EFLAGS.AC and PKRU
 * included; the CPL is not used, @access says user or supervisor), and sets
 * Accessed (and, for a write, Dirty) bits in guest memory with atomic
 * compare-and-exchange, only if the access is allowed.  With paging off the
 * address is the GPA (truncated to 32 bits, as the processor does).
 *
 *   0        *out filled: out->exception is NONE (gpa, level, access, pkey
 *            valid), PF (error_code and level valid; nothing was written
 *            to guest memory) or GP (address not canonical; nothing read)
 *   -EINVAL  NULL argument; @access has unknown bits, or combines WRITE
 *            with FETCH, or IMPLICIT with USER or FETCH
 *   -EFAULT  an entry of the guest's tables is not in guest memory (no
 *            memslot, or the host memory behind it is gone), or an
 *            Accessed/Dirty update hit read-only memory
 *   -EAGAIN  the entries kept changing under the walk (other vCPUs writing
 *            the tables); try again
 *   -ENOBUFS the vCPU's dirty ring is soft-full (nothing was read or
 *            written): harvest and reset it, then try again
 *   -EOPNOTSUPP  the vCPU runs L2 (<vmmu/nested.h>)
 * An Accessed/Dirty update is a write to the guest's table page: in a
 * slot with VMMU_MEM_LOG_DIRTY_PAGES that page is logged as dirty (in the
 * bitmap, or in this vCPU's dirty ring), as a guest write would be.
 */
int vmmu_vcpu_translate(struct vmmu_vcpu *vcpu, uint64_t gva, unsigned access,
			struct vmmu_translation *out);

#define VMMU_NUM_PREV_ROOTS 3

/* What the vCPU's MMU context did (counters since the vCPU was created). */
struct vmmu_vcpu_mmu_stats {
	uint64_t paging_sets; /* successful vmmu_vcpu_set_paging calls */
	uint64_t cpu_role_changes; /* of which changed the cpu role */
	uint64_t root_role_changes; /* of which changed the root role */
	uint64_t root_loads; /* roots taken from the VM (built or shared) */
	uint64_t root_unloads; /* unloads of every root (legacy switch) */
	uint64_t root_cache_hits; /* root switches served by the cache */
	uint64_t root_cache_misses;
	uint64_t root_cache_evictions; /* cached roots dropped to make room */
	uint64_t obsolete_roots_dropped; /* cached roots dropped as invalid */
	uint64_t translations; /* vmmu_vcpu_translate calls that walked */
};

/* 0, -EINVAL (NULL). */
int vmmu_vcpu_mmu_stats(struct vmmu_vcpu *vcpu, struct vmmu_vcpu_mmu_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* VMMU_PAGING_H */
