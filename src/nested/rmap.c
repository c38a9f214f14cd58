// SPDX-License-Identifier: MIT
/*
 * rmap.c - reverse maps of the nested engine: from a range of L1 gfns to
 * the EPT02 leaves that map them.
 *
 * Why not KVM's per-gfn heads with descriptor blocks: every user of the
 * reverse map asks about a range (a notifier's hva range, a memslot, a zap
 * range, 64 pages of a dirty bitmap, an aged range), and L1 usually maps
 * one L2 table onto one contiguous piece of its memory.  So the map is kept
 * per chunk: a node (32 bytes) says "table T holds N leaves of level L whose
 * L1 gfns lie in chunk C" (C = 512 frames of the leaf's size).  The gfn of
 * each leaf comes from the table itself: for a direct table it is computed
 * (gfn + index * size), for an indirect one it is kept in an 8-byte-per-
 * entry side array (what KVM calls the shadowed translation), allocated
 * only for indirect tables that hold leaves.  With L1 mapping L2 linearly
 * that is one node per table: 32 / 512 bytes per leaf under a direct table,
 * 8 + 32 / 512 under an indirect one (the figures vmmu_nested_stats reports
 * as rmap_bytes).  A query visits the chunks of its range (or, for a range
 * wider than the map, every node) and scans the listed tables.
 */
#include "nested_internal.h"

#include <stdlib.h>

static uint64_t rmap_key(unsigned as, int level, uint64_t gfn)
{
	uint64_t chunk = gfn >> ((unsigned)level * SPTE_LEVEL_BITS);

	return ((uint64_t)as << 63) | ((uint64_t)level << 58) | chunk;
}

static unsigned rmap_bucket(uint64_t key)
{
	return (unsigned)((key * 0x9e3779b97f4a7c15ull) >> (64 - RMAP_HASH_BITS));
}

bool nested_rmap_add(struct vmmu_nested *n, unsigned as, int level, uint64_t gfn, struct nsp *sp)
{
	return nested_rmap_add_n(n, as, level, gfn, sp, 1);
}

bool nested_rmap_add_n(struct vmmu_nested *n, unsigned as, int level, uint64_t gfn, struct nsp *sp,
		       uint64_t count)
{
	uint64_t key = rmap_key(as, level, gfn);
	unsigned b = rmap_bucket(key);
	struct rmap_node *r;

	for (r = n->rmap[b]; r; r = r->next)
		if (r->key == key && r->sp == sp) {
			r->count += count;
			return true;
		}
	r = nested_alloc_desc(n, sizeof(*r));
	if (!r)
		return false;
	r->key = key;
	r->sp = sp;
	r->count = count;
	r->next = n->rmap[b];
	n->rmap[b] = r;
	n->nr_rmap_nodes++;
	return true;
}

void nested_rmap_del(struct vmmu_nested *n, unsigned as, int level, uint64_t gfn, struct nsp *sp)
{
	uint64_t key = rmap_key(as, level, gfn);
	struct rmap_node **pp = &n->rmap[rmap_bucket(key)];

	for (; *pp; pp = &(*pp)->next) {
		struct rmap_node *r = *pp;

		if (r->key != key || r->sp != sp)
			continue;
		if (!--r->count) {
			*pp = r->next;
			free(r);
			n->nr_rmap_nodes--;
		}
		return;
	}
	WARN_ON(1); /* a present leaf that was not on its reverse map */
}

void nested_rmap_destroy(struct vmmu_nested *n)
{
	for (unsigned b = 0; b < (1u << RMAP_HASH_BITS); b++)
		WARN_ON(n->rmap[b]);
}

/* Visit the leaves of table @sp at @level whose range overlaps [start, end). */
static bool scan_table(struct vmmu_nested *n, struct nsp *sp, int level, uint64_t start,
		       uint64_t end, nested_leaf_fn fn, void *arg)
{
	uint64_t per = spte_pages_per(level);
	bool ret = false;

	if ((int)sp->role.level != level)
		return false;
	for (unsigned i = 0; i < SPTE_ENT_PER_PAGE && sp->nr_leaves; i++) {
		uint64_t spte = nested_read_spte(&sp->spt[i]);
		uint64_t gfn;

		if (!is_present_leaf(spte, level))
			continue;
		gfn = nested_leaf_gfn(sp, i);
		if (gfn + per <= start || gfn >= end)
			continue;
		ret |= fn(n, sp, &sp->spt[i], gfn, level, arg);
	}
	return ret;
}

/*
 * The tables to scan are collected first: @fn may zap leaves, which frees
 * nodes (and even tables: a caller that zaps must not free tables, which
 * leaf zaps never do).
 */
bool nested_rmap_for_each(struct vmmu_nested *n, unsigned as, uint64_t start, uint64_t end,
			  nested_leaf_fn fn, void *arg)
{
	return nested_rmap_for_each_level(n, as, start, end, PG_LEVEL_4K, SPTE_MAX_HUGEPAGE_LEVEL,
					  fn, arg);
}

bool nested_rmap_for_each_level(struct vmmu_nested *n, unsigned as, uint64_t start, uint64_t end,
				int min_level, int max_level, nested_leaf_fn fn, void *arg)
{
	struct nsp **list = NULL;
	int *levels = NULL;
	size_t nr = 0, cap = 0;
	bool ret = false;

	nested_assert_locked(n->vm);
	if (start >= end || !n->nr_rmap_nodes)
		return false;
	for (int level = min_level; level <= max_level; level++) {
		unsigned shift = (unsigned)level * SPTE_LEVEL_BITS;
		uint64_t c0 = start >> shift, c1 = (end - 1) >> shift;
		bool all = c1 - c0 >= n->nr_rmap_nodes;

		for (uint64_t c = c0; c <= c1; c++) {
			uint64_t key = rmap_key(as, level, c << shift);
			unsigned b0 = all ? 0 : rmap_bucket(key),
				 b1 = all ? (1u << RMAP_HASH_BITS) : b0 + 1;

			for (unsigned b = b0; b < b1; b++) {
				for (struct rmap_node *r = n->rmap[b]; r; r = r->next) {
					if (all) {
						uint64_t rc = r->key & ((1ull << 58) - 1);

						if ((r->key >> 63) != as ||
						    (int)((r->key >> 58) & 31) != level ||
						    rc < c0 || rc > c1)
							continue;
					} else if (r->key != key) {
						continue;
					}
					if (nr == cap) {
						size_t nc = cap ? cap * 2 : 16;
						struct nsp **l = realloc(list, nc * sizeof(*l));
						int *lv = realloc(levels, nc * sizeof(*lv));

						if (!l || !lv)
							abort();
						list = l;
						levels = lv;
						cap = nc;
					}
					list[nr] = r->sp;
					levels[nr++] = level;
				}
			}
			if (all)
				break;
		}
	}
	for (size_t i = 0; i < nr; i++) {
		/* A table listed twice (several chunks) is scanned twice:
		 * harmless, every callback is idempotent. */
		ret |= scan_table(n, list[i], levels[i], start, end, fn, arg);
	}
	free(list);
	free(levels);
	return ret;
}
