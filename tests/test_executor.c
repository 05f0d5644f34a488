/* The executor API, with the same behavioural tests run against every
 * backend: submit, results and errors, map (ordered, chunked, bounded),
 * imap and imap_unordered, deadlines, shutdown, bad input, and the system
 * refusing threads. */
#include "wt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const KINDS[] = {"inline", "thread", "thread_pool", "async"};
#define NKINDS 4
#define FOR_EACH_KIND(k) for (int k = 0; k < NKINDS; k++)

static weft_executor *make(const char *kind, int workers, size_t chunk, size_t inflight) {
  weft_executor_opts o = {.workers = workers, .chunksize = chunk, .max_inflight = inflight};
  weft_executor *ex = NULL;
  int rc = weft_executor_create(&ex, kind, &o);
  if (rc) WT_FAIL("create %s: %s", kind, weft_strerror(rc));
  return ex;
}

static int square(const void *in, size_t size, weft_out *out) {
  if (size != sizeof(long)) return WEFT_EINVAL;
  long v = *(const long *)in;
  long r = v * v;
  return weft_out_set(out, &r, sizeof r);
}

/* fails items divisible by 7, with a message */
static int picky(const void *in, size_t size, weft_out *out) {
  (void)size;
  long v = *(const long *)in;
  if (v % 7 == 0) return weft_out_fail(out, WEFT_ENOENT, "item %ld refused", v);
  return weft_out_set(out, &v, sizeof v);
}

static int big_result(const void *in, size_t size, weft_out *out) {
  (void)in;
  (void)size;
  unsigned char *p = weft_out_alloc(out, 100000);
  if (!p) return WEFT_ENOMEM;
  for (int i = 0; i < 100000; i++) p[i] = (unsigned char)(i * 31);
  return 0;
}

static int no_input(const void *in, size_t size, weft_out *out) {
  (void)out;
  return in == NULL && size == 0 ? 0 : WEFT_EINVAL;
}

static int returns_cancel(const void *in, size_t size, weft_out *out) {
  (void)in;
  (void)size;
  (void)out;
  return WEFT_ECANCELED;
}

TEST(kinds_and_bad_arguments) {
  const char *const *k = weft_executor_kinds();
  int n = 0;
  while (k[n]) n++;
  /* the in-process kinds (run by every test here), then the process ones
   * (tests/test_process.c: their task functions must be registered) */
  ASSERT_EQ(n, NKINDS + 2);
  for (int i = 0; i < NKINDS; i++) ASSERT_STREQ(k[i], KINDS[i]);
  ASSERT_STREQ(k[NKINDS], "process");
  ASSERT_STREQ(k[NKINDS + 1], "process_pool");
  weft_executor *ex = (weft_executor *)1;
  ASSERT_RC(weft_executor_create(NULL, "inline", NULL), WEFT_EINVAL);
  ASSERT_RC(weft_executor_create(&ex, NULL, NULL), WEFT_EINVAL);
  ASSERT_TRUE(ex == NULL);
  ASSERT_RC(weft_executor_create(&ex, "fibers", NULL), WEFT_ENOENT);
  weft_executor_opts bad = {.workers = -1};
  ASSERT_RC(weft_executor_create(&ex, "thread_pool", &bad), WEFT_EINVAL);
  weft_future *f = (weft_future *)1;
  ASSERT_RC(weft_executor_submit(NULL, square, NULL, 0, &f), WEFT_EINVAL);
  ASSERT_TRUE(f == NULL);
  ASSERT_RC(weft_executor_shutdown(NULL, 0, 0), WEFT_EINVAL);
  ASSERT_RC(weft_executor_stats_get(NULL, NULL), WEFT_EINVAL);
  ASSERT_STREQ(weft_executor_name(NULL), "?");
  weft_executor_destroy(NULL);
  FOR_EACH_KIND(i) {
    ex = make(KINDS[i], 0, 0, 0);
    ASSERT_STREQ(weft_executor_name(ex), KINDS[i]);
    long v = 1;
    ASSERT_RC(weft_executor_submit(ex, NULL, &v, sizeof v, &f), WEFT_EINVAL);
    ASSERT_RC(weft_executor_submit(ex, square, NULL, 8, &f), WEFT_EINVAL);
    ASSERT_RC(weft_executor_map(ex, NULL, &v, sizeof v, 1, &v, sizeof v, NULL, -1), WEFT_EINVAL);
    ASSERT_RC(weft_executor_map(ex, square, NULL, 8, 1, &v, sizeof v, NULL, -1), WEFT_EINVAL);
    ASSERT_RC(weft_executor_map(ex, square, &v, 8, 1, NULL, 8, NULL, -1), WEFT_EINVAL);
    weft_imap *it;
    ASSERT_RC(weft_executor_imap(ex, square, &v, 8, 1, NULL), WEFT_EINVAL);
    ASSERT_RC(weft_executor_imap_unordered(ex, NULL, &v, 8, 1, &it), WEFT_EINVAL);
    ASSERT_RC(weft_imap_next(NULL, 0, NULL), WEFT_EINVAL);
    ASSERT_RC(weft_executor_shutdown(ex, 7, WEFT_FOREVER), WEFT_EINVAL);
    weft_executor_stats st;
    ASSERT_RC(weft_executor_stats_get(ex, NULL), WEFT_EINVAL);
    ASSERT_OK(weft_executor_stats_get(ex, &st));
    ASSERT_STREQ(st.name, KINDS[i]);
    weft_executor_destroy(ex);
  }
}

