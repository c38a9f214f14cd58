/* SPDX-License-Identifier: MIT */
/*
 * hostmem.c - host memory backings, host mapping levels, and the
 * MMU-notifier events raised when the host changes guest memory.
 *
 * Allocations are kept in a sorted array replaced as a whole under a mutex
 * and read under RCU (the fault path asks for levels on every fault).
 */
#define _GNU_SOURCE
#include <vmmu/vmmu.h>

#include "hostmem_internal.h"
#include "platform/rcu.h"
#include "spte.h"

#include <fcntl.h>
#include <linux/mman.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#define UFFD_MAX_HANDLERS 64

#define HOSTMEM_MAX_VMS 16

/* One anonymous_uffd allocation's userfaultfd and its handler threads. */
struct uffd_ctx {
	int fd; /* the userfaultfd */
	int stop_fd; /* eventfd: handlers exit when it is readable */
	void (*fill)(void *arg, uint64_t hva, void *page);
	void *arg;
	uint64_t pages; /* filled so far */
	unsigned nr;
	pthread_t threads[UFFD_MAX_HANDLERS];
};

struct hostmem_range {
	uint64_t hva;
	uint64_t size;
	enum vmmu_backing backing;
	int readonly;
	struct uffd_ctx *uffd; /* anonymous_uffd only */
};

struct hostmem_ranges {
	vmmu_rcu_head rcu_head;
	int nr;
	struct hostmem_range r[];
};

struct vmmu_hostmem {
	pthread_mutex_t lock;
	struct hostmem_ranges *ranges; /* RCU */
	struct vmmu_vm *vms[HOSTMEM_MAX_VMS];
	int pagemap_fd, kpageflags_fd; /* -1 when not available */
	struct vmmu_uffd_config uffd_cfg; /* for the next uffd allocations */
};

static const char *const backing_names[VMMU_BACKING_NR] = {
	[VMMU_BACKING_ANONYMOUS] = "anonymous",
	[VMMU_BACKING_ANONYMOUS_THP] = "anonymous_thp",
	[VMMU_BACKING_ANONYMOUS_HUGETLB_2MB] = "anonymous_hugetlb_2mb",
	[VMMU_BACKING_ANONYMOUS_HUGETLB_1GB] = "anonymous_hugetlb_1gb",
	[VMMU_BACKING_ANONYMOUS_UFFD] = "anonymous_uffd",
};

const char *vmmu_backing_name(enum vmmu_backing b)
{
	return (unsigned)b < VMMU_BACKING_NR ? backing_names[b] : "unknown";
}

int vmmu_backing_parse(const char *name, enum vmmu_backing *out)
{
	if (!name || !out)
		return -EINVAL;
	for (unsigned i = 0; i < VMMU_BACKING_NR; i++) {
		if (!strcmp(name, backing_names[i])) {
			*out = (enum vmmu_backing)i;
			return 0;
		}
	}
	return -EINVAL;
}

uint64_t vmmu_backing_page_size(enum vmmu_backing b)
{
	switch (b) {
	case VMMU_BACKING_ANONYMOUS_THP:
	case VMMU_BACKING_ANONYMOUS_HUGETLB_2MB:
		return 2ull << 20;
	case VMMU_BACKING_ANONYMOUS_HUGETLB_1GB:
		return 1ull << 30;
	default:
		return VMMU_PAGE_SIZE;
	}
}

int vmmu_hostmem_create(struct vmmu_hostmem **out)
{
	struct vmmu_hostmem *hm;

	if (!out)
		return -EINVAL;
	hm = calloc(1, sizeof(*hm));
	if (!hm)
		return -ENOMEM;
	hm->ranges = calloc(1, sizeof(*hm->ranges));
	if (!hm->ranges) {
		free(hm);
		return -ENOMEM;
	}
	pthread_mutex_init(&hm->lock, NULL);
	/* Only root can see PFNs and page flags; without them THP levels are
	 * what was requested. */
	hm->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	hm->kpageflags_fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	*out = hm;
	return 0;
}

