/*
 * test_task.c — async tasks: spawn, await, sleep, yield, cancel, groups,
 * executors from tasks, sockets, loop destruction with live tasks.
 */
#include "wt.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <dirent.h>
#include <sys/socket.h>
#include <unistd.h>

static weft_loop *new_loop(void) {
  weft_loop *loop;
  ASSERT_OK(weft_loop_create(&loop, NULL));
  return loop;
}

/* ---- basic spawn and results ---- */

static int add_one(const void *in, size_t n, weft_out *out) {
  ASSERT_EQ(n, sizeof(int));
  ASSERT_TRUE(weft_in_task());
  int v = *(const int *)in + 1;
  return weft_out_set(out, &v, sizeof v);
}

TEST(spawn_result) {
  weft_loop *loop = new_loop();
  int in[3] = {1, 10, 100};
  weft_future *f[3];
  for (int i = 0; i < 3; i++) ASSERT_OK(weft_spawn(loop, add_one, &in[i], sizeof(int), NULL, &f[i]));
  ASSERT_EQ(weft_future_done(f[0]), 0); /* nothing runs before the loop */
  ASSERT_OK(weft_loop_run(loop));
  for (int i = 0; i < 3; i++) {
    const void *d;
    size_t sz;
    ASSERT_OK(weft_future_result(f[i], &d, &sz));
    ASSERT_EQ(sz, sizeof(int));
    ASSERT_EQ(*(const int *)d, in[i] + 1);
    weft_future_release(f[i]);
  }
  ASSERT_EQ(weft_in_task(), 0);
  weft_loop_destroy(loop);
}

TEST(spawn_bad_args) {
  weft_loop *loop = new_loop();
  weft_future *f = (weft_future *)1;
  ASSERT_RC(weft_spawn(NULL, add_one, NULL, 0, NULL, &f), WEFT_EINVAL);
  ASSERT_TRUE(f == NULL);
  ASSERT_RC(weft_spawn(loop, NULL, NULL, 0, NULL, &f), WEFT_EINVAL);
  ASSERT_RC(weft_spawn(loop, add_one, NULL, 4, NULL, &f), WEFT_EINVAL);
  ASSERT_RC(weft_await(NULL, 0), WEFT_EINVAL);
  weft_loop_destroy(loop);
}

static int fail_task(const void *in, size_t n, weft_out *out) {
  (void)in;
  (void)n;
  return weft_out_fail(out, 0, "nope %d", 7);
}

TEST(task_error_travels) {
  weft_loop *loop = new_loop();
  weft_future *f;
  ASSERT_OK(weft_spawn(loop, fail_task, NULL, 0, NULL, &f));
  ASSERT_OK(weft_loop_run_until(loop, f, weft_deadline_in(5000)));
  ASSERT_RC(weft_future_error(f), WEFT_ETASK);
  ASSERT_STREQ(weft_future_errmsg(f), "nope 7");
  weft_future_release(f);
  weft_loop_destroy(loop);
}

/* ---- ordering: FIFO start, yield interleaves ---- */

static char g_trace[64];
static int g_tlen;

static int tracer(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  char c = *(const char *)in;
  for (int i = 0; i < 3; i++) {
    g_trace[g_tlen++] = (char)(c + i);
    ASSERT_OK(weft_yield());
  }
  return 0;
}

TEST(yield_interleaves) {
  weft_loop *loop = new_loop();
  g_tlen = 0;
  char a = 'a', b = 'A';
  ASSERT_OK(weft_spawn(loop, tracer, &a, 1, NULL, NULL));
  ASSERT_OK(weft_spawn(loop, tracer, &b, 1, NULL, NULL));
  ASSERT_OK(weft_loop_run(loop));
  g_trace[g_tlen] = 0;
  ASSERT_STREQ(g_trace, "aAbBcC");
  weft_loop_destroy(loop);
}

/* ---- sleep ---- */

static int g_order[8], g_norder;

static int sleeper(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  int ms = *(const int *)in;
  int64_t t0 = weft_now();
  int rc = weft_sleep(ms);
  if (rc) return rc;
  ASSERT_GE(weft_now() - t0, ms);
  g_order[g_norder++] = ms;
  return 0;
}

TEST(sleep_order) {
  weft_loop *loop = new_loop();
  g_norder = 0;
  int ms[3] = {60, 20, 40};
  int64_t t0 = weft_now();
  for (int i = 0; i < 3; i++) ASSERT_OK(weft_spawn(loop, sleeper, &ms[i], sizeof(int), NULL, NULL));
  ASSERT_OK(weft_loop_run(loop));
  int64_t took = weft_now() - t0;
  ASSERT_EQ(g_norder, 3);
  ASSERT_EQ(g_order[0], 20);
  ASSERT_EQ(g_order[1], 40);
  ASSERT_EQ(g_order[2], 60);
  ASSERT_GE(took, 60);
  ASSERT_LT(took, 60 * 5 + 500); /* concurrent, not 120 ms sequential: loose bound */
  weft_loop_destroy(loop);
}

