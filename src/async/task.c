/*
 * task.c — async tasks: coroutines on a loop, completing ordinary futures.
 *
 * A task is a coroutine (async/coro.c) plus a future. The loop resumes it
 * through an intrusive callback node (run_node); the task gives control back
 * by suspending (weft__task_suspend), after arranging for someone on the
 * loop thread to call weft__task_wake: a timer (deadline, sleep), an fd watch
 * (sockets), or a done-callback of an awaited future, which may fire in any
 * thread and therefore reaches the loop as a posted node.
 *
 * Everything that touches a task runs on its loop's thread, except the
 * cancel hook of its future (any thread), which only posts a message holding
 * a reference to the future; on the loop thread "the future is not done"
 * implies "the task is alive", because only the task itself (or the loop's
 * destroy path, also on the loop thread) completes it.
 *
 * Cancellation is sticky: once a task has been cancelled, every await it
 * makes returns WEFT_ECANCELED at once, so a task that merely propagates
 * errors unwinds quickly. weft_group_destroy waits for children with
 * cancellation shielded (it must not return while children live).
 */
#include "internal.h"
#include "async/coro.h"
#include "async/loop.h"
#include "async/task.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum tstate {
  T_READY,     /* spawned, first run queued */
  T_RUNNING,   /* its coroutine runs now */
  T_SUSPENDED, /* in weft__task_suspend, waiting for a wake */
  T_WAKING,    /* run_node queued to resume it */
  T_DONE,      /* its function returned; freed after the switch back */
} tstate;

/* How other threads reach a loop that may be destroyed meanwhile: a
 * reference-counted box whose loop pointer is cleared (under its lock) when
 * the loop goes away. Awaiters hold one, because the futures they wait on
 * may complete in other threads long after the awaiting task gave up. */
typedef struct mailbox {
  atomic_size_t refs;
  pthread_mutex_t mu;
  weft_loop *loop; /* NULL once the loop is destroyed */
} mailbox;

static mailbox *mailbox_retain(mailbox *mb) {
  atomic_fetch_add_explicit(&mb->refs, 1, memory_order_relaxed);
  return mb;
}

static void mailbox_release(mailbox *mb) {
  if (atomic_fetch_sub_explicit(&mb->refs, 1, memory_order_acq_rel) == 1) {
    pthread_mutex_destroy(&mb->mu);
    weft__free(mb);
  }
}

static int mailbox_post(mailbox *mb, weft__cb_node *n) {
  pthread_mutex_lock(&mb->mu);
  int rc = mb->loop ? weft__loop_post_threadsafe(mb->loop, n) : WEFT_ECLOSED;
  pthread_mutex_unlock(&mb->mu);
  return rc;
}

/* The task layer's state for one loop (the loop's destroy-hook argument). */
typedef struct domain {
  weft_loop *loop;
  mailbox *mb;
  weft__task *live; /* every task not yet freed */
  size_t nlive;
  weft_future *all_done; /* set while the loop is being destroyed */
} domain;

struct weft__task {
  weft__task *prev, *next; /* domain->live */
  domain *dom;
  weft_loop *loop;
  weft__coro *co;
  weft_future *fut; /* the task's own reference */
  weft_fn fn;
  const void *in;
  size_t in_size;
  tstate state;
  int wake_code;
  bool started;
  bool cancelled; /* a cancellation reached the task (loop thread) */
  bool shielded;  /* cancellation does not wake it now */
  weft__job *job;               /* an executor's job run by this task, or NULL */
  weft_future *cancel_src;      /* the job's future: its cancellation is ours */
  const atomic_bool *ex_cancel; /* the executor's cancelling shutdown */
  weft__cb_node run_node;
  weft__timer timer;
  char label[]; /* "name (spawned at file:line)" */
};

static _Thread_local weft__task *tl_task;

weft__task *weft__task_self(void) { return tl_task; }
weft_loop *weft__task_loop(const weft__task *t) { return t ? t->loop : NULL; }
int weft_in_task(void) { return tl_task != NULL; }

/* ---- domains ---- */

