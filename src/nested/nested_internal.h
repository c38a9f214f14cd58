/* SPDX-License-Identifier: MIT */
/*
 * nested_internal.h - the objects of the nested (EPT-on-EPT) engine, shared
 * by its files only.  The TDP engine never includes this.
 *
 * Locking (docs/nested-per-root-locking.md, decided in nested_mmu.c
 * only): everything a root's tables need (shadow-page hash and list, chunk
 * reverse map, free list, EPT02 entries, the tables' metadata) belongs to
 * one struct nested_root and is protected by its lock, taken inside the
 * MMU lock held for read (global mode: the engine's one mutex for every
 * root, and the vCPU operations hold the MMU lock for write).  Never two
 * root locks at once: cross-root operations visit roots in turn.  Shared
 * by all roots: the write-track hash (lockless readers under RCU, changes
 * under track_lock), the pool (its own mutex), the roots list (RCU,
 * changes under roots_lock), ept12_wseq and the stats (atomic).  The
 * hardware model reads EPT02 entries without any lock and sets their A/D
 * bits with compare-and-exchange, so leaf updates are atomic exchanges; a
 * table page is returned to the pool only after a remote TLB flush that
 * every vCPU in guest mode acknowledged and an RCU grace period.
 */
#ifndef VMMU_NESTED_INTERNAL_H
#define VMMU_NESTED_INTERNAL_H

#include <vmmu/nested.h>

#include "../mmu_internal.h"
#include "../hostmem_internal.h"
#include "../vm_internal.h"
#include "nested.h"

#include <urcu/list.h>

/*
 * Role of an EPT02 table.  Two tables are interchangeable only if gfn and
 * role match.
 */
union nested_role {
	uint32_t word;
	struct {
		uint32_t level : 4; /* of this table (1: holds 4 KiB leaves) */
		uint32_t direct : 1; /* below an EPT12 leaf: maps L1 gfns
					 * gfn + i * size, no EPT12 table behind */
		uint32_t access : 3; /* direct: the EPT12 leaf's R/W/X */
		uint32_t ad12 : 1; /* L1's EPTP enables EPT12 A/D */
		uint32_t smm : 1; /* L1's address space */
		uint32_t root_level : 4; /* walk length of the EPTP */
		uint32_t guest_mode : 1; /* always 1 */
		uint32_t reserved : 17;
	};
};

/* A second (third...) entry pointing at a shared table. */
struct nsp_parent {
	uint64_t *sptep;
	struct nsp_parent *next;
};

/*
 * Metadata of one EPT02 table page (KVM's kvm_mmu_page for the nested
 * MMU).  The pool keeps an 8-byte pointer to it per page; with it, at most
 * 128 bytes per page (the budget of issue 12).  Every table belongs to one
 * root (@r): tables are never shared between roots, only between entries
 * of one root.
 */
struct nsp {
	struct nsp *hash_next; /* bucket of gfn in r->hash */
	struct cds_list_head link; /* r->sps: every table of the root */
	uint64_t gfn; /* indirect: L1 gfn of the EPT12 table
				    * shadowed; direct: L1 gfn of entry 0 */
	uint64_t *spt; /* the 4 KiB table */
	union nested_role role;
	uint32_t nr_leaves; /* present leaves in this table */
	uint64_t *parent; /* the entry pointing here (NULL: root) */
	struct nsp_parent *more_parents;
	/*
	 * Indirect tables that hold leaves: L1 gfn + 1 of each leaf entry
	 * (0: none), so that a leaf can be taken off its reverse map whatever
	 * EPT12 says now.  Counted as reverse-map memory.
	 */
	uint64_t *leaf_gfns;
	uint16_t nr_children; /* present non-leaf entries */
	uint8_t tracked; /* holds a write-track reference */
	struct nested_root *r; /* its root */
	struct vmmu_nested *n; /* the pool it comes from (freeing) */
	vmmu_rcu_head rcu; /* freeing: after a flush and a grace period */
};
static_assert(sizeof(struct nsp) + sizeof(void *) <= 128, "nested metadata over budget");

