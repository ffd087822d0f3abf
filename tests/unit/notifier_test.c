// SPDX-License-Identifier: MIT
/*
 * notifier_test.c - mmu notifiers: ranges, interval callbacks, the
 * collision-retry protocol, deferred insert/remove, classic notifiers,
 * release at exit, the checker, and a concurrent stress run.
 *
 * Every test gets its own machine and mm. A "driver" here is struct
 * tdrv: one interval subscription, a driver lock guarding set_seq and
 * read_retry, and a record of what its ->invalidate() saw.
 *
 * Threaded tests never assert on time: a helper thread that must block
 * is known to be blocked once the matching stats counter moved (it is
 * bumped just before sleeping), and what it has not done yet is checked
 * through a flag it sets only after returning.
 */
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include <hetmm/mm_types.h>
#include <hetmm/mmu_notifier.h>

#include "harness.h"

#define PG 4096UL
#define BASE 0x100000UL

struct fixture {
	struct hetmm_machine *m;
	struct mm_struct *mm; /* NULL once the test dropped it itself */
};

static int nt_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->m = test_machine_new(16, false);
	f->mm = mm_alloc(f->m);
	assert_false(IS_ERR(f->mm));
	*state = f;
	return 0;
}

static int nt_teardown(void **state)
{
	struct fixture *f = *state;
	char msg[512];

	if (f->mm) {
		if (mmu_notifier_check(f->mm, msg, sizeof(msg)))
			fail_msg("notifier state: %s", msg);
		mmput(f->mm);
	}
	test_machine_finish(f->m);
	free(f);
	return 0;
}

static void assert_healthy(struct mm_struct *mm)
{
	char msg[512];

	if (mmu_notifier_check(mm, msg, sizeof(msg)))
		fail_msg("notifier state: %s", msg);
}

/* ------------------------------------------------------- event logging */

#define LOG_MAX 64

/* What happened, in order: 'I' interval, 'S'/'E' classic start/end, 'R' release. */
struct evlog {
	pthread_mutex_t lock;
	int n;
	char kind[LOG_MAX];
	int id[LOG_MAX];
};

static void evlog_init(struct evlog *l)
{
	pthread_mutex_init(&l->lock, NULL);
	l->n = 0;
}

static void evlog_add(struct evlog *l, char kind, int id)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	if (l->n < LOG_MAX) {
		l->kind[l->n] = kind;
		l->id[l->n] = id;
		l->n++;
	}
	pthread_mutex_unlock(&l->lock);
}

/* The log as "I1 S2 E2" for one readable comparison. */
static const char *evlog_str(struct evlog *l, char *buf, size_t len)
{
	size_t pos = 0;

	buf[0] = '\0';
	for (int i = 0; i < l->n && pos + 8 < len; i++)
		pos += (size_t)snprintf(buf + pos, len - pos, "%s%c%d",
					i ? " " : "", l->kind[i], l->id[i]);
	return buf;
}

/* ------------------------------------------------------ test driver */

struct tdrv {
	struct mmu_interval_notifier sub;
	pthread_mutex_t lock;
	int id;
	struct evlog *log;
	/* Refuse non-blockable invalidations (as if the lock were busy). */
	bool refuse_nonblock;
	/* Use trylock for non-blockable invalidations (stress test). */
	bool trylock_nonblock;
	/* Filled by the callback, under @lock. */
	unsigned long calls;
	unsigned long refusals;
	struct mmu_notifier_range last;
	unsigned long last_seq;
};

static bool tdrv_invalidate(struct mmu_interval_notifier *sub,
			    const struct mmu_notifier_range *range,
			    unsigned long cur_seq)
{
	struct tdrv *d = container_of(sub, struct tdrv, sub);

	if (!mmu_notifier_range_blockable(range)) {
		if (d->refuse_nonblock) {
			__atomic_fetch_add(&d->refusals, 1, __ATOMIC_RELAXED);
			return false;
		}
		if (d->trylock_nonblock) {
			if (pthread_mutex_trylock(&d->lock)) {
				__atomic_fetch_add(&d->refusals, 1,
						   __ATOMIC_RELAXED);
				return false;
			}
			goto locked;
		}
	}
	pthread_mutex_lock(&d->lock);
locked:
	mmu_interval_set_seq(sub, cur_seq);
	d->calls++;
	d->last = *range;
	d->last_seq = cur_seq;
	pthread_mutex_unlock(&d->lock);
	evlog_add(d->log, 'I', d->id);
	return true;
}

static const struct mmu_interval_notifier_ops tdrv_ops = {
	.invalidate = tdrv_invalidate,
};

static void tdrv_init(struct tdrv *d, int id, struct evlog *log)
{
	memset(d, 0, sizeof(*d));
	pthread_mutex_init(&d->lock, NULL);
	d->id = id;
	d->log = log;
}

/* Insert @d over pages [first, first + n) of BASE. */
static void tdrv_insert(struct tdrv *d, struct mm_struct *mm,
			unsigned long first, unsigned long n)
{
	ASSERT_OK(mmu_interval_notifier_insert(&d->sub, mm, BASE + first * PG,
					       n * PG, &tdrv_ops));
}

static unsigned long tdrv_calls(struct tdrv *d)
{
	unsigned long c;

	pthread_mutex_lock(&d->lock);
	c = d->calls;
	pthread_mutex_unlock(&d->lock);
	return c;
}

static bool tdrv_retry(struct tdrv *d, unsigned long seq)
{
	bool r;

	pthread_mutex_lock(&d->lock);
	r = mmu_interval_read_retry(&d->sub, seq);
	pthread_mutex_unlock(&d->lock);
	return r;
}

/* One complete blockable invalidation of [start, end). */
static void invalidate(struct mm_struct *mm, enum mmu_notifier_event ev,
		       unsigned long start, unsigned long end)
{
	struct mmu_notifier_range r;

	mmu_notifier_range_init(&r, ev, 0, mm, start, end);
	ASSERT_OK(mmu_notifier_invalidate_range_start(&r));
	mmu_notifier_invalidate_range_end(&r);
}

static void invalidate_pages(struct mm_struct *mm, unsigned long first,
			     unsigned long n)
{
	invalidate(mm, MMU_NOTIFY_CLEAR, BASE + first * PG,
		   BASE + (first + n) * PG);
}

/* ---------------------------------------------------- stats waiting */

static unsigned long stat_at(size_t off)
{
	struct mmu_notifier_stats st;

	mmu_notifier_stats_read(&st);
	return *(unsigned long *)((char *)&st + off);
}

