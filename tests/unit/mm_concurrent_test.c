// SPDX-License-Identifier: MIT
/*
 * mm_concurrent_test.c - host threads acting as the simulated CPUs of one
 * machine, on one process and on several:
 *
 *   fault_vs_vma_churn     three CPUs fault, write, DONTNEED, mprotect and
 *                          cmpxchg in their own ranges of one process
 *                          (private anon, shared anon, private file) while
 *                          a fourth maps, unmaps, mprotects and mremaps
 *                          between them; every byte is checked against
 *                          each thread's shadow.
 *   readers_vs_protect     readers of one region while a CPU mprotects it
 *                          (RO/RW/NONE), DONTNEEDs it, reuses the freed
 *                          pages with garbage elsewhere and swaps fresh
 *                          data in with mremap(FIXED): a reader sees the
 *                          data or zeros (or -EFAULT under PROT_NONE),
 *                          never garbage.
 *   fork_vs_writers        CPUs rewrite whole pages of the parent while
 *                          one CPU forks children, checks each is a
 *                          per-page consistent, linearizable snapshot, and
 *                          exits them.
 *   multi_process          four processes sharing anonymous and file
 *                          memory, each CPU writing its own slice from its
 *                          own process while it churns private mappings;
 *                          one CPU keeps replacing its process by a fork.
 *   truncate_vs_faults     two processes fault shared and private maps of
 *                          a file that one CPU keeps truncating and
 *                          extending (page-aligned, so no byte is written
 *                          while a CPU may read it).
 *   mremap_vs_rmap         one CPU moves an anon and a shared file mapping
 *                          back and forth with mremap while another thread
 *                          walks the rmap of their pages: every walk finds
 *                          each page mapped exactly once, never in both
 *                          VMAs or in neither.
 *
 * The simulated programs never let two CPUs touch the same bytes at once
 * (that would be a race on the host memory behind the simulated pages),
 * so ThreadSanitizer reports only races of the simulator itself. Threads
 * record the first failure and stop everybody; the main thread fails the
 * test after joining.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>

#include <hetmm/check.h>
#include <hetmm/mm.h>
#include <hetmm/rmap.h>
#include <hetmm/uapi.h>

#include "harness.h"

#define RW (PROT_READ | PROT_WRITE)
#define PRIV_ANON (MAP_PRIVATE | MAP_ANONYMOUS)
#define SHARED_ANON (MAP_SHARED | MAP_ANONYMOUS)

/* ------------------------------------------------------- thread failures */

static atomic_bool t_stop;
static atomic_bool t_failed;
static pthread_mutex_t t_msg_lock = PTHREAD_MUTEX_INITIALIZER;
static char t_msg[1024];

static void tfail(const char *fmt, ...) __printf(1, 2);
static void tfail(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&t_msg_lock);
	if (!atomic_load(&t_failed)) {
		va_start(ap, fmt);
		vsnprintf(t_msg, sizeof(t_msg), fmt, ap);
		va_end(ap);
		atomic_store(&t_failed, true);
	}
	pthread_mutex_unlock(&t_msg_lock);
	atomic_store(&t_stop, true);
}

/* In a thread: record the failure and leave the thread function. */
#define TCHECK(cond, fmt, ...)                                                 \
	do {                                                                   \
		if (!(cond)) {                                                 \
			tfail("%s:%d: " fmt, __func__, __LINE__,               \
			      ##__VA_ARGS__);                                  \
			return NULL;                                           \
		}                                                              \
	} while (0)

static bool stopped(void)
{
	return atomic_load_explicit(&t_stop, memory_order_relaxed);
}

static void threads_reset(void)
{
	atomic_store(&t_stop, false);
	atomic_store(&t_failed, false);
	t_msg[0] = 0;
}

static void threads_assert_ok(struct hetmm_machine *m)
{
	if (atomic_load(&t_failed))
		fail_msg("seed %llu: %s", (unsigned long long)test_seed(), t_msg);
	if (hetmm_check(m))
		fail_msg("seed %llu: hetmm_check: %s",
			 (unsigned long long)test_seed(), hetmm_check_report(m));
}

static void start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	assert_int_equal(pthread_create(t, NULL, fn, arg), 0);
}

static void join(pthread_t t)
{
	assert_int_equal(pthread_join(t, NULL), 0);
}

static void fill_random(struct test_rng *r, unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)test_rng_next(r);
}

/* A named file of @pages pages, each byte (i * 7 + 3) & 0xff. */
static int make_file(struct mm_struct *mm, const char *name, size_t pages)
{
	unsigned char *b = malloc(pages * PAGE_SIZE);
	int fd = hetmm_open(mm, name, O_RDWR | O_CREAT | O_TRUNC);

	assert_non_null(b);
	assert_true(fd >= 0);
	for (size_t i = 0; i < pages * PAGE_SIZE; i++)
		b[i] = (unsigned char)(i * 7 + 3);
	assert_int_equal(hetmm_pwrite(mm, fd, b, pages * PAGE_SIZE, 0),
			 (long)(pages * PAGE_SIZE));
	free(b);
	return fd;
}

static unsigned char file_byte(size_t off)
{
	return (unsigned char)(off * 7 + 3);
}

/* The 8 bytes of the file_byte() pattern at @off, as a word. */
static uint64_t file_word(size_t off)
{
	unsigned char b[8];
	uint64_t v;

	for (int i = 0; i < 8; i++)
		b[i] = file_byte(off + (size_t)i);
	memcpy(&v, b, 8);
	return v;
}

/* ------------------------------------------------ fault_vs_vma_churn */

#define FC_SUB 12                 /* pages per sub-region */
#define FC_REG (3 * FC_SUB)       /* private anon, shared anon, private file */
#define FC_GAP 24                 /* churn pages between writer regions */
#define FC_BASE 0x10000000UL
#define FC_STRIDE ((FC_REG + FC_GAP) * PAGE_SIZE)

struct fc {
	struct hetmm_machine *m;
	struct mm_struct *mm;
	unsigned int iters;
	atomic_int writers_left;
};

struct fc_writer {
	struct fc *fc;
	unsigned int id;
	unsigned long base;
	unsigned char *shadow; /* FC_REG pages */
};

static unsigned long fc_region(unsigned int w)
{
	return FC_BASE + w * FC_STRIDE;
}

static unsigned long fc_gap(unsigned int g)
{
	return FC_BASE + g * FC_STRIDE + FC_REG * PAGE_SIZE;
}

/* What DONTNEED leaves in the shadow of sub-region page @pg. */
static void fc_dontneed_shadow(struct fc_writer *w, size_t pg)
{
	unsigned char *s = w->shadow + pg * PAGE_SIZE;

	if (pg < FC_SUB) {
		memset(s, 0, PAGE_SIZE); /* private anon */
	} else if (pg >= 2 * FC_SUB) {
		size_t foff = (w->id * FC_SUB + pg - 2 * FC_SUB) * PAGE_SIZE;

		for (size_t i = 0; i < PAGE_SIZE; i++)
			s[i] = file_byte(foff + i); /* the file again */
	}
}