int vmmu_hostmem_destroy(struct vmmu_hostmem *hm)
{
	if (!hm)
		return -EINVAL;
	pthread_mutex_lock(&hm->lock);
	for (int i = 0; i < HOSTMEM_MAX_VMS; i++) {
		if (hm->vms[i]) {
			pthread_mutex_unlock(&hm->lock);
			return -EBUSY;
		}
	}
	if (hm->ranges->nr) {
		pthread_mutex_unlock(&hm->lock);
		return -EBUSY;
	}
	pthread_mutex_unlock(&hm->lock);
	if (hm->pagemap_fd >= 0)
		close(hm->pagemap_fd);
	if (hm->kpageflags_fd >= 0)
		close(hm->kpageflags_fd);
	free(hm->ranges);
	pthread_mutex_destroy(&hm->lock);
	free(hm);
	return 0;
}

int vmmu_hostmem_attach(struct vmmu_hostmem *hm, struct vmmu_vm *vm)
{
	int r = -ENOSPC;

	pthread_mutex_lock(&hm->lock);
	for (int i = 0; i < HOSTMEM_MAX_VMS; i++) {
		if (!hm->vms[i]) {
			hm->vms[i] = vm;
			r = 0;
			break;
		}
	}
	pthread_mutex_unlock(&hm->lock);
	return r;
}

void vmmu_hostmem_detach(struct vmmu_hostmem *hm, struct vmmu_vm *vm)
{
	pthread_mutex_lock(&hm->lock);
	for (int i = 0; i < HOSTMEM_MAX_VMS; i++)
		if (hm->vms[i] == vm)
			hm->vms[i] = NULL;
	pthread_mutex_unlock(&hm->lock);
}

static void ranges_free_rcu(vmmu_rcu_head *head)
{
	vmmu_rcu_callback_enter();
	free(vmmu_container_of(head, struct hostmem_ranges, rcu_head));
	vmmu_rcu_callback_exit();
}

/* Replace the array (hm->lock held): add @add if non-NULL, remove index @del if >= 0. */
static int ranges_update(struct vmmu_hostmem *hm, const struct hostmem_range *add, int del)
{
	struct hostmem_ranges *old = hm->ranges, *n;
	int nr = old->nr + (add ? 1 : 0) - (del >= 0 ? 1 : 0), j = 0;

	n = calloc(1, sizeof(*n) + (size_t)nr * sizeof(n->r[0]));
	if (!n)
		return -ENOMEM;
	n->nr = nr;
	for (int i = 0; i < old->nr; i++) {
		if (i == del)
			continue;
		if (add && add->hva < old->r[i].hva) {
			n->r[j++] = *add;
			add = NULL;
		}
		n->r[j++] = old->r[i];
	}
	if (add)
		n->r[j++] = *add;
	vmmu_rcu_assign_pointer(hm->ranges, n);
	vmmu_call_rcu(&old->rcu_head, ranges_free_rcu);
	return 0;
}

/* Under RCU: the range holding @hva, or NULL. */
static const struct hostmem_range *range_lookup(struct vmmu_hostmem *hm, uint64_t hva)
{
	struct hostmem_ranges *s = vmmu_rcu_dereference(hm->ranges);
	int lo = 0, hi = s->nr - 1;

	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;

		if (s->r[mid].hva <= hva)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	if (hi < 0 || hva - s->r[hi].hva >= s->r[hi].size)
		return NULL;
	return &s->r[hi];
}

static void *map_aligned(uint64_t size, uint64_t align, int extra_flags)
{
	/* Over-allocate and trim so the start is aligned to the huge size. */
	uint64_t len = size + align;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | extra_flags, -1, 0);
	uint64_t head, tail;

	if (p == MAP_FAILED)
		return NULL;
	head = (align - ((uintptr_t)p & (align - 1))) & (align - 1);
	tail = len - head - size;
	if (head)
		munmap(p, head);
	if (tail)
		munmap(p + head + size, tail);
	return p + head;
}

