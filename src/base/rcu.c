// SPDX-License-Identifier: MIT
/*
 * rcu.c - automatic liburcu reader registration.
 *
 * Locking and invariants: a thread is registered with liburcu at most once;
 * a pthread key destructor unregisters it when the thread exits, after
 * which the thread can no longer enter a read-side section (it is gone).
 */
#include <pthread.h>

#include <hetmm/rcu.h>

__hetmm_tls bool __hetmm_rcu_registered;
static pthread_key_t rcu_key;
static pthread_once_t rcu_once = PTHREAD_ONCE_INIT;

static void rcu_thread_exit(void *arg)
{
	(void)arg;
	if (__hetmm_rcu_registered) {
		urcu_memb_unregister_thread();
		__hetmm_rcu_registered = false;
	}
}

static void rcu_key_init(void)
{
	pthread_key_create(&rcu_key, rcu_thread_exit);
}

void __hetmm_rcu_register_slow(void)
{
	pthread_once(&rcu_once, rcu_key_init);
	urcu_memb_register_thread();
	__hetmm_rcu_registered = true;
	/* Any non-NULL value makes the destructor run at thread exit. */
	pthread_setspecific(rcu_key, (void *)1);
}