TEST(outside_task_blocks) {
  int64_t t0 = weft_now();
  ASSERT_OK(weft_sleep(20));
  ASSERT_GE(weft_now() - t0, 20);
  ASSERT_OK(weft_yield());
  weft_future *f;
  ASSERT_OK(weft_future_create(&f));
  ASSERT_RC(weft_await(f, weft_deadline_in(10)), WEFT_ETIMEDOUT);
  ASSERT_OK(weft_future_set_result(f, "x", 1));
  ASSERT_OK(weft_await(f, WEFT_FOREVER));
  weft_future_release(f);
}

/* ---- cancellation ---- */

static int g_ran;

static int mark_ran(const void *in, size_t n, weft_out *out) {
  (void)in;
  (void)n;
  (void)out;
  g_ran++;
  return 0;
}

TEST(cancel_before_start) {
  weft_loop *loop = new_loop();
  g_ran = 0;
  weft_future *f;
  ASSERT_OK(weft_spawn(loop, mark_ran, NULL, 0, NULL, &f));
  ASSERT_OK(weft_future_cancel(f));
  ASSERT_OK(weft_loop_run(loop));
  ASSERT_EQ(g_ran, 0);
  ASSERT_EQ(weft_future_state(f), WEFT_CANCELLED);
  weft_future_release(f);
  weft_loop_destroy(loop);
}

typedef struct cancel_probe {
  int first_rc, second_rc;
  int64_t woke_at;
} cancel_probe;

static int long_sleeper(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  cancel_probe *p = (cancel_probe *)in;
  p->first_rc = weft_sleep(10000);
  p->woke_at = weft_now();
  p->second_rc = weft_sleep(1); /* sticky: cancelled again at once */
  return p->first_rc;
}

static int canceller(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  weft_future *victim = *(weft_future *const *)in;
  ASSERT_OK(weft_sleep(20));
  ASSERT_RC(weft_future_cancel(victim), WEFT_EBUSY); /* running: flagged */
  return 0;
}

TEST(cancel_running_from_task) {
  weft_loop *loop = new_loop();
  cancel_probe p = {0};
  weft_future *victim;
  ASSERT_OK(weft_spawn(loop, long_sleeper, &p, sizeof p, NULL, &victim));
  ASSERT_OK(weft_spawn(loop, canceller, &victim, sizeof victim, NULL, NULL));
  int64_t t0 = weft_now();
  ASSERT_OK(weft_loop_run(loop));
  ASSERT_LT(weft_now() - t0, 5000);
  ASSERT_RC(p.first_rc, WEFT_ECANCELED);
  ASSERT_RC(p.second_rc, WEFT_ECANCELED);
  ASSERT_EQ(weft_future_state(victim), WEFT_CANCELLED);
  weft_future_release(victim);
  weft_loop_destroy(loop);
}

typedef struct thread_cancel {
  weft_future *victim;
  weft_event *started;
} thread_cancel;

static void *cancel_thread(void *arg) {
  thread_cancel *tc = arg;
  ASSERT_OK(weft_event_wait(tc->started, weft_deadline_in(10000)));
  weft_future_cancel(tc->victim);
  return NULL;
}

static int signal_then_sleep(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  weft_event *ev = *(weft_event *const *)in;
  weft_event_set(ev);
  return weft_sleep(10000);
}

TEST(cancel_from_thread) {
  weft_loop *loop = new_loop();
  thread_cancel tc;
  ASSERT_OK(weft_event_create(&tc.started));
  ASSERT_OK(weft_spawn(loop, signal_then_sleep, &tc.started, sizeof tc.started, NULL, &tc.victim));
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, cancel_thread, &tc), 0);
  int64_t t0 = weft_now();
  ASSERT_OK(weft_loop_run_until(loop, tc.victim, weft_deadline_in(8000)));
  ASSERT_LT(weft_now() - t0, 5000);
  ASSERT_RC(weft_future_error(tc.victim), WEFT_ECANCELED);
  pthread_join(th, NULL);
  weft_future_release(tc.victim);
  weft_event_destroy(tc.started);
  weft_loop_destroy(loop);
}

/* ---- awaiting ---- */

static int sleep_then_value(const void *in, size_t n, weft_out *out) {
  (void)n;
  int ms = *(const int *)in;
  int rc = weft_sleep(ms);
  if (rc) return rc;
  return weft_out_set(out, &ms, sizeof ms);
}

typedef struct gather_ctx {
  int ms[5];
  int order[5];
  int timed_out_rc;
} gather_ctx;

