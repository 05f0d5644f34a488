/*
 * test_loop.c — the event loop: callback and timer ordering, fd watches,
 * run/stop/run_until, cross-thread posts, the blocking detector, destroy.
 *
 * Cross-thread cases synchronise with events and semaphores set from loop
 * callbacks, never with sleeps. The blocking detector's message is read
 * from a pipe that replaces stderr, by the blocking callback itself, so the
 * test proves the message arrives while the stall is still going on.
 */
#include "wt.h"

#include "async/loop.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

static weft_loop *new_loop(void) {
  weft_loop_opts o = {.block_warn_ms = -1};
  weft_loop *l = NULL;
  ASSERT_OK(weft_loop_create(&l, &o));
  ASSERT_TRUE(l != NULL);
  return l;
}

/* An order log shared by the callbacks of one test (loop thread only). */
static int order_log[256];
static int order_n;
static void log_int(void *arg) {
  if (order_n < 256) order_log[order_n++] = (int)(intptr_t)arg;
}

/* ---- basics ------------------------------------------------------------- */

TEST(create_args) {
  int fds0 = wt_count_fds();
  weft_loop *l = NULL;
  ASSERT_RC(weft_loop_create(NULL, NULL), WEFT_EINVAL);
  weft_loop_opts bad = {.backend = "kqueue"};
  ASSERT_RC(weft_loop_create(&l, &bad), WEFT_EINVAL);
  ASSERT_TRUE(l == NULL);
  weft_loop_opts ep = {.backend = "epoll", .block_warn_ms = -1};
  ASSERT_OK(weft_loop_create(&l, &ep));
  ASSERT_UEQ(weft__loop_stack_size(l), 256 * 1024);
  ASSERT_RC(weft_loop_call_soon(NULL, log_int, NULL), WEFT_EINVAL);
  ASSERT_RC(weft_loop_call_soon(l, NULL, NULL), WEFT_EINVAL);
  ASSERT_RC(weft_loop_call_soon_threadsafe(l, NULL, NULL), WEFT_EINVAL);
  ASSERT_RC(weft_loop_call_later(l, 1, NULL, NULL, NULL), WEFT_EINVAL);
  ASSERT_RC(weft_loop_watch(l, -1, WEFT_READABLE, NULL, NULL), WEFT_EINVAL);
  ASSERT_RC(weft_loop_run(NULL), WEFT_EINVAL);
  ASSERT_RC(weft_loop_run_until(l, NULL, WEFT_FOREVER), WEFT_EINVAL);
  ASSERT_RC(weft_loop_stop(NULL), WEFT_EINVAL);
  ASSERT_RC(weft_loop_cancel_timer(NULL, 1), WEFT_EINVAL);
  ASSERT_TRUE(weft_loop_current() == NULL);
  /* Nothing to do: returns at once. */
  ASSERT_OK(weft_loop_run(l));
  weft_loop_destroy(l);
  weft_loop_destroy(NULL);

  weft_loop_opts big = {.stack_size = 100000, .block_warn_ms = -1};
  ASSERT_OK(weft_loop_create(&l, &big));
  ASSERT_GE(weft__loop_stack_size(l), 100000);
  ASSERT_EQ(weft__loop_stack_size(l) % (size_t)sysconf(_SC_PAGESIZE), 0);
  weft_loop_destroy(l);
  ASSERT_EQ(wt_count_fds(), fds0);
}

static weft_loop *cur_seen;
static void see_current(void *arg) { cur_seen = arg == weft_loop_current() ? arg : NULL; }

TEST(current) {
  weft_loop *l = new_loop();
  ASSERT_OK(weft_loop_call_soon(l, see_current, l));
  ASSERT_OK(weft_loop_run(l));
  ASSERT_TRUE(cur_seen == l);
  ASSERT_TRUE(weft_loop_current() == NULL);
  weft_loop_destroy(l);
}

/* ---- ordering ----------------------------------------------------------- */

TEST(call_soon_fifo) {
  weft_loop *l = new_loop();
  order_n = 0;
  for (int i = 0; i < 100; i++) ASSERT_OK(weft_loop_call_soon(l, log_int, (void *)(intptr_t)i));
  ASSERT_OK(weft_loop_run(l));
  ASSERT_EQ(order_n, 100);
  for (int i = 0; i < 100; i++) ASSERT_EQ(order_log[i], i);
  weft_loop_destroy(l);
}

/* A callback queued by a callback runs in the next iteration: after the
 * timers already due. */
