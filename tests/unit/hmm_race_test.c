// SPDX-License-Identifier: MIT
/*
 * hmm_race_test.c - a simulated CPU and a device race on one range
 * (issue 4, "Races").
 *
 * One host thread is a CPU of the process: it writes and reads its pages,
 * mprotects them read-only and PROT_NONE and back, punches them out with
 * munmap and maps them again, and drops them with MADV_DONTNEED. Another
 * host thread drives one or two dmirror devices on the same range: device
 * reads and writes (hmm_range_fault faults), migrations to its memory and
 * back, and snapshots. The main thread is the referee.
 *
 * Ownership makes the expected contents knowable: the range is cut into
 * slots, and for each round the referee gives every slot to the CPU or to
 * the device. Only the owner writes or reads the bytes of a slot, and it
 * keeps the flat-memory oracle of those bytes. The device still moves the
 * CPU's pages (MIGRATE_TO_SYS over the whole range) and snapshots them,
 * and the CPU faults back pages the device migrated earlier, so the page
 * tables, the notifier protocol and the migration code race for real;
 * only the bytes never have two users at once (that would be a race in
 * the simulated program, not in the simulator, and TSan would say so).
 *
 * Every value written encodes (owner, round, page, word) with the top bit
 * set, so a byte that was never written (or came from another place)
 * never matches the oracle by chance. Between rounds all threads meet at
 * a barrier and the referee runs hetmm_check(), checks every snapshot
 * byte, compares the device memory in use with what the snapshots report,
 * and compares every byte with the oracle: through a device read (which
 * leaves pages where they are) or through CPU reads (which fault
 * device-private pages back), alternately.
 *
 * The seed is printed; HETMM_SEED replays it, HETMM_LONG=1 runs longer.
 */
#include <pthread.h>
#include <stdatomic.h>

#include <hetmm/check.h>
#include <hetmm/dmirror.h>
#include <hetmm/mm.h>
#include <hetmm/uapi.h>

#include "harness.h"

#define PG PAGE_SIZE
#define WORDS (PG / 8)
#define RW (PROT_READ | PROT_WRITE)
#define PRIV_ANON (MAP_PRIVATE | MAP_ANONYMOUS)

#define NSLOT 8
#define SLOT_PAGES 4
#define NPAGES (NSLOT * SLOT_PAGES)
#define MAX_DEV 2

enum { OWN_CPU, OWN_DEV };

/* CPU numbers: the referee uses 0, the CPU thread 1. */
#define REF_CPU 0
#define RACE_CPU 1

struct race {
	struct hetmm_machine *m;
	struct mm_struct *mm;
	struct dmirror *d[MAX_DEV];
	unsigned int minor[MAX_DEV];
	unsigned int nd;
	bool coherent;
	unsigned long base;
	unsigned int rounds;
	uint64_t seed;
	/* Written by the referee before the start barrier of a round. */
	unsigned int round;
	uint8_t owner[NSLOT];
	bool stop;
	/* Each slot's words are written only by the slot's owner. */
	uint64_t *oracle;
	pthread_barrier_t bar;
	/* What happened, for the summary line (one writer each). */
	unsigned long cpu_ops, dev_ops, remaps, efault_seen, sys_einval;
	unsigned long on_dev_enoent, ro_local;
};

/* ------------------------------------------------------- thread failures */

static atomic_bool r_failed;
static pthread_mutex_t r_msg_lock = PTHREAD_MUTEX_INITIALIZER;
static char r_msg[1024];

static void rfail(const char *fmt, ...) __printf(1, 2);
static void rfail(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&r_msg_lock);
	if (!atomic_load(&r_failed)) {
		va_start(ap, fmt);
		vsnprintf(r_msg, sizeof(r_msg), fmt, ap);
		va_end(ap);
		atomic_store(&r_failed, true);
	}
	pthread_mutex_unlock(&r_msg_lock);
}

