/* test_thread_pool.c — the work-stealing thread pool backend.
 *
 * Workers are made to wait on semaphores and events, never on sleeps, so
 * every case is deterministic. The only sleeps are measurement windows
 * (the idle pool's CPU time). */
#include "wt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Plain functions (not the atomic_load macro) so that a failed assertion
 * prints readable expressions. */
static long ld_long(atomic_long *p) { return atomic_load(p); }
static int ld_int(atomic_int *p) { return atomic_load(p); }

#define LONG_WAIT 30000 /* ms: a deadline that only a bug reaches */

static weft_executor *pool_new(int workers) {
  weft_executor_opts o = {0};
  o.workers = workers;
  weft_executor *ex = NULL;
  ASSERT_OK(weft_executor_create(&ex, "thread_pool", &o));
  ASSERT_TRUE(ex != NULL);
  return ex;
}

static weft_executor_stats stats(weft_executor *ex) {
  weft_executor_stats st;
  memset(&st, 0, sizeof st);
  ASSERT_OK(weft_executor_stats_get(ex, &st));
  return st;
}

/* ---- a task that blocks until released ---- */

struct gate {
  weft_sem *started; /* posted when a blocker starts */
  weft_sem *release; /* one post lets one blocker finish */
  atomic_int saw_cancel;
  atomic_int finished;
};

static void gate_init(struct gate *g) {
  ASSERT_OK(weft_sem_create(&g->started, 0));
  ASSERT_OK(weft_sem_create(&g->release, 0));
  atomic_init(&g->saw_cancel, 0);
  atomic_init(&g->finished, 0);
}

static void gate_fini(struct gate *g) {
  weft_sem_destroy(g->started);
  weft_sem_destroy(g->release);
}

/* Waits for `n` blockers to have started. */
static void gate_wait_started(struct gate *g, int n) {
  for (int i = 0; i < n; i++) ASSERT_OK(weft_sem_wait(g->started, weft_deadline_in(LONG_WAIT)));
}

static void gate_release(struct gate *g, int n) {
  for (int i = 0; i < n; i++) ASSERT_OK(weft_sem_post(g->release));
}

static int blocker(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  struct gate *g = (struct gate *)in;
  weft_sem_post(g->started);
  int rc = weft_sem_wait(g->release, weft_deadline_in(LONG_WAIT));
  if (rc) return rc;
  if (weft_out_cancelled(out)) atomic_fetch_add(&g->saw_cancel, 1);
  atomic_fetch_add(&g->finished, 1);
  return 0;
}

/* ---- simple tasks ---- */

static atomic_long g_count;

static int count_task(const void *in, size_t in_size, weft_out *out) {
  (void)in;
  (void)in_size;
  (void)out;
  atomic_fetch_add(&g_count, 1);
  return 0;
}

static int answer_task(const void *in, size_t in_size, weft_out *out) {
  (void)in;
  (void)in_size;
  int v = 41;
  return weft_out_set(out, &v, sizeof v);
}

static int result_int(weft_future *f) {
  const void *data = NULL;
  size_t size = 0;
  ASSERT_OK(weft_future_result(f, &data, &size));
  ASSERT_EQ(size, sizeof(int));
  int v;
  memcpy(&v, data, sizeof v);
  return v;
}

/* ------------------------------------------------------------------------ */

TEST(default_size_is_cpu_count) {
  weft_executor *ex = NULL;
  ASSERT_OK(weft_executor_create(&ex, "thread_pool", NULL));
  weft_executor_stats st = stats(ex);
  ASSERT_STREQ(st.name, "thread_pool");
  ASSERT_STREQ(weft_executor_name(ex), "thread_pool");
  ASSERT_EQ(st.size, weft_cpu_count());
  ASSERT_EQ(st.busy, 0);
  ASSERT_UEQ(st.queued, 0);
  weft_executor_destroy(ex);

  weft_executor_opts o = {0}; /* workers 0 = the default too */
  ASSERT_OK(weft_executor_create(&ex, "thread_pool", &o));
  ASSERT_EQ(stats(ex).size, weft_cpu_count());
  weft_executor_destroy(ex);
}

