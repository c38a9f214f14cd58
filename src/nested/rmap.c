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

static unsigned rmap_bucket(const struct nested_root *r, uint64_t key)
{
	return (unsigned)((key * 0x9e3779b97f4a7c15ull) >> (64 - r->rmap_bits));
}

/* Double the buckets (under the root's lock: nobody reads the map without
 * it).  Out of memory: keep the small map, it only gets slower. */
static void rmap_grow(struct nested_root *r)
{
	uint32_t bits = r->rmap_bits + 1;
	struct rmap_node **nh = calloc(1ull << bits, sizeof(*nh)), **old = r->rmap;
	uint32_t old_bits = r->rmap_bits;

	if (!nh)
		return;
	r->rmap = nh;
	r->rmap_bits = bits;
	for (size_t b = 0; b < (1ull << old_bits); b++) {
		struct rmap_node *x = old[b], *next;

		for (; x; x = next) {
			unsigned nb = rmap_bucket(r, x->key);

			next = x->next;
			x->next = nh[nb];
			nh[nb] = x;
		}
	}
	free(old);
}

/* The span of leaf gfns widens before the leaf exists (release): a
 * cross-root query that reads the span with acquire and finds the range
 * outside it may skip the root (docs/nested-per-root-locking.md 3.1). */
static void span_add(struct nested_root *r, int level, uint64_t gfn)
{
	uint64_t last = gfn + spte_pages_per(level) - 1;

	if (gfn < __atomic_load_n(&r->leaf_lo, __ATOMIC_RELAXED))
		__atomic_store_n(&r->leaf_lo, gfn, __ATOMIC_RELEASE);
	if (last > __atomic_load_n(&r->leaf_hi, __ATOMIC_RELAXED) ||
	    __atomic_load_n(&r->leaf_hi, __ATOMIC_RELAXED) == 0)
		__atomic_store_n(&r->leaf_hi, last, __ATOMIC_RELEASE);
}

bool nested_rmap_add(struct nested_root *r, unsigned as, int level, uint64_t gfn, struct nsp *sp)
{
	return nested_rmap_add_n(r, as, level, gfn, sp, 1);
}

bool nested_rmap_add_n(struct nested_root *r, unsigned as, int level, uint64_t gfn, struct nsp *sp,
		       uint64_t count)
{
	uint64_t key = rmap_key(as, level, gfn);
	unsigned b = rmap_bucket(r, key);
	struct rmap_node *x;

	span_add(r, level, gfn);
	for (x = r->rmap[b]; x; x = x->next)
		if (x->key == key && x->sp == sp) {
			x->count += count;
			return true;
		}
	x = nested_alloc_desc(r, sizeof(*x));
	if (!x)
		return false;
	x->key = key;
	x->sp = sp;
	x->count = count;
	x->next = r->rmap[b];
	r->rmap[b] = x;
	__atomic_store_n(&r->nr_rmap_nodes, r->nr_rmap_nodes + 1, __ATOMIC_RELEASE);
	/* Not while a split allocates from its caches (it must not call the
	 * allocator) nor while a walk of the map runs (a failed or skipped
	 * rehash is harmless: the next insertion tries again). */
	if (r->nr_rmap_nodes > 2ull << r->rmap_bits && r->rmap_bits < NESTED_HASH_BITS_MAX &&
	    !r->split_alloc && !r->rmap_walks)
		rmap_grow(r);
	return true;
}

void nested_rmap_del(struct nested_root *r, unsigned as, int level, uint64_t gfn, struct nsp *sp)
{
	uint64_t key = rmap_key(as, level, gfn);
	struct rmap_node **pp = &r->rmap[rmap_bucket(r, key)];

	for (; *pp; pp = &(*pp)->next) {
		struct rmap_node *x = *pp;

		if (x->key != key || x->sp != sp)
			continue;
		if (!--x->count) {
			*pp = x->next;
			free(x);
			__atomic_store_n(&r->nr_rmap_nodes, r->nr_rmap_nodes - 1, __ATOMIC_RELEASE);
			if (!r->nr_rmap_nodes) {
				/* Empty: the span starts again. */
				__atomic_store_n(&r->leaf_hi, 0, __ATOMIC_RELAXED);
				__atomic_store_n(&r->leaf_lo, UINT64_MAX, __ATOMIC_RELAXED);
			}
		}
		return;
	}
	WARN_ON(1); /* a present leaf that was not on its reverse map */
}

/* Visit the leaves of table @sp at @level whose range overlaps [start, end). */
static bool scan_table(struct nested_root *r, struct nsp *sp, int level, uint64_t start,
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
		ret |= fn(r, sp, &sp->spt[i], gfn, level, arg);
	}
	return ret;
}

bool nested_rmap_for_each(struct nested_root *r, unsigned as, uint64_t start, uint64_t end,
			  nested_leaf_fn fn, void *arg)
{
	return nested_rmap_for_each_level(r, as, start, end, PG_LEVEL_4K, SPTE_MAX_HUGEPAGE_LEVEL,
					  fn, arg);
}

static bool node_matches(const struct rmap_node *x, bool all, unsigned as, int level, uint64_t c0,
			 uint64_t c1, uint64_t key)
{
	uint64_t rc = x->key & ((1ull << 58) - 1);

	if (!all)
		return x->key == key;
	return (x->key >> 63) == as && (int)((x->key >> 58) & 31) == level && rc >= c0 && rc <= c1;
}

/*
 * Walk the listed tables in place, without allocating (nothing can fail
 * half way).  @fn changes leaves of the table it is given only: it may
 * drop that table's nodes (any of them, in any bucket) and add nodes at
 * the head of buckets (a split's child), but frees no table and no node of
 * another table.  So before scanning a table, the walk moves on to the
 * next node of a different table, which stays valid; nodes added meanwhile
 * are at bucket heads, behind the walk (the split visits one level per
 * call, so the new smaller leaves are not its business).  The map does not
 * grow while a walk runs (rmap_walks).
 */
bool nested_rmap_for_each_level(struct nested_root *r, unsigned as, uint64_t start, uint64_t end,
				int min_level, int max_level, nested_leaf_fn fn, void *arg)
{
	bool ret = false;

	if (start >= end || !r->nr_rmap_nodes)
		return false;
	r->rmap_walks++;
	for (int level = min_level; level <= max_level; level++) {
		unsigned shift = (unsigned)level * SPTE_LEVEL_BITS;
		uint64_t c0 = start >> shift, c1 = (end - 1) >> shift;
		bool all = c1 - c0 >= r->nr_rmap_nodes;

		for (uint64_t c = c0; c <= c1; c++) {
			uint64_t key = rmap_key(as, level, c << shift);
			size_t nb = 1ull << r->rmap_bits;
			size_t b0 = all ? 0 : rmap_bucket(r, key), b1 = all ? nb : b0 + 1;

			for (size_t b = b0; b < b1; b++) {
				struct rmap_node *x = r->rmap[b];

				while (x) {
					struct nsp *sp = x->sp;
					struct rmap_node *next = x->next;

					if (!node_matches(x, all, as, level, c0, c1, key)) {
						x = next;
						continue;
					}
					while (next && next->sp == sp)
						next = next->next;
					/* A table listed twice (several chunks) is
					 * scanned twice: harmless, every callback is
					 * idempotent. */
					ret |= scan_table(r, sp, level, start, end, fn, arg);
					x = next;
				}
			}
			if (all)
				break;
		}
	}
	r->rmap_walks--;
	return ret;
}