static void domain_destroy_hook(weft_loop *loop, void *arg);

static domain *domain_get(weft_loop *loop) {
  domain *d = weft__loop_destroy_hook_arg(loop);
  if (d) return d;
  d = weft__calloc(1, sizeof *d);
  if (!d) return NULL;
  d->mb = weft__calloc(1, sizeof *d->mb);
  if (!d->mb) {
    weft__free(d);
    return NULL;
  }
  atomic_init(&d->mb->refs, 1);
  pthread_mutex_init(&d->mb->mu, NULL);
  d->mb->loop = loop;
  d->loop = loop;
  weft__loop_set_destroy_hook(loop, domain_destroy_hook, d);
  return d;
}

/* ---- running and finishing ---- */

static void task_free(weft__task *t) {
  domain *d = t->dom;
  if (t->prev) t->prev->next = t->next;
  else d->live = t->next;
  if (t->next) t->next->prev = t->prev;
  d->nlive--;
  weft__loop_timer_disarm(t->loop, &t->timer);
  weft__coro_destroy(t->co);
  weft_future_release(t->fut);
  weft__loop_task_removed(t->loop);
  weft__free(t);
  if (d->nlive == 0 && d->all_done) (void)weft_future_set_result(d->all_done, NULL, 0);
}

static void task_main(void *arg) {
  weft__task *t = arg;
  weft_out out = {0};
  out.fut = t->fut;
  out.inl = weft__future_inline(t->fut, &out.inl_size);
  int rc = t->fn(t->in, t->in_size, &out);
  rc = weft__out_code(&out, rc);
  if (rc < 0 && out.data && out.data != out.inl) {
    weft__free(out.data);
    out.data = NULL;
  }
  t->state = T_DONE;
  /* Done-callbacks (awaiters, groups) run here, on this stack. */
  weft__future_complete_running(t->fut, rc, rc < 0 ? NULL : out.data, rc < 0 ? 0 : out.size,
                                out.msg);
}

static void resume_cb(void *arg) {
  weft__task *t = arg;
  if (!t->started) {
    if (!weft__future_start(t->fut)) { /* cancelled before it ran */
      if (t->job) weft__job_cancel(t->job);
      task_free(t);
      return;
    }
    t->started = true;
  }
  t->state = T_RUNNING;
  weft__task *outer = tl_task;
  tl_task = t;
  weft__loop_set_running(t->loop, t->label);
  bool alive = weft__coro_resume(t->co);
  weft__loop_set_running(t->loop, NULL);
  tl_task = outer;
  if (!alive) task_free(t);
}

void weft__task_wake(weft__task *t, int code) {
  if (!t || t->state != T_SUSPENDED) return;
  t->state = T_WAKING;
  t->wake_code = code;
  weft__loop_post(t->loop, &t->run_node);
}

static void timer_cb(void *arg) { weft__task_wake(arg, WEFT_ETIMEDOUT); }

static bool cancel_seen(weft__task *t) {
  if (!t->cancelled &&
      (weft__future_cancel_requested(t->fut) ||
       (t->cancel_src && weft__future_cancel_requested(t->cancel_src)) ||
       (t->ex_cancel && atomic_load_explicit(t->ex_cancel, memory_order_relaxed))))
    t->cancelled = true;
  return t->cancelled && !t->shielded;
}

/* Lets the loop run everything else once, then continues. */
static void yield_now(weft__task *t) {
  t->state = T_WAKING;
  t->wake_code = 0;
  weft__loop_post(t->loop, &t->run_node);
  weft__coro_yield();
}

/* A cancelled task's awaits fail at once, but still pass through the loop:
 * a task that ignores the error and awaits again in a loop must not starve
 * the others (nor the loop's destroy, which waits for it). */
static int cancelled_now(weft__task *t) {
  yield_now(t);
  return WEFT_ECANCELED;
}