static void *fc_writer_thread(void *arg)
{
	struct fc_writer *w = arg;
	struct fc *fc = w->fc;
	unsigned int cpu = w->id;
	unsigned char *buf = malloc(3 * PAGE_SIZE);
	struct test_rng r;
	int ret;

	TCHECK(buf, "no memory");
	test_rng_init(&r, test_seed() * 31 + w->id);
	for (unsigned int it = 0; it < fc->iters && !stopped(); it++) {
		unsigned int op = (unsigned int)test_rng_below(&r, 100);
		size_t off = test_rng_below(&r, FC_REG * PAGE_SIZE);
		size_t len = 1 + test_rng_below(&r, test_rng_below(&r, 4) ?
							    64 :
							    2 * PAGE_SIZE);
		size_t pg = off / PAGE_SIZE;
		size_t npg = 1 + test_rng_below(&r, 4);

		if (off + len > FC_REG * PAGE_SIZE)
			len = FC_REG * PAGE_SIZE - off;
		if (pg + npg > FC_REG)
			npg = FC_REG - pg;
		if (op < 45) {
			fill_random(&r, buf, len);
			ret = hetmm_cpu_write(fc->mm, cpu, w->base + off, buf,
					      len);
			TCHECK(!ret, "writer %u: write %#lx+%zu: %d", w->id,
			       w->base + off, len, ret);
			memcpy(w->shadow + off, buf, len);
		} else if (op < 75) {
			ret = hetmm_cpu_read(fc->mm, cpu, w->base + off, buf,
					     len);
			TCHECK(!ret, "writer %u: read: %d", w->id, ret);
			TCHECK(!memcmp(buf, w->shadow + off, len),
			       "writer %u: read %#lx+%zu differs from shadow",
			       w->id, w->base + off, len);
		} else if (op < 83) {
			ret = hetmm_madvise(fc->mm, w->base + pg * PAGE_SIZE,
					    npg * PAGE_SIZE, MADV_DONTNEED);
			TCHECK(!ret, "writer %u: DONTNEED: %d", w->id, ret);
			for (size_t i = pg; i < pg + npg; i++)
				fc_dontneed_shadow(w, i);
		} else if (op < 90) {
			unsigned long a = w->base + pg * PAGE_SIZE;
			char c = 0;

			ret = hetmm_mprotect(fc->mm, a, npg * PAGE_SIZE,
					     PROT_READ);
			TCHECK(!ret, "writer %u: mprotect RO: %d", w->id, ret);
			ret = hetmm_cpu_write(fc->mm, cpu, a, &c, 1);
			TCHECK(ret == -EFAULT,
			       "writer %u: write to RO page: %d", w->id, ret);
			ret = hetmm_cpu_read(fc->mm, cpu, a, buf, PAGE_SIZE);
			TCHECK(!ret && !memcmp(buf, w->shadow + pg * PAGE_SIZE,
					       PAGE_SIZE),
			       "writer %u: RO page read %d / differs", w->id,
			       ret);
			ret = hetmm_mprotect(fc->mm, a, npg * PAGE_SIZE, RW);
			TCHECK(!ret, "writer %u: mprotect RW: %d", w->id, ret);
		} else if (op < 95) {
			ret = hetmm_madvise(fc->mm, w->base + pg * PAGE_SIZE,
					    npg * PAGE_SIZE,
					    test_rng_below(&r, 2) ?
						    MADV_POPULATE_WRITE :
						    MADV_POPULATE_READ);
			TCHECK(!ret, "writer %u: populate: %d", w->id, ret);
		} else {
			unsigned long a = (w->base + off) & ~7UL;
			uint64_t old, new = test_rng_next(&r), prev = 0;

			memcpy(&old, w->shadow + (a - w->base), 8);
			if (test_rng_below(&r, 4) == 0)
				old ^= 1; /* a failing compare */
			ret = hetmm_cpu_cmpxchg(fc->mm, cpu, a, old, new, &prev);
			TCHECK(!ret, "writer %u: cmpxchg: %d", w->id, ret);
			TCHECK(!memcmp(&prev, w->shadow + (a - w->base), 8),
			       "writer %u: cmpxchg found %#llx", w->id,
			       (unsigned long long)prev);
			if (prev == old)
				memcpy(w->shadow + (a - w->base), &new, 8);
		}
	}
	free(buf);
	atomic_fetch_sub(&fc->writers_left, 1);
	return NULL;
}

/*
 * The churn CPU: fixed maps in the gaps between the writers' regions,
 * written, protected, moved and unmapped, against a per-page model of
 * (mapped, writable, first word).
 */
struct churn_page {
	bool mapped, writable;
	uint64_t val;
};

