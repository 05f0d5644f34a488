/* Futures: states, results, errors, cancel, callbacks (exactly once, also
 * racing with completion), wait with deadlines, wait_any/all, as_completed. */
#include "wt.h"

#include <pthread.h>
#include <stdatomic.h>

TEST(bad_arguments) {
  ASSERT_RC(weft_future_create(NULL), WEFT_EINVAL);
  ASSERT_RC(weft_future_wait(NULL, 0), WEFT_EINVAL);
  ASSERT_RC(weft_future_error(NULL), WEFT_EINVAL);
  ASSERT_RC(weft_future_result(NULL, NULL, NULL), WEFT_EINVAL);
  ASSERT_RC(weft_future_cancel(NULL), WEFT_EINVAL);
  ASSERT_RC(weft_future_on_done(NULL, NULL, NULL), WEFT_EINVAL);
  ASSERT_RC(weft_future_set_result(NULL, "x", 1), WEFT_EINVAL);
  ASSERT_RC(weft_future_set_error(NULL, -1, NULL), WEFT_EINVAL);
  ASSERT_RC(weft_future_set_running(NULL), WEFT_EINVAL);
  ASSERT_RC(weft_future_wait_any(NULL, 1, 0, NULL), WEFT_EINVAL);
  ASSERT_RC(weft_future_wait_all(NULL, 1, 0), WEFT_EINVAL);
  ASSERT_RC(weft_as_completed_create(NULL, NULL, 0), WEFT_EINVAL);
  ASSERT_RC(weft_as_completed_next(NULL, 0, NULL), WEFT_EINVAL);
  weft_future *f;
  ASSERT_OK(weft_future_create(&f));
  ASSERT_RC(weft_future_on_done(f, NULL, NULL), WEFT_EINVAL);
  ASSERT_RC(weft_future_set_result(f, NULL, 3), WEFT_EINVAL);
  ASSERT_RC(weft_future_set_error(f, 0, NULL), WEFT_EINVAL);
  ASSERT_RC(weft_future_set_error(f, 5, NULL), WEFT_EINVAL);
  weft_future *arr[2] = {f, NULL};
  ASSERT_RC(weft_future_wait_any(arr, 0, 0, NULL), WEFT_EINVAL);
  ASSERT_RC(weft_future_wait_any(arr, 2, 0, NULL), WEFT_EINVAL);
  ASSERT_RC(weft_future_wait_all(arr, 2, 0), WEFT_EINVAL);
  weft_as_completed *it;
  ASSERT_RC(weft_as_completed_create(&it, arr, 2), WEFT_EINVAL);
  weft_future_release(NULL); /* ignored */
  weft_future_release(f);
  ASSERT_STREQ(weft_state_name(WEFT_CANCELLED), "cancelled");
  ASSERT_STREQ(weft_state_name((weft_state)99), "?");
}

TEST(lifecycle_small_and_large_results) {
  weft_future *f;
  ASSERT_OK(weft_future_create(&f));
  ASSERT_EQ(weft_future_state(f), WEFT_PENDING);
  ASSERT_EQ(weft_future_done(f), 0);
  ASSERT_RC(weft_future_error(f), WEFT_EPENDING);
  ASSERT_RC(weft_future_result(f, NULL, NULL), WEFT_EPENDING);
  ASSERT_RC(weft_future_wait(f, WEFT_NOW), WEFT_ETIMEDOUT);
  ASSERT_OK(weft_future_set_running(f));
  ASSERT_EQ(weft_future_state(f), WEFT_RUNNING);
  ASSERT_RC(weft_future_set_running(f), WEFT_EBUSY);
  ASSERT_OK(weft_future_set_result(f, "hello", 6));
  ASSERT_EQ(weft_future_state(f), WEFT_DONE);
  ASSERT_RC(weft_future_set_result(f, "again", 6), WEFT_EBUSY);
  ASSERT_RC(weft_future_set_error(f, WEFT_EINVAL, "late"), WEFT_EBUSY);
  ASSERT_RC(weft_future_cancel(f), WEFT_EBUSY);
  ASSERT_OK(weft_future_wait(f, WEFT_NOW));
  const void *d;
  size_t n;
  ASSERT_OK(weft_future_result(f, &d, &n));
  ASSERT_EQ(n, 6);
  ASSERT_STREQ(d, "hello");
  ASSERT_TRUE(weft_future_errmsg(f) == NULL);
  weft_future_release(f);

  char big[5000];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 7);
  ASSERT_OK(weft_future_create(&f));
  ASSERT_TRUE(weft_future_retain(f) == f);
  ASSERT_OK(weft_future_set_result(f, big, sizeof big));
  weft_future_release(f); /* still one reference */
  ASSERT_OK(weft_future_result(f, &d, &n));
  ASSERT_EQ(n, sizeof big);
  ASSERT_EQ(memcmp(d, big, sizeof big), 0);
  weft_future_release(f);

  ASSERT_OK(weft_future_create(&f));
  ASSERT_OK(weft_future_set_result(f, NULL, 0));
  ASSERT_OK(weft_future_result(f, &d, &n));
  ASSERT_EQ(n, 0);
  weft_future_release(f);
}