TEST(workers_option_respected) {
  int sizes[] = {1, 3, 7};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    int n = sizes[k];
    weft_executor *ex = pool_new(n);
    ASSERT_EQ(stats(ex).size, n);
    /* Exactly n tasks can block at once: n start, the next one waits. */
    struct gate g;
    gate_init(&g);
    weft_future *f[8];
    for (int i = 0; i <= n; i++) ASSERT_OK(weft_executor_submit(ex, blocker, &g, sizeof g, &f[i]));
    gate_wait_started(&g, n);
    weft_executor_stats st = stats(ex);
    ASSERT_EQ(st.busy, n);
    ASSERT_UEQ(st.queued, 1);
    ASSERT_RC(weft_sem_wait(g.started, WEFT_NOW), WEFT_ETIMEDOUT);
    gate_release(&g, n + 1);
    for (int i = 0; i <= n; i++) {
      ASSERT_OK(weft_future_wait(f[i], weft_deadline_in(LONG_WAIT)));
      ASSERT_OK(weft_future_error(f[i]));
      weft_future_release(f[i]);
    }
    weft_executor_destroy(ex);
    gate_fini(&g);
  }

  weft_executor_opts o = {0};
  o.workers = -1;
  weft_executor *ex = NULL;
  ASSERT_RC(weft_executor_create(&ex, "thread_pool", &o), WEFT_EINVAL);
}

TEST(stats_busy_queued_counts) {
  weft_executor *ex = pool_new(2);
  struct gate g;
  gate_init(&g);
  weft_future *f[7];
  for (int i = 0; i < 2; i++) ASSERT_OK(weft_executor_submit(ex, blocker, &g, sizeof g, &f[i]));
  gate_wait_started(&g, 2);
  weft_executor_stats st = stats(ex);
  ASSERT_EQ(st.size, 2);
  ASSERT_EQ(st.busy, 2);
  ASSERT_UEQ(st.queued, 0);
  ASSERT_UEQ(st.submitted, 2);
  ASSERT_UEQ(st.completed, 0);

  /* Every worker is blocked: these wait in the queue. */
  for (int i = 2; i < 7; i++) ASSERT_OK(weft_executor_submit(ex, blocker, &g, sizeof g, &f[i]));
  st = stats(ex);
  ASSERT_EQ(st.busy, 2);
  ASSERT_UEQ(st.queued, 5);
  ASSERT_UEQ(st.submitted, 7);
  ASSERT_UEQ(st.completed, 0);
  for (int i = 2; i < 7; i++) ASSERT_EQ(weft_future_state(f[i]), WEFT_PENDING);
  ASSERT_EQ(weft_future_state(f[0]), WEFT_RUNNING);

  gate_release(&g, 7);
  ASSERT_OK(weft_future_wait_all(f, 7, weft_deadline_in(LONG_WAIT)));
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, weft_deadline_in(LONG_WAIT)));
  st = stats(ex);
  ASSERT_UEQ(st.queued, 0);
  ASSERT_UEQ(st.submitted, 7);
  ASSERT_UEQ(st.completed, 7);
  for (int i = 0; i < 7; i++) weft_future_release(f[i]);
  weft_executor_destroy(ex);
  gate_fini(&g);
}

/* ---- nested submits ---- */

struct nest {
  weft_executor *ex;
  int depth;
};

static atomic_long g_nodes;
static long g_nodes_total;
static weft_event *g_tree_done;

/* A binary tree of fire-and-forget submits made from inside tasks. The last
 * node to run sets g_tree_done (submits are refused once shutdown begins, so
 * the tree must be complete before it). */
static int tree_task(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  (void)out;
  const struct nest *n = in;
  int rc = 0;
  if (n->depth > 0) {
    /* The input must outlive the child: one node per depth, kept by the test. */
    const struct nest *child = n + 1;
    for (int i = 0; i < 2 && !rc; i++)
      rc = weft_executor_submit(n->ex, tree_task, child, sizeof *child, NULL);
  }
  if (atomic_fetch_add(&g_nodes, 1) + 1 == g_nodes_total) weft_event_set(g_tree_done);
  return rc;
}

