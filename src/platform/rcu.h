/* SPDX-License-Identifier: MIT */
/*
 * rcu.h - read-copy-update for vmmu, on liburcu's "memb" flavour.
 *
 * Threads are registered with liburcu lazily, the first time they enter a
 * read section, and unregistered when they exit, so callers of the public
 * API never have to know about RCU.
 *
 * ThreadSanitizer cannot see the ordering liburcu provides (it lives in a
 * shared library that is not instrumented).  In TSan builds every read
 * section end is a release on one sync object and every callback begins
 * with an acquire on it: after a grace period, every reader that could have
 * seen an object has unlocked, so this gives TSan exactly the
 * happens-before edge the grace period guarantees.  Pointer publish and
 * read use __atomic release/acquire (consume is promoted to acquire).
 */
#ifndef VMMU_RCU_H
#define VMMU_RCU_H

#include "platform.h"

/*
 * liburcu's read-side primitives inline (rcu_read_lock/unlock become a
 * few loads and stores of the thread's reader counter) rather than two
 * calls into the shared library per read section, each of which also
 * looks up liburcu's thread-local reader through __tls_get_addr.  liburcu
 * offers them to code that defines _LGPL_SOURCE before its headers; vmmu's
 * MIT licence is GPL-compatible, which is what liburcu's README asks, and
 * the inlined functions are liburcu's "small" ones (under ten lines).  This
 * header is the only includer of liburcu's flavour header, so the define
 * here covers every vmmu file that takes a read section.  The memb flavour
 * needs no quiescent-state reporting, so nothing else changes.
 */
#ifndef _LGPL_SOURCE
#define _LGPL_SOURCE
#endif
#include <urcu/urcu-memb.h>
#include <urcu/call-rcu.h>

extern __thread int vmmu_rcu_registered;
extern __thread int vmmu_rcu_depth;
extern char vmmu_rcu_tsan_sync;

void vmmu_rcu_register_slow(void);

static inline void vmmu_rcu_read_lock(void)
{
	if (vmmu_unlikely(!vmmu_rcu_registered))
		vmmu_rcu_register_slow();
	vmmu_rcu_depth++;
	urcu_memb_read_lock();
}

static inline void vmmu_rcu_read_unlock(void)
{
	vmmu_tsan_release(&vmmu_rcu_tsan_sync);
	urcu_memb_read_unlock();
	vmmu_rcu_depth--;
}

/* True when the calling thread is inside a read section (debug checks). */
static inline bool vmmu_rcu_read_held(void)
{
	return vmmu_rcu_depth > 0;
}

/* Documentation that runs in debug builds: the caller's read section
 * covers this function (it takes none of its own). */
#define vmmu_rcu_assert_held() WARN_ON(VMMU_DEBUG && !vmmu_rcu_read_held())

#define vmmu_rcu_dereference(p) __atomic_load_n(&(p), __ATOMIC_ACQUIRE)
#define vmmu_rcu_assign_pointer(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)

typedef struct rcu_head vmmu_rcu_head;

/* Queue @func(@head) after a grace period.  Callbacks must begin with
 * vmmu_rcu_callback_enter() and end with vmmu_rcu_callback_exit(). */
static inline void vmmu_call_rcu(vmmu_rcu_head *head, void (*func)(vmmu_rcu_head *))
{
	if (vmmu_unlikely(!vmmu_rcu_registered))
		vmmu_rcu_register_slow();
	vmmu_tsan_release(&vmmu_rcu_tsan_sync);
	urcu_memb_call_rcu(head, func);
}

static inline void vmmu_rcu_callback_enter(void)
{
	vmmu_tsan_acquire(&vmmu_rcu_tsan_sync);
}

/* Callbacks end with this: vmmu_rcu_barrier() then orders after them. */
static inline void vmmu_rcu_callback_exit(void)
{
	vmmu_tsan_release(&vmmu_rcu_tsan_sync);
}

/* Wait for a grace period.  Never call it inside a read section or with
 * the MMU lock held. */
void vmmu_synchronize_rcu(void);

/* Wait until every queued callback has run (VM teardown). */
void vmmu_rcu_barrier(void);

/*
 * RCU-protected doubly linked lists on liburcu's struct cds_list_head.
 * Writers serialize among themselves with a lock; readers walk the next
 * pointers inside a read section.  Written with __atomic so that
 * ThreadSanitizer sees the publication (liburcu's own list macros use
 * volatile accesses it reports as races).
 */
#include <urcu/list.h>

static inline void vmmu_list_add_rcu(struct cds_list_head *newp, struct cds_list_head *head)
{
	struct cds_list_head *next = head->next;

	newp->next = next;
	newp->prev = head;
	next->prev = newp;
	__atomic_store_n(&head->next, newp, __ATOMIC_RELEASE);
}

/* Readers already on @elem may still follow elem->next: free it only after
 * a grace period. */
static inline void vmmu_list_del_rcu(struct cds_list_head *elem)
{
	elem->next->prev = elem->prev;
	__atomic_store_n(&elem->prev->next, elem->next, __ATOMIC_RELEASE);
}

#define vmmu_list_for_each_entry_rcu(pos, head, member)                                 \
	for (pos = cds_list_entry(__atomic_load_n(&(head)->next, __ATOMIC_ACQUIRE),     \
				  __typeof__(*pos), member);                            \
	     &pos->member != (head);                                                    \
	     pos = cds_list_entry(__atomic_load_n(&pos->member.next, __ATOMIC_ACQUIRE), \
				  __typeof__(*pos), member))

#endif /* VMMU_RCU_H */
