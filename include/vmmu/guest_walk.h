/* SPDX-License-Identifier: MIT */
/*
 * guest_walk.h - software walker of the guest's own page tables.
 *
 * Translates a guest virtual address (or, for the EPT format, an L2 guest
 * physical address) through page tables that live in guest memory, exactly
 * as an x86 processor would: permission rules, reserved bits, protection
 * keys, Accessed/Dirty updates and the error code of the resulting fault.
 *
 * Formats: 32-bit paging (with PSE and PSE-36), PAE, 4- and 5-level long
 * mode, and Intel EPT with 4 or 5 levels (the tables an L1 hypervisor gives
 * its L2 guest).
 *
 * The module is pure: no locks, no allocation, no global state.  Guest
 * memory is reached only through struct vmmu_gw_mem_ops, so the same walker
 * runs over a flat buffer (tests, fuzzing) or over guest memory that the
 * caller reaches through a second-stage table (the 2-D walk: every table
 * address handed to the callbacks is a GPA the caller translates, and may
 * refuse).
 *
 * Usage: compute a struct vmmu_gw_role once per change of CR0/CR4/EFER/PKRU
 * (vmmu_gw_role_init) or of EPTP (vmmu_gw_role_init_ept); then call
 * vmmu_gw_walk for every translation.  All permission decisions in the walk
 * are lookups in bitmaps the role precomputed.
 *
 * Accessed/Dirty rule (the same one KVM's software walker follows): nothing
 * is written while walking.  Only once the whole translation has succeeded,
 * permission and protection-key checks included, does the walker set A on
 * every entry it used that lacks it (top level first) and D on the leaf for
 * a write.  Each update is a compare-and-exchange of the value the walk
 * read; if any entry changed meanwhile the walk starts again from the root,
 * the way the processor's locked update would have seen the new value.
 * Consequently a walk that faults leaves guest memory untouched.
 *
 * PAE note: a real processor loads the four PDPTEs when CR3 is written and
 * checks their reserved bits then (#GP on the MOV).  This walker reads the
 * PDPTE from guest memory at walk time instead and reports a reserved bit
 * there as a #PF with RSVD=1.  Callers that want the load-time semantics
 * validate PDPTEs themselves when CR3 changes.
 */
#ifndef VMMU_GUEST_WALK_H
#define VMMU_GUEST_WALK_H

#include <stdbool.h>
#include <stdint.h>

/* Architectural control bits the role looks at. */
#define VMMU_GW_CR0_PE (1ULL << 0)
#define VMMU_GW_CR0_WP (1ULL << 16)
#define VMMU_GW_CR0_PG (1ULL << 31)
#define VMMU_GW_CR4_PSE (1ULL << 4)
#define VMMU_GW_CR4_PAE (1ULL << 5)
#define VMMU_GW_CR4_LA57 (1ULL << 12)
#define VMMU_GW_CR4_SMEP (1ULL << 20)
#define VMMU_GW_CR4_SMAP (1ULL << 21)
#define VMMU_GW_CR4_PKE (1ULL << 22)
#define VMMU_GW_EFER_LME (1ULL << 8)
#define VMMU_GW_EFER_LMA (1ULL << 10)
#define VMMU_GW_EFER_NXE (1ULL << 11)

/*
 * Access flags for vmmu_gw_walk.  WRITE, USER and FETCH sit at the bit
 * positions they have in the #PF error code.
 *
 *   WRITE     data write (otherwise a data read, unless FETCH)
 *   USER      access made at CPL 3 (a "user-mode access")
 *   FETCH     instruction fetch
 *   IMPLICIT  implicit supervisor-mode access (descriptor tables, TSS...),
 *             supervisor whatever the CPL; must not be combined with USER
 *             or FETCH
 *   AC        value of EFLAGS.AC at the time of the access (matters only
 *             for explicit supervisor data accesses under CR4.SMAP)
 *
 * For the EPT format only WRITE and FETCH are looked at.
 */
#define VMMU_GW_ACCESS_WRITE (1U << 1)
#define VMMU_GW_ACCESS_USER (1U << 2)
#define VMMU_GW_ACCESS_FETCH (1U << 4)
#define VMMU_GW_ACCESS_IMPLICIT (1U << 8)
#define VMMU_GW_ACCESS_AC (1U << 9)