/*
 * Reverse map, by chunk: an entry says "table @sp holds @count leaves of
 * level @level whose L1 gfns fall in chunk @chunk" (a chunk is 512 frames of
 * the leaf's size: 2 MiB of L1 for 4 KiB leaves, 1 GiB for 2 MiB leaves,
 * 512 GiB for 1 GiB leaves).  Queries by gfn range visit the chunks of the
 * range and scan the entries of each listed table whose gfn falls inside.
 */
struct rmap_node {
	struct rmap_node *next; /* hash bucket */
	uint64_t key; /* as | level | chunk, see rmap_key() */
	struct nsp *sp;
	uint64_t count;
};

/* A write-track counter (write_track.c): RCU-read, changed under
 * track_lock, freed after a grace period. */
struct track_node {
	struct track_node *next;
	uint64_t key; /* as | level | frame */
	uint32_t count; /* shadow pages (level 1: of this gfn) */
	uint32_t pending; /* level 1: TDP or EPT02 leaves may still be writable */
	uint64_t epoch;
	uint64_t roots; /* level 1: ids of roots shadowing it (63: any >= 63) */
	vmmu_rcu_head rcu;
};

/* Shadow-page hash and reverse map of a root: initial and largest sizes
 * (log2 of buckets); each doubles when its population exceeds twice its
 * buckets. */
#define NESTED_HASH_BITS_MIN 9
#define RMAP_HASH_BITS_MIN 10
#define NESTED_HASH_BITS_MAX 16
#define TRACK_HASH_BITS 12
#define NESTED_ROOT_IDS 63 /* ids 0..62; 63 stands for every larger one */

/*
 * One EPT02 root: a distinct (EPT12 root gfn, role), shared by the vCPUs
 * running that L2, with everything its tables need (docs/nested-per-root-
 * locking.md 1.1).  All fields below @lock are protected by the root's lock
 * (nested_root_lock(): r->lock, or n->lock in the global mode), except
 * where said.
 */
struct nested_root {
	pthread_mutex_t lock;
	struct vmmu_nested *n;
	struct nsp *sp; /* the root table */
	uint64_t eptp; /* the first EPTP that loaded it */
	uint64_t root_gfn; /* lookup key: EPT12 root gfn and role */
	uint32_t role_word;
	uint8_t as; /* address space (role.smm) */
	int32_t refcount; /* atomic: vCPU references + transient ones */
	uint16_t id; /* 0..62, 63 = overflow (track-node bitmaps) */
	/* Obsolete, never cleared: set under the MMU lock for write
	 * (vmmu_nested_invalidate_roots), or under the MMU read lock and the
	 * root's lock when the EPT12 page of its root table goes
	 * (zap_shadow_page).  Whoever relies on it checks it under the
	 * root's lock (the fault retries, the vCPU reloads its root). */
	uint8_t invalid;
	uint8_t dead; /* last reference gone (under the lock) */
	uint8_t split_alloc; /* allocations come from the split caches */
	uint8_t flush_needed; /* an entry lost rights or went since the flush */
	uint8_t rmap_walks; /* nested walks of the reverse map running */
	struct cds_list_head link; /* n->roots (RCU list, roots_lock) */
	struct nsp **hash;
	uint32_t hash_bits;
	uint64_t nr_hashed;
	struct cds_list_head sps; /* every table, root first */
	struct rmap_node **rmap;
	uint32_t rmap_bits;
	uint64_t nr_rmap_nodes; /* read without the lock (span skip) */
	/* L1 gfns of its leaves lie in [leaf_lo, leaf_hi] (release-stored
	 * before a leaf is installed; lo > hi: none yet). */
	uint64_t leaf_lo, leaf_hi;
	/* Tables unlinked under the lock, freed after the next flush. */
	struct nsp **free_list;
	size_t nr_free, cap_free;
	/* Stats (read relaxed without the lock). */
	int64_t pages[3];
	int64_t nr_sps, sidecar_bytes;
	uint64_t faults, shadow_zapped, cache_miss;
	uint64_t lock_acquired, lock_contended, lock_wait_ns;
	vmmu_rcu_head rcu; /* the struct is freed after a grace period */
};