static weft_loop *g_loop;
static void post_b(void *arg) {
  (void)arg;
  log_int((void *)1);
  ASSERT_OK(weft_loop_call_soon(g_loop, log_int, (void *)3));
}

TEST(queued_from_callback_runs_next_iteration) {
  weft_loop *l = g_loop = new_loop();
  order_n = 0;
  ASSERT_OK(weft_loop_call_at(l, weft_now() - 1, log_int, (void *)2, NULL));
  ASSERT_OK(weft_loop_call_soon(l, post_b, NULL));
  ASSERT_OK(weft_loop_run(l));
  ASSERT_EQ(order_n, 3);
  ASSERT_EQ(order_log[0], 1);
  ASSERT_EQ(order_log[1], 2);
  ASSERT_EQ(order_log[2], 3);
  weft_loop_destroy(l);
}

/* Internal nodes: no allocation, re-postable from their own callback. */
struct repost {
  weft__cb_node node;
  weft_loop *loop;
  int left;
  int runs;
};
static void repost_cb(void *arg) {
  struct repost *r = arg;
  r->runs++;
  if (--r->left > 0) weft__loop_post(r->loop, &r->node);
}

TEST(internal_post) {
  weft_loop *l = new_loop();
  struct repost r = {.node = {.cb = repost_cb}, .loop = l, .left = 5};
  r.node.arg = &r;
  weft__loop_post(l, &r.node);
  ASSERT_OK(weft_loop_run(l));
  ASSERT_EQ(r.runs, 5);
  weft_loop_destroy(l);
}

struct tcheck {
  int64_t when;
  int id;
};
static atomic_int early;
static void timer_check(void *arg) {
  struct tcheck *t = arg;
  if (weft_now() < t->when) atomic_fetch_add(&early, 1);
  log_int((void *)(intptr_t)t->id);
}

TEST(timer_order) {
  weft_loop *l = new_loop();
  order_n = 0;
  int64_t now = weft_now();
  /* ids give the expected order. */
  struct tcheck t[8] = {
      {now + 30, 6}, {now + 10, 1}, {now + 20, 4}, {now + 10, 2},
      {now + 10, 3}, {now + 20, 5}, {now + 40, 7}, {now - 5, 0},
  };
  for (int i = 0; i < 8; i++) ASSERT_OK(weft_loop_call_at(l, t[i].when, timer_check, &t[i], NULL));
  ASSERT_OK(weft_loop_run(l));
  ASSERT_EQ(order_n, 8);
  for (int i = 0; i < 8; i++) ASSERT_EQ(order_log[i], i);
  ASSERT_EQ(atomic_load(&early), 0);
  ASSERT_GE(weft_now(), now + 40);
  weft_loop_destroy(l);
}

TEST(timers_never_early) {
  weft_loop *l = new_loop();
  order_n = 0;
  enum { N = 60 };
  static struct tcheck t[N];
  for (int i = 0; i < N; i++) {
    int64_t d = (i * 7) % 23;
    t[i].when = weft_now() + d;
    t[i].id = i;
    ASSERT_OK(weft_loop_call_later(l, d, timer_check, &t[i], NULL));
  }
  ASSERT_OK(weft_loop_call_later(l, -5, log_int, (void *)999, NULL)); /* < 0 counts as 0 */
  ASSERT_OK(weft_loop_run(l));
  ASSERT_EQ(order_n, N + 1);
  ASSERT_EQ(atomic_load(&early), 0);
  weft_loop_destroy(l);
}

/* Internal timers: arm, re-arm (moves), disarm. */
TEST(internal_timer) {
  weft_loop *l = new_loop();
  order_n = 0;
  weft__timer a, b, c;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  memset(&c, 0, sizeof c);
  int64_t now = weft_now();
  ASSERT_OK(weft__loop_timer_arm(l, &a, now + 5, log_int, (void *)1));
  ASSERT_OK(weft__loop_timer_arm(l, &b, now + 1, log_int, (void *)2));
  ASSERT_OK(weft__loop_timer_arm(l, &c, now + 2, log_int, (void *)3));
  ASSERT_OK(weft__loop_timer_arm(l, &b, now + 10, log_int, (void *)2)); /* moves b last */
  weft__loop_timer_disarm(l, &c);
  weft__loop_timer_disarm(l, &c); /* harmless */
  ASSERT_OK(weft_loop_run(l));
  ASSERT_EQ(order_n, 2);
  ASSERT_EQ(order_log[0], 1);
  ASSERT_EQ(order_log[1], 2);
  ASSERT_UEQ(a.heap_index, (size_t)-1);
  weft_loop_destroy(l);
}