/* Record the first failure and leave the current function (-1). */
#define RCHECK(cond, fmt, ...)                                   \
	do {                                                     \
		if (!(cond)) {                                   \
			rfail("%s:%d: " fmt, __func__, __LINE__, \
			      ##__VA_ARGS__);                    \
			return -1;                               \
		}                                                \
	} while (0)

/* ---------------------------------------------------------------- values */

/* A word written by @owner in @round (@gen: a per-round write counter). */
static uint64_t val(const struct race *r, unsigned int owner, unsigned int gen,
		    unsigned long page, unsigned long w)
{
	return 1ULL << 63 | (uint64_t)owner << 61 | (r->seed & 0x1f) << 56 |
	       (uint64_t)(gen & 0xfffff) << 36 | (uint64_t)page << 20 | w;
}

static uint64_t *oracle_page(const struct race *r, unsigned long page)
{
	return r->oracle + page * WORDS;
}

static unsigned long page_addr(const struct race *r, unsigned long page)
{
	return r->base + page * PG;
}

static unsigned long slot_addr(const struct race *r, unsigned int s)
{
	return page_addr(r, (unsigned long)s * SLOT_PAGES);
}

/* Index of the first word of @buf (@n words of page @page from word @w0)
 * that differs from the oracle, or -1. */
static long oracle_diff(const struct race *r, unsigned long page,
			unsigned long w0, const uint64_t *buf, unsigned long n)
{
	const uint64_t *o = oracle_page(r, page) + w0;

	for (unsigned long i = 0; i < n; i++)
		if (buf[i] != o[i])
			return (long)i;
	return -1;
}

static int dev_cmd(struct dmirror *d, unsigned int request, unsigned long addr,
		   void *ptr, unsigned long npages, struct hmm_dmirror_cmd *out)
{
	struct hmm_dmirror_cmd c = {
		.addr = addr,
		.ptr = (uint64_t)(uintptr_t)ptr,
		.npages = npages,
	};
	int ret = dmirror_ioctl(d, request, &c);

	*out = c;
	return ret;
}

/*
 * Is @b a snapshot byte this range may show? No THP is used, so never a
 * PMD/PUD bit; only this test's devices hold pages; the zero page is
 * never writable.
 */
static bool snap_legal(const struct race *r, unsigned char b)
{
	unsigned char local = r->coherent ?
				      HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL :
				      HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL;

	switch (b) {
	case HMM_DMIRROR_PROT_ERROR:
	case HMM_DMIRROR_PROT_NONE:
	case HMM_DMIRROR_PROT_READ:
	case HMM_DMIRROR_PROT_WRITE:
	case HMM_DMIRROR_PROT_ZERO | HMM_DMIRROR_PROT_READ:
		return true;
	default:
		break;
	}
	if (b == (local | HMM_DMIRROR_PROT_READ) ||
	    b == (local | HMM_DMIRROR_PROT_WRITE))
		return true;
	/* A coherent page of the other device is mapped like any page. */
	return r->coherent && r->nd > 1 &&
	       (b == (HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE |
		      HMM_DMIRROR_PROT_READ) ||
		b == (HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE |
		      HMM_DMIRROR_PROT_WRITE));
}

static bool snap_local(const struct race *r, unsigned char b)
{
	unsigned char local = r->coherent ?
				      HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL :
				      HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL;

	return b != HMM_DMIRROR_PROT_ERROR && (b & 0xf0) == local;
}

/* ------------------------------------------------------------ CPU thread */

static int cpu_write(struct race *r, struct test_rng *g, unsigned int s,
		     unsigned int gen)
{
	unsigned long p = s * SLOT_PAGES + test_rng_below(g, SLOT_PAGES);
	unsigned long w0 = test_rng_below(g, WORDS);
	unsigned long n = 1 + test_rng_below(g, WORDS - w0);
	uint64_t buf[WORDS];
	int ret;

	for (unsigned long i = 0; i < n; i++)
		buf[i] = val(r, OWN_CPU, gen, p, w0 + i);
	ret = hetmm_cpu_write(r->mm, RACE_CPU, page_addr(r, p) + w0 * 8, buf,
			      n * 8);
	RCHECK(ret == 0, "round %u: cpu write page %lu: %s", r->round, p,
	       hetmm_errname(ret));
	memcpy(oracle_page(r, p) + w0, buf, n * 8);
	return 0;
}

static int cpu_check(struct race *r, struct test_rng *g, unsigned int s)
{
	unsigned long p = s * SLOT_PAGES + test_rng_below(g, SLOT_PAGES);
	uint64_t buf[WORDS];
	long bad;
	int ret;

	ret = hetmm_cpu_read(r->mm, RACE_CPU, page_addr(r, p), buf, PG);
	RCHECK(ret == 0, "round %u: cpu read page %lu: %s", r->round, p,
	       hetmm_errname(ret));
	bad = oracle_diff(r, p, 0, buf, WORDS);
	RCHECK(bad < 0, "round %u: cpu read page %lu word %ld: %#llx != %#llx",
	       r->round, p, bad, (unsigned long long)buf[bad < 0 ? 0 : bad],
	       (unsigned long long)oracle_page(r, p)[bad < 0 ? 0 : bad]);
	return 0;
}

/* Read-only for a while: reads see the data, writes fault, change nothing. */
static int cpu_readonly(struct race *r, struct test_rng *g, unsigned int s)
{
	unsigned long p = s * SLOT_PAGES + test_rng_below(g, SLOT_PAGES);
	uint64_t v = 0x5eadbeefULL, got;
	int ret;

	ret = hetmm_mprotect(r->mm, slot_addr(r, s), SLOT_PAGES * PG,
			     PROT_READ);
	RCHECK(ret == 0, "mprotect RO: %s", hetmm_errname(ret));
	if (cpu_check(r, g, s))
		return -1;
	ret = hetmm_cpu_write(r->mm, RACE_CPU, page_addr(r, p), &v, 8);
	RCHECK(ret == -EFAULT, "round %u: write to RO page %lu: %s", r->round,
	       p, hetmm_errname(ret));
	ret = hetmm_cpu_read(r->mm, RACE_CPU, page_addr(r, p), &got, 8);
	RCHECK(ret == 0 && got == oracle_page(r, p)[0],
	       "round %u: RO page %lu after refused write: %s %#llx", r->round,
	       p, hetmm_errname(ret), (unsigned long long)got);
	ret = hetmm_mprotect(r->mm, slot_addr(r, s), SLOT_PAGES * PG, RW);
	RCHECK(ret == 0, "mprotect RW: %s", hetmm_errname(ret));
	r->efault_seen++;
	return 0;
}

static int cpu_protnone(struct race *r, struct test_rng *g, unsigned int s)
{
	unsigned long p = s * SLOT_PAGES + test_rng_below(g, SLOT_PAGES);
	uint64_t got;
	int ret;

	ret = hetmm_mprotect(r->mm, slot_addr(r, s), SLOT_PAGES * PG,
			     PROT_NONE);
	RCHECK(ret == 0, "mprotect NONE: %s", hetmm_errname(ret));
	ret = hetmm_cpu_read(r->mm, RACE_CPU, page_addr(r, p), &got, 8);
	RCHECK(ret == -EFAULT, "round %u: read of PROT_NONE page %lu: %s",
	       r->round, p, hetmm_errname(ret));
	ret = hetmm_mprotect(r->mm, slot_addr(r, s), SLOT_PAGES * PG, RW);
	RCHECK(ret == 0, "mprotect RW: %s", hetmm_errname(ret));
	r->efault_seen++;
	return cpu_check(r, g, s);
}

/* munmap the slot (reads fault), map it again: it reads zeros. */
static int cpu_remap(struct race *r, struct test_rng *g, unsigned int s)
{
	unsigned long a = slot_addr(r, s);
	uint64_t got;
	long na;
	int ret;

	ret = hetmm_munmap(r->mm, a, SLOT_PAGES * PG);
	RCHECK(ret == 0, "munmap: %s", hetmm_errname(ret));
	ret = hetmm_cpu_read(r->mm, RACE_CPU, a, &got, 8);
	RCHECK(ret == -EFAULT, "round %u: read of unmapped slot %u: %s",
	       r->round, s, hetmm_errname(ret));
	na = hetmm_mmap(r->mm, a, SLOT_PAGES * PG, RW,
			PRIV_ANON | MAP_FIXED_NOREPLACE, -1, 0);
	RCHECK(na == (long)a, "round %u: remap slot %u: %ld", r->round, s, na);
	memset(oracle_page(r, (unsigned long)s * SLOT_PAGES), 0,
	       SLOT_PAGES * PG);
	r->remaps++;
	return cpu_check(r, g, s);
}

static int cpu_dontneed(struct race *r, struct test_rng *g, unsigned int s)
{
	unsigned long p = s * SLOT_PAGES + test_rng_below(g, SLOT_PAGES);
	int ret = hetmm_madvise(r->mm, page_addr(r, p), PG, MADV_DONTNEED);

	RCHECK(ret == 0, "DONTNEED: %s", hetmm_errname(ret));
	memset(oracle_page(r, p), 0, PG);
	return cpu_check(r, g, s);
}

static int cpu_round(struct race *r, struct test_rng *g)
{
	unsigned int gen = r->round << 8;

	for (unsigned int op = 0; op < 4 * NSLOT; op++) {
		unsigned int s = (unsigned int)test_rng_below(g, NSLOT);
		unsigned int k = (unsigned int)test_rng_below(g, 16);
		int ret;

		if (r->owner[s] != OWN_CPU)
			continue;
		if (k < 7)
			ret = cpu_write(r, g, s, ++gen);
		else if (k < 11)
			ret = cpu_check(r, g, s);
		else if (k < 12)
			ret = cpu_readonly(r, g, s);
		else if (k < 13)
			ret = cpu_protnone(r, g, s);
		else if (k < 14)
			ret = cpu_remap(r, g, s);
		else
			ret = cpu_dontneed(r, g, s);
		if (ret)
			return ret;
		r->cpu_ops++;
	}
	return 0;
}

/* --------------------------------------------------------- device thread */

static int dev_slot_expect(struct race *r, unsigned int s, const uint64_t *buf,
			   const char *what)
{
	for (unsigned long i = 0; i < SLOT_PAGES; i++) {
		unsigned long p = s * SLOT_PAGES + i;
		long bad = oracle_diff(r, p, 0, buf + i * WORDS, WORDS);

		RCHECK(bad < 0,
		       "round %u: %s slot %u page %lu word %ld: %#llx != %#llx",
		       r->round, what, s, p, bad,
		       (unsigned long long)buf[i * WORDS + (bad < 0 ? 0 : bad)],
		       (unsigned long long)oracle_page(r,
						       p)[bad < 0 ? 0 : bad]);
	}
	return 0;
}

/* Does @d hold a page of slot @s mapped read-only? */
static int dev_slot_readonly_local(struct race *r, struct dmirror *d,
				   unsigned int s)
{
	unsigned char snap[SLOT_PAGES];
	struct hmm_dmirror_cmd c;
	bool found = false;
	int ret;

	ret = dev_cmd(d, HMM_DMIRROR_SNAPSHOT, slot_addr(r, s), snap,
		      SLOT_PAGES, &c);
	RCHECK(ret == 0, "snapshot: %s", hetmm_errname(ret));
	for (unsigned long p = 0; p < SLOT_PAGES; p++)
		found |= snap[p] == (HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL |
				     HMM_DMIRROR_PROT_READ);
	RCHECK(found,
	       "round %u: device write slot %u: -EFAULT, but no read-only page of the device there",
	       r->round, s);
	return 0;
}

static int dev_write(struct race *r, struct dmirror *d, unsigned int s,
		     unsigned int gen, uint64_t *buf)
{
	struct hmm_dmirror_cmd c;
	int ret;

	for (unsigned long i = 0; i < SLOT_PAGES; i++)
		for (unsigned long w = 0; w < WORDS; w++)
			buf[i * WORDS + w] =
				val(r, OWN_DEV, gen, s * SLOT_PAGES + i, w);
	ret = dev_cmd(d, HMM_DMIRROR_WRITE, slot_addr(r, s), buf, SLOT_PAGES,
		      &c);
	if (ret == -EFAULT) {
		/*
		 * hmm_range_fault() reports the device's own private pages
		 * without faulting them, even for a write request, and
		 * test_hmm gives up (-EFAULT, with a WARN) on a read-only
		 * one: the page migrated in from a read-only PTE (an
		 * mprotect that made it read-only and back). Pages before
		 * it may have been written. Check that this is the case,
		 * bring the slot back to system memory and write again.
		 */
		if (dev_slot_readonly_local(r, d, s))
			return -1;
		ret = dev_cmd(d, HMM_DMIRROR_MIGRATE_TO_SYS, slot_addr(r, s),
			      NULL, SLOT_PAGES, &c);
		RCHECK(ret == 0, "round %u: slot %u to sys: %s", r->round, s,
		       hetmm_errname(ret));
		ret = dev_cmd(d, HMM_DMIRROR_WRITE, slot_addr(r, s), buf,
			      SLOT_PAGES, &c);
		r->ro_local++;
	}
	RCHECK(ret == 0 && c.cpages == SLOT_PAGES,
	       "round %u: device write slot %u: %s cpages %llu", r->round, s,
	       hetmm_errname(ret), (unsigned long long)c.cpages);
	memcpy(oracle_page(r, (unsigned long)s * SLOT_PAGES), buf,
	       SLOT_PAGES * PG);
	return 0;
}

/* Is a page of slot @s in the memory of one of the devices? */
static int dev_slot_on_device(struct race *r, unsigned int s)
{
	unsigned char snap[SLOT_PAGES];
	struct hmm_dmirror_cmd c;
	bool held = false;
	int ret;

	for (unsigned int i = 0; i < r->nd; i++) {
		ret = dev_cmd(r->d[i], HMM_DMIRROR_SNAPSHOT, slot_addr(r, s),
			      snap, SLOT_PAGES, &c);
		RCHECK(ret == 0, "snapshot: %s", hetmm_errname(ret));
		for (unsigned long p = 0; p < SLOT_PAGES; p++)
			held |= snap_local(r, snap[p]);
	}
	RCHECK(held,
	       "round %u: migration of slot %u: -ENOENT, but no page of it is on a device",
	       r->round, s);
	return 0;
}

static int dev_read(struct race *r, struct dmirror *d, unsigned int s,
		    uint64_t *buf, unsigned int request)
{
	struct hmm_dmirror_cmd c;
	int ret;

	memset(buf, 0xa5, SLOT_PAGES * PG);
	ret = dev_cmd(d, request, slot_addr(r, s), buf, SLOT_PAGES, &c);
	if (ret == -ENOENT && request == HMM_DMIRROR_MIGRATE_TO_DEV) {
		/*
		 * test_hmm migrates system memory only and then reads the
		 * range back through its device page table: a page already
		 * in device memory (the other device's, or this one's after
		 * an invalidation removed its entry: the other device's
		 * migration, an mprotect of a coherent page) and not mapped
		 * makes it -ENOENT. A device read maps (or, for the other
		 * private device, faults back) such pages; then the
		 * migration must succeed.
		 */
		if (dev_slot_on_device(r, s))
			return -1;
		ret = dev_cmd(d, HMM_DMIRROR_READ, slot_addr(r, s), buf,
			      SLOT_PAGES, &c);
		RCHECK(ret == 0, "round %u: device read slot %u: %s", r->round,
		       s, hetmm_errname(ret));
		ret = dev_cmd(d, request, slot_addr(r, s), buf, SLOT_PAGES, &c);
		r->on_dev_enoent++;
	}
	RCHECK(ret == 0 && c.cpages == SLOT_PAGES,
	       "round %u: device %s slot %u: %s cpages %llu", r->round,
	       request == HMM_DMIRROR_READ ? "read" : "migrate", s,
	       hetmm_errname(ret), (unsigned long long)c.cpages);
	return dev_slot_expect(
		r, s, buf, request == HMM_DMIRROR_READ ? "read" : "migrate");
}

/*
 * Over the whole range, CPU slots included: the CPU may have a slot
 * unmapped or PROT_NONE at this moment, which stops the walk (-EINVAL).
 */
static int dev_to_sys(struct race *r, struct dmirror *d)
{
	struct hmm_dmirror_cmd c;
	int ret;

	ret = dev_cmd(d, HMM_DMIRROR_MIGRATE_TO_SYS, r->base, NULL, NPAGES, &c);
	RCHECK(ret == 0 || ret == -EINVAL, "round %u: migrate to sys: %s",
	       r->round, hetmm_errname(ret));
	RCHECK(ret || c.cpages <= NPAGES, "round %u: to sys cpages %llu",
	       r->round, (unsigned long long)c.cpages);
	if (ret)
		r->sys_einval++;
	return 0;
}

static int dev_snapshot(struct race *r, struct dmirror *d)
{
	unsigned char snap[NPAGES];
	struct hmm_dmirror_cmd c;
	int ret;

	memset(snap, 0xee, sizeof(snap));
	ret = dev_cmd(d, HMM_DMIRROR_SNAPSHOT, r->base, snap, NPAGES, &c);
	RCHECK(ret == 0 && c.cpages == NPAGES,
	       "round %u: snapshot: %s cpages %llu", r->round,
	       hetmm_errname(ret), (unsigned long long)c.cpages);
	for (unsigned long p = 0; p < NPAGES; p++) {
		RCHECK(snap_legal(r, snap[p]),
		       "round %u: snapshot page %lu: %#x", r->round, p,
		       snap[p]);
		/* The device's own slots stay mapped and accessible. */
		RCHECK(r->owner[p / SLOT_PAGES] != OWN_DEV ||
			       snap[p] != HMM_DMIRROR_PROT_ERROR,
		       "round %u: snapshot of device page %lu: ERROR", r->round,
		       p);
	}
	return 0;
}

static int dev_round(struct race *r, struct test_rng *g, uint64_t *buf)
{
	unsigned int gen = r->round << 8;

	for (unsigned int op = 0; op < 3 * NSLOT; op++) {
		unsigned int s = (unsigned int)test_rng_below(g, NSLOT);
		unsigned int k = (unsigned int)test_rng_below(g, 16);
		struct dmirror *d = r->d[test_rng_below(g, r->nd)];
		int ret;

		if (k < 2)
			ret = dev_to_sys(r, d);
		else if (k < 4)
			ret = dev_snapshot(r, d);
		else if (r->owner[s] != OWN_DEV)
			continue;
		else if (k < 8)
			ret = dev_write(r, d, s, ++gen, buf);
		else if (k < 11)
			ret = dev_read(r, d, s, buf, HMM_DMIRROR_READ);
		else
			ret = dev_read(r, d, s, buf,
				       HMM_DMIRROR_MIGRATE_TO_DEV);
		if (ret)
			return ret;
		r->dev_ops++;
	}
	return 0;
}

/* ------------------------------------------------------------ the rounds */

static void *cpu_thread(void *arg)
{
	struct race *r = arg;
	struct test_rng g;

	test_rng_init(&g, r->seed * 2 + 1);
	for (;;) {
		pthread_barrier_wait(&r->bar);
		if (r->stop)
			break;
		if (!atomic_load(&r_failed))
			cpu_round(r, &g);
		pthread_barrier_wait(&r->bar);
	}
	return NULL;
}

static void *dev_thread(void *arg)
{
	struct race *r = arg;
	uint64_t *buf = malloc(SLOT_PAGES * PG);
	struct test_rng g;

	test_rng_init(&g, r->seed * 2 + 2);
	for (;;) {
		pthread_barrier_wait(&r->bar);
		if (r->stop)
			break;
		if (!atomic_load(&r_failed)) {
			if (buf)
				dev_round(r, &g, buf);
			else
				rfail("out of host memory");
		}
		pthread_barrier_wait(&r->bar);
	}
	free(buf);
	return NULL;
}

/*
 * The referee's check at a quiescent point (both threads wait at the
 * barrier). @via_cpu: compare the bytes through CPU reads (faulting
 * device-private pages back) instead of a device read.
 */
static int quiescent_check(struct race *r, bool via_cpu)
{
	unsigned char snap[NPAGES];
	unsigned long local = 0, in_service = 0;
	uint64_t buf[WORDS];
	int ret;

	ret = hetmm_check(r->m);
	RCHECK(ret == 0, "round %u: hetmm_check:\n%s", r->round,
	       hetmm_check_report(r->m));
	for (unsigned int i = 0; i < r->nd; i++) {
		struct dmirror_counters dc;
		struct hmm_dmirror_cmd c;

		ret = dev_cmd(r->d[i], HMM_DMIRROR_SNAPSHOT, r->base, snap,
			      NPAGES, &c);
		RCHECK(ret == 0 && c.cpages == NPAGES, "round %u: snapshot: %s",
		       r->round, hetmm_errname(ret));
		for (unsigned long p = 0; p < NPAGES; p++) {
			/* Every slot is mapped read-write again by now. */
			RCHECK(snap_legal(r, snap[p]) &&
				       snap[p] != HMM_DMIRROR_PROT_ERROR,
			       "round %u: quiescent snapshot page %lu: %#x",
			       r->round, p, snap[p]);
			local += snap_local(r, snap[p]);
		}
		ret = dmirror_device_counters(r->m, r->minor[i], &dc);
		RCHECK(ret == 0, "counters: %s", hetmm_errname(ret));
		in_service += dc.in_service;
	}
	/* Each device page in service is this range's, mapped once. */
	RCHECK(local == in_service,
	       "round %u: snapshots show %lu device pages, %lu in service",
	       r->round, local, in_service);

	if (via_cpu) {
		for (unsigned long p = 0; p < NPAGES; p++) {
			long bad;

			ret = hetmm_cpu_read(r->mm, REF_CPU, page_addr(r, p),
					     buf, PG);
			RCHECK(ret == 0, "round %u: referee read page %lu: %s",
			       r->round, p, hetmm_errname(ret));
			bad = oracle_diff(r, p, 0, buf, WORDS);
			RCHECK(bad < 0,
			       "round %u: referee page %lu word %ld: %#llx != %#llx",
			       r->round, p, bad,
			       (unsigned long long)buf[bad < 0 ? 0 : bad],
			       (unsigned long long)oracle_page(
				       r, p)[bad < 0 ? 0 : bad]);
		}
	} else {
		uint64_t *all = malloc(NPAGES * PG);
		struct hmm_dmirror_cmd c;
		long bad = -1;
		unsigned long p = 0;

		RCHECK(all, "out of host memory");
		ret = dev_cmd(r->d[r->round % r->nd], HMM_DMIRROR_READ, r->base,
			      all, NPAGES, &c);
		for (; !ret && p < NPAGES && bad < 0; p++)
			bad = oracle_diff(r, p, 0, all + p * WORDS, WORDS);
		free(all);
		RCHECK(ret == 0 && c.cpages == NPAGES,
		       "round %u: referee device read: %s", r->round,
		       hetmm_errname(ret));
		RCHECK(bad < 0,
		       "round %u: referee device read page %lu word %ld",
		       r->round, p - 1, bad);
	}
	ret = hetmm_check(r->m);
	RCHECK(ret == 0, "round %u: hetmm_check after reading:\n%s", r->round,
	       hetmm_check_report(r->m));
	return 0;
}

/* After the devices were closed: nothing left on them, data intact. */
static int closed_check(struct race *r)
{
	uint64_t buf[WORDS];
	int ret;

	for (unsigned int i = 0; i < r->nd; i++) {
		struct dmirror_counters dc;

		ret = dmirror_device_counters(r->m, r->minor[i], &dc);
		RCHECK(ret == 0 && dc.in_service == 0 && dc.nr_mirrors == 0,
		       "device %u after close: %s, %lu pages in service",
		       r->minor[i], hetmm_errname(ret), dc.in_service);
	}
	ret = hetmm_check(r->m);
	RCHECK(ret == 0, "hetmm_check after close:\n%s",
	       hetmm_check_report(r->m));
	for (unsigned long p = 0; p < NPAGES; p++) {
		long bad;

		ret = hetmm_cpu_read(r->mm, REF_CPU, page_addr(r, p), buf, PG);
		RCHECK(ret == 0, "read page %lu after close: %s", p,
		       hetmm_errname(ret));
		bad = oracle_diff(r, p, 0, buf, WORDS);
		RCHECK(bad < 0, "page %lu word %ld after close", p, bad);
	}
	return 0;
}

struct variant {
	unsigned int nr_private, nr_coherent;
	unsigned int minors[MAX_DEV];
	unsigned int nd;
};

static void run_race(const struct variant *v)
{
	struct hetmm_machine_config cfg;
	struct race r = { 0 };
	struct test_rng g;
	pthread_t cpu, dev;
	long a;

	atomic_store(&r_failed, false);
	r_msg[0] = 0;
	hetmm_machine_config_default(&cfg);
	cfg.ram_size = 128UL << 20;
	cfg.device_size = 2048UL << 20;
	cfg.carry_data = true;
	r.m = hetmm_machine_create(&cfg);
	assert_false(IS_ERR(r.m));
	r.mm = hetmm_process_create(r.m);
	assert_false(IS_ERR(r.mm));
	ASSERT_OK(dmirror_probe(r.m, v->nr_private, v->nr_coherent));
	r.nd = v->nd;
	r.coherent = v->nr_coherent > 0;
	for (unsigned int i = 0; i < v->nd; i++) {
		r.minor[i] = v->minors[i];
		r.d[i] = dmirror_open(r.m, v->minors[i], r.mm);
		assert_false(IS_ERR(r.d[i]));
	}
	r.seed = test_seed();
	r.rounds = test_scale(16, 400);
	r.oracle = calloc(NPAGES, PG);
	assert_non_null(r.oracle);
	a = hetmm_mmap(r.mm, 0, NPAGES * PG, RW, PRIV_ANON, -1, 0);
	assert_true(a > 0);
	r.base = (unsigned long)a;
	test_rng_init(&g, r.seed);
	assert_int_equal(pthread_barrier_init(&r.bar, NULL, 3), 0);
	assert_int_equal(pthread_create(&cpu, NULL, cpu_thread, &r), 0);
	assert_int_equal(pthread_create(&dev, NULL, dev_thread, &r), 0);

	for (r.round = 0;; r.round++) {
		/* Decide the next round, or the end, then let them go. */
		r.stop = r.round == r.rounds || atomic_load(&r_failed);
		for (unsigned int s = 0; s < NSLOT; s++)
			r.owner[s] = test_rng_below(&g, 2) ? OWN_DEV : OWN_CPU;
		pthread_barrier_wait(&r.bar);
		if (r.stop)
			break;
		pthread_barrier_wait(&r.bar);
		if (!atomic_load(&r_failed))
			quiescent_check(&r, r.round & 1);
	}
	pthread_join(cpu, NULL);
	pthread_join(dev, NULL);
	pthread_barrier_destroy(&r.bar);
	if (atomic_load(&r_failed))
		fail_msg("seed %llu: %s", (unsigned long long)r.seed, r_msg);
	printf("# %u rounds: %lu cpu ops (%lu remaps, %lu refused), %lu device ops (%lu to-sys stopped by a hole, %lu already on a device, %lu read-only on the device)\n",
	       r.rounds, r.cpu_ops, r.remaps, r.efault_seen, r.dev_ops,
	       r.sys_einval, r.on_dev_enoent, r.ro_local);

	/* Teardown: close the devices (evicting them), then the CPU view. */
	r.round = r.rounds;
	if (!quiescent_check(&r, false)) {
		for (unsigned int i = 0; i < r.nd; i++)
			dmirror_release(r.d[i]);
		closed_check(&r);
	}
	if (atomic_load(&r_failed))
		fail_msg("seed %llu: %s", (unsigned long long)r.seed, r_msg);
	ASSERT_OK(hetmm_munmap(r.mm, r.base, NPAGES * PG));
	hetmm_exit(r.mm);
	dmirror_remove(r.m);
	free(r.oracle);
	test_machine_finish(r.m);
}

static void race_private(void **state)
{
	const struct variant v = { 1, 0, { 0 }, 1 };

	(void)state;
	run_race(&v);
}

static void race_coherent(void **state)
{
	const struct variant v = { 0, 1, { 2 }, 1 };

	(void)state;
	run_race(&v);
}

/* Two devices: each one's faults pull pages off the other. */
static void race_two_private(void **state)
{
	const struct variant v = { 2, 0, { 0, 1 }, 2 };

	(void)state;
	run_race(&v);
}

static void race_two_coherent(void **state)
{
	const struct variant v = { 0, 2, { 2, 3 }, 2 };

	(void)state;
	run_race(&v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(race_private),
		cmocka_unit_test(race_coherent),
		cmocka_unit_test(race_two_private),
		cmocka_unit_test(race_two_coherent),
	};

	test_seed();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
