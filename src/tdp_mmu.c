/* SPDX-License-Identifier: MIT */
/*
 * tdp_mmu.c - the two-dimensional-paging MMU: direct roots, the fault path,
 * zaps.
 *
 * Concurrency, in short (docs/design.md has the long form):
 *  - Faults, zaps of gfn ranges, zaps of obsolete roots, dirty-log
 *    protection, splitting and recovery hold the MMU lock for read.  Every
 *    entry write there is a compare-and-exchange against the value last
 *    read (iter->old_spte); on failure the caller re-reads and decides
 *    again.
 *  - Removing a mapping under the read lock goes through one helper,
 *    tdp_mmu_zap_spte_atomic(): freeze the entry (FROZEN_SPTE), flush
 *    TLBs, then write non-present.  A fault that meets a frozen entry
 *    retries: nothing new can be installed in its place before the flush.
 *  - The frozen-entry rule: a walker that meets an entry frozen by another
 *    thread does not return before that entry's TLB flush has happened.
 *    Ours flush themselves (zaps, splits, recovery) or report "flush
 *    needed" to a caller who flushes before reporting anything (dirty-log
 *    protection).  See tdp_mmu_note_frozen().
 *  - Roots are found with the root iterator (for_each_tdp_mmu_root_
 *    yield_safe), which holds a reference on the root being walked and
 *    allocates nothing.  With that reference, long walks yield for real:
 *    tdp_mmu_iter_cond_resched() commits what it froze, drops the MMU lock
 *    and leaves the RCU read section, and the walk resumes from the root
 *    at the gfn it reached.  Callers hold no RCU read section around a
 *    walk, so the yield really lets grace periods end.
 *  - A table that was unlinked is torn down by freezing all its entries
 *    (they stay frozen forever) and is freed through call_rcu.  Walkers
 *    only touch tables inside an RCU read section, and the thread that
 *    unlinks a table flushes the TLBs before its read section ends (at
 *    the latest before a yield), so the grace period cannot end before
 *    the flush.
 *  - handle_changed_spte() is the one place where the side effects of an
 *    entry change (stats, teardown of a child table) happen.
 */
#include "dirty_log.h"
#include "memslot.h"
#include "mmu.h"
#include "tdp_iter.h"
#include "tdp_mmu.h"
#include "trace.h"
#include "vm_internal.h"

#include <string.h>

/* Out of line and cold: a fault that installs a leaf or links a new table
 * never tears one down, and keeping it out keeps handle_changed_spte small
 * (no register spills in its prologue) on that path. */
static void handle_removed_pt(struct vmmu_vm *vm, uint64_t *pt, bool shared)
	__attribute__((noinline, cold));

union vmmu_sp_role vmmu_root_role(struct vmmu_vm *vm, unsigned as_id)
{
	union vmmu_sp_role role = { .word = 0 };

	role.level = (uint32_t)vm->root_level;
	role.smm = as_id ? 1 : 0;
	role.ad_disabled = !vm->ad_enabled;
	role.direct = 1;
	return role;
}

int vmmu_tdp_mmu_init(struct vmmu_vm *vm)
{
	CDS_INIT_LIST_HEAD(&vm->roots);
	pthread_mutex_init(&vm->roots_lock, NULL);
	return 0;
}

/*
 * Page-table pages.
 */
static void tdp_mmu_free_sp_rcu(vmmu_rcu_head *head)
{
	struct vmmu_sp *sp = vmmu_container_of(head, struct vmmu_sp, rcu_head);
	struct vmmu_vm *vm = sp->vm;

	vmmu_rcu_callback_enter();
	vmmu_pool_free(&vm->pool, sp_spt(vm, sp));
	vmmu_rcu_callback_exit();
}

static void tdp_mmu_free_sp_deferred(struct vmmu_sp *sp)
{
	vmmu_call_rcu(&sp->rcu_head, tdp_mmu_free_sp_rcu);
}

static struct vmmu_sp *tdp_mmu_init_sp(struct vmmu_vm *vm, uint64_t *spt, uint64_t gfn, int level,
				       union vmmu_sp_role parent_role)
{
	struct vmmu_sp *sp = spt_to_sp(vm, spt);
	union vmmu_sp_role role = parent_role;

	role.level = (uint32_t)level;
	sp->vm = vm;
	sp->gfn = gfn;
	sp->role = role;
	sp->root_refcount = 0;
	sp->invalid = 0;
	return sp;
}

/*
 * Roots.  The root list is an RCU list; it changes under roots_lock.  A
 * root is created with two references: one for the vCPU that asked, one
 * held by the MMU until the root is invalidated, so that roots survive
 * vCPUs coming and going (KVM learned that rebuilding them is expensive).
 * An invalid root stays on the list until it has been zapped, so that
 * zaps of host ranges still see its mappings.
 */
enum root_state {
	ROOT_VALID = 0,
	ROOT_INVALID = 1, /* obsolete, waiting to be zapped */
	ROOT_ZAPPING = 2, /* a thread is zapping it */
	ROOT_ZAPPED = 3, /* empty; the MMU's reference has been dropped */
};

int vmmu_tdp_mmu_get_root(struct vmmu_vm *vm, union vmmu_sp_role role, struct vmmu_sp **out)
{
	struct vmmu_sp *sp;
	uint64_t *spt;

	pthread_mutex_lock(&vm->roots_lock);
	cds_list_for_each_entry(sp, &vm->roots, link) {
		/* A valid root holds the MMU's reference: never at zero here. */
		if (sp->role.word == role.word && READ_ONCE(sp->invalid) == ROOT_VALID) {
			__atomic_add_fetch(&sp->root_refcount, 1, __ATOMIC_RELAXED);
			pthread_mutex_unlock(&vm->roots_lock);
			*out = sp;
			return 0;
		}
	}
	spt = vmmu_pool_alloc(&vm->pool);
	if (!spt) {
		pthread_mutex_unlock(&vm->roots_lock);
		return -ENOMEM;
	}
	sp = tdp_mmu_init_sp(vm, spt, 0, (int)role.level, role);
	sp->root_refcount = 2;
	vmmu_list_add_rcu(&sp->link, &vm->roots);
	pthread_mutex_unlock(&vm->roots_lock);
	vmmu_vm_stat_add(vm, pt_pages, 1);
	vmmu_vm_stat_add(vm, roots_built, 1);
	*out = sp;
	return 0;
}