static int cancelled_ran;
static void mark_cancelled_ran(void *arg) {
  (void)arg;
  cancelled_ran++;
}

TEST(cancel_timer) {
  weft_loop *l = new_loop();
  order_n = 0;
  uint64_t id1, id2, id3;
  ASSERT_OK(weft_loop_call_later(l, 5, mark_cancelled_ran, NULL, &id1));
  ASSERT_OK(weft_loop_call_later(l, 1, log_int, (void *)7, &id2));
  ASSERT_NE(id1, id2);
  ASSERT_OK(weft_loop_cancel_timer(l, id1));
  ASSERT_RC(weft_loop_cancel_timer(l, id1), WEFT_ENOENT);
  ASSERT_RC(weft_loop_cancel_timer(l, 0), WEFT_ENOENT);
  ASSERT_RC(weft_loop_cancel_timer(l, ~(uint64_t)0), WEFT_ENOENT);
  ASSERT_OK(weft_loop_run(l));
  ASSERT_EQ(cancelled_ran, 0);
  ASSERT_EQ(order_n, 1);
  ASSERT_RC(weft_loop_cancel_timer(l, id2), WEFT_ENOENT); /* already ran */
  /* A new timer reuses a slot; the stale ids must not reach it. */
  ASSERT_OK(weft_loop_call_later(l, 1, log_int, (void *)8, &id3));
  ASSERT_NE(id3, id1);
  ASSERT_NE(id3, id2);
  ASSERT_RC(weft_loop_cancel_timer(l, id1), WEFT_ENOENT);
  ASSERT_RC(weft_loop_cancel_timer(l, id2), WEFT_ENOENT);
  ASSERT_OK(weft_loop_run(l));
  ASSERT_EQ(order_n, 2);
  ASSERT_EQ(order_log[1], 8);
  weft_loop_destroy(l);
}

/* ---- fd watches --------------------------------------------------------- */

struct piper {
  weft_loop *loop;
  int fds[2];
  int reads;
  int other;
  unsigned last_events;
};

static void on_readable(int fd, unsigned events, void *arg) {
  struct piper *p = arg;
  char c;
  p->last_events = events;
  if (read(fd, &c, 1) == 1) p->reads++;
  /* Stop after the first byte: the rest stays unread. */
  ASSERT_OK(weft_loop_watch(p->loop, fd, 0, NULL, NULL));
}
static void on_readable_other(int fd, unsigned events, void *arg) {
  (void)fd;
  (void)events;
  struct piper *p = arg;
  p->other++;
  ASSERT_OK(weft_loop_watch(p->loop, fd, 0, NULL, NULL));
}

TEST(watch_pipe) {
  int fds0 = wt_count_fds();
  weft_loop *l = new_loop();
  struct piper p = {.loop = l};
  ASSERT_EQ(pipe(p.fds), 0);
  ASSERT_RC(weft_loop_watch(l, p.fds[0], 8, on_readable, &p), WEFT_EINVAL);
  ASSERT_RC(weft_loop_watch(l, p.fds[0], WEFT_READABLE, NULL, &p), WEFT_EINVAL);
  ASSERT_OK(weft_loop_watch(l, p.fds[0], 0, NULL, NULL)); /* not watched: harmless */
  ASSERT_OK(weft_loop_watch(l, p.fds[0], WEFT_READABLE, on_readable, &p));
  ASSERT_EQ(write(p.fds[1], "abc", 3), 3);
  /* The callback unwatches after one byte: bytes are still there, so with
   * the watch still on (level-triggered) it would be called again and run
   * would not return. */
  ASSERT_OK(weft_loop_run(l));
  ASSERT_EQ(p.reads, 1);
  ASSERT_UEQ(p.last_events, WEFT_READABLE);

  /* Replace: the second watch's callback and argument are the ones used. */
  ASSERT_OK(weft_loop_watch(l, p.fds[0], WEFT_READABLE, on_readable, &p));
  ASSERT_OK(weft_loop_watch(l, p.fds[0], WEFT_READABLE, on_readable_other, &p));
  ASSERT_OK(weft_loop_run(l));
  ASSERT_EQ(p.reads, 1);
  ASSERT_EQ(p.other, 1);

  /* A hang-up is reported (with READABLE: the reader sees end of file). */
  char buf[8];
  ASSERT_EQ(read(p.fds[0], buf, sizeof buf), 2);
  close(p.fds[1]);
  ASSERT_OK(weft_loop_watch(l, p.fds[0], WEFT_READABLE, on_readable, &p));
  ASSERT_OK(weft_loop_run(l));
  ASSERT_EQ(p.reads, 1); /* read returned 0 */
  ASSERT_TRUE(p.last_events & WEFT_FD_ERROR);
  ASSERT_TRUE(p.last_events & WEFT_READABLE);
  close(p.fds[0]);

  /* Writable fires at once on an empty pipe. */
  ASSERT_EQ(pipe(p.fds), 0);
  p.other = 0;
  ASSERT_OK(weft_loop_watch(l, p.fds[1], WEFT_WRITABLE, on_readable_other, &p));
  ASSERT_OK(weft_loop_run(l));
  ASSERT_EQ(p.other, 1);

  /* A regular file cannot be watched: epoll says EPERM. */
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_RC(weft_loop_watch(l, fd, WEFT_READABLE, on_readable, &p), -EPERM);
  close(fd);
  /* High fd numbers grow the table. */
  int hi = fcntl(p.fds[0], F_DUPFD_CLOEXEC, 500);
  ASSERT_GE(hi, 500);
  ASSERT_EQ(write(p.fds[1], "x", 1), 1);
  p.reads = 0;
  ASSERT_OK(weft_loop_watch(l, hi, WEFT_READABLE, on_readable, &p));
  ASSERT_OK(weft_loop_run(l));
  ASSERT_EQ(p.reads, 1);
  close(hi);
  close(p.fds[0]);
  close(p.fds[1]);
  weft_loop_destroy(l);
  ASSERT_EQ(wt_count_fds(), fds0);
}