static int as_completed_task(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  gather_ctx *g = (gather_ctx *)in;
  weft_loop *loop = weft_loop_current();
  weft_future *f[5];
  for (int i = 0; i < 5; i++) ASSERT_OK(weft_spawn(loop, sleep_then_value, &g->ms[i], sizeof(int), NULL, &f[i]));
  /* wait_for: a deadline shorter than every task */
  size_t idx;
  g->timed_out_rc = weft_await_any(f, 5, weft_deadline_in(5), &idx);
  /* as_completed: take them in completion order */
  weft_future *left[5];
  memcpy(left, f, sizeof f);
  size_t nleft = 5;
  for (int k = 0; k < 5; k++) {
    ASSERT_OK(weft_await_any(left, nleft, weft_deadline_in(10000), &idx));
    const void *d;
    size_t sz;
    ASSERT_OK(weft_future_result(left[idx], &d, &sz));
    g->order[k] = *(const int *)d;
    left[idx] = left[--nleft];
  }
  ASSERT_OK(weft_await_all(f, 5, WEFT_NOW)); /* all done: no wait */
  for (int i = 0; i < 5; i++) weft_future_release(f[i]);
  return 0;
}

TEST(await_any_as_completed) {
  weft_loop *loop = new_loop();
  gather_ctx g = {.ms = {80, 20, 60, 40, 100}};
  weft_future *f;
  ASSERT_OK(weft_spawn(loop, as_completed_task, &g, sizeof g, NULL, &f));
  ASSERT_OK(weft_loop_run_until(loop, f, weft_deadline_in(10000)));
  ASSERT_OK(weft_future_error(f));
  ASSERT_RC(g.timed_out_rc, WEFT_ETIMEDOUT);
  int want[5] = {20, 40, 60, 80, 100};
  for (int i = 0; i < 5; i++) ASSERT_EQ(g.order[i], want[i]);
  weft_future_release(f);
  weft_loop_destroy(loop);
}

static int gather_task(const void *in, size_t n, weft_out *out) {
  (void)in;
  (void)n;
  weft_loop *loop = weft_loop_current();
  enum { N = 50 };
  static int ms[N];
  weft_future *f[N];
  for (int i = 0; i < N; i++) {
    ms[i] = 10 + (i * 7) % 40;
    ASSERT_OK(weft_spawn(loop, sleep_then_value, &ms[i], sizeof(int), NULL, &f[i]));
  }
  int64_t t0 = weft_now();
  ASSERT_OK(weft_await_all(f, N, weft_deadline_in(10000)));
  int64_t took = weft_now() - t0;
  long sum = 0;
  for (int i = 0; i < N; i++) {
    const void *d;
    size_t sz;
    ASSERT_OK(weft_future_result(f[i], &d, &sz));
    sum += *(const int *)d;
    weft_future_release(f[i]);
  }
  return weft_out_set(out, (long[]){sum, took}, 2 * sizeof(long));
}

TEST(gather_concurrent) {
  weft_loop *loop = new_loop();
  weft_future *f;
  ASSERT_OK(weft_spawn(loop, gather_task, NULL, 0, NULL, &f));
  ASSERT_OK(weft_loop_run_until(loop, f, weft_deadline_in(10000)));
  const long *r;
  size_t sz;
  ASSERT_OK(weft_future_result(f, (const void **)&r, &sz));
  long want = 0;
  for (int i = 0; i < 50; i++) want += 10 + (i * 7) % 40;
  ASSERT_EQ(r[0], want);
  ASSERT_LT(r[1], 1000); /* all at once (max 49 ms), not 1.4 s in sequence */
  weft_future_release(f);
  weft_loop_destroy(loop);
}

/* ---- groups ---- */

typedef struct grp_ctx {
  int fail_after_ms;
  int sibling_rc[4];
  int wait_rc;
} grp_ctx;

typedef struct sib_arg {
  grp_ctx *g;
  int i;
} sib_arg;

static int sibling(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  const sib_arg *a = in;
  int rc = weft_sleep(5000);
  a->g->sibling_rc[a->i] = rc;
  return rc;
}

static int failer(const void *in, size_t n, weft_out *out) {
  (void)n;
  const grp_ctx *g = in;
  weft_sleep(g->fail_after_ms);
  return weft_out_fail(out, WEFT_EIO, "child failed");
}

static int group_parent(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  grp_ctx *g = (grp_ctx *)in;
  weft_group *grp;
  ASSERT_OK(weft_group_create(&grp, weft_loop_current()));
  sib_arg a[4];
  for (int i = 0; i < 4; i++) {
    a[i] = (sib_arg){g, i};
    g->sibling_rc[i] = 1;
    ASSERT_OK(weft_group_spawn(grp, sibling, &a[i], sizeof a[i], NULL, NULL));
  }
  ASSERT_OK(weft_group_spawn(grp, failer, g, sizeof *g, NULL, NULL));
  g->wait_rc = weft_group_wait(grp, weft_deadline_in(10000));
  ASSERT_RC(weft_group_spawn(grp, mark_ran, NULL, 0, NULL, NULL), WEFT_ECANCELED);
  weft_group_destroy(grp);
  return 0;
}