/*
 * Root references are atomic counters.  The root list changes under
 * roots_lock, but a reference is taken and dropped without it: the root
 * iterator takes one inside an RCU read section with "increment unless
 * zero" (a root at zero is being removed from the list; RCU keeps its
 * memory and its next pointer readable until the grace period ends).
 * Dropping the last reference removes the root from the list (under
 * roots_lock) and frees it after a grace period.
 */
static bool tdp_mmu_get_root_ref(struct vmmu_sp *root)
{
	int32_t c = __atomic_load_n(&root->root_refcount, __ATOMIC_RELAXED);

	do {
		if (c <= 0)
			return false;
	} while (!__atomic_compare_exchange_n(&root->root_refcount, &c, c + 1, true,
					      __ATOMIC_ACQUIRE, __ATOMIC_RELAXED));
	return true;
}

void vmmu_tdp_mmu_put_root(struct vmmu_vm *vm, struct vmmu_sp *root)
{
	if (__atomic_sub_fetch(&root->root_refcount, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	/* The last reference: only an invalidated, zapped root gets here. */
	WARN_ON(READ_ONCE(root->invalid) != ROOT_ZAPPED);
	pthread_mutex_lock(&vm->roots_lock);
	vmmu_list_del_rcu(&root->link);
	pthread_mutex_unlock(&vm->roots_lock);
	vmmu_vm_stat_add(vm, pt_pages, -1);
	tdp_mmu_free_sp_deferred(root);
}

static int root_as_id(const struct vmmu_sp *root)
{
	return root->role.smm ? 1 : 0;
}

/*
 * The root iterator (KVM's yield-safe root walk).  Returns the root after
 * @prev (the first one if @prev is NULL) of address space @as_id (any if
 * negative) with a reference taken, then drops the caller's reference to
 * @prev; NULL at the end.  Roots already emptied are skipped, and with
 * @only_valid also roots that are obsolete.
 *
 * The next root's reference is taken before @prev's is dropped, and a root
 * stays on the list while anyone holds a reference, so @prev's next
 * pointer is still on the list when we follow it, even after the caller
 * dropped the MMU lock and left its RCU read section in between.  That is
 * what lets a walk yield for real in the middle of a root.  It allocates
 * nothing and needs no lock but RCU (taken here).
 */
struct vmmu_sp *vmmu_tdp_mmu_next_root(struct vmmu_vm *vm, struct vmmu_sp *prev, int as_id,
				       bool only_valid)
{
	struct cds_list_head *pos;
	struct vmmu_sp *next = NULL;

	vmmu_rcu_read_lock();
	pos = __atomic_load_n(prev ? &prev->link.next : &vm->roots.next, __ATOMIC_ACQUIRE);
	for (; pos != &vm->roots; pos = __atomic_load_n(&pos->next, __ATOMIC_ACQUIRE)) {
		struct vmmu_sp *sp = cds_list_entry(pos, struct vmmu_sp, link);
		uint8_t state = READ_ONCE(sp->invalid);

		if (as_id >= 0 && root_as_id(sp) != as_id)
			continue;
		if (state == ROOT_ZAPPED || (only_valid && state != ROOT_VALID))
			continue;
		if (tdp_mmu_get_root_ref(sp)) {
			next = sp;
			break;
		}
	}
	vmmu_rcu_read_unlock();
	if (prev)
		vmmu_tdp_mmu_put_root(vm, prev);
	return next;
}

/*
 * Mark every valid root obsolete.  Called with the MMU lock held for write,
 * so that no fault can be between its staleness check and its install: a
 * fault that takes the read lock afterwards sees the root invalid.  The
 * caller then makes vCPUs reload their roots and zaps the invalid roots.
 */
void vmmu_tdp_mmu_invalidate_all_roots(struct vmmu_vm *vm)
{
	struct vmmu_sp *sp;

	vmmu_lockdep_assert_held_write(&vm->mmu_lock);
	pthread_mutex_lock(&vm->roots_lock);
	cds_list_for_each_entry(sp, &vm->roots, link)
		if (sp->invalid == ROOT_VALID)
			WRITE_ONCE(sp->invalid, ROOT_INVALID);
	pthread_mutex_unlock(&vm->roots_lock);
}

/*
 * The one place where the consequences of an entry change are applied.
 * It works from the old and new values only, never by re-reading, because
 * under the read lock the entry may already have changed again.
 */
static void handle_changed_spte(struct vmmu_vm *vm, uint64_t gfn, uint64_t old_spte,
				uint64_t new_spte, int level, bool shared)
{
	bool was_present = is_shadow_present_pte(old_spte);
	bool is_present = is_shadow_present_pte(new_spte);
	bool was_leaf = was_present && is_last_spte(old_spte, level);
	bool is_leaf = is_present && is_last_spte(new_spte, level);

	if (old_spte == new_spte)
		return;
	if (WARN_ON(level < PG_LEVEL_4K || level > SPTE_MAX_LEVEL))
		return;
	/* An entry at @level covers a naturally aligned gfn range. */
	WARN_ON(gfn & (spte_pages_per(level) - 1));
	/* A huge leaf is only legal at 2M and 1G. */
	WARN_ON(is_leaf && level > SPTE_MAX_HUGEPAGE_LEVEL);
	/*
	 * A present leaf must never turn into a present leaf for another host
	 * page: a TLB could hold the old one.  Such changes go through
	 * non-present and a flush.
	 */
	WARN_ON(was_leaf && is_leaf && spte_addr(old_spte) != spte_addr(new_spte));

	if (!was_present && !is_present) {
		/* Only frozen <-> non-present transitions are expected here. */
		WARN_ON(!is_frozen_spte(old_spte) && !is_frozen_spte(new_spte));
		return;
	}

	if (was_leaf != is_leaf || was_present != is_present) {
		if (was_leaf)
			vmmu_vm_stat_add(vm, pages[level - 1], -1);
		if (is_leaf)
			vmmu_vm_stat_add(vm, pages[level - 1], 1);
	}

	/* A child table was unlinked: tear it down. */
	if (was_present && !was_leaf &&
	    (!is_present || is_leaf || spte_addr(old_spte) != spte_addr(new_spte)))
		handle_removed_pt(vm, spte_to_child_pt(old_spte), shared);
}

/*
 * Tear down a table that is no longer reachable from its parent.  Other
 * threads may still be inside it (they read the parent before it was
 * zapped): every entry is exchanged for FROZEN_SPTE so that their
 * compare-and-exchange fails and they retry; the entries stay frozen until
 * the page is freed.  An entry that is already frozen belongs to another
 * thread that will shortly write its final value: wait for that.
 * Exchange (never a plain store) is used even under the write lock, so that
 * A/D bits set by a processor walking through a stale path are not lost.
 */
static void handle_removed_pt(struct vmmu_vm *vm, uint64_t *pt, bool shared)
{
	struct vmmu_sp *sp = spt_to_sp(vm, pt);
	int level = (int)sp->role.level;
	uint64_t base_gfn = sp->gfn;

	vmmu_vm_stat_add(vm, pt_pages, -1);
	for (unsigned i = 0; i < SPTE_ENT_PER_PAGE; i++) {
		uint64_t old;

		for (;;) {
			old = __atomic_exchange_n(&pt[i], FROZEN_SPTE, __ATOMIC_ACQ_REL);
			if (!is_frozen_spte(old))
				break;
			/* Only possible under the read lock. */
			WARN_ON(!shared);
			cpu_relax();
		}
		handle_changed_spte(vm, base_gfn + i * spte_pages_per(level), old, FROZEN_SPTE,
				    level, shared);
	}
	tdp_mmu_free_sp_deferred(sp);
}

/*
 * Set iter->sptep from iter->old_spte to @new_spte with compare-and-exchange.
 * Returns 0, or -EBUSY with iter->old_spte refreshed when another thread
 * (or the processor's A/D assist) changed the entry first.
 */
static int tdp_mmu_set_spte_atomic(struct vmmu_vm *vm, struct tdp_iter *iter, uint64_t new_spte)
{
	vmmu_lockdep_assert_held_read(&vm->mmu_lock);
	/* Nobody may operate on an entry another thread has frozen. */
	if (WARN_ON(is_frozen_spte(iter->old_spte)))
		return -EBUSY;
	if (!__atomic_compare_exchange_n(iter->sptep, &iter->old_spte, new_spte, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return -EBUSY;
	handle_changed_spte(vm, iter->gfn, iter->old_spte, new_spte, iter->level, true);
	return 0;
}

/*
 * tdp_mmu_set_spte_atomic() for a fault installing leaf @new_spte (at
 * iter->level, iter->gfn aligned to it: the iterator's own values).  Where
 * the entry was empty, which is nearly every fault, all that
 * handle_changed_spte() would do is count the new leaf: do just that.
 * Anything else (a leaf being upgraded, a table replaced by a huge leaf)
 * takes the general path.  Frozen entries never get here (the caller
 * retries on them).
 */
static inline int tdp_mmu_set_spte_atomic_leaf(struct vmmu_vm *vm, struct tdp_iter *iter,
					       uint64_t new_spte)
{
	if (is_shadow_present_pte(iter->old_spte) || is_frozen_spte(iter->old_spte))
		return tdp_mmu_set_spte_atomic(vm, iter, new_spte);
	vmmu_lockdep_assert_held_read(&vm->mmu_lock);
	if (!__atomic_compare_exchange_n(iter->sptep, &iter->old_spte, new_spte, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return -EBUSY;
	vmmu_vm_stat_add(vm, pages[iter->level - 1], 1);
	return 0;
}

/*
 * Zapping under the read lock: the frozen-entry protocol.
 *
 * tdp_mmu_zap_spte_atomic() is the one way an entry is zapped under the
 * read lock.  It freezes the entry (compare-and-exchange to FROZEN_SPTE)
 * into a batch of up to ZAP_BATCH entries; committing the batch flushes
 * the TLBs once (unless no vCPU can use the root), then writes each entry
 * non-present and applies the side effects.  A fault that meets a frozen
 * entry retries, so nothing is installed in its place before the flush.
 *
 * The rule for everyone else, in every walker of this file: a walker that
 * meets an entry frozen by another thread does not return before that
 * entry's TLB flush has happened.  "Skip it, its owner is on it" is wrong:
 * the owner may still be waiting for a vCPU to acknowledge its flush, and
 * that vCPU's TLB may still map the page writable, so a zap would return
 * with the page still reachable and a harvest would report a page that
 * can still be written without being logged.  We do not wait for the
 * owner to unfreeze the entry (the entries of a table being torn down stay
 * frozen until the table is freed, so that wait could be forever): the
 * walker flushes the TLBs itself (zaps, splits) or reports that a flush is
 * due to its caller, who flushes before reporting anything (dirty-log
 * protection, which returns "flush needed").  A flush issued after the
 * entry was seen frozen removes every translation the owner's flush would
 * have removed, and no processor can load the entry again while it is
 * frozen (it reads as not present).  Meeting a frozen entry takes two
 * threads on the same range, so the extra flush is rare.
 */
#define ZAP_BATCH 64
struct zap_batch {
	unsigned n;
	bool flush; /* a vCPU may use the root: flush before commit */
	bool met_frozen; /* met an entry frozen by another thread */
	struct {
		uint64_t *sptep;
		uint64_t old;
		uint64_t gfn;
		int level;
	} e[ZAP_BATCH];
};

/*
 * The written rule, applied by every walker to a value it read that is not
 * present (a frozen entry is not present, so present ones cost nothing):
 * if iter's entry is frozen (by another thread: our own batch is always
 * committed before we look at an entry again), *@flush is set.
 */
static inline void tdp_mmu_note_frozen(const struct tdp_iter *iter, bool *flush)
{
	if (is_frozen_spte(iter->old_spte))
		*flush = true;
}

static void zap_batch_commit(struct vmmu_vm *vm, struct zap_batch *b)
{
	if (b->met_frozen || (b->n && b->flush)) {
		vmmu_flush_remote_tlbs(vm);
		b->met_frozen = false;
	}
	for (unsigned i = 0; i < b->n; i++) {
		__atomic_store_n(b->e[i].sptep, SPTE_NONPRESENT, __ATOMIC_RELEASE);
		trace_vmmu(zap, b->e[i].gfn, b->e[i].level, b->e[i].old);
		handle_changed_spte(vm, b->e[i].gfn, b->e[i].old, SPTE_NONPRESENT, b->e[i].level,
				    true);
	}
	b->n = 0;
}

/*
 * Zap iter's present entry (a leaf, or a link to a table, which is then
 * torn down): freeze it into @b, which is committed when full, at a yield
 * and at the end of the walk.  Caller holds the MMU lock for read and has
 * applied tdp_mmu_note_frozen() to iter->old_spte.  0, or -EBUSY with
 * old_spte refreshed when the entry changed first: the caller looks again.
 */
static inline __attribute__((always_inline)) int
tdp_mmu_zap_spte_atomic(struct vmmu_vm *vm, struct zap_batch *b, struct tdp_iter *iter)
{
	vmmu_lockdep_assert_held_read(&vm->mmu_lock);
	if (WARN_ON(is_frozen_spte(iter->old_spte)))
		return -EBUSY;
	if (!__atomic_compare_exchange_n(iter->sptep, &iter->old_spte, FROZEN_SPTE, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return -EBUSY;
	b->e[b->n].sptep = iter->sptep;
	b->e[b->n].old = iter->old_spte;
	b->e[b->n].gfn = iter->gfn;
	b->e[b->n].level = iter->level;
	if (++b->n == ZAP_BATCH)
		zap_batch_commit(vm, b);
	return 0;
}

/*
 * Yield the MMU lock if someone waits for it, but only after progress
 * since the last yield (otherwise a busy lock could starve the walk
 * forever).  Returns true if it yielded; the caller then continues its
 * loop, which restarts the walk from the root at the first gfn not yet
 * processed.
 *
 * A yield is real: it drops the MMU lock and leaves the RCU read section,
 * so that writers get the lock and grace periods can end during a long
 * walk.  Why that is safe:
 *  - the root being walked is held by a reference (the root iterator), so
 *    it stays allocated and on the root list, and the walk (and the root
 *    iterator after it) can go on from it;
 *  - no table pointer cached in @iter is used afterwards: iter->yielded
 *    makes the next step re-walk from the root;
 *  - nothing of ours stays frozen while we sleep: @batch is committed
 *    first (with its flush);
 *  - with @flush (tables were unlinked by this walk and queued for
 *    freeing), the TLBs are flushed before the read section ends, so the
 *    grace period that frees those tables cannot end while a vCPU may
 *    still walk them.
 * The walk must be in one RCU read section, its own: a section its caller
 * holds stays held across the yield (the walk is then correct, but grace
 * periods wait for it), so callers do not hold one around TDP walks.
 */
static bool tdp_mmu_iter_cond_resched(struct vmmu_vm *vm, struct tdp_iter *iter,
				      struct zap_batch *batch, bool flush)
{
	if (iter->next_last_level_gfn == iter->yielded_gfn)
		return false;
	if (!vmmu_rwlock_contended(&vm->mmu_lock))
		return false;
	if (batch)
		zap_batch_commit(vm, batch);
	else if (flush)
		vmmu_flush_remote_tlbs(vm);
	vmmu_rcu_read_unlock();
	vmmu_read_unlock(&vm->mmu_lock);
	vmmu_yield();
	vmmu_read_lock(&vm->mmu_lock);
	vmmu_rcu_read_lock();
	iter->yielded = true;
	return true;
}

/*
 * Zap the leaves mapping [start, end) in one root (a reference held),
 * under the read lock.  With @flush the TLBs are flushed before each batch
 * becomes non-present (roots in use); invalid roots no vCPU can use skip
 * that flush (not the one the frozen-entry rule asks for).
 */
static bool tdp_mmu_zap_leafs_root(struct vmmu_vm *vm, struct vmmu_sp *root, uint64_t start,
				   uint64_t end, bool flush)
{
	struct zap_batch batch = { .n = 0, .flush = flush };
	struct tdp_iter iter;
	bool zapped = false;

	vmmu_rcu_read_lock();
	for_each_tdp_pte(iter, sp_spt(vm, root), (int)root->role.level, start, end) {
retry:
		if (tdp_mmu_iter_cond_resched(vm, &iter, &batch, false))
			continue;
		if (!is_shadow_present_pte(iter.old_spte)) {
			tdp_mmu_note_frozen(&iter, &batch.met_frozen);
			continue;
		}
		if (!is_last_spte(iter.old_spte, iter.level))
			continue;
		/* A huge leaf that only partly overlaps is zapped whole. */
		if (tdp_mmu_zap_spte_atomic(vm, &batch, &iter))
			goto retry;
		zapped = true;
	}
	zap_batch_commit(vm, &batch);
	vmmu_rcu_read_unlock();
	return zapped;
}

/*
 * Zap leaves mapping [start, end) of address space @as_id in every root,
 * valid or not yet zapped.  Caller holds the MMU lock for read (and no RCU
 * read section).  TLBs are flushed before this returns (when @flush, and
 * always when an entry frozen by another thread was met).  Returns true if
 * anything was zapped.
 */
bool vmmu_tdp_mmu_zap_leafs(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end,
			    bool flush)
{
	struct vmmu_sp *root;
	bool zapped = false;

	vmmu_lockdep_assert_held_read(&vm->mmu_lock);
	/* Zapped roots are empty; zapping ones are being emptied, but their
	 * entries are still reachable: include them. */
	for_each_tdp_mmu_root_yield_safe(vm, root, (int)as_id, false)
		zapped |= tdp_mmu_zap_leafs_root(vm, root, start, end, flush);
	return zapped;
}

/*
 * Empty an invalid root, under the read lock.  No vCPU runs on it any more
 * (they were made to reload and flush before this is called) and no fault
 * installs into it (faults check the root under the lock), so only other
 * zappers race with us and our own batches need no flush.  Leaves first,
 * then the top-level links, so the work between yields stays bounded.
 */
static void tdp_mmu_zap_root(struct vmmu_vm *vm, struct vmmu_sp *root)
{
	struct zap_batch batch = { .n = 0, .flush = false };
	int root_level = (int)root->role.level;
	struct tdp_iter iter;

	vmmu_rcu_read_lock();
	for (int min_level = PG_LEVEL_4K; min_level <= root_level; min_level++) {
		for_each_tdp_pte_min_level(iter, sp_spt(vm, root), root_level,
					   min_level == root_level ? root_level : min_level, 0,
					   vmmu_max_gfn(vm)) {
retry:
			if (tdp_mmu_iter_cond_resched(vm, &iter, &batch, false))
				continue;
			if (!is_shadow_present_pte(iter.old_spte)) {
				tdp_mmu_note_frozen(&iter, &batch.met_frozen);
				continue;
			}
			/* In the small passes only leaves go; the last pass
			 * unlinks whole tables from the root. */
			if (min_level < root_level && !is_last_spte(iter.old_spte, iter.level))
				continue;
			if (tdp_mmu_zap_spte_atomic(vm, &batch, &iter))
				goto retry;
		}
		/* Before the next pass looks at these entries again. */
		zap_batch_commit(vm, &batch);
	}
	vmmu_rcu_read_unlock();
}

/*
 * Zap every invalid root that nobody is zapping yet, then drop the MMU's
 * reference to it.  Caller holds the MMU lock for read.
 */
void vmmu_tdp_mmu_zap_invalidated_roots(struct vmmu_vm *vm)
{
	struct vmmu_sp *root;

	vmmu_lockdep_assert_held_read(&vm->mmu_lock);
	for (;;) {
		struct vmmu_sp *victim = NULL;

		pthread_mutex_lock(&vm->roots_lock);
		cds_list_for_each_entry(root, &vm->roots, link) {
			if (root->invalid == ROOT_INVALID) {
				WRITE_ONCE(root->invalid, ROOT_ZAPPING);
				/* Keep it while zapping (the MMU's reference
				 * keeps it above zero until ROOT_ZAPPED). */
				__atomic_add_fetch(&root->root_refcount, 1, __ATOMIC_RELAXED);
				victim = root;
				break;
			}
		}
		pthread_mutex_unlock(&vm->roots_lock);
		if (!victim)
			return;
		tdp_mmu_zap_root(vm, victim);
		pthread_mutex_lock(&vm->roots_lock);
		WRITE_ONCE(victim->invalid, ROOT_ZAPPED);
		pthread_mutex_unlock(&vm->roots_lock);
		vmmu_tdp_mmu_put_root(vm, victim); /* ours */
		vmmu_tdp_mmu_put_root(vm, victim); /* the MMU's */
	}
}

void vmmu_tdp_mmu_uninit(struct vmmu_vm *vm)
{
	WARN_ON(!cds_list_empty(&vm->roots));
	pthread_mutex_destroy(&vm->roots_lock);
}

/*
 * Install the leaf for iter's entry at fault->goal_level.  FIXED, SPURIOUS
 * (a leaf allowing the access is there already) or RETRY (lost a race).
 */
static int tdp_mmu_map_target(struct vmmu_vcpu *vcpu, struct vmmu_page_fault *fault,
			      struct tdp_iter *iter)
{
	struct vmmu_vm *vm = vcpu->vm;
	uint64_t size = 1ull << spte_level_shift(iter->level);
	uint64_t host, new_spte;

	if (is_frozen_spte(iter->old_spte))
		return VMMU_PF_RETRY;
	if (is_present_leaf(iter->old_spte, iter->level) &&
	    spte_permits(iter->old_spte, fault->exit_qual & EPT_RWX_MASK))
		return VMMU_PF_SPURIOUS; /* someone else mapped it already */
	/* The host page of this leaf: the run is contiguous in host memory. */
	host = (fault->hva & ~(size - 1)) +
	       ((iter->gfn - round_gfn_for_level(fault->gfn, iter->level)) << VMMU_PAGE_SHIFT);
	new_spte = make_leaf_spte(host, iter->level, ACC_ALL, fault->map_writable, vm->ad_enabled,
				  fault->prefetch, fault->write);
	/*
	 * In a logged slot a read fault maps the page write-protected (but
	 * MMU-writable) when writes are logged by faults, so that only pages
	 * really written are reported.
	 */
	if (memslot_dirty_logged(fault->slot) && !fault->write && !vm->dirty_log_dbit)
		new_spte &= ~EPT_WRITABLE;
	if (tdp_mmu_set_spte_atomic_leaf(vm, iter, new_spte))
		return VMMU_PF_RETRY;
	trace_vmmu(map, iter->gfn, iter->level, iter->old_spte, new_spte);
	/*
	 * Log the page after the mapping is visible: a harvester that takes
	 * the bit then also finds the writable entry to protect again.  In
	 * dirty-bit mode a writable entry without D is logged by the
	 * processor when it sets D.  (Logged slots have 4 KiB leaves only, so
	 * iter->gfn is the page.)
	 */
	if (is_writable_pte(new_spte) && memslot_dirty_logged(fault->slot) &&
	    (!vm->dirty_log_dbit || !spte_ad_enabled(new_spte) || is_dirty_spte(new_spte)))
		vmmu_mark_page_dirty(vcpu, fault->slot, iter->gfn);
	/*
	 * A table was replaced by a huge leaf (the host now maps the range
	 * huge): its pages are queued for freeing, and a processor may still
	 * walk them.  Flush while still inside our RCU read section, so the
	 * grace period cannot end before every vCPU has let go of them.
	 */
	if (is_shadow_present_pte(iter->old_spte) && !is_last_spte(iter->old_spte, iter->level))
		vmmu_flush_remote_tlbs(vm);
	return VMMU_PF_FIXED;
}

/*
 * The fault path proper: walk from the vCPU's root toward fault->gfn,
 * linking new tables from the vCPU's cache where entries are missing, and
 * install the leaf at fault->goal_level.  A run (pre-faulting) installs
 * every leaf of [gfn, gfn_end) at goal_level the same way; the caller
 * keeps it inside one table at that level, so it needs no more tables than
 * one fault.  Caller holds the MMU lock for read and has checked that the
 * fault is not stale.  FIXED if a leaf was installed, SPURIOUS if all were
 * there already, RETRY on a lost race; fault->mapped_end says how far it got.
 * Called inside the fault's RCU read section, which stays open until any
 * flush this makes is done.
 */
int vmmu_tdp_mmu_map(struct vmmu_vcpu *vcpu, struct vmmu_page_fault *fault)
{
	struct vmmu_vm *vm = vcpu->vm;
	struct vmmu_sp *root = vcpu->root;
	struct tdp_iter iter;
	uint64_t new_spte;
	int r = VMMU_PF_SPURIOUS;

	vmmu_lockdep_assert_held_read(&vm->mmu_lock);
	/* The fault body's read section covers the walk (one per fault). */
	vmmu_rcu_assert_held();
	fault->mapped_end = fault->gfn;
	/* The walk of for_each_tdp_pte_min_level(), with the descent through
	 * tables that already exist done inline: the loop body is first
	 * entered at the goal level, or where a table is missing. */
	for (tdp_iter_start_down(&iter, sp_spt(vm, root), (int)root->role.level, fault->goal_level,
				 fault->gfn);
	     iter.valid && iter.gfn < fault->gfn_end; tdp_iter_next(&iter)) {
		uint64_t *child;

		if (iter.level == fault->goal_level) {
			switch (tdp_mmu_map_target(vcpu, fault, &iter)) {
			case VMMU_PF_RETRY:
				goto out;
			case VMMU_PF_FIXED:
				r = VMMU_PF_FIXED;
				break;
			default:
				break;
			}
			fault->mapped_end = iter.gfn + spte_pages_per(iter.level);
			/* The run is done: no step to the side (or up) needed. */
			if (fault->mapped_end >= fault->gfn_end)
				break;
			continue;
		}
		if (is_frozen_spte(iter.old_spte))
			goto out;
		if (is_shadow_present_pte(iter.old_spte) && !is_large_pte(iter.old_spte))
			continue; /* descend */

		/*
		 * A table is needed here: the entry is empty, or it is a huge
		 * leaf and this fault wants a smaller mapping.  A huge leaf is
		 * split in place: the new table is filled with the 512 pieces
		 * of the huge mapping before it is linked, so no gfn loses its
		 * translation at any moment.
		 */
		child = vmmu_cache_alloc(&vcpu->pt_cache);
		if (!child)
			goto out;
		tdp_mmu_init_sp(vm, child, iter.gfn, iter.level - 1, root->role);
		if (is_shadow_present_pte(iter.old_spte)) {
			for (unsigned i = 0; i < SPTE_ENT_PER_PAGE; i++)
				child[i] = make_small_spte(iter.old_spte, iter.level, i);
		}
		new_spte = make_nonleaf_spte(child, vm->ad_enabled);
		if (tdp_mmu_set_spte_atomic(vm, &iter, new_spte)) {
			/* Lost the race: the table was never visible. */
			memset(child, 0, VMMU_PAGE_SIZE);
			vmmu_cache_push(&vcpu->pt_cache, child);
			goto out;
		}
		vmmu_vm_stat_add(vm, pt_pages, 1);
		if (is_shadow_present_pte(iter.old_spte))
			vmmu_vm_stat_add(vm, pages[iter.level - 2], SPTE_ENT_PER_PAGE);
		trace_vmmu(split, iter.gfn, iter.level, iter.old_spte); /* old 0: a new link */
	}
	/*
	 * The walk can end short of the goal level: a zap running beside us
	 * under the read lock may remove the entry we were about to descend
	 * through (or the table we just linked) before the iterator re-reads
	 * it.  Nothing was installed for those gfns: the fault retries.
	 */
out:
	return fault->mapped_end < fault->gfn_end ? VMMU_PF_RETRY : r;
}

/*
 * Dirty logging in the tables.
 *
 * Protecting a page again after its dirty state was taken means: in
 * write-protect mode, clear W (MMU-writable stays, so the next write fault
 * can restore W cheaply and log the page); in dirty-bit mode, clear D (the
 * next write sets D again and the processor logs it).  A huge leaf is
 * always write-protected, so that a write to it faults and is mapped at
 * 4 KiB.  Every change is a compare-and-exchange: the processor sets A/D
 * bits concurrently and a lost D bit would be a lost dirty page.
 *
 * Roots that are invalid but not yet zapped are included: a vCPU may still
 * run on one until it has acknowledged its reload.
 */
static uint64_t spte_protect_for_log(const struct vmmu_vm *vm, uint64_t spte, int level)
{
	if (level == PG_LEVEL_4K && vm->dirty_log_dbit && spte_ad_enabled(spte))
		return spte & ~EPT_DIRTY;
	return spte & ~EPT_WRITABLE;
}

/*
 * Protect the present leaf at @iter for logging, retrying with the value
 * that beat our compare-and-exchange for as long as it is still a present
 * leaf there.  Returns true if a TLB flush is due before the dirty state is
 * reported: the entry changed, or it is frozen by a zapper whose flush may
 * not have happened yet (the frozen-entry rule: a writable translation of
 * it may still be cached, and the harvest must not return before it is
 * gone).
 */
static bool tdp_mmu_protect_leaf_for_log(struct vmmu_vm *vm, struct tdp_iter *iter)
{
	bool flush = false;

	while (is_present_leaf(iter->old_spte, iter->level)) {
		uint64_t new_spte = spte_protect_for_log(vm, iter->old_spte, iter->level);

		if (new_spte == iter->old_spte)
			return false;
		if (!tdp_mmu_set_spte_atomic(vm, iter, new_spte))
			return true;
	}
	tdp_mmu_note_frozen(iter, &flush);
	return flush;
}

static bool tdp_mmu_clear_dirty_root(struct vmmu_vm *vm, struct vmmu_sp *root, uint64_t start,
				     uint64_t end, uint64_t base_gfn, uint64_t mask)
{
	struct tdp_iter iter;
	bool flush = false;

	vmmu_rcu_read_lock();
	for_each_tdp_pte(iter, sp_spt(vm, root), (int)root->role.level, start, end) {
		if (tdp_mmu_iter_cond_resched(vm, &iter, NULL, false))
			continue;
		/* With a mask, only the 4 KiB pages it names (huge leaves
		 * overlapping them are protected whole). */
		if (mask && iter.level == PG_LEVEL_4K && !(mask >> (iter.gfn - base_gfn) & 1))
			continue;
		flush |= tdp_mmu_protect_leaf_for_log(vm, &iter);
	}
	vmmu_rcu_read_unlock();
	return flush;
}

static bool tdp_mmu_clear_dirty(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end,
				uint64_t base_gfn, uint64_t mask)
{
	struct vmmu_sp *root;
	bool flush = false;

	vmmu_lockdep_assert_held_read(&vm->mmu_lock);
	for_each_tdp_mmu_root_yield_safe(vm, root, (int)as_id, false)
		flush |= tdp_mmu_clear_dirty_root(vm, root, start, end, base_gfn, mask);
	return flush;
}

bool vmmu_tdp_mmu_clear_dirty_range(struct vmmu_vm *vm, unsigned as_id, uint64_t start,
				    uint64_t end)
{
	return tdp_mmu_clear_dirty(vm, as_id, start, end, start, 0);
}

bool vmmu_tdp_mmu_clear_dirty_masked(struct vmmu_vm *vm, unsigned as_id, uint64_t base_gfn,
				     uint64_t mask)
{
	if (!mask)
		return false;
	/* Only walk from the first to the last page the mask names. */
	return tdp_mmu_clear_dirty(vm, as_id, base_gfn + (uint64_t)__builtin_ctzll(mask),
				   base_gfn + 64 - (uint64_t)__builtin_clzll(mask), base_gfn, mask);
}

/*
 * Eager page splitting.  Each huge leaf in the range is replaced by a
 * table holding its 512 pieces (same host pages, same rights, same A/D
 * state), built completely before it is linked, so no translation changes
 * and no flush is needed.  Tables are allocated with the MMU lock dropped,
 * a few at a time: the walk then restarts from the root at the same gfn.
 * Pre-order: a 1G leaf becomes 2M leaves, which the walk visits and splits
 * next.
 *
 * When logging starts (@protect), one walk does both jobs: the pieces are
 * built already protected (W or D cleared; they are private until linked,
 * so this costs nothing), the walk does not descend into a table it just
 * filled, and the 4 KiB leaves that were there before are protected as it
 * goes.  If tables run out, the remaining huge leaves are write-protected
 * instead and split by the vCPUs' faults.
 */
#define SPLIT_ALLOC_BATCH 64

struct split_stash {
	void *pages[SPLIT_ALLOC_BATCH];
	unsigned n;
	bool failed; /* an allocation failed: stop splitting */
};

/*
 * Fill a new table with the pieces of a huge leaf: entry i is @first plus
 * i * @step.  Four independent 16-byte accumulators, each advanced by 8
 * steps per line written: the plain loop (one dependent add and shuffle
 * per pair of entries) ran at a fifth of the speed of a memset of the page,
 * this one at about the speed of the memset (vmmu-perf dirty-log).  Pages
 * recycled by the pool are cold: each line written also asks for the
 * same line of @next, the table to be filled after this one.
 */
typedef uint64_t split_v2 __attribute__((vector_size(16)));

static inline void split_fill(uint64_t *child, uint64_t first, uint64_t step, const char *next)
{
	split_v2 a = { first, first + step };
	split_v2 d2 = { 2 * step, 2 * step };
	split_v2 b = a + d2, c = b + d2, d = c + d2;
	split_v2 d8 = d2 * 4;

	for (unsigned i = 0; i < SPTE_ENT_PER_PAGE; i += 8) {
		memcpy(child + i, &a, sizeof(a));
		memcpy(child + i + 2, &b, sizeof(b));
		memcpy(child + i + 4, &c, sizeof(c));
		memcpy(child + i + 6, &d, sizeof(d));
		if (next)
			__builtin_prefetch(next + i * 8, 1, 3);
		a += d8;
		b += d8;
		c += d8;
		d += d8;
	}
}

/*
 * Tables to take from the pool at once: what the rest of [@gfn, @end) can
 * use if every 2M region in it is a huge leaf (plus the table of this 1G
 * leaf), at most SPLIT_ALLOC_BATCH.  A small range (a clear of 64 pages
 * with initially-all-set) takes one page, not a batch it gives back.
 */
static unsigned split_batch(uint64_t gfn, int level, uint64_t end)
{
	uint64_t regions = (end - round_gfn_for_level(gfn, PG_LEVEL_2M) + SPTE_ENT_PER_PAGE - 1) /
			   SPTE_ENT_PER_PAGE;

	return (unsigned)vmmu_min(regions + (level > PG_LEVEL_2M), SPLIT_ALLOC_BATCH);
}

/* Add the tables a split walk linked (@pieces[0]: of 4K leaves, [1]: of
 * 2M leaves) to the VM's stats, and reset them. */
static void split_count(struct vmmu_vm *vm, uint64_t pieces[2])
{
	for (int i = 0; i < 2; i++) {
		if (!pieces[i])
			continue;
		vmmu_vm_stat_add(vm, pt_pages, (int64_t)pieces[i]);
		vmmu_vm_stat_add(vm, pages[i], (int64_t)pieces[i] * SPTE_ENT_PER_PAGE);
		pieces[i] = 0;
	}
}

static int tdp_mmu_split_protect_root(struct vmmu_vm *vm, struct vmmu_sp *root, uint64_t start,
				      uint64_t end, bool protect, struct split_stash *stash,
				      bool *flush)
{
	int min_level = protect ? PG_LEVEL_4K : PG_LEVEL_2M;
	bool can_split = !stash->failed;
	uint64_t split_pieces[2] = { 0 }; /* tables of 4K, of 2M pieces */
	struct tdp_iter iter;
	int r = 0;

	vmmu_rcu_read_lock();
	for_each_tdp_pte_min_level(iter, sp_spt(vm, root), (int)root->role.level, min_level, start,
				   end) {
		uint64_t *child;
retry:
		/* Counts land before the lock can be dropped. */
		if (vmmu_rwlock_contended(&vm->mmu_lock))
			split_count(vm, split_pieces);
		if (tdp_mmu_iter_cond_resched(vm, &iter, NULL, false))
			continue;
		if (!is_present_leaf(iter.old_spte, iter.level)) {
			/* Frozen by a zapper: nothing to split or protect, but
			 * a flush is due before logging is reported on. */
			tdp_mmu_note_frozen(&iter, flush);
			continue;
		}
		/* An obsolete root is being zapped: protect, do not split. */
		if (iter.level == PG_LEVEL_4K || !can_split ||
		    READ_ONCE(root->invalid) != ROOT_VALID) {
			if (protect && tdp_mmu_protect_leaf_for_log(vm, &iter))
				*flush = true;
			continue;
		}
		if (!stash->n) {
			/* Allocate with nothing held, then start over here. */
			split_count(vm, split_pieces);
			vmmu_rcu_read_unlock();
			vmmu_read_unlock(&vm->mmu_lock);
			stash->n = vmmu_pool_alloc_batch(&vm->pool, stash->pages,
							 split_batch(iter.gfn, iter.level, end));
			vmmu_read_lock(&vm->mmu_lock);
			vmmu_rcu_read_lock();
			if (!stash->n) {
				r = -ENOMEM;
				can_split = false;
				stash->failed = true;
			}
			iter.yielded = true;
			continue;
		}
		child = stash->pages[stash->n - 1];
		tdp_mmu_init_sp(vm, child, iter.gfn, iter.level - 1, root->role);
		{
			uint64_t first = make_small_spte(iter.old_spte, iter.level, 0);

			if (protect)
				first = spte_protect_for_log(vm, first, iter.level - 1);
			split_fill(child, first, 1ull << spte_level_shift(iter.level - 1),
				   stash->n > 1 ? stash->pages[stash->n - 2] : NULL);
		}
		if (tdp_mmu_set_spte_atomic(vm, &iter, make_nonleaf_spte(child, vm->ad_enabled)))
			goto retry; /* look at the new value */
		stash->n--;
		trace_vmmu(split, iter.gfn, iter.level, iter.old_spte);
		/* Counted once at the end of the walk, not twice per table. */
		split_pieces[iter.level - 2]++;
		/* The old huge leaf may have been writable or dirty. */
		if (protect)
			*flush = true;
		/* 4 KiB pieces are final; 2M pieces are split next. */
		if (protect && iter.level - 1 == PG_LEVEL_4K)
			iter.skip_children = true;
	}
	vmmu_rcu_read_unlock();
	split_count(vm, split_pieces);
	return r;
}

/*
 * Split (and with @protect, protect) every root of @as_id (with @protect
 * also obsolete roots not yet zapped: a vCPU may still run on one until it
 * has acknowledged its reload).  The root iterator allocates nothing, so
 * logging always protects every root; only tables for splitting can run
 * out, and then huge leaves are write-protected instead.  *@flush is set
 * when a TLB flush is due (entries protected, or frozen ones met).
 */
static int tdp_mmu_split(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end,
			 bool protect, bool *flush)
{
	struct split_stash stash = { .n = 0 };
	struct vmmu_sp *root;
	int r = 0;

	vmmu_lockdep_assert_held_read(&vm->mmu_lock);
	for_each_tdp_mmu_root_yield_safe(vm, root, (int)as_id, !protect) {
		int ret;

		/* Without tables a split-only walk has nothing left to do. */
		if (!protect && stash.failed)
			continue;
		ret = tdp_mmu_split_protect_root(vm, root, start, end, protect, &stash, flush);
		if (ret && !r)
			r = ret;
	}
	/* Pages allocated but not needed go back (they are still zero). */
	while (stash.n)
		vmmu_pool_free(&vm->pool, stash.pages[--stash.n]);
	return r;
}

int vmmu_tdp_mmu_split_huge_pages(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end)
{
	bool flush = false;
	int r = tdp_mmu_split(vm, as_id, start, end, false, &flush);

	/* Nothing was protected: only frozen entries met ask for a flush. */
	if (flush)
		vmmu_flush_remote_tlbs(vm);
	return r;
}

int vmmu_tdp_mmu_split_and_protect(struct vmmu_vm *vm, unsigned as_id, uint64_t start, uint64_t end,
				   bool *flush)
{
	return tdp_mmu_split(vm, as_id, start, end, true, flush);
}

/*
 * Huge-page recovery (dirty logging stopped): a table whose whole range
 * may now be one leaf (inside the slot, host mapping at least that large,
 * no disallow counter) is replaced in place by a huge leaf built from one
 * of its present leaves.  The huge leaf maps exactly the host pages the
 * small ones did, since the host maps the range contiguously; a leaf whose
 * address does not agree with the slot is left alone.  Ranges under an
 * MMU-notifier invalidation are skipped (the host is changing them).
 * Removed tables go through the usual teardown; the TLBs are flushed
 * before the RCU read section ends so nobody walks a freed table.
 */
/*
 * The first present leaf under table @pt (whose entries are at @level,
 * covering from @gfn); its gfn in *@leaf_gfn.  SPTE_NONPRESENT if none.
 */
static uint64_t tdp_mmu_first_leaf(uint64_t *pt, int level, uint64_t gfn, uint64_t *leaf_gfn)
{
	for (;;) {
		uint64_t spte = SPTE_NONPRESENT;
		unsigned i;

		for (i = 0; i < SPTE_ENT_PER_PAGE; i++) {
			spte = tdp_read_spte(&pt[i]);
			if (is_shadow_present_pte(spte))
				break;
		}
		if (i == SPTE_ENT_PER_PAGE)
			return SPTE_NONPRESENT;
		gfn += (uint64_t)i * spte_pages_per(level);
		if (is_last_spte(spte, level)) {
			*leaf_gfn = gfn;
			return spte;
		}
		pt = spte_to_child_pt(spte);
		level--;
	}
}

static bool gfn_range_invalidating(struct vmmu_vm *vm, uint64_t start, uint64_t end)
{
	return READ_ONCE(vm->mmu_invalidate_in_progress) &&
	       start < READ_ONCE(vm->mmu_invalidate_range_end) &&
	       end > READ_ONCE(vm->mmu_invalidate_range_start);
}

static uint64_t tdp_mmu_recover_root(struct vmmu_vm *vm, struct vmmu_sp *root,
				     const struct vmmu_memslot *slot)
{
	uint64_t start = slot->base_gfn, end = slot->base_gfn + slot->npages;
	struct tdp_iter iter;
	uint64_t recovered = 0;
	bool flush = false;

	vmmu_rcu_read_lock();
	for_each_tdp_pte_min_level(iter, sp_spt(vm, root), (int)root->role.level, PG_LEVEL_2M,
				   start, end) {
		uint64_t leaf, leaf_gfn = 0, huge, pages, hva;
retry:
		if (tdp_mmu_iter_cond_resched(vm, &iter, NULL, flush)) {
			flush = false;
			continue;
		}
		if (!is_shadow_present_pte(iter.old_spte)) {
			tdp_mmu_note_frozen(&iter, &flush);
			continue;
		}
		if (iter.level > SPTE_MAX_HUGEPAGE_LEVEL || is_last_spte(iter.old_spte, iter.level))
			continue;
		pages = spte_pages_per(iter.level);
		if (iter.gfn < start || iter.gfn + pages > end)
			continue;
		if (gfn_range_invalidating(vm, iter.gfn, iter.gfn + pages))
			continue;
		hva = memslot_gfn_to_hva(slot, iter.gfn);
		if (vmmu_max_mapping_level(vm, slot, iter.gfn, hva) < iter.level)
			continue;
		leaf = tdp_mmu_first_leaf(spte_to_child_pt(iter.old_spte), iter.level - 1, iter.gfn,
					  &leaf_gfn);
		if (!is_shadow_present_pte(leaf))
			continue;
		if (spte_addr(leaf) !=
		    ((hva + ((leaf_gfn - iter.gfn) << VMMU_PAGE_SHIFT)) & SPTE_ADDR_MASK))
			continue;
		huge = make_huge_spte(leaf, iter.level);
		if (tdp_mmu_set_spte_atomic(vm, &iter, huge))
			goto retry;
		recovered++;
		flush = true;
	}
	if (flush)
		vmmu_flush_remote_tlbs(vm);
	vmmu_rcu_read_unlock();
	return recovered;
}

uint64_t vmmu_tdp_mmu_recover_huge_pages(struct vmmu_vm *vm, const struct vmmu_memslot *slot)
{
	struct vmmu_sp *root;
	uint64_t recovered = 0;

	vmmu_lockdep_assert_held_read(&vm->mmu_lock);
	for_each_tdp_mmu_root_yield_safe(vm, root, (int)slot->as_id, true)
		recovered += tdp_mmu_recover_root(vm, root, slot);
	return recovered;
}