/* Wait (sleeping, with a hang guard) until the counter passed @before. */
static void wait_stat_above(size_t off, unsigned long before)
{
	struct timespec ts = { 0, 1000000 };

	for (int i = 0; i < 20000; i++) {
		if (stat_at(off) > before)
			return;
		nanosleep(&ts, NULL);
	}
	fail_msg("helper thread never blocked");
}

#define STAT(field) offsetof(struct mmu_notifier_stats, field)

/* ---------------------------------------------------------- threads */

struct reader_arg {
	struct tdrv *d;
	unsigned long seq;
	bool done;
};

static void *reader_thread(void *p)
{
	struct reader_arg *a = p;

	a->seq = mmu_interval_read_begin(&a->d->sub);
	__atomic_store_n(&a->done, true, __ATOMIC_RELEASE);
	return NULL;
}

static void *remover_thread(void *p)
{
	struct reader_arg *a = p;

	mmu_interval_notifier_remove(&a->d->sub);
	__atomic_store_n(&a->done, true, __ATOMIC_RELEASE);
	return NULL;
}

static bool arg_done(struct reader_arg *a)
{
	return __atomic_load_n(&a->done, __ATOMIC_ACQUIRE);
}

/* =============================================================== tests */

static void test_range_init(void **state)
{
	struct fixture *f = *state;
	struct mmu_notifier_range r;
	int owner;

	memset(&r, 0xa5, sizeof(r));
	mmu_notifier_range_init(&r, MMU_NOTIFY_UNMAP, 0, f->mm, 0x1000, 0x3000);
	assert_ptr_equal(r.mm, f->mm);
	assert_int_equal(r.start, 0x1000);
	assert_int_equal(r.end, 0x3000);
	assert_int_equal(r.event, MMU_NOTIFY_UNMAP);
	assert_null(r.owner);
	assert_int_equal(r.flags, 0);
	assert_false(mmu_notifier_range_blockable(&r));

	mmu_notifier_range_init_owner(&r, MMU_NOTIFY_MIGRATE,
				      MMU_NOTIFIER_RANGE_BLOCKABLE, f->mm, 0,
				      PG, &owner);
	assert_ptr_equal(r.owner, &owner);
	assert_int_equal(r.event, MMU_NOTIFY_MIGRATE);
	assert_true(mmu_notifier_range_blockable(&r));

	/* Event values are ABI for tools and traces. */
	assert_int_equal(MMU_NOTIFY_UNMAP, 0);
	assert_int_equal(MMU_NOTIFY_CLEAR, 1);
	assert_int_equal(MMU_NOTIFY_PROTECTION_VMA, 2);
	assert_int_equal(MMU_NOTIFY_PROTECTION_PAGE, 3);
	assert_int_equal(MMU_NOTIFY_SOFT_DIRTY, 4);
	assert_int_equal(MMU_NOTIFY_RELEASE, 5);
	assert_int_equal(MMU_NOTIFY_MIGRATE, 6);
	assert_int_equal(MMU_NOTIFY_EXCLUSIVE, 7);
}

static void test_no_subscriptions(void **state)
{
	struct fixture *f = *state;
	struct mmu_notifier_range r;
	char msg[64];

	assert_false(mm_has_notifiers(f->mm));
	mmu_notifier_range_init(&r, MMU_NOTIFY_CLEAR, 0, f->mm, 0, PG);
	ASSERT_OK(mmu_notifier_invalidate_range_start(&r));
	assert_true(mmu_notifier_range_blockable(&r));
	mmu_notifier_invalidate_range_end(&r);

	ASSERT_OK(mmu_notifier_invalidate_range_start_nonblock(&r));
	assert_false(mmu_notifier_range_blockable(&r));
	mmu_notifier_invalidate_range_end(&r);

	assert_int_equal(mmu_notifier_check(f->mm, msg, sizeof(msg)), 0);
	assert_string_equal(msg, "");
	assert_false(mm_has_notifiers(f->mm));
	/* The teardown's mmput runs release and destroy with no state. */
}

/*
 * Intervals (pages of BASE):   0   1   2   3   4   5
 *                              [ A ]   [ C ][ B ]
 * A = [0,1) pages, C = [2,3), B = [3,4): inclusive last bytes, so a
 * range ending exactly at an interval's start does not touch it.
 */
static void test_callback_intersection(void **state)
{
	struct fixture *f = *state;
	struct mmu_notifier_range r;
	struct tdrv a, b, c;
	struct evlog log;
	char buf[128];
	int owner;

	evlog_init(&log);
	tdrv_init(&a, 1, &log);
	tdrv_init(&b, 2, &log);
	tdrv_init(&c, 3, &log);
	tdrv_insert(&a, f->mm, 0, 1);
	tdrv_insert(&b, f->mm, 3, 1);
	tdrv_insert(&c, f->mm, 2, 1);
	assert_true(mm_has_notifiers(f->mm));
	assert_int_equal(a.sub.interval_tree.start, BASE);
	assert_int_equal(a.sub.interval_tree.last, BASE + PG - 1);
	assert_true(a.sub.invalidate_seq & 1);

	/* Nothing below BASE, nor [BASE + PG, BASE + 2 PG). */
	invalidate(f->mm, MMU_NOTIFY_CLEAR, 0, BASE);
	invalidate_pages(f->mm, 1, 1);
	assert_int_equal(log.n, 0);

	/* Range ends at C's first byte: A only (its last byte is inside). */
	invalidate(f->mm, MMU_NOTIFY_UNMAP, BASE + PG - 1, BASE + 2 * PG);
	assert_string_equal(evlog_str(&log, buf, sizeof(buf)), "I1");
	assert_int_equal(a.last.start, BASE + PG - 1);
	assert_int_equal(a.last.end, BASE + 2 * PG);
	assert_int_equal(a.last.event, MMU_NOTIFY_UNMAP);
	assert_null(a.last.owner);
	assert_ptr_equal(a.last.mm, f->mm);
	assert_true(a.last.flags & MMU_NOTIFIER_RANGE_BLOCKABLE);
	assert_true(a.last_seq & 1);
	assert_int_equal(a.sub.invalidate_seq, a.last_seq);

	/* [C's start, B's start): C only. */
	log.n = 0;
	invalidate_pages(f->mm, 2, 1);
	assert_string_equal(evlog_str(&log, buf, sizeof(buf)), "I3");

	/* Everything, with an owner: address order A, C, B, one seq. */
	log.n = 0;
	mmu_notifier_range_init_owner(&r, MMU_NOTIFY_MIGRATE, 0, f->mm, BASE,
				      BASE + 4 * PG, &owner);
	ASSERT_OK(mmu_notifier_invalidate_range_start(&r));
	assert_string_equal(evlog_str(&log, buf, sizeof(buf)), "I1 I3 I2");
	assert_ptr_equal(b.last.owner, &owner);
	assert_int_equal(b.last.event, MMU_NOTIFY_MIGRATE);
	assert_int_equal(a.last_seq, b.last_seq);
	assert_int_equal(c.last_seq, b.last_seq);
	assert_healthy(f->mm);
	mmu_notifier_invalidate_range_end(&r);
	/* Interval notifiers get nothing at end. */
	assert_int_equal(log.n, 3);

	/* A later invalidation passes a newer odd seq. */
	invalidate_pages(f->mm, 0, 1);
	assert_true(a.last_seq > b.last_seq);
	assert_true(a.last_seq & 1);

	assert_healthy(f->mm);
	mmu_interval_notifier_remove(&a.sub);
	mmu_interval_notifier_remove(&b.sub);
	mmu_interval_notifier_remove(&c.sub);
	log.n = 0;
	invalidate_pages(f->mm, 0, 8);
	assert_int_equal(log.n, 0);
}