TEST(submit_results_and_errors) {
  FOR_EACH_KIND(k) {
    weft_executor *ex = make(KINDS[k], 0, 0, 0);
    long in[50];
    weft_future *f[50];
    for (int i = 0; i < 50; i++) {
      in[i] = i;
      ASSERT_OK(weft_executor_submit(ex, picky, &in[i], sizeof in[i], &f[i]));
    }
    for (int i = 0; i < 50; i++) {
      ASSERT_OK(weft_future_wait(f[i], WEFT_FOREVER));
      const void *d;
      size_t n;
      if (i % 7 == 0) {
        ASSERT_EQ(weft_future_state(f[i]), WEFT_FAILED);
        ASSERT_RC(weft_future_result(f[i], &d, &n), WEFT_ENOENT);
        char want[64];
        snprintf(want, sizeof want, "item %d refused", i);
        ASSERT_STREQ(weft_future_errmsg(f[i]), want);
      } else {
        ASSERT_OK(weft_future_result(f[i], &d, &n));
        ASSERT_EQ(n, sizeof(long));
        ASSERT_EQ(*(const long *)d, i);
      }
      weft_future_release(f[i]);
    }
    weft_future *g;
    ASSERT_OK(weft_executor_submit(ex, big_result, NULL, 0, &g));
    /* an executor's future is completed by its worker alone */
    ASSERT_RC(weft_future_set_result(g, "x", 1), WEFT_EINVAL);
    ASSERT_RC(weft_future_set_error(g, WEFT_ETASK, NULL), WEFT_EINVAL);
    ASSERT_RC(weft_future_set_running(g), WEFT_EINVAL);
    ASSERT_OK(weft_future_wait(g, WEFT_FOREVER));
    const void *d;
    size_t n;
    ASSERT_OK(weft_future_result(g, &d, &n));
    ASSERT_EQ(n, 100000);
    for (int i = 0; i < 100000; i += 997) ASSERT_EQ(((const unsigned char *)d)[i], (unsigned char)(i * 31));
    weft_future_release(g);
    ASSERT_OK(weft_executor_submit(ex, no_input, NULL, 0, &g));
    ASSERT_OK(weft_future_wait(g, WEFT_FOREVER));
    ASSERT_OK(weft_future_error(g));
    weft_future_release(g);
    ASSERT_OK(weft_executor_submit(ex, returns_cancel, NULL, 0, &g));
    ASSERT_OK(weft_future_wait(g, WEFT_FOREVER));
    ASSERT_EQ(weft_future_state(g), WEFT_CANCELLED);
    weft_future_release(g);
    weft_executor_destroy(ex);
  }
}