int weft__task_suspend(int64_t deadline) {
  weft__task *t = tl_task;
  if (!t) return WEFT_EINVAL;
  if (cancel_seen(t)) return cancelled_now(t);
  if (deadline != WEFT_FOREVER) {
    if (weft__deadline_passed(deadline)) return WEFT_ETIMEDOUT;
    if (weft__loop_timer_arm(t->loop, &t->timer, deadline, timer_cb, t) != 0) return WEFT_ENOMEM;
  }
  t->state = T_SUSPENDED;
  t->wake_code = 0;
  weft__coro_yield();
  weft__loop_timer_disarm(t->loop, &t->timer);
  return t->wake_code;
}

/* ---- cancellation from any thread ---- */

typedef struct cancel_msg {
  weft__cb_node node;
  weft_future *f;
} cancel_msg;

static void cancel_msg_cb(void *arg) {
  cancel_msg *m = arg;
  if (!weft_future_done(m->f)) {
    weft__task *t = weft__future_tag(m->f);
    t->cancelled = true;
    if (!t->shielded) weft__task_wake(t, WEFT_ECANCELED);
  }
  weft_future_release(m->f);
  weft__free(m);
}

static void cancel_hook(weft_future *f, void *owner) {
  weft_loop *loop = owner;
  cancel_msg *m = weft__malloc(sizeof *m);
  if (!m) return; /* the flag is set: the task sees it at its next await */
  m->f = weft_future_retain(f);
  m->node.cb = cancel_msg_cb;
  m->node.arg = m;
  if (weft_loop_current() == loop) {
    weft__loop_post(loop, &m->node);
  } else if (weft__loop_post_threadsafe(loop, &m->node) != 0) {
    weft_future_release(f);
    weft__free(m);
  }
}

/* ---- spawn ---- */

static int spawn(const char *file, int line, weft_loop *loop, weft_fn fn, const void *in,
                 size_t in_size, const weft_task_opts *opts, weft_future **fut,
                 weft__task **tout) {
  if (fut) *fut = NULL;
  if (!loop || !fn || (!in && in_size)) return WEFT_EINVAL;
  domain *d = domain_get(loop);
  if (!d) return WEFT_ENOMEM;
  const char *name = opts && opts->name ? opts->name : weft_registry_name(fn);
  char fnbuf[32];
  if (!name) {
    snprintf(fnbuf, sizeof fnbuf, "task@%p", *(void **)&fn);
    name = fnbuf;
  }
  if (!file) file = "?";
  int len = snprintf(NULL, 0, "%s (spawned at %s:%d)", name, file, line);
  weft__task *t = weft__calloc(1, sizeof *t + (size_t)len + 1);
  if (!t) return WEFT_ENOMEM;
  snprintf(t->label, (size_t)len + 1, "%s (spawned at %s:%d)", name, file, line);
  size_t stack = opts && opts->stack_size ? opts->stack_size : weft__loop_stack_size(loop);
  t->fut = weft__future_new(fut ? 2 : 1);
  if (!t->fut) {
    weft__free(t);
    return WEFT_ENOMEM;
  }
  int rc = weft__coro_create(&t->co, task_main, t, stack, t->label);
  if (rc != 0) {
    weft_future_release(t->fut);
    if (fut) weft_future_release(t->fut);
    weft__free(t);
    return rc;
  }
  weft__future_set_cancel_hook(t->fut, cancel_hook, loop, t);
  t->dom = d;
  t->loop = loop;
  t->fn = fn;
  t->in = in;
  t->in_size = in_size;
  t->state = T_READY;
  t->timer.heap_index = (size_t)-1;
  t->run_node.cb = resume_cb;
  t->run_node.arg = t;
  t->next = d->live;
  if (d->live) d->live->prev = t;
  d->live = t;
  d->nlive++;
  weft__loop_task_added(loop);
  weft__loop_post(loop, &t->run_node);
  if (fut) *fut = t->fut;
  if (tout) *tout = t;
  return 0;
}

int weft_spawn_at(const char *file, int line, weft_loop *loop, weft_fn fn, const void *in,
                  size_t in_size, const weft_task_opts *opts, weft_future **fut) {
  return spawn(file, line, loop, fn, in, in_size, opts, fut, NULL);
}