TEST(errors_and_cancel_states) {
  weft_future *f;
  ASSERT_OK(weft_future_create(&f));
  ASSERT_OK(weft_future_set_error(f, WEFT_ENOENT, "no such site"));
  ASSERT_EQ(weft_future_state(f), WEFT_FAILED);
  ASSERT_RC(weft_future_error(f), WEFT_ENOENT);
  ASSERT_STREQ(weft_future_errmsg(f), "no such site");
  const void *d = (void *)1;
  size_t n = 9;
  ASSERT_RC(weft_future_result(f, &d, &n), WEFT_ENOENT);
  ASSERT_TRUE(d == NULL);
  ASSERT_EQ(n, 0);
  weft_future_release(f);

  ASSERT_OK(weft_future_create(&f));
  ASSERT_OK(weft_future_set_error(f, WEFT_ECANCELED, NULL));
  ASSERT_EQ(weft_future_state(f), WEFT_CANCELLED);
  weft_future_release(f);

  /* pending: cancelled at once */
  ASSERT_OK(weft_future_create(&f));
  ASSERT_OK(weft_future_cancel(f));
  ASSERT_EQ(weft_future_state(f), WEFT_CANCELLED);
  ASSERT_RC(weft_future_error(f), WEFT_ECANCELED);
  ASSERT_RC(weft_future_set_running(f), WEFT_ECANCELED);
  ASSERT_RC(weft_future_cancel(f), WEFT_EBUSY);
  weft_future_release(f);

  /* running: only a request, the owner decides */
  ASSERT_OK(weft_future_create(&f));
  ASSERT_OK(weft_future_set_running(f));
  ASSERT_RC(weft_future_cancel(f), WEFT_EBUSY);
  ASSERT_EQ(weft_future_state(f), WEFT_RUNNING);
  ASSERT_OK(weft_future_set_result(f, "x", 1));
  ASSERT_EQ(weft_future_state(f), WEFT_DONE);
  weft_future_release(f);
}

static void record_cb(weft_future *f, void *arg) {
  int *log = arg;
  ASSERT_TRUE(weft_future_done(f));
  log[++log[0]] = log[-1]++; /* append the running sequence number */
}

TEST(callbacks_in_order_and_after_completion) {
  int buf[16] = {0};
  int *log = buf + 1; /* log[-1]: sequence, log[0]: count */
  weft_future *f;
  ASSERT_OK(weft_future_create(&f));
  for (int i = 0; i < 5; i++) ASSERT_OK(weft_future_on_done(f, record_cb, log));
  ASSERT_EQ(log[0], 0); /* nothing runs before completion */
  ASSERT_OK(weft_future_set_result(f, "r", 1));
  ASSERT_EQ(log[0], 5);
  for (int i = 1; i <= 5; i++) ASSERT_EQ(log[i], i - 1);
  ASSERT_OK(weft_future_on_done(f, record_cb, log)); /* runs at once */
  ASSERT_EQ(log[0], 6);
  weft_future_release(f);

  /* cancel runs callbacks too */
  int seen[4] = {0};
  ASSERT_OK(weft_future_create(&f));
  ASSERT_OK(weft_future_on_done(f, record_cb, seen + 1));
  ASSERT_OK(weft_future_cancel(f));
  ASSERT_EQ(seen[1], 1);
  weft_future_release(f);
}