/* ---- run / stop --------------------------------------------------------- */

static void task_gone(void *arg) { weft__loop_task_removed(arg); }

TEST(run_waits_for_live_tasks) {
  weft_loop *l = new_loop();
  weft__loop_task_added(l);
  int64_t t0 = weft_now();
  ASSERT_OK(weft_loop_call_later(l, 20, task_gone, l, NULL));
  ASSERT_OK(weft_loop_run(l));
  ASSERT_GE(weft_now() - t0, 20);
  weft_loop_destroy(l);
}

static void stop_cb(void *arg) { ASSERT_OK(weft_loop_stop(arg)); }

TEST(stop_after_current_callback) {
  weft_loop *l = new_loop();
  order_n = 0;
  ASSERT_OK(weft_loop_call_soon(l, log_int, (void *)1));
  ASSERT_OK(weft_loop_call_soon(l, stop_cb, l));
  ASSERT_OK(weft_loop_call_soon(l, log_int, (void *)2));
  ASSERT_OK(weft_loop_call_later(l, 0, log_int, (void *)3, NULL));
  ASSERT_OK(weft_loop_run(l));
  ASSERT_EQ(order_n, 1);
  /* What was left runs on the next run, in order. */
  ASSERT_OK(weft_loop_run(l));
  ASSERT_EQ(order_n, 3);
  ASSERT_EQ(order_log[1], 2);
  ASSERT_EQ(order_log[2], 3);
  weft_loop_destroy(l);
}

struct stopper {
  weft_loop *loop;
  weft_event *running;
};
static void *stop_thread(void *arg) {
  struct stopper *s = arg;
  if (weft_event_wait(s->running, weft_deadline_in(10000)) != 0) return (void *)1;
  weft_loop_stop(s->loop);
  return NULL;
}
static void set_event(void *arg) { weft_event_set(arg); }
static void never(int fd, unsigned ev, void *arg) {
  (void)fd;
  (void)ev;
  (void)arg;
  WT_FAIL("fd callback must not run");
}

TEST(stop_from_other_thread) {
  weft_loop *l = new_loop();
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  /* A watched fd that never gets ready keeps the loop asleep forever. */
  ASSERT_OK(weft_loop_watch(l, fds[0], WEFT_READABLE, never, NULL));
  struct stopper s = {.loop = l};
  ASSERT_OK(weft_event_create(&s.running));
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, stop_thread, &s), 0);
  ASSERT_OK(weft_loop_call_soon(l, set_event, s.running));
  ASSERT_OK(weft_loop_run(l));
  void *r;
  pthread_join(th, &r);
  ASSERT_TRUE(r == NULL);
  ASSERT_OK(weft_loop_watch(l, fds[0], 0, NULL, NULL));
  close(fds[0]);
  close(fds[1]);
  weft_event_destroy(s.running);
  weft_loop_destroy(l);
}

