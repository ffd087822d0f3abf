// SPDX-License-Identifier: MIT
/*
 * stats.c - per-thread counter blocks merged on read.
 *
 * Locking and invariants:
 *   stats_lock (mutex) protects the list of live blocks and the exited
 *   accumulator. Each block has exactly one writer (its thread), which
 *   updates with relaxed atomic stores; readers load with relaxed atomic
 *   loads, so a read is a consistent-enough sum (each counter exact as of
 *   some instant; counters never go backwards).
 *   total(counter) = exited[counter] + sum over live blocks.
 */
#include <pthread.h>
#include <string.h>

#include <hetmm/list.h>
#include <hetmm/stats.h>

/*
 * Allocated 64-byte aligned and rounded up to whole lines, so threads'
 * counters never share one (no alignment attribute: the list head
 * stats_live is not so aligned).
 */
struct stat_node {
	struct hetmm_stat_block blk;
	struct list_head link;
};

__hetmm_tls struct hetmm_stat_block *__hetmm_stat_blk;

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static LIST_HEAD(stats_live);
static uint64_t stats_exited[NR_HETMM_STATS];
static pthread_key_t stats_key;
static pthread_once_t stats_once = PTHREAD_ONCE_INIT;

static const char *const stat_names[] = {
#define __HETMM_STAT_NAME(name, desc) #name,
	HETMM_STAT_FIELDS(__HETMM_STAT_NAME)
#undef __HETMM_STAT_NAME
};

static const char *const stat_descs[] = {
#define __HETMM_STAT_DESC(name, desc) desc,
	HETMM_STAT_FIELDS(__HETMM_STAT_DESC)
#undef __HETMM_STAT_DESC
};

static void stats_thread_exit(void *arg)
{
	struct stat_node *n = arg;

	pthread_mutex_lock(&stats_lock);
	for (int i = 0; i < NR_HETMM_STATS; i++)
		stats_exited[i] += __atomic_load_n(&n->blk.v[i],
						   __ATOMIC_RELAXED);
	list_del(&n->link);
	pthread_mutex_unlock(&stats_lock);
	__hetmm_stat_blk = NULL;
	free(n);
}

static void stats_key_init(void)
{
	pthread_key_create(&stats_key, stats_thread_exit);
}

struct hetmm_stat_block *__hetmm_stat_block_slow(void)
{
	struct stat_node *n = aligned_alloc(64, ALIGN(sizeof(*n), 64));

	HETMM_BUG_ON(!n);
	memset(n, 0, sizeof(*n));
	pthread_once(&stats_once, stats_key_init);
	pthread_mutex_lock(&stats_lock);
	list_add_tail(&n->link, &stats_live);
	pthread_mutex_unlock(&stats_lock);
	pthread_setspecific(stats_key, n);
	__hetmm_stat_blk = &n->blk;
	return &n->blk;
}

void hetmm_stats_read(struct hetmm_stats *out)
{
	struct stat_node *n;

	memset(out, 0, sizeof(*out));
	out->version = HETMM_STATS_VERSION;
	out->size = sizeof(*out);
	pthread_mutex_lock(&stats_lock);
	memcpy(out->v, stats_exited, sizeof(out->v));
	list_for_each_entry(n, &stats_live, link)
		for (int i = 0; i < NR_HETMM_STATS; i++)
			out->v[i] += __atomic_load_n(&n->blk.v[i],
						     __ATOMIC_RELAXED);
	pthread_mutex_unlock(&stats_lock);
}

void hetmm_stats_diff(struct hetmm_stats *out, const struct hetmm_stats *after,
		      const struct hetmm_stats *before)
{
	out->version = HETMM_STATS_VERSION;
	out->size = sizeof(*out);
	for (int i = 0; i < NR_HETMM_STATS; i++)
		out->v[i] = after->v[i] - before->v[i];
}

const char *hetmm_stat_name(enum hetmm_stat_item item)
{
	if ((unsigned int)item >= NR_HETMM_STATS)
		return NULL;
	return stat_names[item];
}

const char *hetmm_stat_desc(enum hetmm_stat_item item)
{
	if ((unsigned int)item >= NR_HETMM_STATS)
		return NULL;
	return stat_descs[item];
}