static void *fc_churn_thread(void *arg)
{
	struct fc *fc = arg;
	struct churn_page *cp = calloc(3 * FC_GAP, sizeof(*cp));
	const unsigned int cpu = 3;
	struct test_rng r;
	long ret;

	TCHECK(cp, "no memory");
	test_rng_init(&r, test_seed() * 31 + 7);
	while (atomic_load(&fc->writers_left) > 0 && !stopped()) {
		unsigned int g = (unsigned int)test_rng_below(&r, 3);
		size_t n = 1 + test_rng_below(&r, 6);
		size_t p = test_rng_below(&r, FC_GAP - n + 1);
		struct churn_page *c = cp + g * FC_GAP + p;
		unsigned long a = fc_gap(g) + p * PAGE_SIZE;
		bool shared = test_rng_below(&r, 3) == 0;

		ret = hetmm_mmap(fc->mm, a, n * PAGE_SIZE, RW,
				 (shared ? SHARED_ANON : PRIV_ANON) | MAP_FIXED,
				 -1, 0);
		TCHECK(ret == (long)a, "churn: mmap %#lx: %ld", a, ret);
		for (size_t i = 0; i < n; i++) {
			c[i] = (struct churn_page){ true, true, 0 };
			if (test_rng_below(&r, 2)) {
				c[i].val = test_rng_next(&r);
				ret = hetmm_cpu_write(fc->mm, cpu,
						      a + i * PAGE_SIZE,
						      &c[i].val, 8);
				TCHECK(!ret, "churn: write: %ld", ret);
			}
		}
		/* Write-protect a prefix of it. */
		size_t k = test_rng_below(&r, n + 1);

		if (k) {
			ret = hetmm_mprotect(fc->mm, a, k * PAGE_SIZE,
					     PROT_READ);
			TCHECK(!ret, "churn: mprotect: %ld", ret);
			for (size_t i = 0; i < k; i++)
				c[i].writable = false;
		}
		switch (test_rng_below(&r, 3)) {
		case 0: { /* munmap part of it */
			size_t u = test_rng_below(&r, n);

			ret = hetmm_munmap(fc->mm, a + u * PAGE_SIZE,
					   PAGE_SIZE);
			TCHECK(!ret, "churn: munmap: %ld", ret);
			c[u].mapped = false;
			break;
		}
		case 1: { /* move all of it to another gap (FIXED) */
			unsigned int g2 = (g + 1 + (unsigned int)test_rng_below(&r, 2)) % 3;
			size_t p2 = test_rng_below(&r, FC_GAP - n + 1);
			unsigned long b = fc_gap(g2) + p2 * PAGE_SIZE;
			struct churn_page *d = cp + g2 * FC_GAP + p2;

			if (k && k < n)
				break; /* two VMAs: not one mremap */
			ret = hetmm_mremap(fc->mm, a, n * PAGE_SIZE,
					   n * PAGE_SIZE,
					   MREMAP_MAYMOVE | MREMAP_FIXED, b);
			TCHECK(ret == (long)b, "churn: mremap: %ld", ret);
			for (size_t i = 0; i < n; i++) {
				struct churn_page t = c[i];

				c[i].mapped = false;
				d[i] = t;
			}
			break;
		}
		default:
			break;
		}
		/* Check a few pages of every gap. */
		for (int t = 0; t < 4; t++) {
			size_t q = test_rng_below(&r, 3 * FC_GAP);
			unsigned long qa = fc_gap((unsigned int)(q / FC_GAP)) +
					   (q % FC_GAP) * PAGE_SIZE;
			uint64_t v = 0;

			ret = hetmm_cpu_read(fc->mm, cpu, qa, &v, 8);
			if (!cp[q].mapped) {
				TCHECK(ret == -EFAULT,
				       "churn: read of unmapped %#lx: %ld", qa,
				       ret);
				continue;
			}
			TCHECK(!ret && v == cp[q].val,
			       "churn: read %#lx: %ld, %#llx want %#llx", qa,
			       ret, (unsigned long long)v,
			       (unsigned long long)cp[q].val);
			ret = hetmm_cpu_write(fc->mm, cpu, qa, &v, 8);
			TCHECK(ret == (cp[q].writable ? 0 : -EFAULT),
			       "churn: write %#lx (writable %d): %ld", qa,
			       cp[q].writable, ret);
		}
	}
	free(cp);
	return NULL;
}

static void test_fault_vs_vma_churn(void **state)
{
	struct hetmm_machine *m = *state;
	struct fc fc = { .m = m };
	struct fc_writer w[3];
	pthread_t t[4];
	unsigned char *buf = malloc(FC_REG * PAGE_SIZE);
	int fd;

	threads_reset();
	fc.mm = hetmm_process_create(m);
	assert_false(IS_ERR(fc.mm));
	fc.iters = test_scale(1500, 20000);
	atomic_init(&fc.writers_left, 3);
	fd = make_file(fc.mm, "fc-file", 3 * FC_SUB);
	for (unsigned int i = 0; i < 3; i++) {
		unsigned long b = fc_region(i);

		w[i] = (struct fc_writer){ .fc = &fc, .id = i, .base = b };
		w[i].shadow = calloc(FC_REG, PAGE_SIZE);
		assert_non_null(w[i].shadow);
		assert_int_equal(hetmm_mmap(fc.mm, b, FC_SUB * PAGE_SIZE, RW,
					    PRIV_ANON | MAP_FIXED, -1, 0),
				 b);
		b += FC_SUB * PAGE_SIZE;
		assert_int_equal(hetmm_mmap(fc.mm, b, FC_SUB * PAGE_SIZE, RW,
					    SHARED_ANON | MAP_FIXED, -1, 0),
				 b);
		b += FC_SUB * PAGE_SIZE;
		assert_int_equal(hetmm_mmap(fc.mm, b, FC_SUB * PAGE_SIZE, RW,
					    MAP_PRIVATE | MAP_FIXED, fd,
					    (off_t)(i * FC_SUB * PAGE_SIZE)),
				 b);
		for (size_t pg = 2 * FC_SUB; pg < FC_REG; pg++)
			fc_dontneed_shadow(&w[i], pg);
	}
	for (unsigned int i = 0; i < 3; i++)
		start(&t[i], fc_writer_thread, &w[i]);
	start(&t[3], fc_churn_thread, &fc);
	for (unsigned int i = 0; i < 4; i++)
		join(t[i]);
	threads_assert_ok(m);
	for (unsigned int i = 0; i < 3; i++) {
		ASSERT_OK(hetmm_cpu_read(fc.mm, i, fc_region(i), buf,
					 FC_REG * PAGE_SIZE));
		assert_memory_equal(buf, w[i].shadow, FC_REG * PAGE_SIZE);
		free(w[i].shadow);
	}
	free(buf);
	ASSERT_OK(hetmm_unlink(fc.mm, "fc-file"));
	hetmm_exit(fc.mm);
}

/* ------------------------------------------------ readers_vs_protect */

#define RP_PAGES 16

struct rp {
	struct mm_struct *mm;
	unsigned long region, scratch, stage;
	unsigned int rounds;
	atomic_bool done;
	atomic_ulong none_seq; /* odd while PROT_NONE may be in force */
	atomic_ulong reads, zero_words, data_words;
};

static uint64_t rp_word(size_t pg, size_t w)
{
	return 0x5eed000000000000ULL ^ ((uint64_t)pg << 24) ^ w;
}

static void *rp_reader_thread(void *arg)
{
	struct rp *rp = arg;
	static atomic_uint next_cpu;
	unsigned int cpu = atomic_fetch_add(&next_cpu, 1) % 3;
	uint64_t *buf = malloc(PAGE_SIZE);
	struct test_rng r;
	unsigned long zeros = 0, data = 0, reads = 0;

	TCHECK(buf, "no memory");
	test_rng_init(&r, test_seed() * 17 + cpu);
	while (!atomic_load(&rp->done) && !stopped()) {
		size_t pg = test_rng_below(&r, RP_PAGES);
		size_t w0 = test_rng_below(&r, 2) ? 0 :
						    test_rng_below(&r, 512);
		size_t nw = 1 + test_rng_below(&r, 512 - w0);
		unsigned long seq = atomic_load(&rp->none_seq);
		int ret = hetmm_cpu_read(rp->mm, cpu,
					 rp->region + pg * PAGE_SIZE + w0 * 8,
					 buf, nw * 8);

		reads++;
		if (ret == -EFAULT) {
			/* Only while PROT_NONE may be in force. */
			TCHECK((seq & 1) || seq != atomic_load(&rp->none_seq),
			       "reader: -EFAULT without PROT_NONE");
			continue;
		}
		TCHECK(!ret, "reader: read: %d", ret);
		for (size_t i = 0; i < nw; i++) {
			if (!buf[i]) {
				zeros++;
				continue;
			}
			TCHECK(buf[i] == rp_word(pg, w0 + i),
			       "reader cpu %u: page %zu word %zu is %#llx, not the data or zero",
			       cpu, pg, w0 + i,
			       (unsigned long long)buf[i]);
			data++;
		}
	}
	atomic_fetch_add(&rp->reads, reads);
	atomic_fetch_add(&rp->zero_words, zeros);
	atomic_fetch_add(&rp->data_words, data);
	free(buf);
	return NULL;
}