static void test_read_retry_protocol(void **state)
{
	struct fixture *f = *state;
	struct mmu_notifier_range r;
	struct tdrv a, b;
	unsigned long seq, sleeps;

	tdrv_init(&a, 1, NULL);
	tdrv_init(&b, 2, NULL);
	tdrv_insert(&a, f->mm, 0, 4);
	tdrv_insert(&b, f->mm, 8, 4);

	seq = mmu_interval_read_begin(&a.sub);
	assert_true(seq & 1);
	assert_false(tdrv_retry(&a, seq));
	assert_false(mmu_interval_check_retry(&a.sub, seq));

	/* Not touching A: no retry. */
	invalidate_pages(f->mm, 4, 4);
	invalidate_pages(f->mm, 8, 1);
	assert_false(tdrv_retry(&a, seq));

	/* Touching A's last page: retry. */
	invalidate_pages(f->mm, 3, 1);
	assert_true(mmu_interval_check_retry(&a.sub, seq));
	assert_true(tdrv_retry(&a, seq));

	/* A fresh read after it ended is clean again. */
	seq = mmu_interval_read_begin(&a.sub);
	assert_false(tdrv_retry(&a, seq));

	/*
	 * An invalidation hitting only B is running: A's read_begin must not
	 * sleep, and A needs no retry.
	 */
	sleeps = stat_at(STAT(read_begin_sleeps));
	mmu_notifier_range_init(&r, MMU_NOTIFY_CLEAR, 0, f->mm, BASE + 8 * PG,
				BASE + 9 * PG);
	ASSERT_OK(mmu_notifier_invalidate_range_start(&r));
	seq = mmu_interval_read_begin(&a.sub);
	assert_int_equal(stat_at(STAT(read_begin_sleeps)), sleeps);
	mmu_notifier_invalidate_range_end(&r);
	assert_false(tdrv_retry(&a, seq));

	/* An invalidation of A starting after read_begin: retry. */
	mmu_notifier_range_init(&r, MMU_NOTIFY_CLEAR, 0, f->mm, BASE,
				BASE + PG);
	seq = mmu_interval_read_begin(&a.sub);
	ASSERT_OK(mmu_notifier_invalidate_range_start(&r));
	assert_true(tdrv_retry(&a, seq));
	mmu_notifier_invalidate_range_end(&r);
	assert_true(tdrv_retry(&a, seq));

	mmu_interval_notifier_remove(&a.sub);
	mmu_interval_notifier_remove(&b.sub);
}

static void test_read_begin_sleeps(void **state)
{
	struct fixture *f = *state;
	struct mmu_notifier_range r;
	struct reader_arg ra;
	struct tdrv a;
	unsigned long sleeps;
	pthread_t t;

	tdrv_init(&a, 1, NULL);
	tdrv_insert(&a, f->mm, 0, 4);

	mmu_notifier_range_init(&r, MMU_NOTIFY_CLEAR, 0, f->mm, BASE,
				BASE + PG);
	ASSERT_OK(mmu_notifier_invalidate_range_start(&r));
	assert_int_equal(tdrv_calls(&a), 1);

	ra = (struct reader_arg){ .d = &a };
	sleeps = stat_at(STAT(read_begin_sleeps));
	assert_int_equal(pthread_create(&t, NULL, reader_thread, &ra), 0);
	wait_stat_above(STAT(read_begin_sleeps), sleeps);
	assert_false(arg_done(&ra));
	assert_healthy(f->mm);

	mmu_notifier_invalidate_range_end(&r);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_true(ra.done);
	/* It waited the invalidation out, so no retry is needed. */
	assert_int_equal(ra.seq, a.last_seq);
	assert_false(tdrv_retry(&a, ra.seq));

	mmu_interval_notifier_remove(&a.sub);
}