static void count_cb(weft_future *f, void *arg) {
  (void)f;
  atomic_fetch_add((atomic_int *)arg, 1);
}

struct race {
  weft_future **futs;
  int n;
  atomic_int *counts;
  pthread_barrier_t *bar;
};

static void *race_completer(void *arg) {
  struct race *r = arg;
  pthread_barrier_wait(r->bar);
  for (int i = 0; i < r->n; i++) weft_future_set_result(r->futs[i], &i, sizeof i);
  return NULL;
}

static void *race_adder(void *arg) {
  struct race *r = arg;
  pthread_barrier_wait(r->bar);
  for (int i = 0; i < r->n; i++)
    for (int k = 0; k < 3; k++) ASSERT_OK(weft_future_on_done(r->futs[i], count_cb, &r->counts[i]));
  return NULL;
}

/* Callbacks added while other threads complete the futures: each runs
 * exactly once, whichever side wins. */
TEST(callbacks_race_with_completion) {
  int n = (int)wt_scaled(20000);
  weft_future **futs = calloc((size_t)n, sizeof *futs);
  atomic_int *counts = calloc((size_t)n, sizeof *counts);
  for (int i = 0; i < n; i++) ASSERT_OK(weft_future_create(&futs[i]));
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, 3);
  struct race r = {futs, n, counts, &bar};
  pthread_t a, b, c;
  pthread_create(&a, NULL, race_completer, &r);
  pthread_create(&b, NULL, race_adder, &r);
  pthread_create(&c, NULL, race_adder, &r);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  pthread_join(c, NULL);
  for (int i = 0; i < n; i++) {
    ASSERT_EQ(atomic_load(&counts[i]), 6);
    weft_future_release(futs[i]);
  }
  pthread_barrier_destroy(&bar);
  free(futs);
  free(counts);
}

struct later {
  weft_future *f;
  pthread_barrier_t bar;
  int code;
};

static void *complete_after_barrier(void *arg) {
  struct later *l = arg;
  pthread_barrier_wait(&l->bar);
  if (l->code) weft_future_set_error(l->f, l->code, "from thread");
  else weft_future_set_result(l->f, "ok", 3);
  return NULL;
}

TEST(wait_wakes_on_completion_from_another_thread) {
  for (int round = 0; round < 200; round++) {
    struct later l = {.code = round % 2 ? WEFT_EINVAL : 0};
    ASSERT_OK(weft_future_create(&l.f));
    pthread_barrier_init(&l.bar, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, complete_after_barrier, &l);
    pthread_barrier_wait(&l.bar);
    ASSERT_OK(weft_future_wait(l.f, WEFT_FOREVER));
    ASSERT_RC(weft_future_error(l.f), l.code);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&l.bar);
    weft_future_release(l.f);
  }
}

TEST(wait_deadline_times_out_not_early) {
  weft_future *f;
  ASSERT_OK(weft_future_create(&f));
  uint64_t t0 = weft_now_ns();
  ASSERT_RC(weft_future_wait(f, weft_deadline_in(40)), WEFT_ETIMEDOUT);
  ASSERT_GE((weft_now_ns() - t0) / 1000000u, 40);
  ASSERT_EQ(weft_future_state(f), WEFT_PENDING); /* untouched */
  ASSERT_OK(weft_future_set_result(f, "x", 1));
  ASSERT_OK(weft_future_wait(f, weft_deadline_in(40)));
  weft_future_release(f);
}