TEST(group_failure_cancels_siblings) {
  weft_loop *loop = new_loop();
  grp_ctx g = {.fail_after_ms = 20};
  weft_future *f;
  int64_t t0 = weft_now();
  ASSERT_OK(weft_spawn(loop, group_parent, &g, sizeof g, NULL, &f));
  ASSERT_OK(weft_loop_run_until(loop, f, weft_deadline_in(10000)));
  ASSERT_LT(weft_now() - t0, 4000);
  ASSERT_OK(weft_future_error(f));
  ASSERT_RC(g.wait_rc, WEFT_EIO);
  for (int i = 0; i < 4; i++) ASSERT_RC(g.sibling_rc[i], WEFT_ECANCELED);
  weft_future_release(f);
  weft_loop_destroy(loop);
}

static int group_ok_parent(const void *in, size_t n, weft_out *out) {
  (void)in;
  (void)n;
  weft_group *grp;
  ASSERT_OK(weft_group_create(&grp, weft_loop_current()));
  static int ms[3] = {30, 10, 20};
  weft_future *f[3];
  for (int i = 0; i < 3; i++) ASSERT_OK(weft_group_spawn(grp, sleep_then_value, &ms[i], sizeof(int), NULL, &f[i]));
  ASSERT_OK(weft_group_wait(grp, weft_deadline_in(10000)));
  int sum = 0;
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(weft_future_state(f[i]), WEFT_DONE);
    const void *d;
    size_t sz;
    ASSERT_OK(weft_future_result(f[i], &d, &sz));
    sum += *(const int *)d;
    weft_future_release(f[i]);
  }
  /* A second round in the same group. */
  ASSERT_OK(weft_group_spawn(grp, sleep_then_value, &ms[1], sizeof(int), NULL, NULL));
  ASSERT_OK(weft_group_wait(grp, weft_deadline_in(10000)));
  weft_group_destroy(grp);
  return weft_out_set(out, &sum, sizeof sum);
}

TEST(group_all_succeed) {
  weft_loop *loop = new_loop();
  weft_future *f;
  ASSERT_OK(weft_spawn(loop, group_ok_parent, NULL, 0, NULL, &f));
  ASSERT_OK(weft_loop_run_until(loop, f, weft_deadline_in(10000)));
  const void *d;
  size_t sz;
  ASSERT_OK(weft_future_result(f, &d, &sz));
  ASSERT_EQ(*(const int *)d, 60);
  weft_future_release(f);
  weft_loop_destroy(loop);
}

static int group_destroy_parent(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  grp_ctx *g = (grp_ctx *)in;
  weft_group *grp;
  ASSERT_OK(weft_group_create(&grp, weft_loop_current()));
  sib_arg a[4];
  for (int i = 0; i < 4; i++) {
    a[i] = (sib_arg){g, i};
    g->sibling_rc[i] = 1;
    ASSERT_OK(weft_group_spawn(grp, sibling, &a[i], sizeof a[i], NULL, NULL));
  }
  ASSERT_OK(weft_sleep(10)); /* let them start */
  weft_group_destroy(grp);   /* cancels and waits: no child outlives it */
  for (int i = 0; i < 4; i++) ASSERT_RC(g->sibling_rc[i], WEFT_ECANCELED);
  return 0;
}

TEST(group_destroy_waits_children) {
  weft_loop *loop = new_loop();
  grp_ctx g = {0};
  weft_future *f;
  ASSERT_OK(weft_spawn(loop, group_destroy_parent, &g, sizeof g, NULL, &f));
  ASSERT_OK(weft_loop_run_until(loop, f, weft_deadline_in(10000)));
  ASSERT_OK(weft_future_error(f));
  weft_future_release(f);
  weft_loop_destroy(loop);
}

TEST(group_wait_outside_task) {
  weft_loop *loop = new_loop();
  weft_group *grp;
  ASSERT_OK(weft_group_create(&grp, loop));
  ASSERT_OK(weft_group_wait(grp, WEFT_NOW)); /* empty */
  int ms = 15;
  for (int i = 0; i < 5; i++) ASSERT_OK(weft_group_spawn(grp, sleep_then_value, &ms, sizeof ms, NULL, NULL));
  ASSERT_OK(weft_group_wait(grp, weft_deadline_in(10000)));
  weft_group_destroy(grp);
  weft_loop_destroy(loop);
}

/* ---- executors from tasks: the loop keeps running ---- */

static int blocking_work(const void *in, size_t n, weft_out *out) {
  (void)n;
  weft_sem *sem = *(weft_sem *const *)in;
  /* Blocks this pool thread until the ticker task has run several times. */
  ASSERT_OK(weft_sem_wait(sem, weft_deadline_in(10000)));
  int v = 42;
  return weft_out_set(out, &v, sizeof v);
}