/* ---- executor jobs as tasks (exec/async.c) ---- */

static int job_task_main(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  (void)out;
  weft__job_run((weft__job *)in);
  return 0;
}

int weft__task_spawn_job(weft_loop *loop, weft__job *job, const char *where) {
  const char *name = weft_registry_name(job->fn);
  weft_task_opts o = {.name = name ? name : "job"};
  weft__task *t;
  int rc = spawn(where, 0, loop, job_task_main, job, sizeof *job, &o, NULL, &t);
  if (rc != 0) return rc;
  t->job = job;
  t->ex_cancel = &job->ex->cancelling;
  if (!job->batch && !job->detached) {
    /* Cancelling the job's future wakes this task, as for its own. */
    t->cancel_src = job->fut;
    weft__future_set_cancel_hook(job->fut, cancel_hook, loop, t);
  }
  return 0;
}

void weft__task_cancel_all(weft_loop *loop) {
  domain *d = weft__loop_destroy_hook_arg(loop);
  if (!d) return;
  for (weft__task *t = d->live; t; t = t->next) {
    if (!t->started) {
      (void)weft_future_cancel(t->fut); /* dropped (and its job cancelled) at its turn */
    } else if (!t->cancelled) {
      t->cancelled = true;
      if (!t->shielded) weft__task_wake(t, WEFT_ECANCELED);
    }
  }
}

/* ---- loop destruction: cancel every task, let them unwind, abandon the rest */

#define DESTROY_GRACE_MS 1000

static void domain_destroy_hook(weft_loop *loop, void *arg) {
  domain *d = arg;
  if (d->nlive && weft_future_create(&d->all_done) == 0) {
    for (weft__task *t = d->live; t; t = t->next) {
      if (!t->started) {
        (void)weft_future_cancel(t->fut); /* dropped when its run_node runs */
      } else {
        t->cancelled = true;
        t->shielded = false;
        weft__task_wake(t, WEFT_ECANCELED);
      }
    }
    (void)weft_loop_run_until(loop, d->all_done, weft_deadline_in(DESTROY_GRACE_MS));
  }
  /* Whatever is left ignored its cancellation: abandon it (its stack is
   * discarded without unwinding). Queued resumptions go first: they point
   * into the tasks about to be freed. */
  if (d->live) weft__loop_discard_queued(loop);
  while (d->live) {
    weft__task *t = d->live;
    if (!t->started) {
      (void)weft_future_cancel(t->fut);
    } else if (!weft_future_done(t->fut)) {
      char *msg = weft__strdup("task abandoned: its loop was destroyed");
      weft__future_complete_running(t->fut, WEFT_ECANCELED, NULL, 0, msg);
    }
    task_free(t);
  }
  weft_future_release(d->all_done);
  pthread_mutex_lock(&d->mb->mu);
  d->mb->loop = NULL;
  pthread_mutex_unlock(&d->mb->mu);
  mailbox_release(d->mb);
  weft__free(d);
}

/* ---- awaiting futures ---- */

typedef struct awaiter awaiter;
typedef struct await_node {
  weft__cb_node node;
  awaiter *a;
} await_node;
struct awaiter {
  atomic_size_t refs;
  weft_loop *loop;
  mailbox *mb;
  weft__task *task;
  bool armed; /* loop thread: the task still waits on this awaiter */
  await_node nodes[];
};

static void awaiter_release(awaiter *a) {
  if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1) {
    mailbox_release(a->mb);
    weft__free(a);
  }
}

static void await_node_cb(void *arg) { /* loop thread */
  await_node *n = arg;
  awaiter *a = n->a;
  if (a->armed) weft__task_wake(a->task, 0);
  awaiter_release(a);
}

static void await_done_cb(weft_future *f, void *arg) { /* any thread */
  (void)f;
  await_node *n = arg;
  awaiter *a = n->a;
  if (weft_loop_current() == a->loop) weft__loop_post(a->loop, &n->node);
  else if (mailbox_post(a->mb, &n->node) != 0) awaiter_release(a);
}