static atomic_long g_sum;
static int add_to_sum(const void *in, size_t size, weft_out *out) {
  (void)size;
  (void)out;
  atomic_fetch_add(&g_sum, *(const long *)in);
  return 0;
}

TEST(fire_and_forget_runs_everything) {
  FOR_EACH_KIND(k) {
    atomic_store(&g_sum, 0);
    weft_executor *ex = make(KINDS[k], 0, 0, 0);
    static long vals[1000];
    long want = 0;
    for (int i = 0; i < 1000; i++) {
      vals[i] = i + 1;
      want += i + 1;
      ASSERT_OK(weft_executor_submit(ex, add_to_sum, &vals[i], sizeof vals[i], NULL));
    }
    ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, WEFT_FOREVER));
    ASSERT_EQ(atomic_load(&g_sum), want);
    weft_executor_stats st;
    ASSERT_OK(weft_executor_stats_get(ex, &st));
    ASSERT_UEQ(st.submitted, 1000);
    ASSERT_UEQ(st.completed, 1000);
    ASSERT_UEQ(st.queued, 0);
    weft_executor_destroy(ex);
  }
}

TEST(map_ordered_results_every_chunking) {
  enum { N = 10007 };
  static long in[N], out[N];
  for (long i = 0; i < N; i++) in[i] = i - 500;
  size_t chunks[] = {0, 1, 7, 300};
  size_t inflight[] = {0, 1, 5, 64};
  FOR_EACH_KIND(k) {
    for (int c = 0; c < 4; c++) {
      weft_executor *ex = make(KINDS[k], k == 1 ? 4 : 0, chunks[c], inflight[c]);
      memset(out, 0xff, sizeof out);
      int n = k == 1 && chunks[c] < 7 ? 500 : N; /* thread-per-chunk is slow */
      ASSERT_OK(weft_executor_map(ex, square, in, sizeof(long), (size_t)n, out, sizeof(long), NULL,
                                  WEFT_FOREVER));
      for (long i = 0; i < n; i++)
        if (out[i] != in[i] * in[i]) WT_FAIL("%s chunk %zu: out[%ld]=%ld", KINDS[k], chunks[c], i, out[i]);
      ASSERT_OK(weft_executor_map(ex, square, in, sizeof(long), 0, NULL, 0, NULL, WEFT_FOREVER));
      weft_executor_destroy(ex);
    }
  }
}

TEST(map_reports_item_errors) {
  enum { N = 100 };
  long in[N], out[N];
  int errs[N];
  for (long i = 0; i < N; i++) in[i] = i + 1; /* 7, 14, ... fail; first at index 6 */
  FOR_EACH_KIND(k) {
    weft_executor *ex = make(KINDS[k], 0, 3, 0);
    ASSERT_RC(weft_executor_map(ex, picky, in, sizeof(long), N, out, sizeof(long), errs, WEFT_FOREVER),
              WEFT_ENOENT);
    for (int i = 0; i < N; i++) {
      if (in[i] % 7 == 0) {
        ASSERT_RC(errs[i], WEFT_ENOENT);
        ASSERT_EQ(out[i], 0); /* failed slots are zeroed */
      } else {
        ASSERT_OK(errs[i]);
        ASSERT_EQ(out[i], in[i]);
      }
    }
    /* a result larger than the slot fails that item only */
    char small[4][8];
    long four[4] = {1, 2, 3, 4};
    ASSERT_RC(weft_executor_map(ex, big_result, four, sizeof(long), 4, small, sizeof small[0], errs,
                                WEFT_FOREVER),
              WEFT_ETOOBIG);
    for (int i = 0; i < 4; i++) ASSERT_RC(errs[i], WEFT_ETOOBIG);
    /* a smaller result fills the front, the rest is zeroed */
    long wide[4][3];
    memset(wide, 0xff, sizeof wide);
    ASSERT_OK(weft_executor_map(ex, square, four, sizeof(long), 4, wide, sizeof wide[0], NULL, -1));
    for (int i = 0; i < 4; i++) {
      ASSERT_EQ(wide[i][0], four[i] * four[i]);
      ASSERT_EQ(wide[i][1], 0);
      ASSERT_EQ(wide[i][2], 0);
    }
    weft_executor_destroy(ex);
  }
}

