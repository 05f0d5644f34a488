/* test_stress.c — many tasks through the thread pool, with checked sums.
 *
 * Counts scale with WEFT_TEST_SCALE (wt_scaled), so that the same cases run
 * under valgrind and TSan with WEFT_TEST_SCALE=0.05. */
#include "wt.h"

#include <pthread.h>
#include <stdatomic.h>

/* Plain functions (not the atomic_load macro) so that a failed assertion
 * prints readable expressions. */
static long ld_long(atomic_long *p) { return atomic_load(p); }
static int ld_int(atomic_int *p) { return atomic_load(p); }
static unsigned long long ld_ull(atomic_ullong *p) { return atomic_load(p); }

#define LONG_WAIT 60000 /* ms: only a bug reaches it */

static atomic_ullong g_sum;
static atomic_long g_ran;
/* When g_target tasks have run, g_all_ran is set (if not NULL). */
static long g_target;
static weft_event *g_all_ran;

static int add_task(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  (void)out;
  atomic_fetch_add_explicit(&g_sum, *(const uint32_t *)in, memory_order_relaxed);
  if (atomic_fetch_add_explicit(&g_ran, 1, memory_order_relaxed) + 1 == g_target && g_all_ran)
    weft_event_set(g_all_ran);
  return 0;
}

static void reset(void) {
  atomic_store(&g_sum, 0);
  atomic_store(&g_ran, 0);
  g_target = -1;
  g_all_ran = NULL;
}

static weft_executor *pool_new(int workers) {
  weft_executor_opts o = {0};
  o.workers = workers;
  weft_executor *ex = NULL;
  ASSERT_OK(weft_executor_create(&ex, "thread_pool", &o));
  return ex;
}

/* Inputs 0..n-1 mapped to varied values; returns their sum. */
static uint32_t *make_values(size_t n, unsigned long long *sum) {
  uint32_t *v = malloc(n * sizeof *v);
  ASSERT_TRUE(v != NULL);
  *sum = 0;
  for (size_t i = 0; i < n; i++) {
    v[i] = (uint32_t)(i * 2654435761u) >> 8;
    *sum += v[i];
  }
  return v;
}

static void finish(weft_executor *ex, size_t n) {
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, weft_deadline_in(LONG_WAIT)));
  weft_executor_stats st;
  ASSERT_OK(weft_executor_stats_get(ex, &st));
  ASSERT_UEQ(st.submitted, n);
  ASSERT_UEQ(st.completed, n);
  ASSERT_UEQ(st.queued, 0);
}

/* 1,000,000 tasks from one thread: fire and forget, futures released at
 * once, and a few futures kept and checked. */
TEST(million_tasks_checked_sum) {
  size_t n = (size_t)wt_scaled(1000000);
  unsigned long long want;
  uint32_t *v = make_values(n, &want);
  size_t nkept = n / 64 + 1, kept = 0;
  weft_future **keep = calloc(nkept, sizeof *keep);
  ASSERT_TRUE(keep != NULL);
  reset();
  weft_executor *ex = pool_new(0);
  uint64_t t0 = weft_now_ns();
  for (size_t i = 0; i < n; i++) {
    switch (i % 4) {
    case 0:
    case 1:
      ASSERT_OK(weft_executor_submit(ex, add_task, &v[i], sizeof v[i], NULL));
      break;
    case 2: {
      weft_future *f;
      ASSERT_OK(weft_executor_submit(ex, add_task, &v[i], sizeof v[i], &f));
      weft_future_release(f);
      break;
    }
    default: {
      weft_future *f;
      ASSERT_OK(weft_executor_submit(ex, add_task, &v[i], sizeof v[i], &f));
      if (i % 64 == 3 && kept < nkept)
        keep[kept++] = f;
      else
        weft_future_release(f);
    }
    }
  }
  finish(ex, n);
  double secs = (double)(weft_now_ns() - t0) / 1e9;
  fprintf(stderr, "%zu tasks in %.3f s: %.2f M tasks/s\n", n, secs, (double)n / secs / 1e6);
  ASSERT_EQ(ld_long(&g_ran), (long)n);
  ASSERT_UEQ(ld_ull(&g_sum), want);
  for (size_t i = 0; i < kept; i++) {
    ASSERT_EQ(weft_future_state(keep[i]), WEFT_DONE);
    weft_future_release(keep[i]);
  }
  weft_executor_destroy(ex);
  free(keep);
  free(v);
}