TEST(nested_submit_tree) {
  weft_executor *ex = pool_new(2);
  enum { DEPTH = 12 };
  struct nest nodes[DEPTH + 1];
  for (int d = 0; d <= DEPTH; d++) nodes[d] = (struct nest){ex, DEPTH - d};
  atomic_store(&g_nodes, 0);
  g_nodes_total = (1L << (DEPTH + 1)) - 1;
  ASSERT_OK(weft_event_create(&g_tree_done));
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, tree_task, &nodes[0], sizeof nodes[0], &f));
  ASSERT_OK(weft_event_wait(g_tree_done, weft_deadline_in(LONG_WAIT)));
  ASSERT_OK(weft_future_error(f));
  weft_future_release(f);
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, weft_deadline_in(LONG_WAIT)));
  long nodes_run = atomic_load(&g_nodes);
  ASSERT_EQ(nodes_run, g_nodes_total);
  weft_executor_stats st = stats(ex);
  ASSERT_UEQ(st.submitted, g_nodes_total);
  ASSERT_UEQ(st.completed, g_nodes_total);
  weft_executor_destroy(ex);
  weft_event_destroy(g_tree_done);
}

/* A task that submits a child and waits for it: another worker is free. */
static int parent_waits_task(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  weft_executor *ex = *(weft_executor *const *)in;
  weft_future *child = NULL;
  int rc = weft_executor_submit(ex, answer_task, NULL, 0, &child);
  if (rc) return rc;
  rc = weft_future_wait(child, weft_deadline_in(LONG_WAIT));
  if (!rc) rc = weft_future_error(child);
  int v = 0;
  if (!rc) {
    const void *data;
    size_t size;
    weft_future_result(child, &data, &size);
    memcpy(&v, data, sizeof v);
    v++;
  }
  weft_future_release(child);
  return rc ? rc : weft_out_set(out, &v, sizeof v);
}

TEST(nested_submit_parent_waits_for_child) {
  weft_executor *ex = pool_new(2);
  for (int round = 0; round < 50; round++) {
    weft_future *f;
    ASSERT_OK(weft_executor_submit(ex, parent_waits_task, &ex, sizeof ex, &f));
    ASSERT_OK(weft_future_wait(f, weft_deadline_in(LONG_WAIT)));
    ASSERT_OK(weft_future_error(f));
    ASSERT_EQ(result_int(f), 42);
    weft_future_release(f);
  }
  weft_executor_destroy(ex);
}

/* A task of pool A submitting to pool B goes to B, not to A's deque: A's
 * only worker is busy waiting for the child, so only B can run it. */
struct cross {
  weft_executor *b;
};

static int cross_parent(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  (void)out;
  const struct cross *c = in;
  weft_future *child = NULL;
  int rc = weft_executor_submit(c->b, answer_task, NULL, 0, &child);
  if (rc) return rc;
  rc = weft_future_wait(child, weft_deadline_in(LONG_WAIT));
  if (!rc) rc = weft_future_error(child);
  weft_future_release(child);
  return rc;
}

TEST(submit_to_other_pool_from_task) {
  weft_executor *a = pool_new(1), *b = pool_new(1);
  struct cross c = {b};
  weft_future *f;
  ASSERT_OK(weft_executor_submit(a, cross_parent, &c, sizeof c, &f));
  ASSERT_OK(weft_future_wait(f, weft_deadline_in(LONG_WAIT)));
  ASSERT_OK(weft_future_error(f));
  weft_future_release(f);
  ASSERT_UEQ(stats(b).submitted, 1);
  ASSERT_UEQ(stats(a).submitted, 1);
  weft_executor_destroy(a);
  weft_executor_destroy(b);
}

/* ---- fairness ---- */

/* A task that keeps resubmitting itself from inside the pool must not starve
 * the rest: on a one-worker pool, LIFO alone would run it forever. It stops
 * once the outside job and its own older children have all run. */
struct chain {
  weft_executor *ex;
  atomic_int others;   /* outside job + older children that ran */
  atomic_long links;   /* resubmissions */
  weft_event *ended;
};

static int chain_other(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  (void)out;
  atomic_fetch_add(&((struct chain *)in)->others, 1);
  return 0;
}