/* #PF error code bits reported in vmmu_gw_result.error_code. */
#define VMMU_GW_PFERR_PRESENT (1U << 0) /* 1: protection/rsvd, 0: not present */
#define VMMU_GW_PFERR_WRITE (1U << 1)
#define VMMU_GW_PFERR_USER (1U << 2)
#define VMMU_GW_PFERR_RSVD (1U << 3)
#define VMMU_GW_PFERR_FETCH (1U << 4) /* I/D, see vmmu_gw_walk */
#define VMMU_GW_PFERR_PK (1U << 5)

/*
 * EPT-violation exit qualification bits (same layout as the VMCS field);
 * the walker fills bits 0-5 only.  Bits 7 and 8 (guest linear address
 * valid / translated) describe the L2 access that led here and are the
 * caller's to add.
 */
#define VMMU_GW_EPTQ_READ (1U << 0)
#define VMMU_GW_EPTQ_WRITE (1U << 1)
#define VMMU_GW_EPTQ_FETCH (1U << 2)
#define VMMU_GW_EPTQ_READABLE (1U << 3)	  /* AND of bit 0 over the entries */
#define VMMU_GW_EPTQ_WRITABLE (1U << 4)	  /* AND of bit 1 */
#define VMMU_GW_EPTQ_EXECUTABLE (1U << 5) /* AND of bit 2 */

/*
 * Accumulated access rights of a translation (vmmu_gw_result.access): the
 * AND over every level.  x86 formats: R is always set, W = R/W, U = U/S,
 * X = not execute-disabled (always set when EFER.NXE=0).  EPT: R, W, X are
 * the entries' bits 0, 1, 2 and U is never set.
 */
#define VMMU_GW_ACC_R (1U << 0)
#define VMMU_GW_ACC_W (1U << 1)
#define VMMU_GW_ACC_U (1U << 2)
#define VMMU_GW_ACC_X (1U << 3)

#define VMMU_GW_MAX_LEVELS 5

/* Paging mode of a role. */
enum vmmu_gw_mode {
	VMMU_GW_MODE_NONPAGING = 0, /* CR0.PG=0: gpa = gva (32 bits) */
	VMMU_GW_MODE_32BIT,	    /* 2 levels, 4-byte entries */
	VMMU_GW_MODE_PAE,	    /* 3 levels, 8-byte entries */
	VMMU_GW_MODE_LONG4,	    /* 4-level paging */
	VMMU_GW_MODE_LONG5,	    /* 5-level paging (CR4.LA57) */
	VMMU_GW_MODE_EPT4,	    /* EPT, page-walk length 4 */
	VMMU_GW_MODE_EPT5,	    /* EPT, page-walk length 5 */
};

/*
 * Outcome of vmmu_gw_walk (besides negative errno for bad arguments).
 */
enum vmmu_gw_status {
	VMMU_GW_OK = 0,		   /* translated: gpa, level, access valid */
	VMMU_GW_PAGE_FAULT = 1,	   /* #PF: error_code, level */
	VMMU_GW_NONCANONICAL = 2,  /* long mode, address not canonical: the
				    * processor raises #GP (or #SS); nothing
				    * was read */
	VMMU_GW_EPT_VIOLATION = 3, /* EPT: error_code is the exit qualification */
	VMMU_GW_EPT_MISCONFIG = 4, /* EPT: bad R/W/X combination, reserved bit
				    * or bad memory type in the entry at
				    * fault_gpa (level) */
	VMMU_GW_TABLE_FAULT = 5,   /* a mem_ops callback refused the table
				    * entry at fault_gpa (e.g. the caller took
				    * an EPT violation translating it);
				    * fault_write tells read or A/D update */
	VMMU_GW_RETRY = 6,	   /* the A/D compare-and-exchange kept losing
				    * races (VMMU_GW_MAX_RESTARTS); try later */
};

#define VMMU_GW_MAX_RESTARTS 16

/*
 * Guest memory accessors.  gpa is naturally aligned to size (4 or 8).
 *
 * read_pte: store the entry in *val (zero-extended when size is 4) and
 *   return 0, or return nonzero if the address cannot be read.
 * cmpxchg_pte: atomically replace old by new_val at gpa.  Return 0 if
 *   replaced, a positive value if the entry no longer held old (nothing
 *   written), a negative value if the address cannot be written.
 */
struct vmmu_gw_mem_ops {
	int (*read_pte)(void *opaque, uint64_t gpa, uint64_t *val, unsigned int size);
	int (*cmpxchg_pte)(void *opaque, uint64_t gpa, uint64_t old, uint64_t new_val,
			   unsigned int size);
};