int vmmu_hostmem_set_uffd(struct vmmu_hostmem *hm, const struct vmmu_uffd_config *cfg)
{
	if (!hm || !cfg || cfg->nr_handlers > UFFD_MAX_HANDLERS)
		return -EINVAL;
	pthread_mutex_lock(&hm->lock);
	hm->uffd_cfg = *cfg;
	pthread_mutex_unlock(&hm->lock);
	return 0;
}

/*
 * A handler thread: wait for missing-page events and resolve each with a
 * copy of the page @fill wrote.  Several handlers read the same
 * (non-blocking) descriptor; two events for one page (two threads touched
 * it) make the second copy fail with EEXIST, and then only a wake-up of the
 * waiter is needed.
 */
static void *uffd_handler(void *opaque)
{
	struct uffd_ctx *u = opaque;
	void *page = aligned_alloc(VMMU_PAGE_SIZE, VMMU_PAGE_SIZE);

	if (!page)
		return NULL;
	for (;;) {
		struct pollfd pfd[2] = { { .fd = u->fd, .events = POLLIN },
					 { .fd = u->stop_fd, .events = POLLIN } };
		struct uffd_msg msg;
		struct uffdio_copy copy;
		uint64_t addr;
		int r;

		if (poll(pfd, 2, -1) < 0)
			continue;
		if (pfd[1].revents)
			break;
		if (read(u->fd, &msg, sizeof(msg)) != sizeof(msg))
			continue; /* another handler took it */
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		addr = msg.arg.pagefault.address & VMMU_PAGE_MASK;
		if (u->fill)
			u->fill(u->arg, addr, page);
		else
			memset(page, 0, VMMU_PAGE_SIZE);
		/* Counted before the copy wakes the waiter, so that whoever
		 * the copy unblocks sees the page counted; taken back if the
		 * copy fails.  EAGAIN: the mapping was changing; try again. */
		__atomic_add_fetch(&u->pages, 1, __ATOMIC_RELAXED);
		do {
			copy = (struct uffdio_copy){ .dst = addr,
						     .src = (uint64_t)(uintptr_t)page,
						     .len = VMMU_PAGE_SIZE,
						     .mode = 0 };
			r = ioctl(u->fd, UFFDIO_COPY, &copy);
		} while (r && errno == EAGAIN && copy.copy <= 0);
		if (r && copy.copy != (int64_t)VMMU_PAGE_SIZE) {
			__atomic_sub_fetch(&u->pages, 1, __ATOMIC_RELAXED);
			if (errno == EEXIST) {
				struct uffdio_range wake = { .start = addr, .len = VMMU_PAGE_SIZE };

				ioctl(u->fd, UFFDIO_WAKE, &wake);
			}
		}
	}
	free(page);
	return NULL;
}

static void uffd_destroy(struct uffd_ctx *u)
{
	uint64_t one = 1;

	if (!u)
		return;
	if (write(u->stop_fd, &one, sizeof(one)) != sizeof(one))
		WARN_ON(1);
	for (unsigned i = 0; i < u->nr; i++)
		pthread_join(u->threads[i], NULL);
	close(u->stop_fd);
	close(u->fd);
	free(u);
}

/* Register [p, p + size) with a new userfaultfd and start its handlers.
 * 0, -EOPNOTSUPP (no userfaultfd for us), -ENOMEM. */
