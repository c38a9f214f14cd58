/* SPDX-License-Identifier: MIT */
/*
 * hostmem.h - where guest memory lives on the host, and what the host says
 * about it.
 *
 * A vmmu_hostmem hands out host memory with one of KVM selftests' backings
 * and answers, for any host address it handed out, the level at which the
 * host really maps it (4 KiB, 2 MiB or 1 GiB): vmmu never maps a guest page
 * with a leaf wider than the host mapping behind it.
 *
 * It also plays the part of the host kernel's MMU notifiers: operations that
 * change host memory under the guest (discarding a range, changing its
 * protection) go through it, and it tells every VM attached to it
 * (vmmu_vm_config.hostmem) before and after, with
 * vmmu_notify_invalidate_range_start/end.
 */
#ifndef VMMU_HOSTMEM_H
#define VMMU_HOSTMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmmu_hostmem;

/* The backings of KVM's selftests (-s). */
enum vmmu_backing {
	VMMU_BACKING_ANONYMOUS,          /* 4 KiB pages, THP disabled */
	VMMU_BACKING_ANONYMOUS_THP,      /* madvise(MADV_HUGEPAGE) */
	VMMU_BACKING_ANONYMOUS_HUGETLB_2MB,
	VMMU_BACKING_ANONYMOUS_HUGETLB_1GB,
	/* 4 KiB pages registered with userfaultfd: a page is missing until
	 * first touched, and then filled by the hostmem's handler threads
	 * with UFFDIO_COPY (demand paging; see vmmu_hostmem_set_uffd). */
	VMMU_BACKING_ANONYMOUS_UFFD,
	VMMU_BACKING_NR,
};

/* "anonymous", "anonymous_thp", ... as KVM's selftests spell them
 * ("anonymous_uffd" is vmmu's own). */
const char *vmmu_backing_name(enum vmmu_backing b);
/* 0 and *out, or -EINVAL for an unknown name. */
int vmmu_backing_parse(const char *name, enum vmmu_backing *out);
/* Host page size of a backing (4 KiB, 2 MiB, 2 MiB, 1 GiB). */
uint64_t vmmu_backing_page_size(enum vmmu_backing b);

/* 0, -EINVAL, -ENOMEM. */
int vmmu_hostmem_create(struct vmmu_hostmem **out);

/*
 * Demand paging (VMMU_BACKING_ANONYMOUS_UFFD).  Each such allocation gets
 * its own userfaultfd (UFFD_USER_MODE_ONLY when not root) and
 * @nr_handlers threads (0 = 1) that wait for missing-page events and
 * resolve each with UFFDIO_COPY of a 4 KiB page that @fill (may be NULL:
 * zeros) wrote for the page's host address.  @fill runs on a handler
 * thread and must not call vmmu.  vmmu's fault path touches a page before
 * mapping it, so a vCPU faulting on a missing page waits (with no MMU lock
 * held) until a handler has filled it.  A discarded range is missing again.
 */
struct vmmu_uffd_config {
	unsigned nr_handlers;
	void (*fill)(void *arg, uint64_t hva, void *page);
	void *arg;
};
/* For allocations made after the call.  0, -EINVAL (NULL, > 64 handlers). */
int vmmu_hostmem_set_uffd(struct vmmu_hostmem *hm, const struct vmmu_uffd_config *cfg);
/* Pages the handlers of @hva's allocation have filled: 0, -EINVAL (not an
 * anonymous_uffd allocation). */
int vmmu_hostmem_uffd_pages(struct vmmu_hostmem *hm, void *hva, uint64_t *pages);
/* 0, -EINVAL, -EBUSY (a VM is still attached or memory still allocated). */
int vmmu_hostmem_destroy(struct vmmu_hostmem *hm);

/*
 * Allocate @size bytes (a multiple of the backing's page size) with
 * @backing, aligned to its page size.  With @readonly the guest may only
 * read it (the host maps it read-only).
 *   0        *hva is the memory
 *   -EINVAL  bad size or backing
 *   -ENOMEM  the host could not provide it (for hugetlb: not enough pages
 *            reserved in /proc/sys/vm/nr_hugepages or .../hugepages-*)
 *   -EOPNOTSUPP  anonymous_uffd, and userfaultfd is not available here
 *            (no syscall, or refused to this user)
 */
int vmmu_hostmem_alloc(struct vmmu_hostmem *hm, enum vmmu_backing backing, uint64_t size,
		       int readonly, void **hva);
/* Free an allocation.  Attached VMs are notified first.  0, -EINVAL. */
int vmmu_hostmem_free(struct vmmu_hostmem *hm, void *hva);

/*
 * The host mapping level at @hva: 1 (4 KiB), 2 (2 MiB) or 3 (1 GiB), 0 if
 * @hva is not memory of this hostmem.  For THP it asks the kernel what
 * really backs the page (/proc/self/pagemap and /proc/kpageflags, which
 * need root); without that it answers what was requested.
 */
int vmmu_hostmem_level(struct vmmu_hostmem *hm, uint64_t hva);
/* 1 if the host lets the guest write @hva, 0 if not, -EINVAL if unknown. */
int vmmu_hostmem_writable(struct vmmu_hostmem *hm, uint64_t hva);

/*
 * Host operations that change guest memory, bracketed by MMU-notifier
 * invalidations of every attached VM:
 * discard: madvise(MADV_DONTNEED), the range reads as zeros afterwards;
 * protect: make a whole allocation read-only (@readonly 1) or writable.
 * 0, -EINVAL (range not inside one allocation / not page aligned), or the
 * host call's -errno.
 */
int vmmu_hostmem_discard(struct vmmu_hostmem *hm, void *hva, uint64_t len);
int vmmu_hostmem_protect(struct vmmu_hostmem *hm, void *hva, int readonly);

#ifdef __cplusplus
}
#endif

#endif /* VMMU_HOSTMEM_H */