/* Several outside threads submitting at once (the injector's CAS races). */
struct submitter {
  weft_executor *ex;
  const uint32_t *v;
  size_t from, to;
};

static void *submit_range(void *arg) {
  struct submitter *s = arg;
  for (size_t i = s->from; i < s->to; i++)
    ASSERT_OK(weft_executor_submit(s->ex, add_task, &s->v[i], sizeof s->v[i], NULL));
  return NULL;
}

TEST(concurrent_submitters) {
  size_t n = (size_t)wt_scaled(400000);
  unsigned long long want;
  uint32_t *v = make_values(n, &want);
  reset();
  weft_executor *ex = pool_new(0);
  enum { T = 3 };
  pthread_t th[T];
  struct submitter s[T];
  for (int t = 0; t < T; t++) {
    s[t] = (struct submitter){ex, v, n * (size_t)t / T, n * (size_t)(t + 1) / T};
    ASSERT_EQ(pthread_create(&th[t], NULL, submit_range, &s[t]), 0);
  }
  for (int t = 0; t < T; t++) pthread_join(th[t], NULL);
  finish(ex, n);
  ASSERT_EQ(ld_long(&g_ran), (long)n);
  ASSERT_UEQ(ld_ull(&g_sum), want);
  weft_executor_destroy(ex);
  free(v);
}

/* Tasks that fan out from inside the pool (the workers' own deques, and
 * stealing between them). */
struct fan {
  weft_executor *ex;
  const uint32_t *v;
  size_t from, to;
};

static int fan_task(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  (void)out;
  const struct fan *f = in;
  for (size_t i = f->from; i < f->to; i++) {
    int rc = weft_executor_submit(f->ex, add_task, &f->v[i], sizeof f->v[i], NULL);
    if (rc) return rc;
  }
  return 0;
}

TEST(nested_fanout_checked_sum) {
  size_t n = (size_t)wt_scaled(1000000);
  unsigned long long want;
  uint32_t *v = make_values(n, &want);
  enum { PER = 1000 };
  size_t nroots = (n + PER - 1) / PER;
  struct fan *roots = calloc(nroots, sizeof *roots);
  ASSERT_TRUE(roots != NULL);
  reset();
  g_target = (long)n;
  ASSERT_OK(weft_event_create(&g_all_ran));
  weft_executor *ex = pool_new(0);
  for (size_t r = 0; r < nroots; r++) {
    roots[r] = (struct fan){ex, v, r * PER, (r + 1) * PER < n ? (r + 1) * PER : n};
    weft_future *f;
    ASSERT_OK(weft_executor_submit(ex, fan_task, &roots[r], sizeof roots[r], &f));
    weft_future_release(f);
  }
  /* Submits are refused once shutdown begins: wait for every leaf first. */
  ASSERT_OK(weft_event_wait(g_all_ran, weft_deadline_in(LONG_WAIT)));
  finish(ex, n + nroots);
  weft_event_destroy(g_all_ran);
  ASSERT_EQ(ld_long(&g_ran), (long)n);
  ASSERT_UEQ(ld_ull(&g_sum), want);
  weft_executor_destroy(ex);
  free(roots);
  free(v);
}

/* Done-callbacks added while tasks complete: each runs exactly once. */
static atomic_long g_callbacks;

static void count_cb(weft_future *f, void *arg) {
  (void)f;
  atomic_fetch_add_explicit((atomic_int *)arg, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&g_callbacks, 1, memory_order_relaxed);
}

TEST(callbacks_race_completion) {
  size_t n = (size_t)wt_scaled(200000);
  unsigned long long want;
  uint32_t *v = make_values(n, &want);
  atomic_int *hits = calloc(n, sizeof *hits);
  ASSERT_TRUE(hits != NULL);
  reset();
  atomic_store(&g_callbacks, 0);
  weft_executor *ex = pool_new(0);
  for (size_t i = 0; i < n; i++) {
    weft_future *f;
    ASSERT_OK(weft_executor_submit(ex, add_task, &v[i], sizeof v[i], &f));
    /* The task may be queued, running or done by now. */
    ASSERT_OK(weft_future_on_done(f, count_cb, &hits[i]));
    if (i % 2) ASSERT_OK(weft_future_on_done(f, count_cb, &hits[i]));
    weft_future_release(f);
  }
  finish(ex, n);
  ASSERT_EQ(ld_long(&g_callbacks), (long)(n + n / 2));
  for (size_t i = 0; i < n; i++) ASSERT_EQ(ld_int(&hits[i]), 1 + (int)(i % 2));
  ASSERT_UEQ(ld_ull(&g_sum), want);
  weft_executor_destroy(ex);
  free(hits);
  free(v);
}

