/* SPDX-License-Identifier: MIT */
/*
 * ept.h - the architectural format of Intel EPT entries and of the EPTP,
 * as a processor reads them.
 *
 * The tables vmmu builds (vmmu_guest_entry.root) are in this format, so a
 * CPU model or an emulator walks them with nothing but this header: it is
 * what <vmmu/hw.h>'s model uses.  Bits the processor ignores carry vmmu's
 * own software state; they are vmmu's business, not listed here, and a
 * walker must not interpret them.
 *
 * Entry (8 bytes, 512 per 4 KiB table, indexed by 9 bits of the gfn per
 * level, level 1 being the 4 KiB level):
 *
 *   bit  0      R    readable
 *   bit  1      W    writable
 *   bit  2      X    executable (supervisor-mode execute)
 *   bits 5:3    memory type (leaf only; 6 = write-back)
 *   bit  6      ignore PAT (leaf only)
 *   bit  7      large page (a leaf at level 2 (2 MiB) or 3 (1 GiB))
 *   bit  8      A    accessed (set by the processor when the EPTP enables
 *                    A/D bits, on every entry a walk uses)
 *   bit  9      D    dirty (leaf only, set on a write, likewise)
 *   bit  10     user-mode execute (mode-based execute control; unused)
 *   bits 51:12  address of the next table or of the page
 *   bit  63     suppress #VE
 *
 * An entry with R, W and X all clear is not present.  The rights of a
 * translation are the AND of R/W/X over every level.  In userspace the
 * address field holds a host virtual address: of the next table's 4 KiB
 * page, or of the (large) page the leaf maps.
 *
 * EPTP: bits 2:0 memory type of the tables (6 = write-back), bits 5:3 the
 * number of levels minus one, bit 6 enables A/D bits, bits 51:12 the
 * address of the root table.
 */
#ifndef VMMU_EPT_H
#define VMMU_EPT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMMU_EPTE_READ (1ull << 0)
#define VMMU_EPTE_WRITE (1ull << 1)
#define VMMU_EPTE_EXEC (1ull << 2)
#define VMMU_EPTE_RWX_MASK (VMMU_EPTE_READ | VMMU_EPTE_WRITE | VMMU_EPTE_EXEC)
#define VMMU_EPTE_MT_SHIFT 3
#define VMMU_EPTE_MT_MASK (7ull << VMMU_EPTE_MT_SHIFT)
#define VMMU_EPTE_IPAT (1ull << 6)
#define VMMU_EPTE_LARGE (1ull << 7)
#define VMMU_EPTE_ACCESSED (1ull << 8)
#define VMMU_EPTE_DIRTY (1ull << 9)
#define VMMU_EPTE_USER_EXEC (1ull << 10)
#define VMMU_EPTE_ADDR_MASK 0x000ffffffffff000ull /* bits 51:12 */
#define VMMU_EPTE_SUPPRESS_VE (1ull << 63)

/* Memory types (entry bits 5:3, EPTP bits 2:0). */
#define VMMU_EPT_MT_UC 0ull
#define VMMU_EPT_MT_WB 6ull

#define VMMU_EPTP_MT_MASK 7ull
#define VMMU_EPTP_LEVELS_SHIFT 3 /* bits 5:3: levels - 1 */
#define VMMU_EPTP_LEVELS_MASK (7ull << VMMU_EPTP_LEVELS_SHIFT)
#define VMMU_EPTP_AD_ENABLE (1ull << 6)
#define VMMU_EPTP_ADDR_MASK VMMU_EPTE_ADDR_MASK

#define VMMU_EPT_ENTRIES 512
#define VMMU_EPT_LEVEL_BITS 9
#define VMMU_EPT_LEVEL_4K 1
#define VMMU_EPT_MAX_LEVEL 5

/* Index of the entry for @gfn in a table at @level. */
static inline unsigned vmmu_ept_index(uint64_t gfn, int level)
{
	return (unsigned)(gfn >> ((unsigned)(level - 1) * VMMU_EPT_LEVEL_BITS)) &
	       (VMMU_EPT_ENTRIES - 1);
}

/* 4 KiB pages covered by one entry at @level. */
static inline uint64_t vmmu_ept_pages_per(int level)
{
	return 1ull << ((unsigned)(level - 1) * VMMU_EPT_LEVEL_BITS);
}

/* Does the entry @e at @level end the walk (a leaf, if present)? */
static inline int vmmu_ept_is_leaf(uint64_t e, int level)
{
	return level == VMMU_EPT_LEVEL_4K || (e & VMMU_EPTE_LARGE) != 0;
}

/* The address field: the next table, or the page a leaf maps. */
static inline uint64_t vmmu_ept_addr(uint64_t e)
{
	return e & VMMU_EPTE_ADDR_MASK;
}

#ifdef __cplusplus
}
#endif

#endif /* VMMU_EPT_H */