/* Register state a role is computed from. */
struct vmmu_gw_regs {
	uint64_t cr0;
	uint64_t cr3; /* not used by the role; the walk takes its root */
	uint64_t cr4;
	uint64_t efer;
	uint32_t pkru;
	uint8_t maxphyaddr; /* 32..52 */
	bool no_gbpages;    /* CPU without 1 GiB pages: PS in a PDPTE is reserved */
};

/* Access classes: who accesses (rows) and how (columns). */
enum { VMMU_GW_PRIV_USER, VMMU_GW_PRIV_SUP, VMMU_GW_PRIV_SUP_AC, VMMU_GW_NR_PRIV };
enum { VMMU_GW_KIND_READ, VMMU_GW_KIND_WRITE, VMMU_GW_KIND_FETCH, VMMU_GW_NR_KIND };

/*
 * Everything the walk needs, precomputed.  Treat as opaque; fields are
 * indexed by level (1 = 4 KiB tables .. 5) where an array.
 */
struct vmmu_gw_role {
	bool valid;	       /* set by the init functions */
	bool pk_active;	       /* leaf bits 62:59 hold a protection key */
	uint8_t mode;	       /* enum vmmu_gw_mode */
	uint8_t levels;	       /* level of the root table, 0 when nonpaging */
	uint8_t pte_size;      /* 4 or 8 */
	uint8_t maxphyaddr;
	uint8_t va_bits;       /* 48/57: canonical check width, 0: none */
	uint8_t leaf_levels;   /* bit L: PS=1 at level L maps a page */
	uint8_t ept_bad_xwr;   /* bit n: RWX value n is a misconfiguration */
	uint8_t ept_bad_memtype; /* bit n: leaf memory type n is reserved */
	uint8_t pse36_bits;    /* 32-bit 4 MiB pages: address bits above 31 */
	uint8_t fixed_acc[VMMU_GW_MAX_LEVELS + 1]; /* rights granted regardless of
						    * the entry (PAE PDPTE) */
	uint8_t index_shift[VMMU_GW_MAX_LEVELS + 1];
	uint16_t index_mask[VMMU_GW_MAX_LEVELS + 1];
	uint64_t root_mask;    /* bits of CR3/EPTP holding the root address */
	uint64_t present_mask;
	uint64_t nx_mask;      /* execute-disable bit, 0 if none */
	uint64_t addr_mask;    /* address bits of a table-pointing entry */
	uint64_t rsvd_table[VMMU_GW_MAX_LEVELS + 1]; /* entry points to a table */
	uint64_t rsvd_leaf[VMMU_GW_MAX_LEVELS + 1];  /* entry maps a page */
	uint64_t a_mask[VMMU_GW_MAX_LEVELS + 1];     /* Accessed bit, 0: none */
	uint64_t d_mask;			       /* Dirty bit of a leaf, 0: none */
	/* bit a set: access rights a (VMMU_GW_ACC_*) do not allow the access */
	uint16_t perm_fault[VMMU_GW_NR_PRIV][VMMU_GW_NR_KIND];
	/* bit k set: protection key k forbids the access (user-mode pages) */
	uint16_t pk_deny[VMMU_GW_NR_PRIV][VMMU_GW_NR_KIND];
	/* error code / exit qualification bits describing the access */
	uint8_t fault_code[VMMU_GW_NR_PRIV][VMMU_GW_NR_KIND];
	uint64_t cr0, cr4, efer; /* as given, for vmmu_gw_role_set_pkru */
};

/* Result of a walk; which fields are valid depends on the status. */
struct vmmu_gw_result {
	uint64_t gpa;	    /* OK: translated address */
	uint64_t fault_gpa; /* TABLE_FAULT / EPT_MISCONFIG: entry address */
	/* gpa and value of the entry used at each level (index = level);
	 * valid from the root level down to `level`; values include the A/D
	 * bits this walk set. */
	uint64_t pte_gpa[VMMU_GW_MAX_LEVELS + 1];
	uint64_t pte[VMMU_GW_MAX_LEVELS + 1];
	uint32_t error_code; /* PAGE_FAULT: #PF code; EPT_VIOLATION: qualification */
	uint8_t level;	     /* OK: leaf level (1: 4 KiB, 2: 2/4 MiB, 3: 1 GiB);
			      * faults: level where the fault was found */
	uint8_t access;	     /* OK and permission faults: VMMU_GW_ACC_* */
	uint8_t pkey;	     /* OK: protection key of the leaf (0 if unused) */
	uint8_t ept_memtype; /* EPT OK: leaf memory type (bits 5:3) */
	bool ept_ipat;	     /* EPT OK: leaf ignore-PAT bit */
	bool fault_write;    /* TABLE_FAULT: the A/D update was refused */
	uint8_t restarts;    /* how often A/D races restarted the walk */
};

