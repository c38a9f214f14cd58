/* SPDX-License-Identifier: MIT */
/*
 * guest_pt.h - build a guest's own page tables inside a buffer that is
 * guest memory (a memslot's host side), for the paging tests.
 *
 *   gpt_init()     tables for one mode, allocated from [table_gpa, ...)
 *   gpt_map()      map one page (4 KiB, or a large page at level 2/3)
 *   gpt_entry()    pointer to the entry used at @level for @gva (NULL if
 *                  the walk stops above), to check A/D bits
 *
 * Written from the SDM's formats, independently of src/guest_walk.c.
 * Table entries grant P, R/W and U/S; leaves carry the caller's flags.
 * Header only; include as "../common/guest_pt.h".
 */
#ifndef VMMU_TEST_GUEST_PT_H
#define VMMU_TEST_GUEST_PT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum gpt_mode { GPT_32BIT, GPT_PAE, GPT_LONG4, GPT_LONG5 };

#define GPT_P (1ull << 0)
#define GPT_W (1ull << 1)
#define GPT_U (1ull << 2)
#define GPT_A (1ull << 5)
#define GPT_D (1ull << 6)
#define GPT_PS (1ull << 7)
#define GPT_NX (1ull << 63)

struct gpt {
	enum gpt_mode mode;
	uint8_t *mem;      /* host address of guest-physical mem_gpa */
	uint64_t mem_gpa;
	uint64_t mem_size;
	uint64_t next_gpa; /* bump allocator for tables */
	uint64_t cr3;
};

static inline void *gpt_host(struct gpt *g, uint64_t gpa)
{
	if (gpa < g->mem_gpa || gpa - g->mem_gpa >= g->mem_size)
		abort();
	return g->mem + (gpa - g->mem_gpa);
}

static inline uint64_t gpt_alloc(struct gpt *g)
{
	uint64_t gpa = g->next_gpa;

	g->next_gpa += 4096;
	memset(gpt_host(g, gpa), 0, 4096);
	return gpa;
}

static inline int gpt_levels(const struct gpt *g)
{
	static const int levels[] = { 2, 3, 4, 5 };
	return levels[g->mode];
}

static inline unsigned gpt_index(const struct gpt *g, uint64_t gva, int level)
{
	if (g->mode == GPT_32BIT)
		return (unsigned)((gva >> (12 + 10 * (level - 1))) & 1023);
	if (g->mode == GPT_PAE && level == 3)
		return (unsigned)((gva >> 30) & 3);
	return (unsigned)((gva >> (12 + 9 * (level - 1))) & 511);
}

static inline uint64_t gpt_read(struct gpt *g, uint64_t gpa)
{
	if (g->mode == GPT_32BIT)
		return __atomic_load_n((uint32_t *)gpt_host(g, gpa), __ATOMIC_RELAXED);
	return __atomic_load_n((uint64_t *)gpt_host(g, gpa), __ATOMIC_RELAXED);
}

static inline void gpt_write(struct gpt *g, uint64_t gpa, uint64_t v)
{
	if (g->mode == GPT_32BIT)
		__atomic_store_n((uint32_t *)gpt_host(g, gpa), (uint32_t)v, __ATOMIC_RELAXED);
	else
		__atomic_store_n((uint64_t *)gpt_host(g, gpa), v, __ATOMIC_RELAXED);
}

/* The gpa of the entry used at @level for @gva, or 0 if the walk does not
 * reach @level. */
static inline uint64_t gpt_entry_gpa(struct gpt *g, uint64_t gva, int level)
{
	unsigned esize = g->mode == GPT_32BIT ? 4 : 8;
	uint64_t table = g->mode == GPT_PAE ? (g->cr3 & 0xffffffe0ull) : (g->cr3 & ~0xfffull);

	for (int l = gpt_levels(g);; l--) {
		uint64_t gpa = table + gpt_index(g, gva, l) * esize;
		uint64_t e;

		if (l == level)
			return gpa;
		e = gpt_read(g, gpa);
		if (!(e & GPT_P) || (e & GPT_PS))
			return 0;
		table = e & (g->mode == GPT_32BIT ? 0xfffff000ull : 0x000ffffffffff000ull);
	}
}

static inline uint64_t gpt_entry(struct gpt *g, uint64_t gva, int level)
{
	uint64_t gpa = gpt_entry_gpa(g, gva, level);

	return gpa ? gpt_read(g, gpa) : 0;
}

static inline void gpt_init(struct gpt *g, enum gpt_mode mode, void *mem, uint64_t mem_gpa,
			    uint64_t mem_size, uint64_t table_gpa)
{
	memset(g, 0, sizeof(*g));
	g->mode = mode;
	g->mem = mem;
	g->mem_gpa = mem_gpa;
	g->mem_size = mem_size;
	g->next_gpa = table_gpa;
	g->cr3 = gpt_alloc(g); /* PAE: the PDPT sits at the start of a page */
}

/* Map @gva to @gpa with a leaf at @level (1, or 2/3 with PS) and @flags. */
static inline void gpt_map(struct gpt *g, uint64_t gva, uint64_t gpa, int level, uint64_t flags)
{
	unsigned esize = g->mode == GPT_32BIT ? 4 : 8;
	uint64_t table = g->mode == GPT_PAE ? (g->cr3 & 0xffffffe0ull) : (g->cr3 & ~0xfffull);

	for (int l = gpt_levels(g); l > level; l--) {
		uint64_t egpa = table + gpt_index(g, gva, l) * esize;
		uint64_t e = gpt_read(g, egpa);

		if (!(e & GPT_P)) {
			uint64_t child = gpt_alloc(g);

			/* A PDPTE has no R/W or U/S bits (they are reserved). */
			e = child | GPT_P | (g->mode == GPT_PAE && l == 3 ? 0 : GPT_W | GPT_U);
			gpt_write(g, egpa, e);
		}
		table = e & (g->mode == GPT_32BIT ? 0xfffff000ull : 0x000ffffffffff000ull);
	}
	if (g->mode == GPT_32BIT && level == 2) {
		/* PSE: bits 31:22 of the address, 39:32 in bits 20:13 */
		gpa = (gpa & 0xffc00000ull) | (((gpa >> 32) & 0xff) << 13);
	}
	gpt_write(g, table + gpt_index(g, gva, level) * esize,
		  gpa | flags | GPT_P | (level > 1 ? GPT_PS : 0));
}

#endif /* VMMU_TEST_GUEST_PT_H */