static int chain_link(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  (void)out;
  struct chain *c = (struct chain *)in;
  long k = atomic_fetch_add(&c->links, 1);
  if (k == 0) /* the first link: older children, below the chain in the deque */
    for (int i = 0; i < 5; i++) {
      int rc = weft_executor_submit(c->ex, chain_other, c, sizeof *c, NULL);
      if (rc) return rc;
    }
  if (atomic_load(&c->others) == 6 || k > 10000000) {
    weft_event_set(c->ended);
    return 0;
  }
  return weft_executor_submit(c->ex, chain_link, c, sizeof *c, NULL);
}

TEST(self_resubmitting_task_does_not_starve_others) {
  weft_executor *ex = pool_new(1);
  struct chain c;
  memset(&c, 0, sizeof c);
  c.ex = ex;
  ASSERT_OK(weft_event_create(&c.ended));
  ASSERT_OK(weft_executor_submit(ex, chain_link, &c, sizeof c, NULL));
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, chain_other, &c, sizeof c, &f));
  ASSERT_OK(weft_future_wait(f, weft_deadline_in(LONG_WAIT)));
  weft_future_release(f);
  ASSERT_OK(weft_event_wait(c.ended, weft_deadline_in(LONG_WAIT)));
  ASSERT_EQ(ld_int(&c.others), 6);
  ASSERT_LE(ld_long(&c.links), 10000000);
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, weft_deadline_in(LONG_WAIT)));
  weft_executor_destroy(ex);
  weft_event_destroy(c.ended);
}

/* ---- stealing ---- */

struct steal_ctx {
  weft_executor *ex;
  pthread_t parent;
  weft_event *stolen;
  atomic_int by_parent, by_other, ran;
};

static int steal_child(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  (void)out;
  struct steal_ctx *c = (struct steal_ctx *)in;
  if (pthread_equal(pthread_self(), c->parent)) {
    atomic_fetch_add(&c->by_parent, 1);
  } else {
    atomic_fetch_add(&c->by_other, 1);
    weft_event_set(c->stolen);
  }
  atomic_fetch_add(&c->ran, 1);
  return 0;
}

/* Pushes children onto its own worker's deque, then blocks that worker until
 * one of them has run elsewhere: the other worker must steal it. */
static int steal_parent(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  (void)out;
  struct steal_ctx *c = (struct steal_ctx *)in;
  c->parent = pthread_self(); /* published to the children by submit */
  for (int i = 0; i < 64; i++) {
    int rc = weft_executor_submit(c->ex, steal_child, c, sizeof *c, NULL);
    if (rc) return rc;
  }
  return weft_event_wait(c->stolen, weft_deadline_in(LONG_WAIT));
}

TEST(idle_worker_steals_from_busy_one) {
  weft_executor *ex = pool_new(2);
  struct steal_ctx c;
  memset(&c, 0, sizeof c);
  c.ex = ex;
  ASSERT_OK(weft_event_create(&c.stolen));
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, steal_parent, &c, sizeof c, &f));
  ASSERT_OK(weft_future_wait(f, weft_deadline_in(LONG_WAIT)));
  ASSERT_OK(weft_future_error(f));
  weft_future_release(f);
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, weft_deadline_in(LONG_WAIT)));
  ASSERT_EQ(ld_int(&c.ran), 64);
  ASSERT_GE(ld_int(&c.by_other), 1);
  weft_executor_destroy(ex);
  weft_event_destroy(c.stolen);
}

/* ---- idle workers sleep ---- */

static double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

TEST(idle_pool_does_not_spin) /* labels: novalgrind notsan */ {
  weft_executor *ex = pool_new(weft_cpu_count() < 2 ? 2 : weft_cpu_count());
  /* Wake every worker up, then let them go idle. */
  weft_future *f[64];
  for (int i = 0; i < 64; i++) ASSERT_OK(weft_executor_submit(ex, count_task, NULL, 0, &f[i]));
  ASSERT_OK(weft_future_wait_all(f, 64, weft_deadline_in(LONG_WAIT)));
  for (int i = 0; i < 64; i++) weft_future_release(f[i]);
  /* Measurement windows, not synchronisation: the spin before parking is
   * bounded, so after a short settling time the pool must use ~no CPU. */
  sleep_ms(30);
  double c0 = cpu_seconds();
  sleep_ms(300);
  double used_ms = (cpu_seconds() - c0) * 1e3;
  fprintf(stderr, "idle pool: %.3f ms CPU over 300 ms\n", used_ms);
  ASSERT_LT(used_ms, 5);
  weft_executor_destroy(ex);
}