static void *rp_mutator_thread(void *arg)
{
	struct rp *rp = arg;
	const unsigned int cpu = 3;
	uint64_t *page = malloc(PAGE_SIZE);
	struct test_rng r;
	long ret;

	TCHECK(page, "no memory");
	test_rng_init(&r, test_seed() * 17 + 99);
	for (unsigned int round = 0; round < rp->rounds && !stopped();
	     round++) {
		size_t pg = test_rng_below(&r, RP_PAGES);
		size_t n = 1 + test_rng_below(&r, RP_PAGES - pg);
		unsigned long a = rp->region + pg * PAGE_SIZE;

		switch (test_rng_below(&r, 6)) {
		case 0:
			ret = hetmm_mprotect(rp->mm, a, n * PAGE_SIZE,
					     PROT_READ);
			TCHECK(!ret, "mprotect RO: %ld", ret);
			break;
		case 1:
			ret = hetmm_mprotect(rp->mm, a, n * PAGE_SIZE, RW);
			TCHECK(!ret, "mprotect RW: %ld", ret);
			break;
		case 2:
			/* PROT_NONE for a moment: readers may see -EFAULT. */
			atomic_fetch_add(&rp->none_seq, 1);
			ret = hetmm_mprotect(rp->mm, a, n * PAGE_SIZE,
					     PROT_NONE);
			TCHECK(!ret, "mprotect NONE: %ld", ret);
			ret = hetmm_mprotect(rp->mm, a, n * PAGE_SIZE,
					     PROT_READ);
			TCHECK(!ret, "mprotect RO: %ld", ret);
			atomic_fetch_add(&rp->none_seq, 1);
			break;
		case 3:
		case 4: {
			/* Zap, and reuse the freed pages with garbage. */
			ret = hetmm_madvise(rp->mm, a, n * PAGE_SIZE,
					    MADV_DONTNEED);
			TCHECK(!ret, "DONTNEED: %ld", ret);
			ret = hetmm_madvise(rp->mm, rp->scratch,
					    RP_PAGES * PAGE_SIZE,
					    MADV_DONTNEED);
			TCHECK(!ret, "DONTNEED scratch: %ld", ret);
			for (size_t i = 0; i < 512; i++)
				page[i] = 0xdeadbeefdeadbeefULL ^ round;
			for (size_t i = 0; i < RP_PAGES; i++) {
				ret = hetmm_cpu_write(rp->mm, cpu,
						      rp->scratch + i * PAGE_SIZE,
						      page, PAGE_SIZE);
				TCHECK(!ret, "scratch write: %ld", ret);
			}
			break;
		}
		default: {
			/* Fresh data, written where nobody reads, swapped
			 * in with one mremap(FIXED). */
			ret = hetmm_mmap(rp->mm, rp->stage, n * PAGE_SIZE, RW,
					 PRIV_ANON | MAP_FIXED, -1, 0);
			TCHECK(ret == (long)rp->stage, "stage mmap: %ld", ret);
			for (size_t i = 0; i < n; i++) {
				for (size_t w = 0; w < 512; w++)
					page[w] = rp_word(pg + i, w);
				ret = hetmm_cpu_write(rp->mm, cpu,
						      rp->stage + i * PAGE_SIZE,
						      page, PAGE_SIZE);
				TCHECK(!ret, "stage write: %ld", ret);
			}
			ret = hetmm_mremap(rp->mm, rp->stage, n * PAGE_SIZE,
					   n * PAGE_SIZE,
					   MREMAP_MAYMOVE | MREMAP_FIXED, a);
			TCHECK(ret == (long)a, "mremap: %ld", ret);
			break;
		}
		}
	}
	free(page);
	atomic_store(&rp->done, true);
	return NULL;
}

static void test_readers_vs_protect(void **state)
{
	struct hetmm_machine *m = *state;
	struct rp rp = { 0 };
	uint64_t *page = malloc(PAGE_SIZE);
	pthread_t t[4];
	long a;

	threads_reset();
	rp.mm = hetmm_process_create(m);
	assert_false(IS_ERR(rp.mm));
	rp.rounds = test_scale(600, 10000);
	a = hetmm_mmap(rp.mm, 0, 3 * RP_PAGES * PAGE_SIZE, RW, PRIV_ANON, -1, 0);
	assert_true(a > 0);
	rp.region = (unsigned long)a;
	rp.scratch = rp.region + RP_PAGES * PAGE_SIZE;
	rp.stage = rp.scratch + RP_PAGES * PAGE_SIZE;
	ASSERT_OK(hetmm_munmap(rp.mm, rp.stage, RP_PAGES * PAGE_SIZE));
	for (size_t pg = 0; pg < RP_PAGES; pg++) {
		for (size_t w = 0; w < 512; w++)
			page[w] = rp_word(pg, w);
		ASSERT_OK(hetmm_cpu_write(rp.mm, 3, rp.region + pg * PAGE_SIZE,
					  page, PAGE_SIZE));
	}
	for (int i = 0; i < 3; i++)
		start(&t[i], rp_reader_thread, &rp);
	start(&t[3], rp_mutator_thread, &rp);
	for (int i = 0; i < 4; i++)
		join(t[i]);
	threads_assert_ok(m);
	/* The readers did look at both kinds of contents. */
	assert_true(atomic_load(&rp.reads) > 0);
	print_message("# readers: %lu reads, %lu data words, %lu zero words\n",
		      atomic_load(&rp.reads), atomic_load(&rp.data_words),
		      atomic_load(&rp.zero_words));
	free(page);
	hetmm_exit(rp.mm);
}

/* ------------------------------------------------ fork_vs_writers */

#define FW_PAGES 24 /* per writer */
#define FW_WRITERS 3
#define FW_KEEP 3   /* children alive at once */

struct fw {
	struct mm_struct *parent;
	unsigned long base;
	unsigned int iters;
	/* Per page: writes started / completed (value c written = started). */
	atomic_ulong started[FW_WRITERS * FW_PAGES];
	atomic_ulong completed[FW_WRITERS * FW_PAGES];
	unsigned long min_forks;
	atomic_int writers_left;
	atomic_ulong forks;
};

static uint64_t fw_word(size_t pg, uint64_t c, size_t w)
{
	return ((uint64_t)pg << 48) ^ (c << 12) ^ w;
}