static void test_insert_deferred(void **state)
{
	struct fixture *f = *state;
	struct mmu_notifier_range r1, r2;
	struct reader_arg ra;
	struct tdrv a, d, e;
	unsigned long sleeps, deferred, seq;
	pthread_t t;

	tdrv_init(&a, 1, NULL);
	tdrv_init(&d, 2, NULL);
	tdrv_init(&e, 3, NULL);
	tdrv_insert(&a, f->mm, 0, 1);

	/* Frozen tree (an interval was hit): D's insert is queued. */
	mmu_notifier_range_init(&r1, MMU_NOTIFY_CLEAR, 0, f->mm, BASE,
				BASE + PG);
	ASSERT_OK(mmu_notifier_invalidate_range_start(&r1));
	deferred = stat_at(STAT(deferred_ops));
	tdrv_insert(&d, f->mm, 8, 1);
	assert_int_equal(stat_at(STAT(deferred_ops)), deferred + 1);
	assert_true(d.sub.invalidate_seq & 1);
	assert_healthy(f->mm);

	/* A nested invalidation over D does not see it yet. */
	invalidate_pages(f->mm, 8, 1);
	assert_int_equal(tdrv_calls(&d), 0);

	/* D's first read_begin waits for the running invalidation. */
	ra = (struct reader_arg){ .d = &d };
	sleeps = stat_at(STAT(read_begin_sleeps));
	assert_int_equal(pthread_create(&t, NULL, reader_thread, &ra), 0);
	wait_stat_above(STAT(read_begin_sleeps), sleeps);
	assert_false(arg_done(&ra));

	mmu_notifier_invalidate_range_end(&r1);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_false(tdrv_retry(&d, ra.seq));
	assert_healthy(f->mm);

	/* Now D is in the tree. */
	invalidate_pages(f->mm, 8, 1);
	assert_int_equal(tdrv_calls(&d), 1);
	assert_true(tdrv_retry(&d, ra.seq));

	/*
	 * Running invalidation that hit nothing (seq even): E goes into the
	 * tree at once, seq turns odd, and a nested invalidation sees E.
	 */
	mmu_notifier_range_init(&r2, MMU_NOTIFY_CLEAR, 0, f->mm, 0, PG);
	ASSERT_OK(mmu_notifier_invalidate_range_start(&r2));
	deferred = stat_at(STAT(deferred_ops));
	tdrv_insert(&e, f->mm, 16, 1);
	assert_int_equal(stat_at(STAT(deferred_ops)), deferred);
	invalidate_pages(f->mm, 16, 1);
	assert_int_equal(tdrv_calls(&e), 1);
	mmu_notifier_invalidate_range_end(&r2);
	seq = mmu_interval_read_begin(&e.sub);
	assert_false(tdrv_retry(&e, seq));

	mmu_interval_notifier_remove(&a.sub);
	mmu_interval_notifier_remove(&d.sub);
	mmu_interval_notifier_remove(&e.sub);
}

static void test_remove_waits(void **state)
{
	struct fixture *f = *state;
	struct mmu_notifier_range r;
	struct reader_arg ra;
	struct tdrv a, b;
	unsigned long sleeps;
	int count;
	pthread_t t;

	tdrv_init(&a, 1, NULL);
	tdrv_init(&b, 2, NULL);
	count = atomic_load(&f->mm->mm_count);
	tdrv_insert(&a, f->mm, 0, 1);
	assert_int_equal(atomic_load(&f->mm->mm_count), count + 1);

	mmu_notifier_range_init(&r, MMU_NOTIFY_CLEAR, 0, f->mm, BASE,
				BASE + PG);
	ASSERT_OK(mmu_notifier_invalidate_range_start(&r));

	/* A queued insert removed before it was applied: no wait. */
	sleeps = stat_at(STAT(remove_sleeps));
	tdrv_insert(&b, f->mm, 4, 1);
	mmu_interval_notifier_remove(&b.sub);
	assert_int_equal(stat_at(STAT(remove_sleeps)), sleeps);
	assert_healthy(f->mm);

	/* Removing A (in the frozen tree) waits for the end. */
	ra = (struct reader_arg){ .d = &a };
	assert_int_equal(pthread_create(&t, NULL, remover_thread, &ra), 0);
	wait_stat_above(STAT(remove_sleeps), sleeps);
	assert_false(arg_done(&ra));
	/* Still in the tree for invalidations of this period. */
	invalidate_pages(f->mm, 0, 1);
	assert_int_equal(tdrv_calls(&a), 2);
	assert_false(arg_done(&ra));

	mmu_notifier_invalidate_range_end(&r);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(atomic_load(&f->mm->mm_count), count);

	/* Gone: no callbacks, and the queued B never arrived. */
	invalidate_pages(f->mm, 0, 8);
	assert_int_equal(tdrv_calls(&a), 2);
	assert_int_equal(tdrv_calls(&b), 0);
	assert_healthy(f->mm);
}

/* --------------------------------------------------- classic notifiers */

struct tclassic {
	struct mmu_notifier mn;
	int id;
	struct evlog *log;
	int fail_nonblock; /* errno start returns when not blockable */
	int releases;
	int starts;
	int ends;
};

static void tc_release(struct mmu_notifier *mn, struct mm_struct *mm)
{
	struct tclassic *c = container_of(mn, struct tclassic, mn);

	assert_ptr_equal(mm, mn->mm);
	c->releases++;
	evlog_add(c->log, 'R', c->id);
}

static int tc_start(struct mmu_notifier *mn,
		    const struct mmu_notifier_range *range)
{
	struct tclassic *c = container_of(mn, struct tclassic, mn);

	c->starts++;
	evlog_add(c->log, 'S', c->id);
	if (!mmu_notifier_range_blockable(range) && c->fail_nonblock)
		return c->fail_nonblock;
	return 0;
}

static void tc_end(struct mmu_notifier *mn,
		   const struct mmu_notifier_range *range)
{
	struct tclassic *c = container_of(mn, struct tclassic, mn);

	(void)range;
	c->ends++;
	evlog_add(c->log, 'E', c->id);
}

static const struct mmu_notifier_ops tc_ops = {
	.release = tc_release,
	.invalidate_range_start = tc_start,
	.invalidate_range_end = tc_end,
};

/* Start can fail, so (by the contract) no end. */
static const struct mmu_notifier_ops tc_ops_noend = {
	.release = tc_release,
	.invalidate_range_start = tc_start,
};

static void tclassic_init(struct tclassic *c, int id, struct evlog *log,
			  const struct mmu_notifier_ops *ops)
{
	memset(c, 0, sizeof(*c));
	c->id = id;
	c->log = log;
	c->mn.ops = ops;
}