/* Back-pressure: a task never starts while more than max_inflight items are
 * submitted and not yet consumed. */
static atomic_long g_started, g_consumed;
static atomic_int g_window_broken;
static long g_window;
static int track_window(const void *in, size_t size, weft_out *out) {
  (void)size;
  long s = atomic_fetch_add(&g_started, 1) + 1;
  if (s - atomic_load(&g_consumed) > g_window) atomic_store(&g_window_broken, 1);
  return weft_out_set(out, in, sizeof(long));
}

TEST(imap_ordered_and_bounded) {
  enum { N = 5000 };
  static long in[N];
  for (long i = 0; i < N; i++) in[i] = i;
  FOR_EACH_KIND(k) {
    g_window = 16;
    atomic_store(&g_started, 0);
    atomic_store(&g_consumed, 0);
    atomic_store(&g_window_broken, 0);
    weft_executor *ex = make(KINDS[k], k == 1 ? 2 : 0, 4, (size_t)g_window);
    weft_imap *it;
    ASSERT_OK(weft_executor_imap(ex, track_window, in, sizeof(long), N, &it));
    weft_item item;
    for (long i = 0; i < N; i++) {
      ASSERT_OK(weft_imap_next(it, WEFT_FOREVER, &item));
      ASSERT_EQ(item.index, i);
      ASSERT_OK(item.error);
      ASSERT_EQ(item.size, sizeof(long));
      ASSERT_EQ(*(const long *)item.data, i);
      atomic_fetch_add(&g_consumed, 1);
    }
    ASSERT_RC(weft_imap_next(it, WEFT_FOREVER, &item), WEFT_ECLOSED);
    ASSERT_RC(weft_imap_next(it, WEFT_FOREVER, &item), WEFT_ECLOSED);
    weft_imap_destroy(it);
    ASSERT_EQ(atomic_load(&g_window_broken), 0);
    ASSERT_EQ(atomic_load(&g_started), N);
    weft_executor_destroy(ex);
  }
}

TEST(imap_unordered_yields_each_once) {
  enum { N = 3001 };
  static long in[N];
  static char seen[N];
  for (long i = 0; i < N; i++) in[i] = i;
  FOR_EACH_KIND(k) {
    memset(seen, 0, sizeof seen);
    weft_executor *ex = make(KINDS[k], k == 1 ? 3 : 0, 0, 0);
    weft_imap *it;
    ASSERT_OK(weft_executor_imap_unordered(ex, picky, in, sizeof(long), N, &it));
    weft_item item;
    int failures = 0, count = 0, rc;
    while ((rc = weft_imap_next(it, WEFT_FOREVER, &item)) == 0) {
      ASSERT_LT(item.index, N);
      ASSERT_EQ(seen[item.index], 0);
      seen[item.index] = 1;
      count++;
      if (item.error) {
        ASSERT_RC(item.error, WEFT_ENOENT);
        ASSERT_TRUE(item.errmsg != NULL);
        ASSERT_TRUE(item.data == NULL);
        failures++;
      } else {
        ASSERT_EQ(*(const long *)item.data, (long)item.index);
      }
    }
    ASSERT_RC(rc, WEFT_ECLOSED);
    ASSERT_EQ(count, N);
    ASSERT_EQ(failures, (N + 6) / 7);
    weft_imap_destroy(it);
    /* empty input */
    ASSERT_OK(weft_executor_imap_unordered(ex, picky, NULL, 0, 0, &it));
    ASSERT_RC(weft_imap_next(it, WEFT_NOW, &item), WEFT_ECLOSED);
    weft_imap_destroy(it);
    weft_executor_destroy(ex);
  }
}