/* ---- EBUSY -------------------------------------------------------------- */

struct busy {
  weft_loop *loop, *other;
  int nested, other_rc, thread_rc;
};
static void *run_from_thread(void *arg) {
  struct busy *b = arg;
  b->thread_rc = weft_loop_run(b->loop);
  return NULL;
}
static void busy_cb(void *arg) {
  struct busy *b = arg;
  b->nested = weft_loop_run(b->loop);
  b->other_rc = weft_loop_run(b->other);
  weft_future *f;
  ASSERT_OK(weft_future_create(&f));
  ASSERT_RC(weft_loop_run_until(b->loop, f, WEFT_FOREVER), WEFT_EBUSY);
  weft_future_release(f);
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, run_from_thread, b), 0);
  pthread_join(th, NULL);
}

TEST(ebusy) {
  struct busy b = {.loop = new_loop(), .other = new_loop()};
  ASSERT_OK(weft_loop_call_soon(b.loop, busy_cb, &b));
  ASSERT_OK(weft_loop_run(b.loop));
  ASSERT_RC(b.nested, WEFT_EBUSY);
  ASSERT_RC(b.other_rc, WEFT_EBUSY);
  ASSERT_RC(b.thread_rc, WEFT_EBUSY);
  weft_loop_destroy(b.loop);
  weft_loop_destroy(b.other);
}

/* ---- call_soon_threadsafe ----------------------------------------------- */

enum { NTHREADS = 4, BURST = 500 };
struct poster {
  weft_loop *loop;
  int index;
  long n;
  weft_sem *ack; /* posted by the loop when a burst's last item ran */
  pthread_t th;
};
static long ts_next[NTHREADS]; /* loop thread only */
static long ts_bad;
static struct poster ts_posters[NTHREADS];
static long ts_done_threads;

/* arg encodes (thread, seq). */
static void ts_cb(void *arg) {
  uintptr_t v = (uintptr_t)arg;
  int t = (int)(v & 7);
  long seq = (long)(v >> 3);
  if (seq != ts_next[t]) ts_bad++;
  ts_next[t] = seq + 1;
  struct poster *p = &ts_posters[t];
  if ((seq + 1) % BURST == 0 || seq + 1 == p->n) weft_sem_post(p->ack);
  if (seq + 1 == p->n && ++ts_done_threads == NTHREADS) weft__loop_task_removed(p->loop);
}

static void *post_thread(void *arg) {
  struct poster *p = arg;
  for (long i = 0; i < p->n; i++) {
    if (weft_loop_call_soon_threadsafe(p->loop, ts_cb, (void *)(uintptr_t)(i << 3 | p->index)))
      return (void *)1;
    /* End of a burst: wait until the loop has run it, so the loop runs
     * out of work and goes to sleep before the next burst wakes it. */
    if ((i + 1) % BURST == 0 || i + 1 == p->n)
      if (weft_sem_wait(p->ack, weft_deadline_in(30000)) != 0) return (void *)2;
  }
  return NULL;
}

TEST(threadsafe_many_threads) {
  weft_loop *l = new_loop();
  long n = wt_scaled(10000);
  weft__loop_task_added(l); /* keeps run going until every item ran */
  for (int t = 0; t < NTHREADS; t++) {
    ts_posters[t] = (struct poster){.loop = l, .index = t, .n = n};
    ASSERT_OK(weft_sem_create(&ts_posters[t].ack, 0));
  }
  for (int t = 0; t < NTHREADS; t++)
    ASSERT_EQ(pthread_create(&ts_posters[t].th, NULL, post_thread, &ts_posters[t]), 0);
  ASSERT_OK(weft_loop_run(l));
  for (int t = 0; t < NTHREADS; t++) {
    void *r;
    pthread_join(ts_posters[t].th, &r);
    ASSERT_TRUE(r == NULL);
    ASSERT_EQ(ts_next[t], n);
    weft_sem_destroy(ts_posters[t].ack);
  }
  ASSERT_EQ(ts_bad, 0);
  weft_loop_destroy(l);
}

/* ---- run_until ---------------------------------------------------------- */

struct completer {
  weft_future *f;
  weft_event *go;
};
static void *complete_thread(void *arg) {
  struct completer *c = arg;
  if (weft_event_wait(c->go, weft_deadline_in(10000)) != 0) return (void *)1;
  weft_future_set_result(c->f, "ok", 2);
  return NULL;
}