typedef struct exec_ctx {
  weft_executor *ex;
  weft_sem *sem;
  int ticks;
  int result;
} exec_ctx;

static int ticker(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  exec_ctx *c = (exec_ctx *)in;
  for (int i = 0; i < 5; i++) {
    ASSERT_OK(weft_sleep(2));
    c->ticks++;
  }
  weft_sem_post(c->sem); /* only now may the pool task finish */
  return 0;
}

static int offload(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  exec_ctx *c = (exec_ctx *)in;
  weft_future *f;
  if (c->ex) ASSERT_OK(weft_run_in_executor(c->ex, blocking_work, &c->sem, sizeof c->sem, weft_deadline_in(10000), &f));
  else ASSERT_OK(weft_to_thread(blocking_work, &c->sem, sizeof c->sem, weft_deadline_in(10000), &f));
  ASSERT_EQ(c->ticks, 5); /* the loop ran the ticker while we waited */
  const void *d;
  size_t sz;
  ASSERT_OK(weft_future_result(f, &d, &sz));
  c->result = *(const int *)d;
  weft_future_release(f);
  return 0;
}

static void run_offload(weft_executor *ex) {
  weft_loop *loop = new_loop();
  exec_ctx c = {.ex = ex};
  ASSERT_OK(weft_sem_create(&c.sem, 0));
  weft_future *f;
  ASSERT_OK(weft_spawn(loop, offload, &c, sizeof c, NULL, &f));
  ASSERT_OK(weft_spawn(loop, ticker, &c, sizeof c, NULL, NULL));
  ASSERT_OK(weft_loop_run_until(loop, f, weft_deadline_in(10000)));
  ASSERT_OK(weft_future_error(f));
  ASSERT_EQ(c.result, 42);
  ASSERT_OK(weft_loop_run(loop));
  weft_future_release(f);
  weft_sem_destroy(c.sem);
  weft_loop_destroy(loop);
}

TEST(run_in_thread_pool) {
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, "thread_pool", NULL));
  run_offload(ex);
  ASSERT_OK(weft_executor_shutdown(ex, 0, weft_deadline_in(5000)));
  weft_executor_destroy(ex);
}

TEST(to_thread_works) { run_offload(NULL); }

static int fib(int n) { return n <= 2 ? 1 : fib(n - 1) + fib(n - 2); }

static int fib_task(const void *in, size_t n, weft_out *out) {
  (void)n;
  int v = fib(*(const int *)in);
  return weft_out_set(out, &v, sizeof v);
}
WEFT_REGISTER(fib_task);

static int fib_offloader(const void *in, size_t n, weft_out *out) {
  (void)n;
  weft_executor *ex = *(weft_executor *const *)in;
  static const int arg = 20;
  weft_future *f;
  ASSERT_OK(weft_run_in_executor(ex, fib_task, &arg, sizeof arg, weft_deadline_in(20000), &f));
  const void *d;
  size_t sz;
  ASSERT_OK(weft_future_result(f, &d, &sz));
  int v = *(const int *)d;
  weft_future_release(f);
  return weft_out_set(out, &v, sizeof v);
}

TEST(run_in_process_pool) /* labels: novalgrind */ {
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, "process_pool", NULL));
  weft_loop *loop = new_loop();
  weft_future *f[4];
  for (int i = 0; i < 4; i++) ASSERT_OK(weft_spawn(loop, fib_offloader, &ex, sizeof ex, NULL, &f[i]));
  ASSERT_OK(weft_loop_run(loop));
  for (int i = 0; i < 4; i++) {
    const void *d;
    size_t sz;
    ASSERT_OK(weft_future_result(f[i], &d, &sz));
    ASSERT_EQ(*(const int *)d, 6765);
    weft_future_release(f[i]);
  }
  weft_loop_destroy(loop);
  ASSERT_OK(weft_executor_shutdown(ex, 0, weft_deadline_in(10000)));
  weft_executor_destroy(ex);
}

/* ---- loop destroy with live tasks ---- */

static int stubborn(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  int *seen = (int *)in;
  for (;;)
    if (weft_sleep(1000) == WEFT_ECANCELED) ++*seen; /* and ignores it */
  return 0;
}

static int polite(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  int *rc = (int *)in;
  *rc = weft_sleep(100000);
  return *rc;
}