static void test_classic(void **state)
{
	struct fixture *f = *state;
	struct tclassic c1, c2;
	struct evlog log;
	struct tdrv a;
	char buf[128];
	int count;

	evlog_init(&log);
	tclassic_init(&c1, 1, &log, &tc_ops);
	tclassic_init(&c2, 2, &log, &tc_ops);
	tdrv_init(&a, 9, &log);
	count = atomic_load(&f->mm->mm_count);

	ASSERT_OK(mmu_notifier_register(&c1.mn, f->mm));
	assert_ptr_equal(c1.mn.mm, f->mm);
	mmap_write_lock(f->mm);
	ASSERT_OK(__mmu_notifier_register(&c2.mn, f->mm));
	mmap_write_unlock(f->mm);
	assert_int_equal(atomic_load(&f->mm->mm_count), count + 2);
	tdrv_insert(&a, f->mm, 0, 1);

	/* Classic notifiers see every range; intervals only theirs, first. */
	invalidate_pages(f->mm, 0, 1);
	assert_string_equal(evlog_str(&log, buf, sizeof(buf)),
			    "I9 S2 S1 E2 E1");
	log.n = 0;
	invalidate_pages(f->mm, 4, 1);
	assert_string_equal(evlog_str(&log, buf, sizeof(buf)), "S2 S1 E2 E1");

	/* Unregister runs ->release once and unhooks. */
	log.n = 0;
	mmu_notifier_unregister(&c2.mn, f->mm);
	assert_int_equal(c2.releases, 1);
	assert_int_equal(atomic_load(&f->mm->mm_count), count + 2);
	invalidate_pages(f->mm, 0, 1);
	assert_string_equal(evlog_str(&log, buf, sizeof(buf)), "R2 I9 S1 E1");
	assert_healthy(f->mm);

	/* Registering again after unregister works. */
	log.n = 0;
	ASSERT_OK(mmu_notifier_register(&c2.mn, f->mm));
	invalidate_pages(f->mm, 4, 1);
	assert_string_equal(evlog_str(&log, buf, sizeof(buf)), "S2 S1 E2 E1");

	/* Bad registration. */
	{
		struct mmu_notifier bad = { 0 };

		assert_int_equal(mmu_notifier_register(&bad, f->mm), -EINVAL);
	}

	mmu_notifier_unregister(&c1.mn, f->mm);
	mmu_notifier_unregister(&c2.mn, f->mm);
	mmu_interval_notifier_remove(&a.sub);
	assert_int_equal(atomic_load(&f->mm->mm_count), count);
	assert_int_equal(c1.releases, 1);
	assert_int_equal(c2.releases, 2);
}

static void test_nonblock(void **state)
{
	struct fixture *f = *state;
	struct mmu_notifier_range r;
	struct tclassic c1, c2;
	struct tdrv a, b;
	struct evlog log;
	char buf[128];
	unsigned long seq, fails;

	evlog_init(&log);
	tdrv_init(&a, 1, &log);
	tdrv_init(&b, 2, &log);
	tclassic_init(&c1, 3, &log, &tc_ops);
	tdrv_insert(&a, f->mm, 0, 1);
	tdrv_insert(&b, f->mm, 1, 1);
	ASSERT_OK(mmu_notifier_register(&c1.mn, f->mm));

	/* Everybody agrees: a normal non-blocking invalidation. */
	mmu_notifier_range_init(&r, MMU_NOTIFY_CLEAR, 0, f->mm, BASE,
				BASE + 2 * PG);
	ASSERT_OK(mmu_notifier_invalidate_range_start_nonblock(&r));
	assert_false(a.last.flags & MMU_NOTIFIER_RANGE_BLOCKABLE);
	mmu_notifier_invalidate_range_end(&r);
	assert_string_equal(evlog_str(&log, buf, sizeof(buf)), "I1 I2 S3 E3");

	/* A refuses: -EAGAIN, B and the classic one are never asked. */
	log.n = 0;
	a.refuse_nonblock = true;
	fails = stat_at(STAT(nonblock_failures));
	mmu_notifier_range_init(&r, MMU_NOTIFY_CLEAR, 0, f->mm, BASE,
				BASE + 2 * PG);
	assert_int_equal(mmu_notifier_invalidate_range_start_nonblock(&r),
			 -EAGAIN);
	assert_int_equal(stat_at(STAT(nonblock_failures)), fails + 1);
	assert_int_equal(a.refusals, 1);
	assert_int_equal(log.n, 0);
	/* Back to idle: no sleeping reader, nothing deferred. */
	assert_healthy(f->mm);
	seq = mmu_interval_read_begin(&b.sub);
	assert_false(tdrv_retry(&b, seq));

	/* A failing classic start also leaves the interval side idle. */
	a.refuse_nonblock = false;
	mmu_notifier_unregister(&c1.mn, f->mm);
	log.n = 0;
	tclassic_init(&c1, 3, &log, &tc_ops);
	tclassic_init(&c2, 4, &log, &tc_ops_noend);
	c2.fail_nonblock = -EAGAIN;
	ASSERT_OK(mmu_notifier_register(&c1.mn, f->mm));
	ASSERT_OK(mmu_notifier_register(&c2.mn, f->mm));
	mmu_notifier_range_init(&r, MMU_NOTIFY_CLEAR, 0, f->mm, BASE,
				BASE + PG);
	assert_int_equal(mmu_notifier_invalidate_range_start_nonblock(&r),
			 -EAGAIN);
	/* Every start ran; whoever has an end got it. */
	assert_string_equal(evlog_str(&log, buf, sizeof(buf)), "I1 S4 S3 E3");
	assert_healthy(f->mm);
	seq = mmu_interval_read_begin(&a.sub); /* would hang if still odd */
	assert_false(tdrv_retry(&a, seq));

	mmu_notifier_unregister(&c1.mn, f->mm);
	mmu_notifier_unregister(&c2.mn, f->mm);
	mmu_interval_notifier_remove(&a.sub);
	mmu_interval_notifier_remove(&b.sub);
}

/* ------------------------------------------- concurrent invalidations */

struct inv_thread_arg {
	struct mm_struct *mm;
	unsigned long first, n;
	pthread_barrier_t *started, *may_end, *ended;
};

static void *inv_thread(void *p)
{
	struct inv_thread_arg *a = p;
	struct mmu_notifier_range r;

	mmap_read_lock(a->mm);
	mmu_notifier_range_init(&r, MMU_NOTIFY_CLEAR, 0, a->mm,
				BASE + a->first * PG,
				BASE + (a->first + a->n) * PG);
	mmu_notifier_invalidate_range_start(&r);
	pthread_barrier_wait(a->started);
	pthread_barrier_wait(a->may_end);
	mmu_notifier_invalidate_range_end(&r);
	mmap_read_unlock(a->mm);
	pthread_barrier_wait(a->ended);
	return NULL;
}