TEST(imap_destroyed_midway_cancels_rest) {
  enum { N = 20000 };
  static long in[N];
  for (long i = 0; i < N; i++) in[i] = i;
  FOR_EACH_KIND(k) {
    atomic_store(&g_started, 0);
    weft_executor *ex = make(KINDS[k], 2, 1, 8);
    weft_imap *it;
    g_window = 1 << 30;
    ASSERT_OK(weft_executor_imap(ex, track_window, in, sizeof(long), N, &it));
    weft_item item;
    for (int i = 0; i < 10; i++) ASSERT_OK(weft_imap_next(it, WEFT_FOREVER, &item));
    weft_imap_destroy(it);
    /* the window bounds how much ran: nowhere near all N */
    ASSERT_LE(atomic_load(&g_started), 10 + 8);
    ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, WEFT_FOREVER));
    weft_executor_destroy(ex);
  }
}

/* Tasks that block until released: the deterministic way to hold workers. */
static weft_event *g_gate;
static atomic_int g_entered;
static int gated(const void *in, size_t size, weft_out *out) {
  (void)in;
  (void)size;
  atomic_fetch_add(&g_entered, 1);
  int rc = weft_event_wait(g_gate, WEFT_FOREVER);
  if (rc) return rc;
  return weft_out_cancelled(out) ? WEFT_ECANCELED : 0;
}

static void wait_entered(int n) {
  /* polling a counter the tasks set: bounded, not a sleep-as-signal */
  int64_t deadline = weft_deadline_in(10000);
  while (atomic_load(&g_entered) < n) {
    if (weft_now() > deadline) WT_FAIL("only %d of %d tasks started", atomic_load(&g_entered), n);
    sched_yield();
  }
}

TEST(map_deadline_returns_on_time) {
  for (int k = 1; k < NKINDS; k++) { /* inline would block the caller itself */
    ASSERT_OK(weft_event_create(&g_gate));
    atomic_store(&g_entered, 0);
    weft_executor *ex = make(KINDS[k], 2, 1, 0);
    long in[6] = {0}, out[6];
    int errs[6];
    uint64_t t0 = weft_now_ns();
    ASSERT_RC(weft_executor_map(ex, gated, in, sizeof(long), 6, out, sizeof(long), errs,
                                weft_deadline_in(50)),
              WEFT_ETIMEDOUT);
    uint64_t ms = (weft_now_ns() - t0) / 1000000u;
    ASSERT_GE(ms, 50);
    ASSERT_LT(ms, 5000);
    ASSERT_OK(weft_event_set(g_gate));
    ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, WEFT_FOREVER));
    weft_executor_destroy(ex);
    weft_event_destroy(g_gate);
  }
}

TEST(shutdown_finish_runs_pending) {
  for (int k = 1; k < NKINDS; k++) {
    /* Needs two tasks blocked at once in their threads: async has one loop
     * thread, and a task that blocks it (not awaiting) holds it alone. */
    if (!strcmp(KINDS[k], "async")) continue;
    ASSERT_OK(weft_event_create(&g_gate));
    atomic_store(&g_entered, 0);
    weft_executor *ex = make(KINDS[k], 2, 0, 0);
    weft_future *f[10];
    for (int i = 0; i < 10; i++) ASSERT_OK(weft_executor_submit(ex, gated, NULL, 0, &f[i]));
    wait_entered(2);
    weft_executor_stats st;
    ASSERT_OK(weft_executor_stats_get(ex, &st));
    ASSERT_EQ(st.busy, 2);
    ASSERT_UEQ(st.queued, 8);
    ASSERT_RC(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, weft_deadline_in(20)), WEFT_ETIMEDOUT);
    ASSERT_RC(weft_executor_submit(ex, gated, NULL, 0, NULL), WEFT_ESHUTDOWN);
    long v = 0;
    ASSERT_RC(weft_executor_map(ex, square, &v, sizeof v, 1, &v, sizeof v, NULL, -1), WEFT_ESHUTDOWN);
    weft_imap *it;
    ASSERT_RC(weft_executor_imap(ex, square, &v, sizeof v, 1, &it), WEFT_ESHUTDOWN);
    ASSERT_OK(weft_event_set(g_gate));
    ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, WEFT_FOREVER));
    for (int i = 0; i < 10; i++) {
      ASSERT_EQ(weft_future_state(f[i]), WEFT_DONE);
      weft_future_release(f[i]);
    }
    weft_executor_destroy(ex);
    weft_event_destroy(g_gate);
  }
}