TEST(loop_destroy_cancels_tasks) {
  weft_loop *loop = new_loop();
  int polite_rc = 1, seen = 0;
  weft_future *fp, *fs, *fn;
  ASSERT_OK(weft_spawn(loop, polite, &polite_rc, sizeof polite_rc, NULL, &fp));
  ASSERT_OK(weft_spawn(loop, stubborn, &seen, sizeof seen, NULL, &fs));
  /* Let them start and suspend: run until a short sleeper is done. */
  int ms = 5;
  ASSERT_OK(weft_spawn(loop, sleep_then_value, &ms, sizeof ms, NULL, &fn));
  ASSERT_OK(weft_loop_run_until(loop, fn, weft_deadline_in(5000)));
  weft_future *never;
  ASSERT_OK(weft_spawn(loop, mark_ran, NULL, 0, NULL, &never)); /* not started */
  g_ran = 0;
  int64_t t0 = weft_now();
  weft_loop_destroy(loop);
  ASSERT_LT(weft_now() - t0, 5000);
  ASSERT_RC(polite_rc, WEFT_ECANCELED);
  ASSERT_RC(weft_future_error(fp), WEFT_ECANCELED);
  ASSERT_RC(weft_future_error(fs), WEFT_ECANCELED); /* abandoned */
  ASSERT_GE(seen, 1);
  ASSERT_EQ(weft_future_state(never), WEFT_CANCELLED);
  ASSERT_EQ(g_ran, 0);
  weft_future_release(fp);
  weft_future_release(fs);
  weft_future_release(fn);
  weft_future_release(never);
}

/* ---- many tasks ---- */

static int tiny_sleeper(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  int i = *(const int *)in;
  ASSERT_OK(weft_sleep(1 + i % 20));
  ASSERT_OK(weft_yield());
  return 0;
}

TEST(ten_thousand_tasks) /* labels: notsan */ {
  weft_loop *loop = new_loop();
  int n = (int)wt_scaled(10000);
  int *ids = calloc((size_t)n, sizeof *ids);
  weft_task_opts o = {.stack_size = 32 * 1024};
  for (int i = 0; i < n; i++) {
    ids[i] = i;
    ASSERT_OK(weft_spawn(loop, tiny_sleeper, &ids[i], sizeof(int), &o, NULL));
  }
  int64_t t0 = weft_now();
  ASSERT_OK(weft_loop_run(loop));
  ASSERT_LT(weft_now() - t0, 30000);
  free(ids);
  weft_loop_destroy(loop);
}

/* ---- sockets ---- */

typedef struct echo_srv {
  int lfd;
  int port;
  int clients;
} echo_srv;

static int echo_conn(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  int fd = *(const int *)in;
  unsigned char buf[4096];
  for (;;) {
    size_t got;
    int rc = weft_read(fd, buf, sizeof buf, weft_deadline_in(10000), &got);
    if (rc || got == 0) break;
    if (weft_write_all(fd, buf, got, weft_deadline_in(10000))) break;
  }
  weft_close(fd);
  return 0;
}

static int echo_accept(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  echo_srv *s = (echo_srv *)in;
  static int fds[1024];
  for (int i = 0; i < s->clients; i++) {
    int fd;
    ASSERT_OK(weft_accept(s->lfd, weft_deadline_in(10000), &fd));
    fds[i] = fd;
    ASSERT_OK(weft_spawn(weft_loop_current(), echo_conn, &fds[i], sizeof(int), NULL, NULL));
  }
  return 0;
}

static int echo_client(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  const echo_srv *s = in;
  int fd;
  int rc = weft_tcp_connect("127.0.0.1", s->port, weft_deadline_in(10000), &fd);
  if (rc) return rc;
  unsigned char msg[20000], back[20000];
  for (size_t i = 0; i < sizeof msg; i++) msg[i] = (unsigned char)(i * 31 + (size_t)fd);
  ASSERT_OK(weft_write_all(fd, msg, sizeof msg, weft_deadline_in(10000)));
  size_t got;
  ASSERT_OK(weft_read_exactly(fd, back, sizeof back, weft_deadline_in(10000), &got));
  ASSERT_EQ(got, sizeof back);
  ASSERT_EQ(memcmp(msg, back, sizeof msg), 0);
  /* the server closes after we shut down our side: read gives EOF */
  shutdown(fd, SHUT_WR);
  ASSERT_OK(weft_read(fd, back, 1, weft_deadline_in(10000), &got));
  ASSERT_EQ(got, 0);
  ASSERT_RC(weft_read_exactly(fd, back, 1, weft_deadline_in(1000), &got), WEFT_EIO);
  weft_close(fd);
  return 0;
}

TEST(tcp_echo_many_clients) {
  int fds0 = wt_count_fds();
  weft_loop *loop = new_loop();
  echo_srv s = {.clients = 100};
  ASSERT_OK(weft_tcp_listen(NULL, 0, 0, &s.lfd, &s.port));
  ASSERT_GT(s.port, 0);
  weft_future *acc;
  ASSERT_OK(weft_spawn(loop, echo_accept, &s, sizeof s, NULL, &acc));
  weft_future *c[100];
  for (int i = 0; i < 100; i++) ASSERT_OK(weft_spawn(loop, echo_client, &s, sizeof s, NULL, &c[i]));
  ASSERT_OK(weft_loop_run(loop));
  ASSERT_OK(weft_future_error(acc));
  for (int i = 0; i < 100; i++) {
    ASSERT_OK(weft_future_error(c[i]));
    weft_future_release(c[i]);
  }
  weft_future_release(acc);
  ASSERT_OK(weft_close(s.lfd));
  weft_loop_destroy(loop);
  ASSERT_EQ(wt_count_fds(), fds0);
}