static void test_concurrent_count(void **state)
{
	struct fixture *f = *state;
	pthread_barrier_t started, end1, end2, ended1, ended2;
	struct inv_thread_arg a1, a2;
	struct mmu_notifier_range r1, r2;
	struct reader_arg ra;
	struct tdrv a, e;
	unsigned long sleeps, deferred;
	pthread_t t1, t2, tr;

	tdrv_init(&a, 1, NULL);
	tdrv_init(&e, 2, NULL);
	tdrv_insert(&a, f->mm, 0, 4);

	/* Nested in one thread: inner end keeps the tree frozen. */
	mmu_notifier_range_init(&r1, MMU_NOTIFY_CLEAR, 0, f->mm, BASE,
				BASE + PG);
	mmu_notifier_range_init(&r2, MMU_NOTIFY_CLEAR, 0, f->mm, BASE + PG,
				BASE + 2 * PG);
	ASSERT_OK(mmu_notifier_invalidate_range_start(&r1));
	ASSERT_OK(mmu_notifier_invalidate_range_start(&r2));
	mmu_notifier_invalidate_range_end(&r2);
	deferred = stat_at(STAT(deferred_ops));
	tdrv_insert(&e, f->mm, 8, 1);
	assert_int_equal(stat_at(STAT(deferred_ops)), deferred + 1);
	mmu_notifier_invalidate_range_end(&r1);
	invalidate_pages(f->mm, 8, 1);
	assert_int_equal(tdrv_calls(&e), 1);
	assert_healthy(f->mm);

	/* Two threads, both inside start/end at once. */
	pthread_barrier_init(&started, NULL, 3);
	pthread_barrier_init(&end1, NULL, 2);
	pthread_barrier_init(&end2, NULL, 2);
	pthread_barrier_init(&ended1, NULL, 2);
	pthread_barrier_init(&ended2, NULL, 2);
	a1 = (struct inv_thread_arg){ f->mm, 0, 2, &started, &end1, &ended1 };
	a2 = (struct inv_thread_arg){ f->mm, 1, 2, &started, &end2, &ended2 };
	assert_int_equal(pthread_create(&t1, NULL, inv_thread, &a1), 0);
	assert_int_equal(pthread_create(&t2, NULL, inv_thread, &a2), 0);
	pthread_barrier_wait(&started);
	assert_int_equal(tdrv_calls(&a), 2 + 2);
	assert_healthy(f->mm);

	ra = (struct reader_arg){ .d = &a };
	sleeps = stat_at(STAT(read_begin_sleeps));
	assert_int_equal(pthread_create(&tr, NULL, reader_thread, &ra), 0);
	wait_stat_above(STAT(read_begin_sleeps), sleeps);

	/* First one ends: the other still runs, the reader keeps sleeping. */
	pthread_barrier_wait(&end1);
	pthread_barrier_wait(&ended1);
	assert_false(arg_done(&ra));
	assert_healthy(f->mm);

	pthread_barrier_wait(&end2);
	pthread_barrier_wait(&ended2);
	assert_int_equal(pthread_join(tr, NULL), 0);
	assert_int_equal(pthread_join(t1, NULL), 0);
	assert_int_equal(pthread_join(t2, NULL), 0);
	assert_false(tdrv_retry(&a, ra.seq));
	assert_healthy(f->mm);

	pthread_barrier_destroy(&started);
	pthread_barrier_destroy(&end1);
	pthread_barrier_destroy(&end2);
	pthread_barrier_destroy(&ended1);
	pthread_barrier_destroy(&ended2);
	mmu_interval_notifier_remove(&a.sub);
	mmu_interval_notifier_remove(&e.sub);
}

/* ----------------------------------------------------------- release */

static void test_release(void **state)
{
	struct fixture *f = *state;
	struct mm_struct *mm = f->mm;
	struct tclassic c1;
	struct tdrv a, top;
	struct evlog log;
	char buf[128];

	evlog_init(&log);
	tdrv_init(&a, 1, &log);
	tdrv_init(&top, 2, &log);
	tclassic_init(&c1, 3, &log, &tc_ops);
	tdrv_insert(&a, mm, 0, 4);
	/* The very last page of the address space: [ULONG_MAX - 4095, ULONG_MAX]. */
	ASSERT_OK(mmu_interval_notifier_insert(&top.sub, mm, ULONG_MAX - PG + 1,
					       PG, &tdrv_ops));
	ASSERT_OK(mmu_notifier_register(&c1.mn, mm));

	/* Last user goes: exit_mmap -> mmu_notifier_release. */
	f->mm = NULL;
	mmput(mm);
	assert_string_equal(evlog_str(&log, buf, sizeof(buf)), "I1 I2 R3");
	assert_int_equal(a.last.event, MMU_NOTIFY_RELEASE);
	assert_int_equal(a.last.start, 0);
	assert_int_equal(a.last.end, ULONG_MAX);
	assert_true(a.last.flags & MMU_NOTIFIER_RANGE_BLOCKABLE);
	assert_int_equal(top.last.event, MMU_NOTIFY_RELEASE);
	assert_int_equal(c1.releases, 1);
	assert_int_equal(c1.starts, 0);
	assert_healthy(mm);

	/* The notifiers still pin the struct; unregister does not re-release. */
	assert_int_equal(atomic_load(&mm->mm_users), 0);
	assert_int_equal(atomic_load(&mm->mm_count), 3);
	mmu_notifier_unregister(&c1.mn, mm);
	assert_int_equal(c1.releases, 1);
	mmu_interval_notifier_remove(&top.sub);
	assert_int_equal(atomic_load(&mm->mm_count), 1);
	assert_int_equal(a.calls, 1);
	assert_int_equal(top.calls, 1);
	mmu_interval_notifier_remove(&a.sub); /* frees the mm */
}

/* ------------------------------------------------------------- errors */

static void test_insert_errors(void **state)
{
	struct fixture *f = *state;
	struct mmu_interval_notifier_ops no_cb = { 0 };
	struct mm_struct *dead;
	struct tdrv d;

	tdrv_init(&d, 1, NULL);
	assert_int_equal(
		mmu_interval_notifier_insert(&d.sub, f->mm, BASE, 0, &tdrv_ops),
		-EOVERFLOW);
	assert_int_equal(mmu_interval_notifier_insert(&d.sub, f->mm, ULONG_MAX,
						      2, &tdrv_ops),
			 -EOVERFLOW);
	assert_int_equal(mmu_interval_notifier_insert(&d.sub, f->mm, PG,
						      ULONG_MAX, &tdrv_ops),
			 -EOVERFLOW);
	assert_int_equal(
		mmu_interval_notifier_insert(&d.sub, f->mm, BASE, PG, NULL),
		-EINVAL);
	assert_int_equal(
		mmu_interval_notifier_insert(&d.sub, f->mm, BASE, PG, &no_cb),
		-EINVAL);
	/* Failures created no state. */
	assert_false(mm_has_notifiers(f->mm));

	/* The single last byte is a valid interval; so is [0, ULONG_MAX]. */
	ASSERT_OK(mmu_interval_notifier_insert(&d.sub, f->mm, ULONG_MAX, 1,
					       &tdrv_ops));
	assert_int_equal(d.sub.interval_tree.last, ULONG_MAX);
	mmu_interval_notifier_remove(&d.sub);
	ASSERT_OK(mmu_interval_notifier_insert(&d.sub, f->mm, 0, ULONG_MAX,
					       &tdrv_ops));
	assert_int_equal(d.sub.interval_tree.last, ULONG_MAX - 1);
	mmu_interval_notifier_remove(&d.sub);

	/* The _locked variant under mmap_lock. */
	mmap_write_lock(f->mm);
	ASSERT_OK(mmu_interval_notifier_insert_locked(&d.sub, f->mm, BASE, PG,
						      &tdrv_ops));
	mmap_write_unlock(f->mm);
	invalidate_pages(f->mm, 0, 1);
	assert_int_equal(tdrv_calls(&d), 1);
	mmu_interval_notifier_remove(&d.sub);

	/* An mm whose users are gone: -EINVAL, and no pin taken. */
	dead = mm_alloc(f->m);
	assert_false(IS_ERR(dead));
	mmgrab(dead);
	mmput(dead);
	assert_int_equal(atomic_load(&dead->mm_users), 0);
	assert_int_equal(
		mmu_interval_notifier_insert(&d.sub, dead, BASE, PG, &tdrv_ops),
		-EINVAL);
	assert_int_equal(atomic_load(&dead->mm_count), 1);
	assert_false(mm_has_notifiers(dead));
	mmdrop(dead);
}