static void *fw_writer_thread(void *arg)
{
	void **a = arg;
	struct fw *fw = a[0];
	unsigned int id = (unsigned int)(uintptr_t)a[1];
	uint64_t *page = malloc(PAGE_SIZE);
	struct test_rng r;

	TCHECK(page, "no memory");
	test_rng_init(&r, test_seed() * 13 + id);
	/* At least iters writes, and on until enough forks were checked. */
	for (unsigned int it = 0;
	     (it < fw->iters || atomic_load(&fw->forks) < fw->min_forks) &&
	     !stopped();
	     it++) {
		size_t pg = id * FW_PAGES + test_rng_below(&r, FW_PAGES);
		uint64_t c = atomic_load(&fw->started[pg]) + 1;
		int ret;

		atomic_store(&fw->started[pg], c);
		for (size_t w = 0; w < 512; w++)
			page[w] = fw_word(pg, c, w);
		/* One page-aligned page: one access, atomic to a shootdown. */
		ret = hetmm_cpu_write(fw->parent, id,
				      fw->base + pg * PAGE_SIZE, page,
				      PAGE_SIZE);
		TCHECK(!ret, "writer %u: write: %d", id, ret);
		atomic_store(&fw->completed[pg], c);
	}
	free(page);
	atomic_fetch_sub(&fw->writers_left, 1);
	return NULL;
}

/*
 * Check that @child's copy of every page is one whole write, not older
 * than what completed before the fork (@lo) nor newer than what had
 * started when it returned (@hi); @last (if not NULL) gets the values.
 */
static const char *fw_check_child(struct fw *fw, struct mm_struct *child,
				  unsigned int cpu, const uint64_t *lo,
				  const uint64_t *hi, uint64_t *got,
				  uint64_t *page, size_t *bad_pg)
{
	for (size_t pg = 0; pg < FW_WRITERS * FW_PAGES; pg++) {
		uint64_t c;

		*bad_pg = pg;
		if (hetmm_cpu_read(child, cpu, fw->base + pg * PAGE_SIZE, page,
				   PAGE_SIZE))
			return "read failed";
		c = (page[0] >> 12) & 0xfffffffffULL;
		if (!page[0] && !page[1])
			c = 0;
		for (size_t w = 0; w < 512; w++)
			if (page[w] != (c ? fw_word(pg, c, w) : 0))
				return "torn page";
		if (c < lo[pg] || c > hi[pg])
			return "not a snapshot of the fork's time";
		got[pg] = c;
	}
	return NULL;
}

/* A child still holds the snapshot @snap it had when it was forked. */
static bool fw_recheck(struct fw *fw, struct mm_struct *kid, unsigned int cpu,
		       const uint64_t *snap, uint64_t *page, size_t *bad_pg)
{
	for (size_t pg = 0; pg < FW_WRITERS * FW_PAGES; pg++) {
		*bad_pg = pg;
		if (snap[pg] == UINT64_MAX)
			continue; /* the child wrote it */
		if (hetmm_cpu_read(kid, cpu, fw->base + pg * PAGE_SIZE, page,
				   PAGE_SIZE))
			return false;
		for (size_t w = 0; w < 512; w++)
			if (page[w] != (snap[pg] ? fw_word(pg, snap[pg], w) : 0))
				return false;
	}
	return true;
}

static void *fw_forker_thread(void *arg)
{
	struct fw *fw = arg;
	const unsigned int cpu = 3;
	const size_t np = FW_WRITERS * FW_PAGES;
	struct mm_struct *kids[FW_KEEP] = { NULL };
	uint64_t (*snap)[FW_WRITERS * FW_PAGES] =
		calloc(FW_KEEP, sizeof(*snap));
	uint64_t *lo = calloc(np, 8), *hi = calloc(np, 8), *prev = calloc(np, 8);
	uint64_t *page = malloc(PAGE_SIZE);
	struct test_rng r;
	unsigned int n = 0;
	const char *why;
	size_t bad;

	TCHECK(snap && lo && hi && prev && page, "no memory");
	test_rng_init(&r, test_seed() * 13 + 77);
	while (atomic_load(&fw->writers_left) > 0 && !stopped()) {
		unsigned int slot = n % FW_KEEP;
		struct mm_struct *c;

		if (kids[slot]) {
			TCHECK(fw_recheck(fw, kids[slot], cpu, snap[slot], page,
					  &bad),
			       "child slot %u page %zu changed after its fork",
			       slot, bad);
			hetmm_exit(kids[slot]);
		}
		kids[slot] = NULL;
		for (size_t pg = 0; pg < np; pg++)
			lo[pg] = atomic_load(&fw->completed[pg]);
		c = hetmm_fork(fw->parent);
		TCHECK(!IS_ERR(c), "fork: %ld", PTR_ERR(c));
		kids[slot] = c;
		for (size_t pg = 0; pg < np; pg++)
			hi[pg] = atomic_load(&fw->started[pg]);
		why = fw_check_child(fw, c, cpu, lo, hi, snap[slot], page, &bad);
		TCHECK(!why, "child %u page %zu: %s (c %#llx..%#llx, page[0] %#llx)",
		       n, bad, why, (unsigned long long)lo[bad],
		       (unsigned long long)hi[bad],
		       (unsigned long long)page[0]);
		/* Later children never see older data. */
		for (size_t pg = 0; pg < np; pg++) {
			TCHECK(snap[slot][pg] >= prev[pg],
			       "child %u page %zu went back in time", n, pg);
			prev[pg] = snap[slot][pg];
		}
		/* The child writes its own copy (COW on its side). */
		if (test_rng_below(&r, 2)) {
			size_t pg = test_rng_below(&r, np);
			uint64_t v = 0;

			TCHECK(!hetmm_cpu_write(c, cpu,
						fw->base + pg * PAGE_SIZE + 8,
						&v, 8),
			       "child write");
			snap[slot][pg] = UINT64_MAX; /* not checked again */
		}
		n++;
		atomic_store(&fw->forks, n);
	}
	/* The children that are left still hold their snapshots. */
	for (unsigned int s = 0; s < FW_KEEP; s++) {
		if (!kids[s])
			continue;
		TCHECK(fw_recheck(fw, kids[s], cpu, snap[s], page, &bad),
		       "child slot %u page %zu changed after its fork", s, bad);
		hetmm_exit(kids[s]);
		kids[s] = NULL;
	}
	free(snap);
	free(lo);
	free(hi);
	free(prev);
	free(page);
	return NULL;
}