/* ---- shutdown ---- */

TEST(shutdown_finish_runs_queued_and_running) {
  weft_executor *ex = pool_new(2);
  struct gate g;
  gate_init(&g);
  weft_future *run[2], *q[100];
  for (int i = 0; i < 2; i++) ASSERT_OK(weft_executor_submit(ex, blocker, &g, sizeof g, &run[i]));
  gate_wait_started(&g, 2);
  atomic_store(&g_count, 0);
  for (int i = 0; i < 100; i++) ASSERT_OK(weft_executor_submit(ex, count_task, NULL, 0, &q[i]));

  ASSERT_RC(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, WEFT_NOW), WEFT_ETIMEDOUT);
  weft_future *late = (weft_future *)&g; /* must be reset to NULL */
  ASSERT_RC(weft_executor_submit(ex, count_task, NULL, 0, &late), WEFT_ESHUTDOWN);
  ASSERT_TRUE(late == NULL);
  ASSERT_EQ(ld_long(&g_count), 0); /* nothing ran: both workers blocked */

  gate_release(&g, 2);
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, weft_deadline_in(LONG_WAIT)));
  ASSERT_EQ(ld_long(&g_count), 100);
  ASSERT_EQ(ld_int(&g.saw_cancel), 0);
  for (int i = 0; i < 2; i++) {
    ASSERT_EQ(weft_future_state(run[i]), WEFT_DONE);
    weft_future_release(run[i]);
  }
  for (int i = 0; i < 100; i++) {
    ASSERT_EQ(weft_future_state(q[i]), WEFT_DONE);
    weft_future_release(q[i]);
  }
  ASSERT_UEQ(stats(ex).completed, 102);
  weft_executor_destroy(ex);
  gate_fini(&g);
}

/* Queued work sits in the injector and in a worker's own deque (pushed by a
 * task on that worker); CANCEL must find both. */
struct cancel_ctx {
  weft_executor *ex;
  struct gate *g;
  weft_future *children[20];
};

static int push_children_then_block(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  struct cancel_ctx *c = (struct cancel_ctx *)in;
  for (int i = 0; i < 20; i++) {
    int rc = weft_executor_submit(c->ex, count_task, NULL, 0, &c->children[i]);
    if (rc) return rc;
  }
  return blocker(c->g, sizeof *c->g, out);
}

TEST(shutdown_cancel_cancels_queued_and_flags_running) {
  weft_executor *ex = pool_new(2);
  struct gate g;
  gate_init(&g);
  struct cancel_ctx c = {ex, &g, {0}};
  weft_future *run[2], *q[30];
  atomic_store(&g_count, 0);
  ASSERT_OK(weft_executor_submit(ex, push_children_then_block, &c, sizeof c, &run[0]));
  gate_wait_started(&g, 1);
  /* The other worker may run some of the first one's children before it
   * takes this second blocker; then it blocks too. */
  ASSERT_OK(weft_executor_submit(ex, blocker, &g, sizeof g, &run[1]));
  gate_wait_started(&g, 1);
  for (int i = 0; i < 30; i++) ASSERT_OK(weft_executor_submit(ex, count_task, NULL, 0, &q[i]));

  /* Both workers are blocked: shutdown cancels the queued work at once and
   * times out on the running pair. */
  ASSERT_RC(weft_executor_shutdown(ex, WEFT_SHUTDOWN_CANCEL, WEFT_NOW), WEFT_ETIMEDOUT);
  for (int i = 0; i < 30; i++) {
    ASSERT_EQ(weft_future_state(q[i]), WEFT_CANCELLED);
    ASSERT_RC(weft_future_error(q[i]), WEFT_ECANCELED);
  }
  long ran_children = atomic_load(&g_count);
  int cancelled_children = 0;
  for (int i = 0; i < 20; i++) {
    ASSERT_TRUE(weft_future_done(c.children[i]));
    cancelled_children += weft_future_state(c.children[i]) == WEFT_CANCELLED;
  }
  ASSERT_EQ(ran_children + cancelled_children, 20);
  ASSERT_EQ(weft_future_state(run[0]), WEFT_RUNNING);
  ASSERT_EQ(weft_future_state(run[1]), WEFT_RUNNING);

  gate_release(&g, 2);
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_CANCEL, weft_deadline_in(LONG_WAIT)));
  ASSERT_EQ(ld_int(&g.finished), 2);
  ASSERT_EQ(ld_int(&g.saw_cancel), 2); /* running tasks saw the request */
  ASSERT_EQ(ld_long(&g_count), ran_children); /* nothing ran after */
  for (int i = 0; i < 2; i++) {
    ASSERT_EQ(weft_future_state(run[i]), WEFT_DONE);
    weft_future_release(run[i]);
  }
  for (int i = 0; i < 30; i++) weft_future_release(q[i]);
  for (int i = 0; i < 20; i++) weft_future_release(c.children[i]);
  weft_executor_stats st = stats(ex);
  ASSERT_UEQ(st.completed, st.submitted);
  ASSERT_UEQ(st.queued, 0);
  weft_executor_destroy(ex);
  gate_fini(&g);
}