/*
 * vmmu_gw_role_init - precompute the walk of an x86 guest paging mode.
 *
 * Reads cr0, cr4, efer, pkru, maxphyaddr and no_gbpages.  The mode is
 * nonpaging (CR0.PG=0), 32-bit (CR4.PAE=0), PAE (EFER.LMA=0) or long mode
 * with 4 or 5 levels (CR4.LA57).  CR4.LA57 is ignored outside long mode.
 *
 * Returns 0, or -EINVAL when the combination cannot exist on a processor:
 * CR0.PG without CR0.PE; EFER.LMA without CR0.PG, CR4.PAE or EFER.LME;
 * maxphyaddr outside 32..52.  role is left unspecified on error.
 */
int vmmu_gw_role_init(struct vmmu_gw_role *role, const struct vmmu_gw_regs *regs);

/*
 * vmmu_gw_role_set_pkru - recompute only what depends on PKRU (cheap; for
 * WRPKRU/XRSTOR).  The role must come from vmmu_gw_role_init.
 */
void vmmu_gw_role_set_pkru(struct vmmu_gw_role *role, uint32_t pkru);

/*
 * vmmu_gw_role_init_ept - precompute the walk of an L1 hypervisor's EPT.
 *
 * eptp: bits 2:0 memory type (0 UC or 6 WB), 5:3 page-walk length minus 1
 *   (3 or 4), bit 6 enables Accessed/Dirty flags.
 * ad_supported: the (virtual) CPU offers EPT A/D; required for bit 6.
 * exec_only_ok: the CPU supports execute-only translations (X without R);
 *   otherwise such entries are misconfigurations.
 * maxphyaddr: 32..52.
 *
 * Returns 0, or -EINVAL for a bad EPTP memory type or walk length, EPTP bit
 * 6 without ad_supported, EPTP reserved bits (11:7, 63:maxphyaddr) set, or
 * maxphyaddr outside 32..52.
 */
int vmmu_gw_role_init_ept(struct vmmu_gw_role *role, uint64_t eptp, bool ad_supported,
			  bool exec_only_ok, unsigned int maxphyaddr);

/*
 * vmmu_gw_walk - translate one address.
 *
 * root: CR3 (x86 formats; PCID and flag bits are ignored) or the EPTP.
 * addr: the guest virtual address (x86; truncated to 32 bits outside long
 *   mode) or the L2 guest physical address (EPT).
 * access: VMMU_GW_ACCESS_* flags.
 *
 * Checks, in the order the processor makes them: canonical address (long
 * mode); then level by level from the root, present bit and reserved bits
 * (and for EPT the R/W/X combination and leaf memory type); then, on the
 * complete translation, the access rights (U/S, R/W with CR0.WP, NX with
 * EFER.NXE, SMEP, SMAP with EFLAGS.AC and implicit accesses) and protection
 * keys (4/5-level paging with CR4.PKE, data accesses to user-mode pages).
 *
 * #PF error code: P=0 for a non-present entry, P=1 otherwise; RSVD with a
 * reserved bit; W for writes, U for user-mode (CPL 3, not implicit)
 * accesses; I/D for instruction fetches when CR4.SMEP=1 or when PAE/long
 * paging runs with EFER.NXE=1; PK when the translation is a user-mode page
 * whose key PKRU forbids for this data access (independently of other
 * violations, never for not-present or reserved-bit faults).
 *
 * EPT: the exit qualification's rights bits are the AND over the entries
 * used, the faulting one included (so 0 for a not-present entry).  An
 * address with bits 48 and up (possible with maxphyaddr > 48) under a
 * 4-level EPT is reported as an EPT violation at level 4 without reading
 * anything.  1 GiB EPT pages are assumed supported.
 *
 * Returns an enum vmmu_gw_status (>= 0) and fills *out as documented
 * there (out->level is 0 for NONCANONICAL and for the nonpaging mode), or
 * -EINVAL if the role is not initialized, ops/out are NULL, access combines
 * WRITE with FETCH or IMPLICIT with USER/FETCH, or (EPT) addr has bits at
 * or above maxphyaddr.  *out is not written on -EINVAL.
 */
int vmmu_gw_walk(const struct vmmu_gw_role *role, const struct vmmu_gw_mem_ops *ops,
		 void *opaque, uint64_t root, uint64_t addr, uint32_t access,
		 struct vmmu_gw_result *out);

#endif /* VMMU_GUEST_WALK_H */