static void test_fork_vs_writers(void **state)
{
	struct hetmm_machine *m = *state;
	struct fw *fw = calloc(1, sizeof(*fw));
	void *args[FW_WRITERS][2];
	pthread_t t[FW_WRITERS + 1];
	uint64_t *page = malloc(PAGE_SIZE);
	long a;

	assert_non_null(fw);
	threads_reset();
	fw->parent = hetmm_process_create(m);
	assert_false(IS_ERR(fw->parent));
	fw->iters = test_scale(1500, 30000);
	fw->min_forks = test_scale(40, 1000);
	atomic_init(&fw->writers_left, FW_WRITERS);
	a = hetmm_mmap(fw->parent, 0, FW_WRITERS * FW_PAGES * PAGE_SIZE, RW,
		       PRIV_ANON, -1, 0);
	assert_true(a > 0);
	fw->base = (unsigned long)a;
	for (unsigned int i = 0; i < FW_WRITERS; i++) {
		args[i][0] = fw;
		args[i][1] = (void *)(uintptr_t)i;
		start(&t[i], fw_writer_thread, args[i]);
	}
	start(&t[FW_WRITERS], fw_forker_thread, fw);
	for (unsigned int i = 0; i <= FW_WRITERS; i++)
		join(t[i]);
	threads_assert_ok(m);
	/* The parent holds the last write of every page. */
	for (size_t pg = 0; pg < FW_WRITERS * FW_PAGES; pg++) {
		uint64_t c = atomic_load(&fw->completed[pg]);

		ASSERT_OK(hetmm_cpu_read(fw->parent, 0, fw->base + pg * PAGE_SIZE,
					 page, PAGE_SIZE));
		for (size_t w = 0; w < 512; w++)
			assert_int_equal(page[w], c ? fw_word(pg, c, w) : 0);
	}
	print_message("# %lu forks\n", atomic_load(&fw->forks));
	assert_true(atomic_load(&fw->forks) > 0);
	free(page);
	hetmm_exit(fw->parent);
	free(fw);
}

/* ------------------------------------------------ multi_process */

#define MP_SLICE 8 /* pages of each shared region per thread */
#define MP_PRIV 16 /* private churn pages per thread */

struct mp {
	struct mm_struct *mm[4];
	unsigned long shanon, shfile, priv;
	unsigned int iters;
	unsigned char *shadow[4]; /* 2 * MP_SLICE pages: anon slice, file slice */
};

struct mp_arg {
	struct mp *mp;
	unsigned int id;
};

static void *mp_thread(void *arg)
{
	struct mp_arg *ma = arg;
	struct mp *mp = ma->mp;
	const unsigned int id = ma->id;
	unsigned char *sh = mp->shadow[id];
	unsigned char *buf = malloc(PAGE_SIZE);
	unsigned long priv = mp->priv + id * MP_PRIV * PAGE_SIZE;
	uint64_t pv[MP_PRIV] = { 0 };
	bool pmapped[MP_PRIV] = { false };
	struct test_rng r;
	long ret;

	TCHECK(buf, "no memory");
	test_rng_init(&r, test_seed() * 11 + id);
	for (unsigned int it = 0; it < mp->iters && !stopped(); it++) {
		struct mm_struct *mm = mp->mm[id];
		unsigned int op = (unsigned int)test_rng_below(&r, 100);
		size_t half = test_rng_below(&r, 2);
		size_t pg = test_rng_below(&r, MP_SLICE);
		size_t off = test_rng_below(&r, PAGE_SIZE);
		size_t len = 1 + test_rng_below(&r, PAGE_SIZE - off);
		unsigned long a = (half ? mp->shfile : mp->shanon) +
				  (id * MP_SLICE + pg) * PAGE_SIZE + off;
		unsigned char *s = sh + (half * MP_SLICE + pg) * PAGE_SIZE + off;

		if (op < 35) {
			fill_random(&r, buf, len);
			ret = hetmm_cpu_write(mm, id, a, buf, len);
			TCHECK(!ret, "mp %u: shared write: %ld", id, ret);
			memcpy(s, buf, len);
		} else if (op < 60) {
			ret = hetmm_cpu_read(mm, id, a, buf, len);
			TCHECK(!ret && !memcmp(buf, s, len),
			       "mp %u: shared read %#lx+%zu: %ld / differs", id,
			       a, len, ret);
		} else if (op < 66) {
			/* DONTNEED on shared memory changes nothing. */
			ret = hetmm_madvise(mm, a & PAGE_MASK, PAGE_SIZE,
					    MADV_DONTNEED);
			TCHECK(!ret, "mp %u: DONTNEED: %ld", id, ret);
		} else if (op < 92) {
			/* Private churn in this process only. */
			size_t q = test_rng_below(&r, MP_PRIV);
			unsigned long pa = priv + q * PAGE_SIZE;
			uint64_t v = 0;

			switch (test_rng_below(&r, 4)) {
			case 0:
				ret = hetmm_mmap(mm, pa, PAGE_SIZE, RW,
						 PRIV_ANON | MAP_FIXED, -1, 0);
				TCHECK(ret == (long)pa, "mp %u: mmap: %ld", id,
				       ret);
				pmapped[q] = true;
				pv[q] = 0;
				break;
			case 1:
				ret = hetmm_munmap(mm, pa, PAGE_SIZE);
				TCHECK(!ret, "mp %u: munmap: %ld", id, ret);
				pmapped[q] = false;
				break;
			case 2:
				v = test_rng_next(&r);
				ret = hetmm_cpu_write(mm, id, pa, &v, 8);
				TCHECK(ret == (pmapped[q] ? 0 : -EFAULT),
				       "mp %u: private write: %ld", id, ret);
				if (!ret)
					pv[q] = v;
				break;
			default:
				ret = hetmm_cpu_read(mm, id, pa, &v, 8);
				TCHECK(ret == (pmapped[q] ? 0 : -EFAULT) &&
					       (ret || v == pv[q]),
				       "mp %u: private read: %ld %#llx want %#llx",
				       id, ret, (unsigned long long)v,
				       (unsigned long long)pv[q]);
				break;
			}
		} else if (id == 3 && op < 96) {
			/* Replace this process by a fork of itself. */
			struct mm_struct *c = hetmm_fork(mm);

			TCHECK(!IS_ERR(c), "mp %u: fork: %ld", id, PTR_ERR(c));
			mp->mm[id] = c;
			hetmm_exit(mm);
		} else {
			ret = hetmm_mprotect(mm, a & PAGE_MASK, PAGE_SIZE,
					     PROT_READ);
			TCHECK(!ret, "mp %u: mprotect: %ld", id, ret);
			ret = hetmm_cpu_write(mm, id, a, buf, 1);
			TCHECK(ret == -EFAULT, "mp %u: write to RO: %ld", id,
			       ret);
			ret = hetmm_mprotect(mm, a & PAGE_MASK, PAGE_SIZE, RW);
			TCHECK(!ret, "mp %u: mprotect: %ld", id, ret);
		}
	}
	free(buf);
	return NULL;
}