TEST(shutdown_deadline_then_again) {
  weft_executor *ex = pool_new(2);
  struct gate g;
  gate_init(&g);
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, blocker, &g, sizeof g, &f));
  gate_wait_started(&g, 1);
  int64_t t0 = weft_now();
  ASSERT_RC(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, weft_deadline_in(50)),
            WEFT_ETIMEDOUT);
  ASSERT_GE(weft_now() - t0, 50);
  ASSERT_RC(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, WEFT_NOW), WEFT_ETIMEDOUT);
  gate_release(&g, 1);
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, weft_deadline_in(LONG_WAIT)));
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, WEFT_NOW)); /* again: still 0 */
  ASSERT_EQ(weft_future_state(f), WEFT_DONE);
  weft_future_release(f);
  weft_executor_destroy(ex);
  gate_fini(&g);
}

TEST(submit_after_shutdown_refused) {
  weft_executor *ex = pool_new(2);
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, WEFT_FOREVER));
  weft_future *f = (weft_future *)ex;
  ASSERT_RC(weft_executor_submit(ex, count_task, NULL, 0, &f), WEFT_ESHUTDOWN);
  ASSERT_TRUE(f == NULL);
  ASSERT_RC(weft_executor_submit(ex, count_task, NULL, 0, NULL), WEFT_ESHUTDOWN);
  ASSERT_UEQ(stats(ex).submitted, 0);
  weft_executor_destroy(ex);
}

/* destroy with work pending: cancels the queue, waits for the running task
 * (released by a helper once destroy has begun cancelling), returns. */
struct releaser {
  weft_future *watch;
  struct gate *g;
};

static void *release_when_cancelled(void *arg) {
  struct releaser *r = arg;
  if (weft_future_wait(r->watch, weft_deadline_in(LONG_WAIT)) == 0) gate_release(r->g, 1);
  return NULL;
}

TEST(destroy_cancels_pending_work) {
  weft_executor *ex = pool_new(1);
  struct gate g;
  gate_init(&g);
  weft_future *run, *q[10];
  ASSERT_OK(weft_executor_submit(ex, blocker, &g, sizeof g, &run));
  gate_wait_started(&g, 1);
  atomic_store(&g_count, 0);
  for (int i = 0; i < 10; i++) ASSERT_OK(weft_executor_submit(ex, count_task, NULL, 0, &q[i]));
  struct releaser r = {q[9], &g};
  pthread_t helper;
  ASSERT_EQ(pthread_create(&helper, NULL, release_when_cancelled, &r), 0);
  weft_executor_destroy(ex);
  pthread_join(helper, NULL);
  ASSERT_EQ(ld_long(&g_count), 0);
  ASSERT_EQ(weft_future_state(run), WEFT_DONE);
  for (int i = 0; i < 10; i++) {
    ASSERT_EQ(weft_future_state(q[i]), WEFT_CANCELLED);
    weft_future_release(q[i]);
  }
  weft_future_release(run);
  gate_fini(&g);
}

TEST(create_destroy_churn) {
  /* Destroy racing worker start-up and parking, with and without work. */
  int rounds = (int)wt_scaled(200);
  for (int i = 0; i < rounds; i++) {
    weft_executor *ex = pool_new(1 + i % 4);
    for (int k = 0; k < i % 5; k++) ASSERT_OK(weft_executor_submit(ex, count_task, NULL, 0, NULL));
    weft_executor_destroy(ex);
  }
}