static bool lowest_done(weft_future *const *futs, size_t n, size_t *index) {
  for (size_t i = 0; i < n; i++)
    if (weft_future_done(futs[i])) {
      *index = i;
      return true;
    }
  return false;
}

static int await_any(weft__task *t, weft_future *const *futs, size_t n, int64_t deadline,
                     size_t *index) {
  for (;;) {
    if (lowest_done(futs, n, index)) return 0;
    if (cancel_seen(t)) return cancelled_now(t);
    if (deadline != WEFT_FOREVER && weft__deadline_passed(deadline)) return WEFT_ETIMEDOUT;
    awaiter *a = weft__malloc(sizeof *a + n * sizeof(await_node));
    if (!a) return WEFT_ENOMEM;
    atomic_init(&a->refs, n + 1);
    a->loop = t->loop;
    a->mb = mailbox_retain(t->dom->mb);
    a->task = t;
    a->armed = true;
    size_t registered = 0;
    for (size_t i = 0; i < n; i++) {
      a->nodes[i].a = a;
      a->nodes[i].node.cb = await_node_cb;
      a->nodes[i].node.arg = &a->nodes[i];
      if (weft_future_on_done(futs[i], await_done_cb, &a->nodes[i]) == 0) registered++;
      else awaiter_release(a);
    }
    int rc = registered ? weft__task_suspend(deadline) : WEFT_ENOMEM;
    a->armed = false;
    awaiter_release(a);
    if (rc != 0) return lowest_done(futs, n, index) ? 0 : rc;
  }
}

static int check_futs(weft_future *const *futs, size_t n) {
  if (!futs || n == 0) return WEFT_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!futs[i]) return WEFT_EINVAL;
  return 0;
}

int weft_await_any(weft_future *const *futs, size_t n, int64_t deadline, size_t *index) {
  int rc = check_futs(futs, n);
  if (rc || !index) return WEFT_EINVAL;
  weft__task *t = tl_task;
  if (!t) return weft_future_wait_any(futs, n, deadline, index);
  return await_any(t, futs, n, deadline, index);
}

int weft_await(weft_future *f, int64_t deadline) {
  size_t i;
  return weft_await_any(&f, 1, deadline, &i);
}

int weft_await_all(weft_future *const *futs, size_t n, int64_t deadline) {
  int rc = check_futs(futs, n);
  if (rc) return rc;
  weft__task *t = tl_task;
  if (!t) return weft_future_wait_all(futs, n, deadline);
  for (size_t i = 0; i < n; i++) {
    size_t idx;
    rc = await_any(t, &futs[i], 1, deadline, &idx);
    if (rc) return rc;
  }
  return 0;
}

/* Waits for f with cancellation shielded (for cleanup that must finish). */
static void await_shielded(weft__task *t, weft_future *f) {
  bool was = t->shielded;
  t->shielded = true;
  size_t idx;
  while (await_any(t, &f, 1, WEFT_FOREVER, &idx) != 0) {
  }
  t->shielded = was;
}

/* ---- sleep and yield ---- */

int weft_yield(void) {
  weft__task *t = tl_task;
  if (!t) {
    sched_yield();
    return 0;
  }
  yield_now(t);
  return cancel_seen(t) ? WEFT_ECANCELED : 0;
}

int weft_sleep(int64_t ms) {
  weft__task *t = tl_task;
  if (!t) {
    if (ms <= 0) return 0;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    return 0;
  }
  if (ms <= 0) return weft_yield();
  int rc = weft__task_suspend(weft_deadline_in(ms));
  return rc == WEFT_ETIMEDOUT ? 0 : rc;
}

/* ---- waiting for an fd ---- */

static void fd_ready_cb(int fd, unsigned events, void *arg) {
  (void)fd;
  weft__task_wake(arg, (int)events);
}

static int poll_timeout(int64_t deadline) {
  if (deadline == WEFT_FOREVER) return -1;
  int64_t left = deadline - weft_now();
  if (left <= 0) return 0;
  return left > 1000000 ? 1000000 : (int)left;
}

