// SPDX-License-Identifier: MIT
/* lock_test.c - spinlock, mutex, rwsem, seqcount and RCU under threads. */
#include <pthread.h>
#include <string.h>

#include "harness.h"

#define NTHREADS 4
#define ITERS 20000

struct shared {
	spinlock_t spin;
	struct mutex mtx;
	struct rw_semaphore rw;
	seqcount_t seq;
	long counter_spin, counter_mtx, counter_rw;
	long a, b; /* written together under seq: readers must see a == b */
	atomic_long torn;
};

static void *lock_worker(void *arg)
{
	struct shared *s = arg;

	for (int i = 0; i < ITERS; i++) {
		spin_lock(&s->spin);
		lockdep_assert_held(&s->spin);
		s->counter_spin++;
		spin_unlock(&s->spin);

		mutex_lock(&s->mtx);
		lockdep_assert_held(&s->mtx);
		s->counter_mtx++;
		mutex_unlock(&s->mtx);

		if (i % 8 == 0) {
			down_write(&s->rw);
			rwsem_assert_held_write(&s->rw);
			s->counter_rw++;
			write_seqcount_begin(&s->seq);
			WRITE_ONCE(s->a, s->counter_rw);
			WRITE_ONCE(s->b, s->counter_rw);
			write_seqcount_end(&s->seq);
			up_write(&s->rw);
		} else {
			down_read(&s->rw);
			rwsem_assert_held(&s->rw);
			(void)READ_ONCE(s->counter_rw);
			up_read(&s->rw);
		}
		unsigned int seq;
		long a, b;

		do {
			seq = read_seqcount_begin(&s->seq);
			a = READ_ONCE(s->a);
			b = READ_ONCE(s->b);
		} while (read_seqcount_retry(&s->seq, seq));
		if (a != b)
			atomic_fetch_add(&s->torn, 1);
	}
	return NULL;
}

static void test_locks_concurrent(void **state)
{
	(void)state;
	struct shared s;
	pthread_t t[NTHREADS];

	memset(&s, 0, sizeof(s));
	spin_lock_init(&s.spin);
	mutex_init(&s.mtx);
	init_rwsem(&s.rw);
	seqcount_init(&s.seq);
	for (int i = 0; i < NTHREADS; i++)
		pthread_create(&t[i], NULL, lock_worker, &s);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(s.counter_spin, NTHREADS * ITERS);
	assert_int_equal(s.counter_mtx, NTHREADS * ITERS);
	assert_int_equal(s.counter_rw, NTHREADS * ITERS / 8);
	assert_int_equal(atomic_load(&s.torn), 0);
	mutex_destroy(&s.mtx);
	rwsem_destroy(&s.rw);
}

static void test_trylocks(void **state)
{
	(void)state;
	spinlock_t sp;
	struct mutex mx;
	struct rw_semaphore rw;

	spin_lock_init(&sp);
	mutex_init(&mx);
	init_rwsem(&rw);
	assert_true(spin_trylock(&sp));
	assert_false(spin_trylock(&sp));
	assert_true(spin_is_locked(&sp));
	spin_unlock(&sp);
	assert_true(mutex_trylock(&mx));
	mutex_unlock(&mx);
	assert_true(down_read_trylock(&rw));
	assert_true(down_read_trylock(&rw));
	assert_false(down_write_trylock(&rw));
	up_read(&rw);
	up_read(&rw);
	assert_true(down_write_trylock(&rw));
	assert_false(down_read_trylock(&rw));
	up_write(&rw);
	mutex_destroy(&mx);
	rwsem_destroy(&rw);
}

struct rcu_obj {
	long value;
	struct rcu_head rcu;
};

static struct rcu_obj *rcu_ptr;
static atomic_int rcu_freed;
static atomic_int rcu_stop;
static atomic_long rcu_bad;

static void rcu_obj_free(struct rcu_head *h)
{
	struct rcu_obj *o = container_of(h, struct rcu_obj, rcu);

	o->value = -1; /* poison: a reader seeing it broke the grace period */
	free(o);
	atomic_fetch_add(&rcu_freed, 1);
}

static void *rcu_reader(void *arg)
{
	(void)arg;
	while (!atomic_load(&rcu_stop)) {
		rcu_read_lock();
		struct rcu_obj *o = rcu_dereference(rcu_ptr);

		if (o && o->value < 0)
			atomic_fetch_add(&rcu_bad, 1);
		rcu_read_unlock();
	}
	return NULL;
}

static void test_rcu_call_rcu(void **state)
{
	(void)state;
	pthread_t t[2];
	int n = 2000;

	atomic_store(&rcu_freed, 0);
	atomic_store(&rcu_stop, 0);
	atomic_store(&rcu_bad, 0);
	rcu_ptr = NULL;
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, rcu_reader, NULL);
	for (int i = 0; i < n; i++) {
		struct rcu_obj *o = malloc(sizeof(*o)), *old;

		o->value = i;
		old = rcu_xchg_pointer(&rcu_ptr, o);
		if (old)
			call_rcu(&old->rcu, rcu_obj_free);
	}
	atomic_store(&rcu_stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	synchronize_rcu();
	rcu_barrier();
	assert_int_equal(atomic_load(&rcu_freed), n - 1);
	assert_int_equal(atomic_load(&rcu_bad), 0);
	free(rcu_ptr);
	rcu_ptr = NULL;
}

static void test_thread_ids(void **state)
{
	(void)state;
	unsigned int a = hetmm_thread_id();

	assert_true(a != 0);
	assert_int_equal(hetmm_thread_id(), a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_thread_ids),
		cmocka_unit_test(test_trylocks),
		cmocka_unit_test(test_locks_concurrent),
		cmocka_unit_test(test_rcu_call_rcu),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
