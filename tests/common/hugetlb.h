/* SPDX-License-Identifier: MIT */
/*
 * hugetlb.h - reserve hugetlb pages for a test and give them back.
 *
 *   test_hugetlb_reserve(page_size, bytes)
 *       makes sure @bytes of free hugetlb pages of @page_size (2 MiB or
 *       1 GiB) exist.  When there are too few and we may write
 *       /sys/kernel/mm/hugepages/hugepages-<N>kB/nr_hugepages (root), it
 *       raises the setting by what is missing and registers an atexit()
 *       handler that writes the old value back.  Returns 1 when the pages
 *       are there, 0 when not (not root, no such page size, or the kernel
 *       could not find the memory): the test should then skip.
 *   test_hugetlb_restore()
 *       writes the saved settings back now (also done at exit).
 *
 * The hugetlb pool is shared by every process: from the first reservation
 * until the restore, a test holds an exclusive flock on
 * /tmp/vmmu-hugetlb.lock, so that tests run in parallel by ctest neither
 * take each other's pages nor restore each other's settings.
 *   TEST_SKIP_CODE
 *       the exit status CTest reports as "skipped" (77).
 *
 * Header only; include it as #include "../common/hugetlb.h".
 */
#ifndef VMMU_TEST_HUGETLB_H
#define VMMU_TEST_HUGETLB_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

#define TEST_SKIP_CODE 77

struct test_hugetlb_saved {
	uint64_t page_size;
	long nr; /* -1: nothing to restore */
};

/* One entry per page size (2 MiB, 1 GiB). */
static struct test_hugetlb_saved test_hugetlb_saved[2] = { { 2ull << 20, -1 }, { 1ull << 30, -1 } };
static int test_hugetlb_lock_fd = -1;

static inline void test_hugetlb_path(char *buf, size_t n, uint64_t page_size, const char *file)
{
	snprintf(buf, n, "/sys/kernel/mm/hugepages/hugepages-%llukB/%s",
		 (unsigned long long)(page_size >> 10), file);
}

static inline long test_hugetlb_read(uint64_t page_size, const char *file)
{
	char path[128];
	FILE *f;
	long v = -1;

	test_hugetlb_path(path, sizeof(path), page_size, file);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

static inline int test_hugetlb_write_nr(uint64_t page_size, long v)
{
	char path[128];
	FILE *f;
	int ok;

	test_hugetlb_path(path, sizeof(path), page_size, "nr_hugepages");
	f = fopen(path, "w");
	if (!f)
		return 0;
	ok = fprintf(f, "%ld\n", v) > 0;
	return (fclose(f) == 0) && ok;
}

static inline void test_hugetlb_restore(void)
{
	for (int i = 0; i < 2; i++) {
		if (test_hugetlb_saved[i].nr < 0)
			continue;
		test_hugetlb_write_nr(test_hugetlb_saved[i].page_size, test_hugetlb_saved[i].nr);
		test_hugetlb_saved[i].nr = -1;
	}
	if (test_hugetlb_lock_fd >= 0) {
		flock(test_hugetlb_lock_fd, LOCK_UN);
		close(test_hugetlb_lock_fd);
		test_hugetlb_lock_fd = -1;
	}
}

static inline int test_hugetlb_reserve(uint64_t page_size, uint64_t bytes)
{
	static int registered;
	struct test_hugetlb_saved *s = NULL;
	long free_pages, nr, want = (long)((bytes + page_size - 1) / page_size);

	for (int i = 0; i < 2; i++)
		if (test_hugetlb_saved[i].page_size == page_size)
			s = &test_hugetlb_saved[i];
	if (!s)
		return 0;
	if (test_hugetlb_lock_fd < 0) {
		test_hugetlb_lock_fd = open("/tmp/vmmu-hugetlb.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
		if (test_hugetlb_lock_fd >= 0)
			flock(test_hugetlb_lock_fd, LOCK_EX);
	}
	if (!registered) {
		atexit(test_hugetlb_restore);
		registered = 1;
	}
	free_pages = test_hugetlb_read(page_size, "free_hugepages");
	nr = test_hugetlb_read(page_size, "nr_hugepages");
	if (free_pages < 0 || nr < 0)
		return 0;
	if (free_pages >= want)
		return 1;
	if (s->nr < 0)
		s->nr = nr;
	/* The kernel may give fewer than asked: check what is free after. */
	if (!test_hugetlb_write_nr(page_size, nr + (want - free_pages)))
		return 0;
	return test_hugetlb_read(page_size, "free_hugepages") >= want;
}

#endif /* VMMU_TEST_HUGETLB_H */