int weft__task_wait_fd(int fd, unsigned events, int64_t deadline) {
  if (fd < 0 || !(events & (WEFT_READABLE | WEFT_WRITABLE))) return WEFT_EINVAL;
  weft__task *t = tl_task;
  if (!t) {
    struct pollfd p = {.fd = fd, .events = 0};
    if (events & WEFT_READABLE) p.events |= POLLIN;
    if (events & WEFT_WRITABLE) p.events |= POLLOUT;
    for (;;) {
      int n = poll(&p, 1, poll_timeout(deadline));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return -errno;
      if (n == 0) {
        if (deadline != WEFT_FOREVER && weft__deadline_passed(deadline)) return WEFT_ETIMEDOUT;
        continue;
      }
      unsigned r = 0;
      if (p.revents & POLLIN) r |= WEFT_READABLE;
      if (p.revents & POLLOUT) r |= WEFT_WRITABLE;
      if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) r |= WEFT_FD_ERROR;
      return (int)r;
    }
  }
  if (cancel_seen(t)) return cancelled_now(t);
  int rc = weft_loop_watch(t->loop, fd, events, fd_ready_cb, t);
  if (rc != 0) return rc;
  rc = weft__task_suspend(deadline);
  (void)weft_loop_watch(t->loop, fd, 0, NULL, NULL);
  return rc;
}

/* ---- executors from tasks ---- */

int weft_run_in_executor(weft_executor *ex, weft_fn fn, const void *in, size_t in_size,
                         int64_t deadline, weft_future **fut) {
  if (!fut) return WEFT_EINVAL;
  *fut = NULL;
  weft_future *f;
  int rc = weft_executor_submit(ex, fn, in, in_size, &f);
  if (rc != 0) return rc;
  *fut = f;
  rc = weft_await(f, deadline);
  if (rc == WEFT_ECANCELED) (void)weft_future_cancel(f);
  return rc;
}

static pthread_once_t to_thread_once = PTHREAD_ONCE_INIT;
static weft_executor *to_thread_pool;

static void to_thread_atexit(void) {
  if (weft_executor_shutdown(to_thread_pool, 0, weft_deadline_in(2000)) == 0)
    weft_executor_destroy(to_thread_pool);
}

static void to_thread_init(void) {
  weft_executor_opts o = {0};
  o.workers = weft_io_workers();
  if (weft_executor_create(&to_thread_pool, "thread_pool", &o) == 0) atexit(to_thread_atexit);
}

int weft_to_thread(weft_fn fn, const void *in, size_t in_size, int64_t deadline,
                   weft_future **fut) {
  if (!fut) return WEFT_EINVAL;
  *fut = NULL;
  pthread_once(&to_thread_once, to_thread_init);
  if (!to_thread_pool) return WEFT_ENOMEM;
  return weft_run_in_executor(to_thread_pool, fn, in, in_size, deadline, fut);
}

/* ---- task groups ---- */

typedef struct gchild {
  struct gchild *prev, *next;
  weft_group *g;
  weft_future *f;
  weft__cb_node node;
} gchild;

struct weft_group {
  weft_loop *loop;
  gchild *children;
  size_t live;
  int first_err;
  bool cancelling;
  bool orphaned;     /* destroyed while children lived: the last one frees it */
  weft_future *done; /* set when live drops to 0; renewed by the next spawn */
};

int weft_group_create(weft_group **out, weft_loop *loop) {
  if (!out) return WEFT_EINVAL;
  *out = NULL;
  if (!loop) return WEFT_EINVAL;
  weft_group *g = weft__calloc(1, sizeof *g);
  if (!g) return WEFT_ENOMEM;
  if (weft_future_create(&g->done) != 0) {
    weft__free(g);
    return WEFT_ENOMEM;
  }
  (void)weft_future_set_result(g->done, NULL, 0); /* nothing to wait for yet */
  g->loop = loop;
  *out = g;
  return 0;
}

static void group_free(weft_group *g) {
  weft_future_release(g->done);
  weft__free(g);
}