/* ------------------------------------------------------------- checker */

static void test_check(void **state)
{
	struct fixture *f = *state;
	struct tdrv a, b;
	unsigned long good;
	char msg[512];

	tdrv_init(&a, 1, NULL);
	tdrv_init(&b, 2, NULL);
	tdrv_insert(&a, f->mm, 0, 4);
	tdrv_insert(&b, f->mm, 2, 4);
	assert_int_equal(mmu_notifier_check(f->mm, msg, sizeof(msg)), 0);
	assert_string_equal(msg, "");
	/* A NULL buffer is allowed. */
	assert_int_equal(mmu_notifier_check(f->mm, NULL, 0), 0);

	/* A driver stores an even sequence number. */
	good = a.sub.invalidate_seq;
	mmu_interval_set_seq(&a.sub, 4);
	assert_int_equal(mmu_notifier_check(f->mm, msg, sizeof(msg)), -EUCLEAN);
	assert_non_null(strstr(msg, "even seq"));
	assert_int_equal(mmu_notifier_check(f->mm, NULL, 0), -EUCLEAN);

	/* Two problems at once: one line each; a tiny buffer truncates. */
	b.sub.mm = NULL;
	assert_int_equal(mmu_notifier_check(f->mm, msg, sizeof(msg)), -EUCLEAN);
	assert_non_null(strstr(msg, "another mm"));
	assert_non_null(strchr(msg, '\n'));
	assert_int_equal(mmu_notifier_check(f->mm, msg, 8), -EUCLEAN);
	assert_int_equal(strlen(msg), 7);

	b.sub.mm = f->mm;
	mmu_interval_set_seq(&a.sub, good);
	assert_int_equal(mmu_notifier_check(f->mm, msg, sizeof(msg)), 0);

	mmu_interval_notifier_remove(&a.sub);
	mmu_interval_notifier_remove(&b.sub);
	assert_int_equal(mmu_notifier_check(f->mm, msg, sizeof(msg)), 0);
}

/* -------------------------------------------------------------- stress */

#define ST_PAGES 64
#define ST_DRV 4

struct stress {
	struct mm_struct *mm;
	struct tdrv drv[ST_DRV];
	unsigned long first[ST_DRV], n[ST_DRV];
	unsigned long cpu_version[ST_PAGES]; /* "PTE contents", atomics */
	bool stop;
	uint64_t seed;
	int next_thread; /* seeds each invalidator differently */
	/* Results, written by the reader. */
	unsigned long reads, retries, churns;
	const char *error;
};

static void stress_fail(struct stress *s, const char *why)
{
	__atomic_store_n(&s->error, why, __ATOMIC_RELAXED);
}

static void *stress_invalidator(void *p)
{
	struct stress *s = p;
	struct test_rng rng;
	int me = __atomic_fetch_add(&s->next_thread, 1, __ATOMIC_RELAXED);

	test_rng_init(&rng, s->seed + 17 * (uint64_t)(me + 1));
	while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
		unsigned long first = test_rng_below(&rng, ST_PAGES + 8);
		unsigned long n = 1 + test_rng_below(&rng, 16);
		bool nonblock = test_rng_below(&rng, 8) == 0;
		struct mmu_notifier_range r;
		int ret;

		mmap_read_lock(s->mm);
		mmu_notifier_range_init(&r, MMU_NOTIFY_CLEAR, 0, s->mm,
					BASE + first * PG,
					BASE + (first + n) * PG);
		if (nonblock)
			ret = mmu_notifier_invalidate_range_start_nonblock(&r);
		else
			ret = mmu_notifier_invalidate_range_start(&r);
		if (ret) {
			/* Refused: PTEs must stay as they are, no end. */
			mmap_read_unlock(s->mm);
			continue;
		}
		for (unsigned long i = first; i < first + n && i < ST_PAGES;
		     i++)
			__atomic_fetch_add(&s->cpu_version[i], 1,
					   __ATOMIC_RELAXED);
		if (test_rng_below(&rng, 4) == 0)
			sched_yield();
		mmu_notifier_invalidate_range_end(&r);
		mmap_read_unlock(s->mm);
	}
	return NULL;
}

/* Insert a short-lived interval, read it once, remove it. */
static void stress_churn(struct stress *s, struct test_rng *rng)
{
	struct tdrv t;
	unsigned long seq;

	tdrv_init(&t, 99, NULL);
	/* No cmocka asserts off the main thread: report through s->error. */
	if (mmu_interval_notifier_insert(
		    &t.sub, s->mm, BASE + test_rng_below(rng, ST_PAGES) * PG,
		    2 * PG, &tdrv_ops)) {
		stress_fail(s, "churn insert failed");
		return;
	}
	seq = mmu_interval_read_begin(&t.sub);
	(void)tdrv_retry(&t, seq);
	mmu_interval_notifier_remove(&t.sub);
	pthread_mutex_destroy(&t.lock);
	__atomic_fetch_add(&s->churns, 1, __ATOMIC_RELAXED);
}

/*
 * The driver side: read the "PTEs" of one interval between read_begin
 * and read_retry. Checked guarantees:
 *   - a callback counted after read_begin returned forces a retry;
 *   - no retry means the snapshot still equals the PTEs (nothing could
 *     change them without first invalidating us).
 */