static int refused_client(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  int port = *(const int *)in;
  int fd;
  return weft_tcp_connect("127.0.0.1", port, weft_deadline_in(5000), &fd);
}

TEST(tcp_refused_fails_own_task) {
  int lfd, port;
  ASSERT_OK(weft_tcp_listen(NULL, 0, 0, &lfd, &port));
  close(lfd); /* nobody listens there now */
  weft_loop *loop = new_loop();
  weft_future *bad, *good;
  int ms = 10;
  ASSERT_OK(weft_spawn(loop, refused_client, &port, sizeof port, NULL, &bad));
  ASSERT_OK(weft_spawn(loop, sleep_then_value, &ms, sizeof ms, NULL, &good));
  ASSERT_OK(weft_loop_run(loop));
  ASSERT_RC(weft_future_error(bad), WEFT_ECONNREFUSED);
  ASSERT_OK(weft_future_error(good));
  weft_future_release(bad);
  weft_future_release(good);
  weft_loop_destroy(loop);
}

static int read_timeout_task(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  int fd = *(const int *)in;
  char b;
  size_t got;
  int64_t t0 = weft_now();
  int rc = weft_read(fd, &b, 1, weft_deadline_in(50), &got);
  ASSERT_GE(weft_now() - t0, 50);
  return rc;
}

TEST(read_deadline) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  weft_loop *loop = new_loop();
  weft_future *f;
  ASSERT_OK(weft_spawn(loop, read_timeout_task, &p[0], sizeof(int), NULL, &f));
  ASSERT_OK(weft_loop_run(loop));
  ASSERT_RC(weft_future_error(f), WEFT_ETIMEDOUT);
  weft_future_release(f);
  weft_loop_destroy(loop);
  close(p[0]);
  close(p[1]);
}

static int connect_localhost(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  int port = *(const int *)in;
  int fd;
  int rc = weft_tcp_connect("localhost", port, weft_deadline_in(10000), &fd);
  if (rc == 0) weft_close(fd);
  return rc;
}

static int connect_bad_name(const void *in, size_t n, weft_out *out) {
  (void)in;
  (void)n;
  (void)out;
  int fd;
  return weft_tcp_connect("no-such-host.invalid", 80, weft_deadline_in(20000), &fd);
}

TEST(tcp_connect_resolves_off_loop) {
  int lfd, port;
  ASSERT_OK(weft_tcp_listen("127.0.0.1", 0, 0, &lfd, &port));
  weft_loop *loop = new_loop();
  weft_future *f, *bad;
  ASSERT_OK(weft_spawn(loop, connect_localhost, &port, sizeof port, NULL, &f));
  ASSERT_OK(weft_spawn(loop, connect_bad_name, NULL, 0, NULL, &bad));
  ASSERT_OK(weft_loop_run(loop));
  int rc = weft_future_error(f);
  /* "localhost" may resolve to ::1 first; 127.0.0.1 must be among the tries. */
  ASSERT_OK(rc);
  ASSERT_RC(weft_future_error(bad), WEFT_EDNS);
  weft_future_release(f);
  weft_future_release(bad);
  weft_loop_destroy(loop);
  close(lfd);
}

TEST(sockets_outside_task) {
  int lfd, port;
  ASSERT_OK(weft_tcp_listen(NULL, 0, 0, &lfd, &port));
  int c, s;
  ASSERT_OK(weft_tcp_connect("127.0.0.1", port, weft_deadline_in(5000), &c));
  ASSERT_OK(weft_accept(lfd, weft_deadline_in(5000), &s));
  ASSERT_OK(weft_write_all(c, "hello", 5, weft_deadline_in(5000)));
  char buf[5];
  ASSERT_OK(weft_read_exactly(s, buf, 5, weft_deadline_in(5000), NULL));
  ASSERT_EQ(memcmp(buf, "hello", 5), 0);
  size_t got;
  ASSERT_RC(weft_read(s, buf, 5, weft_deadline_in(30), &got), WEFT_ETIMEDOUT);
  ASSERT_OK(weft_close(c));
  ASSERT_OK(weft_close(s));
  ASSERT_OK(weft_close(lfd));
}

/* ---- the blocking detector names the task and where it was spawned ---- */