TEST(shutdown_cancel_keeps_running_cancels_pending) {
  for (int k = 1; k < NKINDS; k++) {
    /* Needs two tasks blocked at once in their threads: async has one loop
     * thread, and a task that blocks it (not awaiting) holds it alone. */
    if (!strcmp(KINDS[k], "async")) continue;
    ASSERT_OK(weft_event_create(&g_gate));
    atomic_store(&g_entered, 0);
    weft_executor *ex = make(KINDS[k], 2, 0, 0);
    weft_future *f[10];
    for (int i = 0; i < 10; i++) ASSERT_OK(weft_executor_submit(ex, gated, NULL, 0, &f[i]));
    wait_entered(2);
    ASSERT_RC(weft_executor_shutdown(ex, WEFT_SHUTDOWN_CANCEL, WEFT_NOW), WEFT_ETIMEDOUT);
    int cancelled = 0, running = 0;
    for (int i = 0; i < 10; i++) {
      weft_state s = weft_future_state(f[i]);
      cancelled += s == WEFT_CANCELLED;
      running += s == WEFT_RUNNING;
    }
    ASSERT_EQ(cancelled, 8);
    ASSERT_EQ(running, 2);
    ASSERT_OK(weft_event_set(g_gate));
    ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_CANCEL, WEFT_FOREVER));
    for (int i = 0; i < 10; i++) {
      ASSERT_TRUE(weft_future_done(f[i])); /* none lost */
      weft_future_release(f[i]);
    }
    ASSERT_EQ(atomic_load(&g_entered), 2); /* the cancelled ones never ran */
    /* the two running ones saw the cancelling shutdown and chose to stop */
    for (int i = 0; i < 10; i++) ASSERT_EQ(weft_future_state(f[i]), WEFT_CANCELLED);
    weft_executor_destroy(ex);
    weft_event_destroy(g_gate);
  }
}

TEST(cancel_pending_future_and_flag_running) {
  for (int k = 1; k < NKINDS; k++) {
    ASSERT_OK(weft_event_create(&g_gate));
    atomic_store(&g_entered, 0);
    weft_executor *ex = make(KINDS[k], 1, 0, 0);
    weft_future *run, *pend;
    ASSERT_OK(weft_executor_submit(ex, gated, NULL, 0, &run));
    wait_entered(1);
    ASSERT_OK(weft_executor_submit(ex, gated, NULL, 0, &pend));
    ASSERT_OK(weft_future_cancel(pend));
    ASSERT_EQ(weft_future_state(pend), WEFT_CANCELLED); /* at once */
    ASSERT_RC(weft_future_cancel(run), WEFT_EBUSY);
    ASSERT_OK(weft_event_set(g_gate));
    ASSERT_OK(weft_future_wait(run, WEFT_FOREVER));
    /* the running task saw the flag and chose to stop */
    ASSERT_EQ(weft_future_state(run), WEFT_CANCELLED);
    weft_executor_destroy(ex);
    ASSERT_EQ(atomic_load(&g_entered), 1);
    weft_future_release(run);
    weft_future_release(pend);
    weft_event_destroy(g_gate);
  }
}