TEST(wait_any_and_all) {
  weft_future *f[4];
  for (int i = 0; i < 4; i++) ASSERT_OK(weft_future_create(&f[i]));
  size_t idx = 99;
  ASSERT_RC(weft_future_wait_any(f, 4, WEFT_NOW, &idx), WEFT_ETIMEDOUT);
  ASSERT_RC(weft_future_wait_any(f, 4, weft_deadline_in(20), &idx), WEFT_ETIMEDOUT);
  ASSERT_RC(weft_future_wait_all(f, 4, WEFT_NOW), WEFT_ETIMEDOUT);
  ASSERT_OK(weft_future_set_result(f[3], "a", 1));
  ASSERT_OK(weft_future_set_result(f[2], "b", 1));
  ASSERT_OK(weft_future_wait_any(f, 4, WEFT_NOW, &idx));
  ASSERT_EQ(idx, 2); /* lowest completed index */
  ASSERT_OK(weft_future_wait_any(f, 4, WEFT_FOREVER, NULL));

  /* wait_any sleeping, woken by another thread */
  struct later l = {.f = f[0], .code = WEFT_ETASK};
  pthread_barrier_init(&l.bar, NULL, 2);
  pthread_t t;
  pthread_create(&t, NULL, complete_after_barrier, &l);
  pthread_barrier_wait(&l.bar);
  weft_future *two[2] = {f[0], f[1]};
  ASSERT_OK(weft_future_wait_any(two, 2, WEFT_FOREVER, &idx));
  ASSERT_EQ(idx, 0);
  pthread_join(t, NULL);
  pthread_barrier_destroy(&l.bar);

  ASSERT_RC(weft_future_wait_all(f, 4, weft_deadline_in(10)), WEFT_ETIMEDOUT);
  ASSERT_OK(weft_future_cancel(f[1]));
  ASSERT_OK(weft_future_wait_all(f, 4, WEFT_NOW));
  ASSERT_OK(weft_future_wait_all(f, 0, WEFT_NOW));
  for (int i = 0; i < 4; i++) weft_future_release(f[i]);
}

TEST(as_completed_yields_completion_order) {
  weft_future *f[5];
  for (int i = 0; i < 5; i++) ASSERT_OK(weft_future_create(&f[i]));
  weft_as_completed *it;
  ASSERT_OK(weft_as_completed_create(&it, f, 5));
  size_t idx;
  ASSERT_RC(weft_as_completed_next(it, WEFT_NOW, &idx), WEFT_ETIMEDOUT);
  int order[5] = {3, 0, 4, 1, 2};
  for (int k = 0; k < 5; k++) {
    ASSERT_OK(weft_future_set_result(f[order[k]], &k, sizeof k));
    ASSERT_OK(weft_as_completed_next(it, WEFT_FOREVER, &idx));
    ASSERT_EQ(idx, order[k]);
  }
  ASSERT_RC(weft_as_completed_next(it, WEFT_FOREVER, &idx), WEFT_ECLOSED);
  weft_as_completed_destroy(it);
  for (int i = 0; i < 5; i++) weft_future_release(f[i]);

  /* empty */
  ASSERT_OK(weft_as_completed_create(&it, NULL, 0));
  ASSERT_RC(weft_as_completed_next(it, WEFT_FOREVER, &idx), WEFT_ECLOSED);
  weft_as_completed_destroy(it);
}

TEST(as_completed_destroyed_early_is_safe) {
  weft_future *f[3];
  for (int i = 0; i < 3; i++) ASSERT_OK(weft_future_create(&f[i]));
  weft_as_completed *it;
  ASSERT_OK(weft_as_completed_create(&it, f, 3));
  ASSERT_OK(weft_future_set_result(f[1], "x", 1));
  size_t idx;
  ASSERT_OK(weft_as_completed_next(it, WEFT_NOW, &idx));
  ASSERT_EQ(idx, 1);
  weft_as_completed_destroy(it);
  /* completing after the iterator is gone runs its callbacks safely */
  ASSERT_OK(weft_future_set_result(f[0], "y", 1));
  ASSERT_OK(weft_future_cancel(f[2]));
  for (int i = 0; i < 3; i++) weft_future_release(f[i]);
}