static void test_multi_process(void **state)
{
	struct hetmm_machine *m = *state;
	struct mp mp = { 0 };
	struct mp_arg args[4];
	pthread_t t[4];
	unsigned char *buf = malloc(PAGE_SIZE);
	struct mm_struct *p;
	int fd;
	long a;

	threads_reset();
	p = hetmm_process_create(m);
	assert_false(IS_ERR(p));
	mp.iters = test_scale(1500, 20000);
	fd = make_file(p, "mp-file", 4 * MP_SLICE);
	a = hetmm_mmap(p, 0, 4 * MP_SLICE * PAGE_SIZE, RW, SHARED_ANON, -1, 0);
	assert_true(a > 0);
	mp.shanon = (unsigned long)a;
	a = hetmm_mmap(p, 0, 4 * MP_SLICE * PAGE_SIZE, RW, MAP_SHARED, fd, 0);
	assert_true(a > 0);
	mp.shfile = (unsigned long)a;
	mp.priv = 0x20000000UL;
	mp.mm[0] = p;
	for (int i = 1; i < 4; i++) {
		mp.mm[i] = hetmm_fork(p);
		assert_false(IS_ERR(mp.mm[i]));
	}
	for (unsigned int i = 0; i < 4; i++) {
		mp.shadow[i] = calloc(2 * MP_SLICE, PAGE_SIZE);
		assert_non_null(mp.shadow[i]);
		for (size_t b = 0; b < MP_SLICE * PAGE_SIZE; b++)
			mp.shadow[i][MP_SLICE * PAGE_SIZE + b] =
				file_byte(i * MP_SLICE * PAGE_SIZE + b);
		args[i] = (struct mp_arg){ &mp, i };
		start(&t[i], mp_thread, &args[i]);
	}
	for (int i = 0; i < 4; i++)
		join(t[i]);
	threads_assert_ok(m);
	/* Every process sees every slice as its owner left it. */
	for (int i = 0; i < 4; i++)
		for (unsigned int o = 0; o < 4; o++)
			for (size_t pg = 0; pg < 2 * MP_SLICE; pg++) {
				unsigned long base = pg < MP_SLICE ? mp.shanon :
								     mp.shfile;

				ASSERT_OK(hetmm_cpu_read(mp.mm[i], 0,
							 base + (o * MP_SLICE + pg % MP_SLICE) * PAGE_SIZE,
							 buf, PAGE_SIZE));
				assert_memory_equal(buf,
						    mp.shadow[o] + pg * PAGE_SIZE,
						    PAGE_SIZE);
			}
	/* And the file holds the file slices. */
	for (unsigned int o = 0; o < 4; o++)
		for (size_t pg = 0; pg < MP_SLICE; pg++) {
			assert_int_equal(hetmm_pread(mp.mm[0],
						     fd, buf, PAGE_SIZE,
						     (off_t)((o * MP_SLICE + pg) *
							     PAGE_SIZE)),
					 PAGE_SIZE);
			assert_memory_equal(buf,
					    mp.shadow[o] + (MP_SLICE + pg) * PAGE_SIZE,
					    PAGE_SIZE);
		}
	ASSERT_OK(hetmm_unlink(mp.mm[0], "mp-file"));
	for (int i = 0; i < 4; i++) {
		hetmm_exit(mp.mm[i]);
		free(mp.shadow[i]);
	}
	free(buf);
}

/* ------------------------------------------------ truncate_vs_faults */

#define TF_PAGES 16

struct tf {
	struct mm_struct *mm[2];
	int fd;
	unsigned long shmap, pmap; /* same addresses in both processes */
	unsigned int rounds;
	atomic_bool done;
};

static void *tf_reader_thread(void *arg)
{
	void **a = arg;
	struct tf *tf = a[0];
	unsigned int id = (unsigned int)(uintptr_t)a[1];
	struct mm_struct *mm = tf->mm[id];
	unsigned char *buf = malloc(PAGE_SIZE);
	struct test_rng r;

	TCHECK(buf, "no memory");
	test_rng_init(&r, test_seed() * 5 + id);
	while (!atomic_load(&tf->done) && !stopped()) {
		size_t pg = test_rng_below(&r, TF_PAGES);
		int ret = hetmm_cpu_read(mm, id, tf->shmap + pg * PAGE_SIZE,
					 buf, PAGE_SIZE);

		if (ret == -EFAULT)
			continue; /* beyond EOF at that moment */
		TCHECK(!ret, "reader %u: %d", id, ret);
		for (size_t i = 0; i < PAGE_SIZE; i++)
			TCHECK(!buf[i] || buf[i] == file_byte(pg * PAGE_SIZE + i),
			       "reader %u: page %zu byte %zu is %#x", id, pg, i,
			       buf[i]);
	}
	free(buf);
	return NULL;
}

/* Private COW copies in process 0: own value, or (truncated) 0/-EFAULT. */
static void *tf_cow_thread(void *arg)
{
	struct tf *tf = arg;
	const unsigned int cpu = 2;
	uint64_t val[TF_PAGES] = { 0 };
	struct test_rng r;

	test_rng_init(&r, test_seed() * 5 + 9);
	while (!atomic_load(&tf->done) && !stopped()) {
		size_t pg = test_rng_below(&r, TF_PAGES);
		unsigned long a = tf->pmap + pg * PAGE_SIZE + 64;
		uint64_t v = test_rng_next(&r) | 1, got = 0;
		int ret;

		if (test_rng_below(&r, 2)) {
			ret = hetmm_cpu_write(tf->mm[0], cpu, a, &v, 8);
			TCHECK(!ret || ret == -EFAULT, "cow write: %d", ret);
			if (!ret)
				val[pg] = v;
			continue;
		}
		ret = hetmm_cpu_read(tf->mm[0], cpu, a, &got, 8);
		if (ret == -EFAULT)
			continue;
		TCHECK(!ret, "cow read: %d", ret);
		TCHECK(got == val[pg] || got == 0 ||
			       got == file_word(pg * PAGE_SIZE + 64),
		       "cow page %zu holds %#llx (own %#llx)", pg,
		       (unsigned long long)got, (unsigned long long)val[pg]);
	}
	return NULL;
}

static void *tf_truncate_thread(void *arg)
{
	struct tf *tf = arg;
	struct test_rng r;

	test_rng_init(&r, test_seed() * 5 + 3);
	for (unsigned int i = 0; i < tf->rounds && !stopped(); i++) {
		size_t pages = test_rng_below(&r, TF_PAGES + 1);
		int ret = hetmm_ftruncate(tf->mm[i & 1], tf->fd,
					  (off_t)(pages * PAGE_SIZE));

		TCHECK(!ret, "ftruncate: %d", ret);
		if (test_rng_below(&r, 4) == 0) {
			ret = hetmm_madvise(tf->mm[1], tf->shmap,
					    TF_PAGES * PAGE_SIZE,
					    MADV_POPULATE_READ);
			TCHECK(!ret || ret == -EFAULT, "populate: %d", ret);
		}
	}
	atomic_store(&tf->done, true);
	return NULL;
}