static void *stress_reader(void *p)
{
	struct stress *s = p;
	unsigned long snap[ST_PAGES];
	struct test_rng rng;

	test_rng_init(&rng, s->seed);
	while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE) && !s->error) {
		int i = (int)test_rng_below(&rng, ST_DRV);
		struct tdrv *d = &s->drv[i];
		unsigned long seq, c0, c1;
		bool retry;

		seq = mmu_interval_read_begin(&d->sub);
		pthread_mutex_lock(&d->lock);
		c0 = d->calls;
		pthread_mutex_unlock(&d->lock);

		for (unsigned long k = 0; k < s->n[i]; k++)
			snap[k] = __atomic_load_n(
				&s->cpu_version[s->first[i] + k],
				__ATOMIC_RELAXED);
		if (mmu_interval_check_retry(&d->sub, seq)) {
			__atomic_fetch_add(&s->retries, 1, __ATOMIC_RELAXED);
			continue;
		}
		/* Widen the window now and then ("device programming"). */
		if (test_rng_below(&rng, 4) == 0) {
			struct timespec ts = { 0, 20000 };

			nanosleep(&ts, NULL);
		}

		pthread_mutex_lock(&d->lock);
		retry = mmu_interval_read_retry(&d->sub, seq);
		c1 = d->calls;
		if (c1 != c0 && !retry)
			stress_fail(s, "callback after read_begin, no retry");
		for (unsigned long k = 0; !retry && k < s->n[i]; k++) {
			if (snap[k] !=
			    __atomic_load_n(&s->cpu_version[s->first[i] + k],
					    __ATOMIC_RELAXED))
				stress_fail(s, "PTEs changed without a retry");
		}
		pthread_mutex_unlock(&d->lock);
		if (retry)
			__atomic_fetch_add(&s->retries, 1, __ATOMIC_RELAXED);
		else
			__atomic_fetch_add(&s->reads, 1, __ATOMIC_RELAXED);
		if (test_rng_below(&rng, 32) == 0)
			stress_churn(s, &rng);
	}
	return NULL;
}

static void test_stress(void **state)
{
	struct fixture *f = *state;
	struct stress *s = calloc(1, sizeof(*s));
	static const unsigned long first[ST_DRV] = { 0, 8, 32, 20 };
	static const unsigned long n[ST_DRV] = { 16, 32, 32, 2 };
	struct timespec t0, now;
	pthread_t inv[2], rd;
	char msg[512];
	double secs = test_scale(1, 10) * 0.5;

	assert_non_null(s);
	s->mm = f->mm;
	s->seed = test_seed();
	for (int i = 0; i < ST_DRV; i++) {
		tdrv_init(&s->drv[i], i, NULL);
		s->drv[i].trylock_nonblock = true;
		s->first[i] = first[i];
		s->n[i] = n[i];
		tdrv_insert(&s->drv[i], f->mm, first[i], n[i]);
	}

	assert_int_equal(pthread_create(&inv[0], NULL, stress_invalidator, s),
			 0);
	assert_int_equal(pthread_create(&inv[1], NULL, stress_invalidator, s),
			 0);
	assert_int_equal(pthread_create(&rd, NULL, stress_reader, s), 0);
	/*
	 * Run for the budget, and on until both outcomes and a churn were
	 * seen (a loaded machine may need longer); 60 s is a hang guard.
	 */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct timespec ts = { 0, 10000000 };
		double elapsed;

		nanosleep(&ts, NULL);
		clock_gettime(CLOCK_MONOTONIC, &now);
		elapsed = (double)(now.tv_sec - t0.tv_sec) +
			  (double)(now.tv_nsec - t0.tv_nsec) * 1e-9;
		if (__atomic_load_n(&s->error, __ATOMIC_RELAXED) ||
		    elapsed > 60)
			break;
		if (elapsed >= secs &&
		    __atomic_load_n(&s->reads, __ATOMIC_RELAXED) &&
		    __atomic_load_n(&s->retries, __ATOMIC_RELAXED) &&
		    __atomic_load_n(&s->churns, __ATOMIC_RELAXED))
			break;
	}
	__atomic_store_n(&s->stop, true, __ATOMIC_RELEASE);
	pthread_join(inv[0], NULL);
	pthread_join(inv[1], NULL);
	pthread_join(rd, NULL);

	if (s->error)
		fail_msg("seed %llu: %s", (unsigned long long)s->seed,
			 s->error);
	if (mmu_notifier_check(f->mm, msg, sizeof(msg)))
		fail_msg("seed %llu: %s", (unsigned long long)s->seed, msg);
	print_message("# stress: %lu clean reads, %lu retries, %lu churns\n",
		      s->reads, s->retries, s->churns);
	/* The run exercised both outcomes. */
	assert_true(s->reads > 0);
	assert_true(s->retries > 0);
	assert_true(s->churns > 0);
	for (int i = 0; i < ST_DRV; i++) {
		mmu_interval_notifier_remove(&s->drv[i].sub);
		pthread_mutex_destroy(&s->drv[i].lock);
	}
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_range_init, nt_setup,
						nt_teardown),
		cmocka_unit_test_setup_teardown(test_no_subscriptions, nt_setup,
						nt_teardown),
		cmocka_unit_test_setup_teardown(test_callback_intersection,
						nt_setup, nt_teardown),
		cmocka_unit_test_setup_teardown(test_read_retry_protocol,
						nt_setup, nt_teardown),
		cmocka_unit_test_setup_teardown(test_read_begin_sleeps,
						nt_setup, nt_teardown),
		cmocka_unit_test_setup_teardown(test_insert_deferred, nt_setup,
						nt_teardown),
		cmocka_unit_test_setup_teardown(test_remove_waits, nt_setup,
						nt_teardown),
		cmocka_unit_test_setup_teardown(test_classic, nt_setup,
						nt_teardown),
		cmocka_unit_test_setup_teardown(test_nonblock, nt_setup,
						nt_teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_count, nt_setup,
						nt_teardown),
		cmocka_unit_test_setup_teardown(test_release, nt_setup,
						nt_teardown),
		cmocka_unit_test_setup_teardown(test_insert_errors, nt_setup,
						nt_teardown),
		cmocka_unit_test_setup_teardown(test_check, nt_setup,
						nt_teardown),
		cmocka_unit_test_setup_teardown(test_stress, nt_setup,
						nt_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