/* Stats of freed roots, folded in by nested_put_root. */
struct nested_dead_stats {
	uint64_t faults, shadow_zapped, cache_miss, lock_contended, lock_wait_ns;
};

struct vmmu_nested {
	struct vmmu_vm *vm;
	/* The global mode's only lock (vmmu_vm_config.nested_global_lock),
	 * taken after the MMU lock for write by faults, root loads and
	 * emulated writes and inside whatever MMU lock the dispatch holds. */
	pthread_mutex_t lock;
	struct vmmu_pool pool; /* EPT02 table pages; meta: struct nsp * */

	/* Roots: RCU list, inserted and removed under roots_lock. */
	struct cds_list_head roots;
	pthread_mutex_t roots_lock;
	struct nested_root *root_by_id[NESTED_ROOT_IDS + 1]; /* RCU */
	uint64_t root_ids; /* bitmap of ids in use (roots_lock) */
	int64_t nr_roots;
	struct nested_dead_stats dead; /* roots_lock */

	/* Write tracking (write_track.c): lockless lookups, changes under
	 * track_lock (a leaf lock). */
	struct track_node *track[1u << TRACK_HASH_BITS];
	pthread_mutex_t track_lock;
	uint64_t track_epoch;
	int64_t nr_tracked; /* level-1 track nodes; read by the TDP fault path */
	/* Emulated EPT12 writes so far: a nested fault whose walk saw it
	 * change retries (docs/nested-per-root-locking.md 3.2). */
	uint64_t ept12_wseq;

	/* VM-wide stats, atomic. */
	uint64_t pte_write, exits;
	uint64_t roots_created, track_barriers, ept12_retries;
	uint64_t cross_root_visits, cross_root_skips;

	/* Eager splitting (split.c): the three split caches, protected by the
	 * slots lock; while a root's @split_alloc is set (under its lock),
	 * the allocations of nested_sp_alloc, nested_sp_link and
	 * nested_rmap_add for that root come from them instead of the
	 * allocator. */
	struct nested_obj_cache {
		void **objs;
		int32_t nobjs, capacity;
	} split_desc_cache, split_page_header_cache, split_shadow_page_cache;
	uint64_t split_topups, split_huge, split_failed;
};

/* A vCPU's nested state: L2 or not, its EPT02 root and cached roots. */
struct nested_root_info {
	uint64_t eptp;
	struct nested_root *r;
};

struct vmmu_nested_vcpu {
	bool in_l2;
	uint64_t eptp;
	struct vmmu_gw_role walk_role; /* EPT12 walk of eptp */
	struct nested_root *root;
	struct nested_root_info prev[VMMU_NUM_PREV_ROOTS];
	bool exit_valid;
	struct vmmu_nested_exit last_exit;
	/* Saved by nested_enter, restored by nested_leave. */
	bool saved_not_tdp;
	struct vmmu_paging_state l1_paging;
};

static inline struct nsp *nsp_of(struct vmmu_nested *n, const uint64_t *spt)
{
	return __atomic_load_n((struct nsp **)vmmu_pool_meta(&n->pool, spt), __ATOMIC_ACQUIRE);
}

static inline uint64_t nested_read_spte(const uint64_t *sptep)
{
	return __atomic_load_n(sptep, __ATOMIC_ACQUIRE);
}

/*
 * nested_mmu.c: the locks (the one place that decides how they are taken).
 * nested_root_lock: the root's lock (per-root mode: r->lock; global mode:
 * n->lock for every root), inside whatever MMU lock the caller holds; its
 * unlock flushes TLBs if an entry lost rights and frees the tables
 * unlinked meanwhile; the _defer variant moves them to a batch for one
 * flush after several roots (docs/nested-per-root-locking.md 2.3).  Never
 * two root locks at once.
 */
void nested_root_lock(struct nested_root *r);
void nested_root_unlock(struct nested_root *r);
struct nested_free_batch;
void nested_root_unlock_defer(struct nested_root *r, struct nested_free_batch *b);
void nested_root_assert_locked(const struct nested_root *r);
/* The MMU lock of the vCPU operations (root load, L2 entry and exit,
 * INVEPT, emulated write, shrink): for read, or for write in the global
 * mode (counted in @r's figures, if not NULL). */