static int uffd_setup(const struct vmmu_uffd_config *cfg, void *p, uint64_t size,
		      struct uffd_ctx **out)
{
	struct uffd_ctx *u = calloc(1, sizeof(*u));
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .range = { .start = (uint64_t)(uintptr_t)p, .len = size },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };
	int flags = O_CLOEXEC | O_NONBLOCK, r = -EOPNOTSUPP;

	if (!u)
		return -ENOMEM;
	u->stop_fd = -1;
	/* Without privilege only faults from user mode can be handled, which
	 * is all vmmu needs: the fault path touches pages from user mode. */
	if (geteuid())
		flags |= UFFD_USER_MODE_ONLY;
	u->fd = (int)syscall(SYS_userfaultfd, flags);
	if (u->fd < 0) {
		free(u);
		return -EOPNOTSUPP;
	}
	if (ioctl(u->fd, UFFDIO_API, &api) || ioctl(u->fd, UFFDIO_REGISTER, &reg))
		goto err;
	r = -ENOMEM;
	u->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (u->stop_fd < 0)
		goto err;
	u->fill = cfg->fill;
	u->arg = cfg->arg;
	for (unsigned i = 0; i < (cfg->nr_handlers ? cfg->nr_handlers : 1); i++) {
		if (pthread_create(&u->threads[i], NULL, uffd_handler, u))
			goto err;
		u->nr++;
	}
	*out = u;
	return 0;
err:
	if (u->stop_fd >= 0) {
		uffd_destroy(u);
	} else {
		close(u->fd);
		free(u);
	}
	return r;
}

int vmmu_hostmem_uffd_pages(struct vmmu_hostmem *hm, void *hva, uint64_t *pages)
{
	const struct hostmem_range *r;
	int ret = -EINVAL;

	if (!hm || !pages)
		return -EINVAL;
	vmmu_rcu_read_lock();
	r = range_lookup(hm, (uint64_t)(uintptr_t)hva);
	if (r && r->uffd) {
		*pages = __atomic_load_n(&r->uffd->pages, __ATOMIC_RELAXED);
		ret = 0;
	}
	vmmu_rcu_read_unlock();
	return ret;
}

