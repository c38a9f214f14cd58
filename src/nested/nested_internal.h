/* SPDX-License-Identifier: MIT */
/*
 * nested_internal.h - the objects of the nested (EPT-on-EPT) engine, shared
 * by its files only.  The TDP engine never includes this.
 *
 * Locking: every nested structure below (shadow-page hash and list, chunk
 * reverse maps, write-track table, EPT02 entries) is protected by the
 * engine's own lock, vmmu_nested.lock, taken in nested_mmu.c only (the one
 * place that decides the locking).  Nested faults, root loads and emulated
 * writes also hold the MMU lock for write around it (KVM's design); the
 * dispatch entry points take it inside whatever MMU lock their caller holds
 * (read for zaps and harvests, none for aging), and the TDP fault path
 * takes it under the MMU lock held for read to look at the write-track
 * table.  Order: MMU lock, then vmmu_nested.lock.  The hardware model reads EPT02 entries without any lock
 * and sets their A/D bits with compare-and-exchange, so leaf updates are
 * atomic exchanges; a table page is returned to the pool only after a
 * remote TLB flush that every vCPU in guest mode acknowledged (so no walker
 * is inside it).  The write-track table is also read by the TDP fault path
 * under the lock held for read.
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
 * 128 bytes per page (the budget of issue 12).
 */
struct nsp {
	struct nsp *hash_next; /* bucket of (gfn, role) */
	struct cds_list_head link; /* nested->sps: every table, roots first */
	uint64_t gfn; /* indirect: L1 gfn of the EPT12 table
				    * shadowed; direct: L1 gfn of entry 0 */
	uint64_t *spt; /* the 4 KiB table */
	union nested_role role;
	int32_t root_count; /* roots: vCPU references */
	uint64_t *parent; /* the entry pointing here (NULL: root) */
	struct nsp_parent *more_parents;
	/*
	 * Indirect tables that hold leaves: L1 gfn + 1 of each leaf entry
	 * (0: none), so that a leaf can be taken off its reverse map whatever
	 * EPT12 says now.  Counted as reverse-map memory.
	 */
	uint64_t *leaf_gfns;
	struct nested_root *root; /* roots: their root object */
	uint32_t nr_leaves; /* present leaves in this table */
	uint16_t nr_children; /* present non-leaf entries */
	uint8_t invalid; /* obsolete: never found, never reused */
	uint8_t tracked; /* holds a write-track reference */
	struct vmmu_nested *n;
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

/*
 * One EPT02 root: the tree a vCPU running one L2 walks, and its stats.
 */
struct nested_root {
	struct vmmu_nested *n;
	struct nsp *sp; /* the root table */
	uint64_t eptp;
	struct cds_list_head link; /* n->roots */
	/* Stats: faults counted under the lock, lock figures by the taker. */
	uint64_t faults, lock_acquired, lock_contended, lock_wait_ns;
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

#define NESTED_HASH_BITS 12
#define RMAP_HASH_BITS 14
#define TRACK_HASH_BITS 12

struct vmmu_nested {
	struct vmmu_vm *vm;
	pthread_mutex_t lock;
	struct vmmu_pool pool; /* EPT02 table pages; meta: struct nsp * */
	struct nsp *hash[1u << NESTED_HASH_BITS];
	struct cds_list_head sps;
	struct rmap_node *rmap[1u << RMAP_HASH_BITS];
	uint64_t nr_rmap_nodes;
	/* Write tracking (write_track.c): lockless lookups, changes under
	 * track_lock (a leaf lock). */
	struct track_node *track[1u << TRACK_HASH_BITS];
	pthread_mutex_t track_lock;
	uint64_t track_epoch;
	int64_t nr_tracked; /* level-1 track nodes; read by the TDP fault path */
	/* Emulated EPT12 writes so far: a nested fault whose walk saw it
	 * change retries (docs/nested-per-root-locking.md 3.2). */
	uint64_t ept12_wseq;

	/* Tables unlinked under the lock, freed after the next flush. */
	struct nsp **free_list;
	size_t nr_free, cap_free;
	bool flush_needed;

	struct cds_list_head roots; /* struct nested_root, under the lock */
	/* Root stats of roots already freed (under the lock). */
	uint64_t dead_faults, dead_lock_contended, dead_lock_wait_ns;
	uint64_t roots_created, track_barriers, ept12_retries;
	uint64_t cross_root_visits, cross_root_skips;

	/* Stats, changed under the write lock (read relaxed). */
	int64_t pages[3];
	int64_t nr_sps, nr_roots;
	uint64_t shadow_zapped, pte_write, cache_miss, faults, exits;
	int64_t sidecar_bytes;