/* Submitters racing a cancelling shutdown: every accepted task either runs
 * or is cancelled, none is lost, and shutdown returns. */
struct racer {
  weft_executor *ex;
  const uint32_t *v;
  size_t cap, got;
  weft_future **futs;
  weft_sem *warm;
};

static void *race_submit(void *arg) {
  struct racer *r = arg;
  for (r->got = 0; r->got < r->cap; r->got++) {
    weft_future *f;
    int rc = weft_executor_submit(r->ex, add_task, &r->v[r->got], sizeof r->v[0], &f);
    if (rc == WEFT_ESHUTDOWN) break;
    ASSERT_OK(rc);
    r->futs[r->got] = f;
    if (r->got == 1000) weft_sem_post(r->warm);
  }
  if (r->got <= 1000) weft_sem_post(r->warm);
  return NULL;
}

TEST(submit_races_cancel_shutdown) {
  size_t cap = (size_t)wt_scaled(100000);
  unsigned long long unused;
  uint32_t *v = make_values(cap, &unused);
  reset();
  weft_executor *ex = pool_new(0);
  weft_sem *warm;
  ASSERT_OK(weft_sem_create(&warm, 0));
  enum { T = 2 };
  struct racer r[T];
  pthread_t th[T];
  for (int t = 0; t < T; t++) {
    r[t] = (struct racer){ex, v, cap, 0, calloc(cap, sizeof(weft_future *)), warm};
    ASSERT_TRUE(r[t].futs != NULL);
    ASSERT_EQ(pthread_create(&th[t], NULL, race_submit, &r[t]), 0);
  }
  for (int t = 0; t < T; t++) ASSERT_OK(weft_sem_wait(warm, weft_deadline_in(LONG_WAIT)));
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_CANCEL, weft_deadline_in(LONG_WAIT)));
  for (int t = 0; t < T; t++) pthread_join(th[t], NULL);
  /* A submit that passed the check as shutdown began may still be landing. */
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_CANCEL, weft_deadline_in(LONG_WAIT)));
  long done = 0, cancelled = 0;
  for (int t = 0; t < T; t++) {
    for (size_t i = 0; i < r[t].got; i++) {
      weft_state s = weft_future_state(r[t].futs[i]);
      ASSERT_TRUE(s == WEFT_DONE || s == WEFT_CANCELLED);
      done += s == WEFT_DONE;
      cancelled += s == WEFT_CANCELLED;
      weft_future_release(r[t].futs[i]);
    }
    free(r[t].futs);
  }
  fprintf(stderr, "ran %ld, cancelled %ld\n", done, cancelled);
  ASSERT_EQ(ld_long(&g_ran), done);
  weft_executor_stats st;
  ASSERT_OK(weft_executor_stats_get(ex, &st));
  ASSERT_UEQ(st.submitted, (uint64_t)(done + cancelled));
  ASSERT_UEQ(st.completed, st.submitted);
  weft_executor_destroy(ex);
  weft_sem_destroy(warm);
  free(v);
}

/* Bursts with idle gaps: workers park and are woken again many times. */
TEST(park_wake_cycles) {
  size_t rounds = (size_t)wt_scaled(2000);
  weft_executor *ex = pool_new(0);
  uint32_t one = 1;
  reset();
  for (size_t r = 0; r < rounds; r++) {
    weft_future *f[4];
    for (int k = 0; k < 4; k++)
      ASSERT_OK(weft_executor_submit(ex, add_task, &one, sizeof one, &f[k]));
    ASSERT_OK(weft_future_wait_all(f, 4, weft_deadline_in(LONG_WAIT)));
    for (int k = 0; k < 4; k++) weft_future_release(f[k]);
  }
  finish(ex, rounds * 4);
  ASSERT_EQ(ld_long(&g_ran), (long)(rounds * 4));
  weft_executor_destroy(ex);
}