TEST(run_until_other_thread) {
  weft_loop *l = new_loop();
  struct completer c;
  ASSERT_OK(weft_future_create(&c.f));
  ASSERT_OK(weft_event_create(&c.go));
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, complete_thread, &c), 0);
  /* The go signal comes from the loop, so the future completes while the
   * loop runs (and, having nothing else, sleeps). */
  ASSERT_OK(weft_loop_call_soon(l, set_event, c.go));
  ASSERT_OK(weft_loop_run_until(l, c.f, weft_deadline_in(30000)));
  ASSERT_TRUE(weft_future_done(c.f));
  pthread_join(th, NULL);
  /* Already done: 0 at once. */
  ASSERT_OK(weft_loop_run_until(l, c.f, WEFT_NOW));
  weft_future_release(c.f);
  weft_event_destroy(c.go);
  weft_loop_destroy(l);
}

static void cancel_cb(void *arg) { weft_future_cancel(arg); }

TEST(run_until_deadline_and_stop) {
  weft_loop *l = new_loop();
  weft_future *f;
  ASSERT_OK(weft_future_create(&f));
  int64_t t0 = weft_now();
  ASSERT_RC(weft_loop_run_until(l, f, t0 + 30), WEFT_ETIMEDOUT);
  ASSERT_GE(weft_now(), t0 + 30);
  ASSERT_RC(weft_loop_run_until(l, f, WEFT_NOW), WEFT_ETIMEDOUT);
  /* Callbacks run meanwhile. */
  order_n = 0;
  ASSERT_OK(weft_loop_call_soon(l, log_int, (void *)1));
  ASSERT_OK(weft_loop_call_later(l, 5, stop_cb, l, NULL));
  ASSERT_RC(weft_loop_run_until(l, f, WEFT_FOREVER), WEFT_ECANCELED);
  ASSERT_EQ(order_n, 1);
  /* Completed on the loop by a callback. */
  ASSERT_OK(weft_loop_call_later(l, 5, cancel_cb, f, NULL));
  ASSERT_OK(weft_loop_run_until(l, f, weft_deadline_in(30000)));
  ASSERT_EQ(weft_future_state(f), WEFT_CANCELLED);
  weft_future_release(f);
  weft_loop_destroy(l);
}

/* The future's callback arrives after run_until returned and after the loop
 * is gone: only the token is touched. */
TEST(run_until_late_completion) {
  weft_loop *l = new_loop();
  weft_future *f;
  ASSERT_OK(weft_future_create(&f));
  ASSERT_RC(weft_loop_run_until(l, f, weft_deadline_in(1)), WEFT_ETIMEDOUT);
  weft_loop_destroy(l);
  ASSERT_OK(weft_future_set_result(f, "x", 1));
  weft_future_release(f);
}

/* ---- destroy ------------------------------------------------------------ */

TEST(destroy_drops_pending) {
  int fds0 = wt_count_fds();
  weft_loop *l = new_loop();
  for (int i = 0; i < 100; i++) {
    ASSERT_OK(weft_loop_call_soon(l, mark_cancelled_ran, NULL));
    ASSERT_OK(weft_loop_call_soon_threadsafe(l, mark_cancelled_ran, NULL));
    ASSERT_OK(weft_loop_call_later(l, i, mark_cancelled_ran, NULL, NULL));
  }
  weft__timer t;
  memset(&t, 0, sizeof t);
  ASSERT_OK(weft__loop_timer_arm(l, &t, weft_now() + 1000, mark_cancelled_ran, NULL));
  weft__cb_node n = {.cb = mark_cancelled_ran};
  weft__loop_post(l, &n);
  weft_loop_destroy(l);
  ASSERT_EQ(cancelled_ran, 0);
  ASSERT_UEQ(t.heap_index, (size_t)-1);
  ASSERT_EQ(wt_count_fds(), fds0);
}

struct hook_state {
  int calls;
  int public_rc;
  int internal_rc;
  int ran;
  weft__cb_node node;
};
static void hook_ran(void *arg) { ((struct hook_state *)arg)->ran++; }
static void destroy_hook(weft_loop *l, void *arg) {
  struct hook_state *h = arg;
  h->calls++;
  h->public_rc = weft_loop_call_soon_threadsafe(l, hook_ran, h);
  h->node.cb = hook_ran;
  h->node.arg = h;
  h->internal_rc = weft__loop_post_threadsafe(l, &h->node);
  /* The loop is still runnable inside the hook. */
  weft_loop_run(l);
}