	/* Eager splitting (split.c): the three split caches, protected by the
	 * slots lock; while @split_alloc is set (under this engine's lock),
	 * the allocations of nested_sp_alloc, nested_sp_link and
	 * nested_rmap_add come from them instead of the allocator. */
	struct nested_obj_cache {
		void **objs;
		int32_t nobjs, capacity;
	} split_desc_cache, split_page_header_cache, split_shadow_page_cache;
	bool split_alloc;
	uint64_t split_topups, split_huge, split_failed;
};

/* A vCPU's nested state: L2 or not, its EPT02 root and cached roots. */
struct nested_root_info {
	uint64_t eptp;
	struct nsp *sp;
};

struct vmmu_nested_vcpu {
	bool in_l2;
	uint64_t eptp;
	struct vmmu_gw_role walk_role; /* EPT12 walk of eptp */
	struct nsp *root;
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
 * nested_lock: the MMU lock for write, then the engine's lock (faults, root
 * loads, L2 entry and exit, INVEPT, emulated writes).  nested_lock_engine:
 * the engine's lock alone, inside whatever the caller holds (dispatch).
 * Both unlocks flush TLBs if an entry lost rights and then free the tables
 * unlinked meanwhile.
 */
void nested_lock(struct vmmu_vm *vm);
/* nested_lock for work on @r (a fault): counts in @r's lock stats. */
void nested_lock_root(struct vmmu_vm *vm, struct nested_root *r);
void nested_unlock(struct vmmu_vm *vm);
void nested_lock_engine(struct vmmu_nested *n);
void nested_unlock_engine(struct vmmu_nested *n);
void nested_assert_locked(struct vmmu_vm *vm);
bool nested_lock_held(const struct vmmu_nested *n);

/* shadow_page.c */
int nested_sp_init(struct vmmu_nested *n, uint32_t max_pages);
void nested_sp_destroy(struct vmmu_nested *n);
struct nsp *nested_sp_find(struct vmmu_nested *n, uint64_t gfn, union nested_role role);
/* The hash bucket of @gfn (then follow hash_next, checking gfn). */
struct nsp *nested_sp_first_of_gfn(struct vmmu_nested *n, uint64_t gfn);
struct nsp *nested_sp_alloc(struct vmmu_nested *n, uint64_t gfn, union nested_role role);
/* Link @child under *@sptep (not present). */
void nested_sp_link(struct vmmu_nested *n, uint64_t *sptep, struct nsp *child);
/* Zap the entry *@sptep of table @sp at @level: a leaf goes off its rmap,
 * a link drops its child (freed when unreferenced).  Returns true if
 * something was present. */
bool nested_zap_spte(struct vmmu_nested *n, struct nsp *sp, uint64_t *sptep);
/* Install leaf @spte mapping L1 @gfn at *@sptep of @sp (replacing what is
 * there). */
void nested_set_leaf(struct vmmu_nested *n, struct nsp *sp, uint64_t *sptep, uint64_t spte,
		     uint64_t gfn);
/* The L1 gfn mapped by leaf entry @idx of @sp. */
uint64_t nested_leaf_gfn(struct nsp *sp, unsigned idx);
/* A new root object for root table @sp (NULL: out of memory). */
struct nested_root *nested_root_new(struct vmmu_nested *n, struct nsp *sp, uint64_t eptp);
/* Drop a root reference; frees the tree when the last goes. */
void nested_put_root(struct vmmu_nested *n, struct nsp *root);
/* Make every table obsolete and zap all of them (roots stay until put). */
void nested_zap_all_locked(struct vmmu_nested *n);
/* Drop every table shadowing an EPT12 page in [start, end) of @as (the
 * memory behind it changed or went away): unlinked from its parents, or,
 * for a root, made obsolete and emptied. */
void nested_zap_shadowed_range(struct vmmu_nested *n, unsigned as, uint64_t start, uint64_t end);
/* After changes under the lock: flush if needed, free unlinked tables. */
void nested_flush_and_free(struct vmmu_nested *n);

/* rmap.c */
/* False when out of memory (nothing recorded). */
bool nested_rmap_add(struct vmmu_nested *n, unsigned as, int level, uint64_t gfn, struct nsp *sp);
/* @count leaves of @sp, all in the chunk of @gfn (a split's pieces). */
bool nested_rmap_add_n(struct vmmu_nested *n, unsigned as, int level, uint64_t gfn, struct nsp *sp,
		       uint64_t count);
void nested_rmap_del(struct vmmu_nested *n, unsigned as, int level, uint64_t gfn, struct nsp *sp);
void nested_rmap_destroy(struct vmmu_nested *n);
/* Call @fn on every present leaf whose L1 range overlaps [start, end) of
 * @as; returns the OR of @fn's results. */
typedef bool (*nested_leaf_fn)(struct vmmu_nested *n, struct nsp *sp, uint64_t *sptep, uint64_t gfn,
			       int level, void *arg);
bool nested_rmap_for_each(struct vmmu_nested *n, unsigned as, uint64_t start, uint64_t end,
			  nested_leaf_fn fn, void *arg);
/* The same for leaves of levels [@min_level, @max_level] only. */
bool nested_rmap_for_each_level(struct vmmu_nested *n, unsigned as, uint64_t start, uint64_t end,
				int min_level, int max_level, nested_leaf_fn fn, void *arg);

/* write_track.c */
/* 1 if the gfn just became tracked (its TDP leaves must be zapped before
 * the tracking is relied on), 0 if it was already, -ENOMEM (nothing
 * changed). */
int nested_track_add(struct vmmu_nested *n, unsigned as, uint64_t gfn, unsigned root_id);
/* Free a table just allocated and never linked (its creation failed). */
void nested_sp_discard(struct vmmu_nested *n, struct nsp *sp);
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
void *nested_alloc_desc(struct vmmu_nested *n, size_t size);
struct nsp *nested_alloc_header(struct vmmu_nested *n);
uint64_t *nested_alloc_table(struct vmmu_nested *n);
/* Free the cached objects (slots lock held, or the VM unreachable);
 * returns how many. */
uint64_t nested_split_free_caches(struct vmmu_nested *n, uint64_t max);

#endif /* VMMU_NESTED_INTERNAL_H */