/* ---- failure paths ---- */

/* A child process whose address-space limit leaves no room for thread
 * stacks: create must fail cleanly with EAGAIN (or ENOMEM). Sanitizers need
 * address space of their own for every thread, so they skip this. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define WT_SANITIZED 1
#endif
#endif
#ifndef WT_SANITIZED
#define WT_RLIMIT_TEST 1
#endif

#ifdef WT_RLIMIT_TEST
static long vm_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return -1;
  long pages = -1;
  if (fscanf(f, "%ld", &pages) != 1) pages = -1;
  fclose(f);
  return pages < 0 ? -1 : pages * sysconf(_SC_PAGESIZE);
}

static int child_create_with_headroom(long headroom) {
  /* Warm up the allocator and stdio so that small allocations still fit. */
  weft_executor *ex = pool_new(1);
  weft_executor_destroy(ex);
  long vm = vm_bytes();
  if (vm < 0) return 3;
  struct rlimit rl = {(rlim_t)(vm + headroom), (rlim_t)(vm + headroom)};
  if (setrlimit(RLIMIT_AS, &rl) != 0) return 4;
  weft_executor_opts o = {0};
  o.workers = 16;
  int rc = weft_executor_create(&ex, "thread_pool", &o);
  if (rc == 0) {
    /* Enough room after all: the pool must work. */
    weft_future *f;
    if (weft_executor_submit(ex, answer_task, NULL, 0, &f) != 0) return 5;
    if (weft_future_wait(f, weft_deadline_in(LONG_WAIT)) != 0) return 6;
    weft_future_release(f);
    weft_executor_destroy(ex);
    return 10;
  }
  if (rc != WEFT_EAGAIN && rc != WEFT_ENOMEM) return 7;
  if (ex != NULL) return 8;
  return 0;
}
#endif

TEST(init_fails_cleanly_without_threads) /* labels: novalgrind */ {
#ifndef WT_RLIMIT_TEST
  fprintf(stderr, "skipped under a sanitizer (it needs address space per thread)\n");
#else
  /* No room for one stack; room for a few stacks but not 16 (the started
   * workers must be stopped and joined). */
  long headroom[] = {1L << 20, 40L << 20};
  int failed = 0;
  for (size_t k = 0; k < sizeof headroom / sizeof headroom[0]; k++) {
    fflush(stderr);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) _exit(child_create_with_headroom(headroom[k]));
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    int code = WEXITSTATUS(status);
    fprintf(stderr, "headroom %ld MB: %s\n", headroom[k] >> 20,
            code == 0 ? "create failed cleanly" : code == 10 ? "create succeeded" : "error");
    ASSERT_TRUE(code == 0 || code == 10);
    failed += code == 0;
  }
  ASSERT_GE(failed, 1);
#endif
}

/* An allocator that fails after a budget of allocations. */
static atomic_long g_budget;

static void *budget_malloc(size_t n) {
  if (atomic_fetch_sub(&g_budget, 1) <= 0) return NULL;
  return malloc(n);
}

static void *budget_realloc(void *p, size_t n) {
  if (atomic_fetch_sub(&g_budget, 1) <= 0) return NULL;
  return realloc(p, n);
}

TEST(init_enomem_leaves_nothing_behind) {
  int failures = 0;
  for (long budget = 0; budget < 100; budget++) {
    atomic_store(&g_budget, budget);
    weft_set_allocator(budget_malloc, budget_realloc, free);
    weft_executor_opts o = {0};
    o.workers = 3;
    weft_executor *ex = NULL;
    int rc = weft_executor_create(&ex, "thread_pool", &o);
    if (rc == 0) {
      atomic_store(&g_budget, 1L << 40); /* let it run and shut down */
      weft_executor_destroy(ex);
      weft_set_allocator(NULL, NULL, NULL);
      ASSERT_GE(failures, 1);
      return;
    }
    ASSERT_RC(rc, WEFT_ENOMEM);
    ASSERT_TRUE(ex == NULL);
    weft_set_allocator(NULL, NULL, NULL);
    failures++;
  }
  WT_FAIL("create never succeeded with 100 allocations");
}