int vmmu_hostmem_alloc(struct vmmu_hostmem *hm, enum vmmu_backing backing, uint64_t size,
		       int readonly, void **hva)
{
	struct uffd_ctx *uffd = NULL;
	uint64_t psize;
	struct hostmem_range range;
	void *p;
	int r;

	if (!hm || !hva || (unsigned)backing >= VMMU_BACKING_NR)
		return -EINVAL;
	psize = vmmu_backing_page_size(backing);
	if (!size || size % psize)
		return -EINVAL;
	switch (backing) {
	case VMMU_BACKING_ANONYMOUS:
	case VMMU_BACKING_ANONYMOUS_UFFD:
		p = map_aligned(size, VMMU_PAGE_SIZE, 0);
		if (p)
			madvise(p, size, MADV_NOHUGEPAGE);
		break;
	case VMMU_BACKING_ANONYMOUS_THP:
		p = map_aligned(size, psize, 0);
		if (p)
			madvise(p, size, MADV_HUGEPAGE);
		break;
	case VMMU_BACKING_ANONYMOUS_HUGETLB_2MB:
		p = mmap(NULL, size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
		p = p == MAP_FAILED ? NULL : p;
		break;
	default:
		p = mmap(NULL, size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_1GB, -1, 0);
		p = p == MAP_FAILED ? NULL : p;
		break;
	}
	if (!p)
		return -ENOMEM;
	if (readonly)
		mprotect(p, size, PROT_READ);
	range = (struct hostmem_range){ .hva = (uint64_t)(uintptr_t)p,
					.size = size,
					.backing = backing,
					.readonly = !!readonly };
	pthread_mutex_lock(&hm->lock);
	if (backing == VMMU_BACKING_ANONYMOUS_UFFD) {
		r = uffd_setup(&hm->uffd_cfg, p, size, &uffd);
		if (r) {
			pthread_mutex_unlock(&hm->lock);
			munmap(p, size);
			return r;
		}
		range.uffd = uffd;
	}
	r = ranges_update(hm, &range, -1);
	pthread_mutex_unlock(&hm->lock);
	if (r) {
		munmap(p, size);
		uffd_destroy(uffd);
		return r;
	}
	*hva = p;
	return 0;
}

/* Tell every attached VM that [start, end) is about to change / changed.
 * hm->lock is held across the whole operation, so a VM cannot attach or
 * detach between its start and its end. */
static void notify(struct vmmu_hostmem *hm, uint64_t start, uint64_t end, bool begin)
{
	for (int i = 0; i < HOSTMEM_MAX_VMS; i++) {
		if (!hm->vms[i])
			continue;
		if (begin)
			vmmu_notify_invalidate_range_start(hm->vms[i], start, end);
		else
			vmmu_notify_invalidate_range_end(hm->vms[i], start, end);
	}
}

static int range_index(struct vmmu_hostmem *hm, uint64_t hva, uint64_t len)
{
	struct hostmem_ranges *s = hm->ranges;

	for (int i = 0; i < s->nr; i++)
		if (hva >= s->r[i].hva && hva - s->r[i].hva < s->r[i].size &&
		    len <= s->r[i].size - (hva - s->r[i].hva))
			return i;
	return -1;
}

/* The allocation that starts exactly at @hva (hm->lock held), or -1. */
static int range_index_exact(struct vmmu_hostmem *hm, uint64_t hva)
{
	int i = range_index(hm, hva, 1);

	return i >= 0 && hm->ranges->r[i].hva == hva ? i : -1;
}

int vmmu_hostmem_free(struct vmmu_hostmem *hm, void *hva)
{
	uint64_t a = (uint64_t)(uintptr_t)hva, size;
	struct uffd_ctx *uffd;
	int i, r;

	if (!hm)
		return -EINVAL;
	pthread_mutex_lock(&hm->lock);
	i = range_index_exact(hm, a);
	if (i < 0) {
		pthread_mutex_unlock(&hm->lock);
		return -EINVAL;
	}
	size = hm->ranges->r[i].size;
	uffd = hm->ranges->r[i].uffd;
	notify(hm, a, a + size, true);
	r = ranges_update(hm, NULL, i);
	if (!r) {
		/* Readers of the old array may still look at the range (and
		 * a fault may wait for a page: the handlers still run). */
		vmmu_synchronize_rcu();
		munmap(hva, size);
		uffd_destroy(uffd);
	}
	notify(hm, a, a + size, false);
	pthread_mutex_unlock(&hm->lock);
	return r;
}

/* THP: does the kernel really back @hva with a huge page?  -1 if unknown. */
static int thp_backed(struct vmmu_hostmem *hm, uint64_t hva)
{
	uint64_t ent, flags;

	if (hm->pagemap_fd < 0 || hm->kpageflags_fd < 0)
		return -1;
	if (pread(hm->pagemap_fd, &ent, 8, (off_t)((hva >> 12) * 8)) != 8)
		return -1;
	if (!(ent & (1ull << 63)) || !(ent & ((1ull << 55) - 1)))
		return -1; /* not present, or PFN hidden */
	if (pread(hm->kpageflags_fd, &flags, 8, (off_t)((ent & ((1ull << 55) - 1)) * 8)) != 8)
		return -1;
	return (flags & (1ull << 22)) ? 1 : 0; /* KPF_THP */
}

/* The host level of @hva inside range @r (under RCU). */
static inline __attribute__((always_inline)) int
range_level(struct vmmu_hostmem *hm, const struct hostmem_range *r, uint64_t hva)
{
	switch (r->backing) {
	case VMMU_BACKING_ANONYMOUS_HUGETLB_1GB:
		return PG_LEVEL_1G;
	case VMMU_BACKING_ANONYMOUS_HUGETLB_2MB:
		return PG_LEVEL_2M;
	case VMMU_BACKING_ANONYMOUS_THP:
		return thp_backed(hm, hva) == 0 ? PG_LEVEL_4K : PG_LEVEL_2M;
	default:
		return PG_LEVEL_4K;
	}
}

int vmmu_hostmem_level(struct vmmu_hostmem *hm, uint64_t hva)
{
	const struct hostmem_range *r;
	int level = 0;

	if (!hm)
		return 0;
	vmmu_rcu_read_lock();
	r = range_lookup(hm, hva);
	if (r)
		level = range_level(hm, r, hva);
	vmmu_rcu_read_unlock();
	return level;
}

int vmmu_hostmem_lookup(struct vmmu_hostmem *hm, uint64_t hva, struct vmmu_host_page *page)
{
	const struct hostmem_range *r = range_lookup(hm, hva);

	if (!r)
		return -EFAULT;
	/*
	 * A missing userfaultfd page blocks this read until a handler has
	 * filled it (KVM's get_user_pages waiting on the fault).  Only a
	 * read: UFFDIO_COPY maps the page writable anyway.  The level is
	 * asked afterwards, of the page that is there now.
	 */
	if (r->uffd)
		(void)__atomic_load_n((const volatile char *)(uintptr_t)hva, __ATOMIC_RELAXED);
	page->level = range_level(hm, r, hva);
	page->writable = !__atomic_load_n(&r->readonly, __ATOMIC_ACQUIRE);
	page->extent_end = r->uffd ? (hva & VMMU_PAGE_MASK) + VMMU_PAGE_SIZE : r->hva + r->size;
	return 0;
}

int vmmu_hostmem_writable(struct vmmu_hostmem *hm, uint64_t hva)
{
	const struct hostmem_range *r;
	int w = -EINVAL;

	if (!hm)
		return -EINVAL;
	vmmu_rcu_read_lock();
	r = range_lookup(hm, hva);
	if (r)
		w = !__atomic_load_n(&r->readonly, __ATOMIC_ACQUIRE);
	vmmu_rcu_read_unlock();
	return w;
}

int vmmu_hostmem_discard(struct vmmu_hostmem *hm, void *hva, uint64_t len)
{
	uint64_t a = (uint64_t)(uintptr_t)hva, psize;
	int i, r = 0;

	if (!hm || !len || (a | len) & (VMMU_PAGE_SIZE - 1))
		return -EINVAL;
	pthread_mutex_lock(&hm->lock);
	i = range_index(hm, a, len);
	/* hugetlb discards whole huge pages only. */
	psize = i >= 0 && (hm->ranges->r[i].backing == VMMU_BACKING_ANONYMOUS_HUGETLB_2MB ||
			   hm->ranges->r[i].backing == VMMU_BACKING_ANONYMOUS_HUGETLB_1GB) ?
			vmmu_backing_page_size(hm->ranges->r[i].backing) :
			VMMU_PAGE_SIZE;
	if (i < 0 || (a | len) & (psize - 1)) {
		pthread_mutex_unlock(&hm->lock);
		return -EINVAL;
	}
	notify(hm, a, a + len, true);
	if (madvise(hva, len, MADV_DONTNEED))
		r = -errno;
	notify(hm, a, a + len, false);
	pthread_mutex_unlock(&hm->lock);
	return r;
}

int vmmu_hostmem_protect(struct vmmu_hostmem *hm, void *hva, int readonly)
{
	uint64_t a = (uint64_t)(uintptr_t)hva;
	struct hostmem_range *range;
	int i, r = 0;

	if (!hm)
		return -EINVAL;
	pthread_mutex_lock(&hm->lock);
	i = range_index_exact(hm, a);
	if (i < 0) {
		pthread_mutex_unlock(&hm->lock);
		return -EINVAL;
	}
	range = &hm->ranges->r[i];
	notify(hm, a, a + range->size, true);
	if (mprotect(hva, range->size, readonly ? PROT_READ : PROT_READ | PROT_WRITE))
		r = -errno;
	else
		__atomic_store_n(&range->readonly, !!readonly, __ATOMIC_RELEASE);
	notify(hm, a, a + range->size, false);
	pthread_mutex_unlock(&hm->lock);
	return r;
}