TEST(destroy_with_pending_work_returns) {
  for (int k = 1; k < NKINDS; k++) {
    ASSERT_OK(weft_event_create(&g_gate));
    atomic_store(&g_entered, 0);
    weft_executor *ex = make(KINDS[k], 1, 0, 0);
    weft_future *f[5];
    for (int i = 0; i < 5; i++) ASSERT_OK(weft_executor_submit(ex, gated, NULL, 0, &f[i]));
    wait_entered(1);
    ASSERT_OK(weft_event_set(g_gate)); /* the running one can finish */
    weft_executor_destroy(ex);
    /* futures outlive their executor and are all completed */
    for (int i = 0; i < 5; i++) {
      ASSERT_OK(weft_future_wait(f[i], WEFT_NOW));
      weft_future_release(f[i]);
    }
    weft_event_destroy(g_gate);
  }
}

/* The system refuses new threads: RLIMIT_NPROC, which the kernel does not
 * apply to root, so the child drops to an unprivileged user first. Submitted
 * work before the refusal still completes; nothing hangs. */
static int child_without_threads(void) {
  if (getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) return 20;
  weft_executor *thr = make("thread", 0, 0, 0);
  ASSERT_OK(weft_event_create(&g_gate));
  weft_future *before;
  ASSERT_OK(weft_executor_submit(thr, gated, NULL, 0, &before));
  struct rlimit rl;
  getrlimit(RLIMIT_NPROC, &rl);
  struct rlimit low = {1, rl.rlim_max};
  if (setrlimit(RLIMIT_NPROC, &low) != 0) return 21;
  weft_future *f = (weft_future *)1;
  ASSERT_RC(weft_executor_submit(thr, square, NULL, 0, &f), WEFT_EAGAIN);
  ASSERT_TRUE(f == NULL);
  weft_executor *pool = (weft_executor *)1;
  ASSERT_RC(weft_executor_create(&pool, "thread_pool", NULL), WEFT_EAGAIN);
  ASSERT_TRUE(pool == NULL);
  long v = 3, r = 0;
  ASSERT_RC(weft_executor_map(thr, square, &v, sizeof v, 1, &r, sizeof r, NULL, -1), WEFT_EAGAIN);
  setrlimit(RLIMIT_NPROC, &rl);
  ASSERT_OK(weft_event_set(g_gate));
  ASSERT_OK(weft_future_wait(before, WEFT_FOREVER));
  ASSERT_OK(weft_future_error(before));
  ASSERT_OK(weft_executor_map(thr, square, &v, sizeof v, 1, &r, sizeof r, NULL, -1));
  ASSERT_EQ(r, 9);
  weft_future_release(before);
  weft_executor_destroy(thr);
  weft_event_destroy(g_gate);
  return 0;
}

TEST(system_refuses_threads) {
  pid_t pid = fork();
  ASSERT_TRUE(pid >= 0);
  if (pid == 0) _exit(child_without_threads());
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 0);
}

/* The thread executor with a cap hands queued jobs from finishing threads to
 * new ones; no job may be stranded when threads finish while a submit
 * queues (this once lost about one map in a hundred). */
TEST(thread_cap_never_strands_jobs) {
  static long in[4096];
  for (int i = 0; i < 4096; i++) in[i] = i;
  long rounds = wt_scaled(6);
  for (long r = 0; r < rounds; r++) {
    /* imap with a small window submits the next chunk right after a result
     * arrives, i.e. while the thread that produced it is finishing: the
     * moment at which a job could be stranded. */
    weft_executor *ex = make("thread", 1 + (int)(r % 2), 1, 4);
    weft_imap *it;
    ASSERT_OK(weft_executor_imap(ex, square, in, sizeof(long), 4096, &it));
    weft_item item;
    for (long i = 0; i < 4096; i++) {
      int rc = weft_imap_next(it, weft_deadline_in(20000), &item);
      if (rc) WT_FAIL("round %ld item %ld: %s (a job was stranded)", r, i, weft_err_name(rc));
      ASSERT_EQ(*(const long *)item.data, i * i);
    }
    weft_imap_destroy(it);
    weft_executor_destroy(ex);
  }
}