static void group_cancel_children(weft_group *g) {
  g->cancelling = true;
  for (gchild *c = g->children; c; c = c->next) (void)weft_future_cancel(c->f);
}

static void child_done_node(void *arg) { /* loop thread */
  gchild *c = arg;
  weft_group *g = c->g;
  if (c->prev) c->prev->next = c->next;
  else g->children = c->next;
  if (c->next) c->next->prev = c->prev;
  g->live--;
  int err = weft_future_error(c->f);
  weft_future_release(c->f);
  weft__free(c);
  if (err != 0 && err != WEFT_ECANCELED && g->first_err == 0) {
    g->first_err = err;
    group_cancel_children(g);
  }
  if (g->live == 0) {
    if (g->orphaned) group_free(g);
    else (void)weft_future_set_result(g->done, NULL, 0);
  }
}

static void child_done_cb(weft_future *f, void *arg) { /* any thread */
  (void)f;
  gchild *c = arg;
  if (weft_loop_current() == c->g->loop) {
    weft__loop_post(c->g->loop, &c->node);
  } else if (weft__loop_post_threadsafe(c->g->loop, &c->node) != 0) {
    /* The loop is being destroyed; its destroy path runs the tasks to the
     * end first, so this is not reached for children of a live group. */
  }
}

int weft_group_spawn(weft_group *g, weft_fn fn, const void *in, size_t in_size,
                     const weft_task_opts *opts, weft_future **fut) {
  if (fut) *fut = NULL;
  if (!g || !fn) return WEFT_EINVAL;
  if (g->cancelling) return WEFT_ECANCELED;
  gchild *c = weft__calloc(1, sizeof *c);
  if (!c) return WEFT_ENOMEM;
  if (weft_future_done(g->done)) { /* a new round of children */
    weft_future *nd;
    if (weft_future_create(&nd) != 0) {
      weft__free(c);
      return WEFT_ENOMEM;
    }
    weft_future_release(g->done);
    g->done = nd;
  }
  weft_future *f;
  int rc = weft_spawn_at(__FILE__, __LINE__, g->loop, fn, in, in_size, opts, &f);
  if (rc != 0) {
    weft__free(c);
    if (g->live == 0) (void)weft_future_set_result(g->done, NULL, 0);
    return rc;
  }
  c->g = g;
  c->f = f;
  c->node.cb = child_done_node;
  c->node.arg = c;
  c->next = g->children;
  if (g->children) g->children->prev = c;
  g->children = c;
  g->live++;
  if (weft_future_on_done(f, child_done_cb, c) != 0) {
    /* Not started yet (it runs from the loop): cancel it and forget it. */
    (void)weft_future_cancel(f);
    g->children = c->next;
    if (c->next) c->next->prev = NULL;
    g->live--;
    weft_future_release(f);
    weft__free(c);
    if (g->live == 0) (void)weft_future_set_result(g->done, NULL, 0);
    return WEFT_ENOMEM;
  }
  if (fut) *fut = weft_future_retain(f);
  return 0;
}

int weft_group_wait(weft_group *g, int64_t deadline) {
  if (!g) return WEFT_EINVAL;
  if (g->live == 0) return g->first_err;
  weft__task *t = tl_task;
  int rc;
  if (t) {
    rc = weft_await(g->done, deadline);
    if (rc == WEFT_ECANCELED) group_cancel_children(g);
  } else {
    rc = weft_loop_run_until(g->loop, g->done, deadline);
  }
  if (rc != 0) return rc;
  return g->first_err;
}

void weft_group_destroy(weft_group *g) {
  if (!g) return;
  if (g->live == 0) {
    group_free(g);
    return;
  }
  group_cancel_children(g);
  weft__task *t = tl_task;
  if (t) {
    await_shielded(t, g->done);
  } else if (weft_loop_run_until(g->loop, g->done, WEFT_FOREVER) != 0) {
    /* Called from a loop callback (the loop already runs): the children
     * finish later; the last one frees the group. */
    g->orphaned = true;
    return;
  }
  group_free(g);
}