void nested_vcpu_lock(struct vmmu_vm *vm, struct nested_root *r);
void nested_vcpu_unlock(struct vmmu_vm *vm);
/* A nested fault's locks: the MMU lock (read; global mode: write), then
 * @r's lock. */
void nested_fault_lock(struct vmmu_vm *vm, struct nested_root *r);
void nested_fault_unlock(struct vmmu_vm *vm, struct nested_root *r);
/* Is the global mode on (vmmu_vm_config.nested_global_lock)? */
bool nested_global(const struct vmmu_vm *vm);
/*
 * Call @fn on each root of address space @as (-1: all) in turn, under its
 * lock, with a reference held.  Roots skipped without locking: with
 * NESTED_ITER_LEAVES those with no leaf in [start, end) (span and
 * emptiness read with acquire); with NESTED_ITER_INVALID the valid ones;
 * with NESTED_ITER_OVERFLOW those with an id below 63.  Caller: MMU lock
 * held (read or write) or none (aging); no root lock.  Unlinked tables go
 * to @b.  Returns the OR of @fn's results.
 */
#define NESTED_ITER_LEAVES 1u
#define NESTED_ITER_INVALID 2u
#define NESTED_ITER_OVERFLOW 4u
typedef bool (*nested_root_fn)(struct nested_root *r, void *arg);
bool nested_for_each_root(struct vmmu_nested *n, int as, uint64_t start, uint64_t end,
			  unsigned flags, nested_root_fn fn, void *arg,
			  struct nested_free_batch *b);
/* A reference to @r if it is still alive (RCU read side). */
bool nested_root_tryget(struct nested_root *r);

/* shadow_page.c */
int nested_sp_init(struct vmmu_nested *n, uint32_t max_pages);
void nested_sp_destroy(struct vmmu_nested *n);
/* A root's tables: hash, list, reverse map.  0 or -ENOMEM. */
int nested_root_tables_init(struct nested_root *r);
void nested_root_tables_destroy(struct nested_root *r);
struct nsp *nested_sp_find(struct nested_root *r, uint64_t gfn, union nested_role role);
/* The hash bucket of @gfn (then follow hash_next, checking gfn). */
struct nsp *nested_sp_first_of_gfn(struct nested_root *r, uint64_t gfn);
struct nsp *nested_sp_alloc(struct nested_root *r, uint64_t gfn, union nested_role role);
/* Link @child under *@sptep (not present). */
void nested_sp_link(struct nested_root *r, uint64_t *sptep, struct nsp *child);
/* Zap the entry *@sptep of table @sp at @level: a leaf goes off its rmap,
 * a link drops its child (freed when unreferenced).  Returns true if
 * something was present. */
bool nested_zap_spte(struct nested_root *r, struct nsp *sp, uint64_t *sptep);
/* Install leaf @spte mapping L1 @gfn at *@sptep of @sp (replacing what is
 * there). */
void nested_set_leaf(struct nested_root *r, struct nsp *sp, uint64_t *sptep, uint64_t spte,
		     uint64_t gfn);
/* The L1 gfn mapped by leaf entry @idx of @sp. */
uint64_t nested_leaf_gfn(struct nsp *sp, unsigned idx);
/* Empty @r's tree (the root table stays, empty). */
void nested_root_zap_tree(struct nested_root *r);
/* Drop every table of @r shadowing an EPT12 page in [start, end) of @as
 * (the memory behind it changed or went away): unlinked from its parents,
 * or, for the root, made obsolete and emptied. */
void nested_zap_shadowed_range(struct nested_root *r, unsigned as, uint64_t start, uint64_t end);
/* Free the tables of @r unlinked meanwhile (after a flush, if one is
 * needed): now, or moved to @defer for one flush after several roots. */