static void test_truncate_vs_faults(void **state)
{
	struct hetmm_machine *m = *state;
	struct tf tf = { 0 };
	void *args[2][2];
	pthread_t t[4];
	long a;

	threads_reset();
	tf.mm[0] = hetmm_process_create(m);
	assert_false(IS_ERR(tf.mm[0]));
	tf.rounds = test_scale(400, 8000);
	tf.fd = make_file(tf.mm[0], "tf-file", TF_PAGES);
	a = hetmm_mmap(tf.mm[0], 0, TF_PAGES * PAGE_SIZE, PROT_READ, MAP_SHARED,
		       tf.fd, 0);
	assert_true(a > 0);
	tf.shmap = (unsigned long)a;
	a = hetmm_mmap(tf.mm[0], 0, TF_PAGES * PAGE_SIZE, RW, MAP_PRIVATE,
		       tf.fd, 0);
	assert_true(a > 0);
	tf.pmap = (unsigned long)a;
	tf.mm[1] = hetmm_fork(tf.mm[0]);
	assert_false(IS_ERR(tf.mm[1]));
	for (unsigned int i = 0; i < 2; i++) {
		args[i][0] = &tf;
		args[i][1] = (void *)(uintptr_t)i;
		start(&t[i], tf_reader_thread, args[i]);
	}
	start(&t[2], tf_cow_thread, &tf);
	start(&t[3], tf_truncate_thread, &tf);
	for (int i = 0; i < 4; i++)
		join(t[i]);
	threads_assert_ok(m);
	ASSERT_OK(hetmm_unlink(tf.mm[0], "tf-file"));
	hetmm_exit(tf.mm[1]);
	hetmm_exit(tf.mm[0]);
}

/* ------------------------------------------------------ mremap vs rmap */

#define MR_PAGES 8

struct mr {
	struct mm_struct *mm;
	unsigned long at[2][2]; /* [region][slot]: the two homes of a region */
	struct folio *folios[2][MR_PAGES];
	unsigned int rounds;
	atomic_bool done;
};

/* The folio mapped at @addr with a reference, or NULL. */
static struct folio *mr_folio_get(struct mm_struct *mm, unsigned long addr)
{
	struct folio *folio = NULL;
	spinlock_t *ptl;
	pmd_t *pmd;
	pte_t *pte;

	mmap_read_lock(mm);
	pmd = mm_find_pmd(mm, addr);
	pte = pmd ? pte_offset_map_lock(mm, pmd, addr, &ptl) : NULL;
	if (pte) {
		pte_t e = ptep_get(pte);

		if (pte_present(e) && !pte_special(e)) {
			folio = page_folio(pfn_to_page(mm->machine,
						       pte_pfn(e)));
			folio_get(folio);
		}
		spin_unlock(ptl);
	}
	mmap_read_unlock(mm);
	return folio;
}

static void *mr_mover_thread(void *arg)
{
	struct mr *mr = arg;

	for (unsigned int r = 0; r < mr->rounds && !stopped(); r++) {
		for (unsigned int i = 0; i < 2; i++) {
			unsigned long from = mr->at[i][r & 1];
			unsigned long to = mr->at[i][!(r & 1)];
			long ret = hetmm_mremap(mr->mm, from,
						MR_PAGES * PAGE_SIZE,
						MR_PAGES * PAGE_SIZE,
						MREMAP_MAYMOVE | MREMAP_FIXED,
						to);

			TCHECK(ret == (long)to, "mremap %#lx -> %#lx: %ld",
			       from, to, ret);
		}
	}
	atomic_store(&mr->done, true);
	return NULL;
}

static void *mr_walker_thread(void *arg)
{
	struct mr *mr = arg;

	while (!atomic_load(&mr->done) && !stopped()) {
		for (unsigned int i = 0; i < 2; i++) {
			for (unsigned int p = 0; p < MR_PAGES; p++) {
				int n = rmap_count_ptes(mr->folios[i][p]);

				TCHECK(n == 1,
				       "region %u page %u: rmap found %d "
				       "mappings",
				       i, p, n);
			}
		}
	}
	return NULL;
}

static void test_mremap_vs_rmap(void **state)
{
	struct hetmm_machine *m = *state;
	size_t len = MR_PAGES * PAGE_SIZE;
	struct mr mr = { 0 };
	unsigned char b;
	pthread_t t[2];
	int fd;

	threads_reset();
	mr.mm = hetmm_process_create(m);
	assert_false(IS_ERR(mr.mm));
	mr.rounds = test_scale(2000, 20000);
	fd = make_file(mr.mm, "mr-file", MR_PAGES);
	for (unsigned int i = 0; i < 2; i++) {
		/* Two homes per region: a 2 * len reservation, split. */
		long a = hetmm_mmap(mr.mm, 0, 2 * len, RW,
				    i ? MAP_SHARED : PRIV_ANON, i ? fd : -1, 0);

		assert_true(a > 0);
		mr.at[i][0] = (unsigned long)a;
		mr.at[i][1] = (unsigned long)a + len;
		ASSERT_OK(hetmm_munmap(mr.mm, mr.at[i][1], len));
		for (unsigned int p = 0; p < MR_PAGES; p++) {
			unsigned long va = mr.at[i][0] + p * PAGE_SIZE;

			b = (unsigned char)(i * 16 + p);
			ASSERT_OK(hetmm_cpu_write(mr.mm, 0, va, &b, 1));
			mr.folios[i][p] = mr_folio_get(mr.mm, va);
			assert_non_null(mr.folios[i][p]);
			assert_int_equal(rmap_count_ptes(mr.folios[i][p]), 1);
		}
	}
	start(&t[0], mr_mover_thread, &mr);
	start(&t[1], mr_walker_thread, &mr);
	join(t[0]);
	join(t[1]);
	threads_assert_ok(m);
	/* The pages and their bytes ended up at the last home. */
	for (unsigned int i = 0; i < 2; i++) {
		unsigned long home = mr.at[i][mr.rounds & 1];

		for (unsigned int p = 0; p < MR_PAGES; p++) {
			struct folio *f = mr_folio_get(mr.mm,
						       home + p * PAGE_SIZE);

			assert_ptr_equal(f, mr.folios[i][p]);
			folio_put(f);
			ASSERT_OK(hetmm_cpu_read(mr.mm, 0, home + p * PAGE_SIZE,
						 &b, 1));
			assert_int_equal(b, i * 16 + p);
			folio_put(mr.folios[i][p]);
		}
	}
	ASSERT_OK(hetmm_close(mr.mm, fd));
	ASSERT_OK(hetmm_unlink(mr.mm, "mr-file"));
	hetmm_exit(mr.mm);
	threads_assert_ok(m);
}

static int conc_setup(void **state)
{
	struct hetmm_machine *m = test_machine_new(64, true);

	/* The tests use CPUs 0..3. */
	assert_true(m->cfg.nr_cpus >= 4);
	*state = m;
	return 0;
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, conc_setup, \
					      test_machine_teardown)
	const struct CMUnitTest tests[] = {
		T(test_fault_vs_vma_churn),
		T(test_readers_vs_protect),
		T(test_fork_vs_writers),
		T(test_multi_process),
		T(test_truncate_vs_faults),
		T(test_mremap_vs_rmap),
	};

	test_seed();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