TEST(destroy_hook) {
  weft_loop *l = new_loop();
  struct hook_state h = {0};
  weft__loop_set_destroy_hook(l, destroy_hook, &h);
  ASSERT_TRUE(weft__loop_destroy_hook_arg(l) == &h);
  weft_loop_destroy(l);
  ASSERT_EQ(h.calls, 1);
  ASSERT_RC(h.public_rc, WEFT_ECLOSED);
  ASSERT_OK(h.internal_rc);
  ASSERT_EQ(h.ran, 1);
}

/* Threads post while destroy begins: each post is either refused
 * (WEFT_ECLOSED) or accepted, and an accepted one runs when the destroy
 * hook runs the loop, so accepted == ran exactly. The hook joins the
 * posters: none calls after destroy returned. */
struct racer {
  weft_loop *loop;
  weft_sem *started;
  pthread_t th;
  long accepted;
  int last_rc;
};
static atomic_long race_ran;
static void race_cb(void *arg) {
  (void)arg;
  atomic_fetch_add(&race_ran, 1);
}
static void *race_thread(void *arg) {
  struct racer *r = arg;
  for (long i = 0;; i++) {
    int rc = weft_loop_call_soon_threadsafe(r->loop, race_cb, NULL);
    if (rc) {
      r->last_rc = rc;
      break;
    }
    r->accepted++;
    if (i == 100) weft_sem_post(r->started);
  }
  if (r->accepted <= 100) weft_sem_post(r->started);
  return NULL;
}
static struct racer racers[NTHREADS];
static void race_hook(weft_loop *l, void *arg) {
  (void)arg;
  for (int i = 0; i < NTHREADS; i++) pthread_join(racers[i].th, NULL);
  weft_loop_run(l);
}

TEST(destroy_races_posters) {
  weft_loop *l = new_loop();
  weft_sem *started;
  ASSERT_OK(weft_sem_create(&started, 0));
  for (int i = 0; i < NTHREADS; i++) {
    racers[i] = (struct racer){.loop = l, .started = started};
    ASSERT_EQ(pthread_create(&racers[i].th, NULL, race_thread, &racers[i]), 0);
  }
  for (int i = 0; i < NTHREADS; i++) ASSERT_OK(weft_sem_wait(started, weft_deadline_in(30000)));
  weft__loop_set_destroy_hook(l, race_hook, NULL);
  weft_loop_destroy(l);
  long accepted = 0;
  for (int i = 0; i < NTHREADS; i++) {
    ASSERT_RC(racers[i].last_rc, WEFT_ECLOSED);
    accepted += racers[i].accepted;
  }
  ASSERT_EQ(atomic_load(&race_ran), accepted);
  weft_sem_destroy(started);
}

/* ---- blocking detector -------------------------------------------------- */

struct capture {
  int pipe[2];
  int saved;
};
static void capture_start(struct capture *c) {
  ASSERT_EQ(pipe2(c->pipe, O_CLOEXEC | O_NONBLOCK), 0);
  fflush(stderr);
  c->saved = dup(STDERR_FILENO);
  ASSERT_GE(c->saved, 0);
  ASSERT_GE(dup2(c->pipe[1], STDERR_FILENO), 0);
}
/* Appends what the pipe holds now to buf (NUL-terminated). */
static void capture_read(struct capture *c, char *buf, size_t cap) {
  size_t len = strlen(buf);
  while (len + 1 < cap) {
    ssize_t r = read(c->pipe[0], buf + len, cap - 1 - len);
    if (r <= 0) break;
    len += (size_t)r;
  }
  buf[len] = '\0';
}
static void capture_stop(struct capture *c) {
  dup2(c->saved, STDERR_FILENO);
  close(c->saved);
  close(c->pipe[0]);
  close(c->pipe[1]);
}

struct blocker {
  weft_loop *loop;
  struct capture *cap;
  const char *label; /* for weft__loop_set_running, or NULL */
  int64_t block_ms;
  char out[1024];
  int64_t seen_after; /* ms into the block when the message was read, or -1 */
};
static void block_cb(void *arg) {
  struct blocker *b = arg;
  if (b->label) weft__loop_set_running(b->loop, b->label);
  int64_t t0 = weft_now();
  b->seen_after = -1;
  /* Busy-wait block_ms, and (bounded) until the message has come. */
  for (;;) {
    int64_t el = weft_now() - t0;
    if (b->seen_after < 0) {
      capture_read(b->cap, b->out, sizeof b->out);
      if (strstr(b->out, "\n")) b->seen_after = el;
    }
    if (el >= b->block_ms && (b->seen_after >= 0 || el >= 10000 || b->block_ms < 200)) break;
  }
  if (b->label) weft__loop_set_running(b->loop, NULL);
}