void nested_flush_and_free(struct nested_root *r);
struct nested_free_batch {
	struct nsp **list;
	size_t nr, cap;
	bool flush;
};
void nested_defer_free(struct nested_root *r, struct nested_free_batch *b);
void nested_batch_free(struct vmmu_nested *n, struct nested_free_batch *b);
/* Free a table just allocated and never linked (its creation failed). */
void nested_sp_discard(struct nested_root *r, struct nsp *sp);
/* Free the root table and its tree (the last reference went). */
void nested_root_free_tables(struct nested_root *r);

/* nested_mmu.c: drop a root reference; the last one frees the root. */
void nested_put_root(struct nested_root *r);

/* rmap.c */
/* False when out of memory (nothing recorded). */
bool nested_rmap_add(struct nested_root *r, unsigned as, int level, uint64_t gfn, struct nsp *sp);
/* @count leaves of @sp, all in the chunk of @gfn (a split's pieces). */
bool nested_rmap_add_n(struct nested_root *r, unsigned as, int level, uint64_t gfn, struct nsp *sp,
		       uint64_t count);
void nested_rmap_del(struct nested_root *r, unsigned as, int level, uint64_t gfn, struct nsp *sp);
/* Call @fn on every present leaf whose L1 range overlaps [start, end) of
 * @as; returns the OR of @fn's results. */
typedef bool (*nested_leaf_fn)(struct nested_root *r, struct nsp *sp, uint64_t *sptep, uint64_t gfn,
			       int level, void *arg);
bool nested_rmap_for_each(struct nested_root *r, unsigned as, uint64_t start, uint64_t end,
			  nested_leaf_fn fn, void *arg);
/* The same for leaves of levels [@min_level, @max_level] only. */
bool nested_rmap_for_each_level(struct nested_root *r, unsigned as, uint64_t start, uint64_t end,
				int min_level, int max_level, nested_leaf_fn fn, void *arg);

/* write_track.c */
/* 1 if the gfn just became tracked (its TDP leaves must be zapped before
 * the tracking is relied on), 0 if it was already, -ENOMEM (nothing
 * changed). */
int nested_track_add(struct vmmu_nested *n, unsigned as, uint64_t gfn, unsigned root_id);
void nested_track_del(struct vmmu_nested *n, unsigned as, uint64_t gfn);
/* Level-1 node lookup (RCU read side: no lock). */
struct track_node *nested_track_find(struct vmmu_nested *n, unsigned as, uint64_t gfn);
bool nested_track_pending(struct vmmu_nested *n, unsigned as, uint64_t gfn, uint64_t *epoch);
void nested_track_done(struct vmmu_nested *n, unsigned as, uint64_t gfn, uint64_t epoch);
void nested_track_destroy(struct vmmu_nested *n);
/* nested_mmu.c: the tracking barrier after nested_track_add() returned 1
 * (no nested lock held): wait for the TDP faults that may have looked
 * before the node was published, zap the gfn's TDP and EPT02 leaves,
 * clear "pending". */
void nested_track_settle(struct vmmu_vm *vm, unsigned as, uint64_t gfn, uint64_t epoch);

/* ept12_walk.c */
int nested_page_fault(struct vmmu_vcpu *vcpu, uint64_t gpa, uint64_t exit_qual);
int nested_fast_page_fault(struct vmmu_vcpu *vcpu, uint64_t gpa, uint64_t exit_qual);

/*
 * split.c: eager splitting of huge EPT02 leaves, its caches, shrinking.
 * The three allocations of a table page, its header and a reverse-map or
 * parent record: from the split caches while a split runs, else the
 * allocator (pool, calloc, malloc).  Under the engine's lock.
 */
/* The desc cache's minimum: one split's worst case (see split.c). */
#define NESTED_SPLIT_DESC_MIN 2
void *nested_alloc_desc(struct nested_root *r, size_t size);
struct nsp *nested_alloc_header(struct nested_root *r);
uint64_t *nested_alloc_table(struct nested_root *r);
/* Free the cached objects (slots lock held, or the VM unreachable);
 * returns how many. */
uint64_t nested_split_free_caches(struct vmmu_nested *n, uint64_t max);

#endif /* VMMU_NESTED_INTERNAL_H */