static int hog(const void *in, size_t n, weft_out *out) {
  (void)in;
  (void)n;
  (void)out;
  int64_t until = weft_now() + 300;
  while (weft_now() < until) {
  } /* holds the loop: no await */
  return 0;
}

TEST(blocking_detector_names_task) /* labels: novalgrind */ {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  int saved = dup(2);
  ASSERT_TRUE(saved >= 0);
  weft_loop_opts lo = {.block_warn_ms = 50};
  weft_loop *loop;
  ASSERT_OK(weft_loop_create(&loop, &lo));
  weft_task_opts to = {.name = "hog"};
  int line = __LINE__ + 1;
  ASSERT_OK(weft_spawn(loop, hog, NULL, 0, &to, NULL));
  fflush(stderr);
  ASSERT_EQ(dup2(p[1], 2), 2);
  ASSERT_OK(weft_loop_run(loop));
  fflush(stderr);
  ASSERT_EQ(dup2(saved, 2), 2);
  close(saved);
  char buf[1024] = {0};
  ssize_t got = read(p[0], buf, sizeof buf - 1);
  ASSERT_GT(got, 0);
  char want[128];
  snprintf(want, sizeof want, "by hog (spawned at %s:%d)", __FILE__, line);
  if (!strstr(buf, "weft: loop blocked for") || !strstr(buf, want))
    WT_FAIL("stderr was: %s (wanted \"%s\")", buf, want);
  weft_loop_destroy(loop);
  close(p[0]);
  close(p[1]);
}

/* ---- the "async" executor: the executor API over one loop ---- */

static int sleep_item(const void *in, size_t n, weft_out *out) {
  (void)n;
  int ms = *(const int *)in;
  ASSERT_TRUE(weft_in_task());
  int rc = weft_sleep(ms);
  if (rc) return rc;
  int v = ms * 2;
  return weft_out_set(out, &v, sizeof v);
}

TEST(async_executor_map_concurrent) {
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, "async", NULL));
  ASSERT_STREQ(weft_executor_name(ex), "async");
  int in[30], res[30];
  for (int i = 0; i < 30; i++) in[i] = 20 + i % 3;
  int64_t t0 = weft_now();
  int errs[30];
  ASSERT_OK(weft_executor_map(ex, sleep_item, in, sizeof(int), 30, res, sizeof(int), errs, weft_deadline_in(20000)));
  int64_t took = weft_now() - t0;
  for (int i = 0; i < 30; i++) ASSERT_EQ(res[i], in[i] * 2);
  ASSERT_LT(took, 400); /* together (~22 ms), not 630 ms one after another */
  weft_executor_stats st;
  ASSERT_OK(weft_executor_stats_get(ex, &st));
  ASSERT_EQ(st.size, 1);
  ASSERT_OK(weft_executor_shutdown(ex, 0, weft_deadline_in(5000)));
  weft_executor_destroy(ex);
}

TEST(async_executor_cancel_running) {
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, "async", NULL));
  int ms = 100000;
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, sleep_item, &ms, sizeof ms, &f));
  while (weft_future_state(f) == WEFT_PENDING) weft_sleep(1);
  int64_t t0 = weft_now();
  ASSERT_RC(weft_future_cancel(f), WEFT_EBUSY);
  ASSERT_OK(weft_future_wait(f, weft_deadline_in(5000)));
  ASSERT_LT(weft_now() - t0, 4000);
  ASSERT_EQ(weft_future_state(f), WEFT_CANCELLED);
  weft_future_release(f);
  ASSERT_OK(weft_executor_shutdown(ex, 0, weft_deadline_in(5000)));
  weft_executor_destroy(ex);
}

TEST(async_executor_shutdown_cancel) {
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, "async", NULL));
  int ms = 100000;
  weft_future *f[5];
  for (int i = 0; i < 5; i++) ASSERT_OK(weft_executor_submit(ex, sleep_item, &ms, sizeof ms, &f[i]));
  ASSERT_OK(weft_executor_submit(ex, sleep_item, &ms, sizeof ms, NULL)); /* fire and forget */
  int64_t t0 = weft_now();
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_CANCEL, weft_deadline_in(5000)));
  ASSERT_LT(weft_now() - t0, 4000);
  for (int i = 0; i < 5; i++) {
    ASSERT_RC(weft_future_error(f[i]), WEFT_ECANCELED);
    weft_future_release(f[i]);
  }
  ASSERT_RC(weft_executor_submit(ex, sleep_item, &ms, sizeof ms, NULL), WEFT_ESHUTDOWN);
  weft_executor_destroy(ex);
}

TEST(async_executor_destroy_without_shutdown) {
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, "async", NULL));
  int ms = 100000;
  for (int i = 0; i < 3; i++) ASSERT_OK(weft_executor_submit(ex, sleep_item, &ms, sizeof ms, NULL));
  weft_executor_destroy(ex); /* cancels and waits: the sleepers unwind */
}