static void run_blocker(int warn_ms, const char *label, int64_t block_ms, struct blocker *b) {
  weft_loop_opts o = {.block_warn_ms = warn_ms};
  weft_loop *l;
  ASSERT_OK(weft_loop_create(&l, &o));
  struct capture cap;
  *b = (struct blocker){.loop = l, .cap = &cap, .label = label, .block_ms = block_ms};
  capture_start(&cap);
  weft_loop_call_soon(l, block_cb, b);
  weft_loop_run(l);
  weft_loop_destroy(l); /* joins the watchdog: nothing more can come */
  capture_read(&cap, b->out, sizeof b->out);
  capture_stop(&cap);
}

TEST(block_detector_reports_during_stall) {
  struct blocker b;
  run_blocker(50, NULL, 300, &b);
  if (b.seen_after < 0) WT_FAIL("no message during the stall; got \"%s\"", b.out);
  ASSERT_GE(b.seen_after, 50);
  int n;
  if (sscanf(b.out, "weft: loop blocked for %d ms by a callback\n", &n) != 1)
    WT_FAIL("unexpected message \"%s\"", b.out);
  ASSERT_GT(n, 50);
  /* Once per stall. */
  ASSERT_TRUE(strstr(b.out, "\n") == b.out + strlen(b.out) - 1);
}

TEST(block_detector_names_task) {
  struct blocker b;
  run_blocker(50, "task fetch (main.c:12)", 300, &b);
  if (b.seen_after < 0) WT_FAIL("no message during the stall; got \"%s\"", b.out);
  if (!strstr(b.out, "ms by task fetch (main.c:12)\n")) WT_FAIL("unexpected message \"%s\"", b.out);
}

TEST(block_detector_env) {
  setenv("WEFT_BLOCK_WARN_MS", "50", 1);
  struct blocker b;
  run_blocker(0, NULL, 300, &b);
  if (b.seen_after < 0) WT_FAIL("no message during the stall; got \"%s\"", b.out);
  /* Off when asked, whatever the environment. */
  run_blocker(-1, NULL, 150, &b);
  ASSERT_STREQ(b.out, "");
  unsetenv("WEFT_BLOCK_WARN_MS");
  run_blocker(0, NULL, 150, &b);
  ASSERT_STREQ(b.out, "");
}

TEST(block_detector_quiet_when_fast) {
  /* Many short callbacks, each far below the threshold: nothing printed. */
  weft_loop_opts o = {.block_warn_ms = 200};
  weft_loop *l;
  int fds0 = wt_count_fds();
  ASSERT_OK(weft_loop_create(&l, &o));
  struct capture cap;
  capture_start(&cap);
  order_n = 0;
  for (int i = 0; i < 200; i++) ASSERT_OK(weft_loop_call_later(l, i / 4, log_int, NULL, NULL));
  ASSERT_OK(weft_loop_run(l));
  weft_loop_destroy(l);
  char out[256] = "";
  capture_read(&cap, out, sizeof out);
  capture_stop(&cap);
  ASSERT_STREQ(out, "");
  ASSERT_EQ(wt_count_fds(), fds0);
}

/* Sleeping in the poll is not a stall, nor is a task label left over from
 * a switch made outside any callback. */
static void label_then_clear(void *arg) {
  weft__loop_set_running(arg, "task t (x.c:1)");
  weft__loop_set_running(arg, NULL);
}
TEST(block_detector_idle_is_quiet) {
  weft_loop_opts o = {.block_warn_ms = 100};
  weft_loop *l;
  ASSERT_OK(weft_loop_create(&l, &o));
  struct capture cap;
  capture_start(&cap);
  weft__loop_set_running(l, "task t (x.c:1)");
  weft__loop_set_running(l, NULL);
  ASSERT_OK(weft_loop_call_soon(l, label_then_clear, l));
  int64_t t0 = weft_now();
  ASSERT_OK(weft_loop_call_later(l, 400, log_int, NULL, NULL));
  ASSERT_OK(weft_loop_run(l));
  ASSERT_GE(weft_now() - t0, 400);
  weft_loop_destroy(l);
  char out[256] = "";
  capture_read(&cap, out, sizeof out);
  capture_stop(&cap);
  ASSERT_STREQ(out, "");
}
