/*
 * loop.c — the event loop: callback queues, timers, fd watches, run/stop,
 * the cross-thread wake-up and the blocking detector.
 *
 * Design note.
 *
 * One iteration: (1) move what other threads posted into the local queue,
 * (2) run the callbacks queued when the iteration began (those they queue
 * wait for the next iteration, so a callback that re-posts itself cannot
 * starve timers or IO), (3) run the timers due now that were armed before
 * this phase began, (4) poll for IO — without blocking if anything is
 * queued — and run the fd callbacks.
 *
 * Timers live on one binary min-heap of weft__timer pointers keyed by
 * (when, seq); seq is a per-loop counter, so equal deadlines run in the
 * order they were set. Internal timers are embedded in their owner's struct;
 * public ones are heap-allocated records found by a uint64_t id made of a
 * slot index and the slot's generation, so a stale id finds a newer
 * generation and is refused with WEFT_ENOENT.
 *
 * Cross-thread posts go to a mutex-protected FIFO (per-thread order is
 * kept; a post costs one uncontended lock when the loop is busy). The loop
 * is woken through an eventfd only when it sleeps: the "sleeping" protocol
 * below keeps a busy loop free of a syscall per post.
 *
 *   loop thread (before a blocking poll)      poster
 *     store sleeping = 1        (seq_cst)       append; store has_remote = 1 (seq_cst)
 *     load has_remote/stop/done (seq_cst)       load sleeping (seq_cst);
 *     if any: poll without blocking             if 1 and exchange(sleeping, 0) == 1:
 *     poll; store sleeping = 0                      write the eventfd
 *
 * No lost wake-up: all four accesses are seq_cst, so in their single total
 * order either the loop's load of has_remote comes after the poster's
 * store (the loop sees the post and does not block), or the poster's load
 * of sleeping comes after the loop's store (the poster sees 1 and, unless
 * another waker already swapped it to 0 and wrote the eventfd itself,
 * writes the eventfd). A write that lands after the poll already returned
 * only costs one spurious, harmless wake-up. weft_loop_stop and the
 * run_until token use the same protocol with their own flags.
 *
 * Blocking detector: when enabled, the loop stores the start time of every
 * callback it runs (relaxed atomic; nothing at all when disabled) and a
 * watchdog thread checks it every threshold/4 ms.
 */
#include "async/loop.h"
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define DEFAULT_STACK (256u * 1024u)
#define NOT_ARMED ((size_t)-1)

/* A public call_at/call_later timer. */
typedef struct ptimer {
  weft__timer t;
  weft_loop *loop;
  uint32_t slot;
  weft_cb cb;
  void *arg;
} ptimer;

typedef struct tslot {
  ptimer *rec;       /* NULL when free */
  uint32_t gen;      /* bumped every time the slot is freed */
  uint32_t next_free;
} tslot;

typedef struct fdwatch {
  unsigned events; /* 0 = not watched */
  weft_fd_cb cb;
  void *arg;
} fdwatch;

/* A public call_soon record: the node plus the user's callback. */
typedef struct pcb {
  weft__cb_node node;
  weft_cb cb;
  void *arg;
} pcb;

/* run_until's link to its future: reference-counted so that the future's
 * callback may arrive after run_until returned (even after the loop is
 * gone) and find only the token. Lock order: tok->mu, then nothing. */
typedef struct until_tok {
  pthread_mutex_t mu;
  atomic_int refs;
  atomic_bool done;
  weft_loop *loop; /* NULL once run_until has returned */
} until_tok;

struct weft_loop {
  const weft__poller_ops *ops;
  weft__poller *poller;
  int efd;

  /* Loop-thread state. */
  weft__cb_node *q_head, *q_tail;
  weft__timer **heap;
  size_t heap_len, heap_cap;
  uint64_t timer_seq;
  tslot *slots;
  uint32_t nslots, slots_cap, free_slot; /* free_slot: UINT32_MAX = none */
  fdwatch *fds;
  size_t fds_cap, nwatched;
  size_t live_tasks;
  size_t stack_size;
  void (*destroy_hook)(weft_loop *, void *);
  void *destroy_arg;
  until_tok *tok; /* the running run_until's token, or NULL */

  /* Cross-thread state. */
  atomic_int running; /* 1 while some thread is inside weft_loop_run* */
  atomic_bool stop;
  atomic_int sleeping;
  atomic_bool has_remote;
  pthread_mutex_t rmu; /* guards r_head/r_tail, closing, closed */
  weft__cb_node *r_head, *r_tail;
  bool closing; /* destroy began: public threadsafe posts refused */
  bool closed;  /* destroy hook returned: every threadsafe post refused */

  /* Blocking detector (enabled is read-only after create). */
  bool detect;
  int block_ms;
  _Atomic uint64_t cb_start_ns; /* 0 = the loop is not in a callback */
  pthread_mutex_t wmu;           /* guards what, wd_quit */
  pthread_cond_t wcv;
  const char *what;
  bool wd_quit;
  pthread_t wd;
};

static _Thread_local weft_loop *tls_current;

/* ---- small helpers ------------------------------------------------------ */

static void wake(weft_loop *l) {
  /* The load first keeps a busy loop's line shared between posters. */
  if (atomic_load(&l->sleeping) && atomic_exchange(&l->sleeping, 0)) {
    uint64_t one = 1;
    ssize_t r;
    do r = write(l->efd, &one, sizeof one);
    while (r < 0 && errno == EINTR);
    /* EAGAIN means the counter is already non-zero: the loop wakes anyway. */
  }
}

/* Runs one callback with the detector's stamp around it. */
static inline void invoke(weft_loop *l, weft_cb cb, void *arg) {
  if (WEFT__UNLIKELY(l->detect)) {
    atomic_store_explicit(&l->cb_start_ns, weft_now_ns(), memory_order_relaxed);
    cb(arg);
    atomic_store_explicit(&l->cb_start_ns, 0, memory_order_relaxed);
  } else {
    cb(arg);
  }
}

/* ---- timer heap --------------------------------------------------------- */

static bool t_less(const weft__timer *a, const weft__timer *b) {
  return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void heap_set(weft_loop *l, size_t i, weft__timer *t) {
  l->heap[i] = t;
  t->heap_index = i;
}

static void sift_up(weft_loop *l, size_t i) {
  weft__timer *t = l->heap[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!t_less(t, l->heap[p])) break;
    heap_set(l, i, l->heap[p]);
    i = p;
  }
  heap_set(l, i, t);
}

static void sift_down(weft_loop *l, size_t i) {
  weft__timer *t = l->heap[i];
  size_t n = l->heap_len;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && t_less(l->heap[c + 1], l->heap[c])) c++;
    if (!t_less(l->heap[c], t)) break;
    heap_set(l, i, l->heap[c]);
    i = c;
  }
  heap_set(l, i, t);
}

static void heap_remove(weft_loop *l, weft__timer *t) {
  size_t i = t->heap_index;
  weft__timer *last = l->heap[--l->heap_len];
  t->heap_index = NOT_ARMED;
  if (last == t) return;
  heap_set(l, i, last);
  if (i > 0 && t_less(last, l->heap[(i - 1) / 2])) sift_up(l, i);
  else sift_down(l, i);
}

int weft__loop_timer_arm(weft_loop *loop, weft__timer *t, int64_t when, weft_cb cb, void *arg) {
  if (!loop || !t || !cb) return WEFT_EINVAL;
  /* A zeroed timer has heap_index 0: it is armed only if the heap says so. */
  bool armed = t->heap_index < loop->heap_len && loop->heap[t->heap_index] == t;
  if (armed) heap_remove(loop, t);
  if (loop->heap_len == loop->heap_cap) {
    size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 16;
    weft__timer **h = weft__realloc(loop->heap, cap * sizeof *h);
    if (!h) {
      t->heap_index = NOT_ARMED;
      return WEFT_ENOMEM;
    }
    loop->heap = h;
    loop->heap_cap = cap;
  }
  t->when = when;
  t->seq = loop->timer_seq++;
  t->cb = cb;
  t->arg = arg;
  loop->heap[loop->heap_len] = t;
  t->heap_index = loop->heap_len++;
  sift_up(loop, t->heap_index);
  return 0;
}

void weft__loop_timer_disarm(weft_loop *loop, weft__timer *t) {
  if (!loop || !t) return;
  if (t->heap_index < loop->heap_len && loop->heap[t->heap_index] == t) heap_remove(loop, t);
  t->heap_index = NOT_ARMED;
}

/* ---- public timers ------------------------------------------------------ */

static void slot_free(weft_loop *l, uint32_t s) {
  l->slots[s].rec = NULL;
  l->slots[s].gen++;
  l->slots[s].next_free = l->free_slot;
  l->free_slot = s;
}

static void ptimer_fire(void *arg) {
  ptimer *p = arg;
  weft_cb cb = p->cb;
  void *a = p->arg;
  slot_free(p->loop, p->slot);
  weft__free(p);
  cb(a);
}

int weft_loop_call_at(weft_loop *loop, int64_t when, weft_cb cb, void *arg, uint64_t *id) {
  if (!loop || !cb) return WEFT_EINVAL;
  if (loop->free_slot == UINT32_MAX) {
    if (loop->nslots == UINT32_MAX - 1) return WEFT_ENOMEM;
    if (loop->nslots == loop->slots_cap) {
      uint32_t cap = loop->slots_cap ? loop->slots_cap * 2 : 16;
      if (cap < loop->slots_cap || cap == UINT32_MAX) cap = UINT32_MAX - 1;
      tslot *s = weft__realloc(loop->slots, (size_t)cap * sizeof *s);
      if (!s) return WEFT_ENOMEM;
      loop->slots = s;
      loop->slots_cap = cap;
    }
    loop->slots[loop->nslots] = (tslot){.rec = NULL, .gen = 1, .next_free = UINT32_MAX};
    loop->free_slot = loop->nslots++;
  }
  ptimer *p = weft__calloc(1, sizeof *p);
  if (!p) return WEFT_ENOMEM;
  uint32_t s = loop->free_slot;
  p->loop = loop;
  p->slot = s;
  p->cb = cb;
  p->arg = arg;
  p->t.heap_index = NOT_ARMED;
  int rc = weft__loop_timer_arm(loop, &p->t, when, ptimer_fire, p);
  if (rc) {
    weft__free(p);
    return rc;
  }
  loop->free_slot = loop->slots[s].next_free;
  loop->slots[s].rec = p;
  if (id) *id = (uint64_t)loop->slots[s].gen << 32 | s;
  return 0;
}

int weft_loop_call_later(weft_loop *loop, int64_t delay_ms, weft_cb cb, void *arg, uint64_t *id) {
  if (delay_ms < 0) delay_ms = 0;
  int64_t now = weft_now();
  int64_t when = delay_ms > INT64_MAX - now ? INT64_MAX : now + delay_ms;
  return weft_loop_call_at(loop, when, cb, arg, id);
}

int weft_loop_cancel_timer(weft_loop *loop, uint64_t id) {
  if (!loop) return WEFT_EINVAL;
  uint32_t s = (uint32_t)id, gen = (uint32_t)(id >> 32);
  if (s >= loop->nslots || !loop->slots[s].rec || loop->slots[s].gen != gen) return WEFT_ENOENT;
  ptimer *p = loop->slots[s].rec;
  weft__loop_timer_disarm(loop, &p->t);
  slot_free(loop, s);
  weft__free(p);
  return 0;
}

/* ---- callbacks ---------------------------------------------------------- */

void weft__loop_post(weft_loop *loop, weft__cb_node *n) {
  n->next = NULL;
  if (loop->q_tail) loop->q_tail->next = n;
  else loop->q_head = n;
  loop->q_tail = n;
}

static void pcb_run(void *arg) {
  pcb *p = arg;
  weft_cb cb = p->cb;
  void *a = p->arg;
  weft__free(p);
  cb(a);
}

int weft_loop_call_soon(weft_loop *loop, weft_cb cb, void *arg) {
  if (!loop || !cb) return WEFT_EINVAL;
  pcb *p = weft__malloc(sizeof *p);
  if (!p) return WEFT_ENOMEM;
  p->node.cb = pcb_run;
  p->node.arg = p;
  p->cb = cb;
  p->arg = arg;
  weft__loop_post(loop, &p->node);
  return 0;
}

/* public: refused from the start of destroy; internal: until the destroy
 * hook has returned (the task layer may still need it to finish tasks). */
static int post_remote(weft_loop *l, weft__cb_node *n, bool public) {
  n->next = NULL;
  pthread_mutex_lock(&l->rmu);
  if (l->closed || (public && l->closing)) {
    pthread_mutex_unlock(&l->rmu);
    return WEFT_ECLOSED;
  }
  if (l->r_tail) l->r_tail->next = n;
  else l->r_head = n;
  l->r_tail = n;
  atomic_store(&l->has_remote, true);
  /* Woken under rmu so that destroy, which sets `closed` under rmu before
   * closing the eventfd, can never see a poster still about to write it.
   * Only a sleeping loop costs the syscall, so the lock is held briefly. */
  wake(l);
  pthread_mutex_unlock(&l->rmu);
  return 0;
}

int weft__loop_post_threadsafe(weft_loop *loop, weft__cb_node *n) {
  if (!loop || !n) return WEFT_EINVAL;
  return post_remote(loop, n, false);
}

int weft_loop_call_soon_threadsafe(weft_loop *loop, weft_cb cb, void *arg) {
  if (!loop || !cb) return WEFT_EINVAL;
  pcb *p = weft__malloc(sizeof *p);
  if (!p) return WEFT_ENOMEM;
  p->node.cb = pcb_run;
  p->node.arg = p;
  p->cb = cb;
  p->arg = arg;
  int rc = post_remote(loop, &p->node, true);
  if (rc) weft__free(p);
  return rc;
}

/* Moves the cross-thread queue to the end of the local one. */
static void take_remote(weft_loop *l) {
  if (!atomic_load_explicit(&l->has_remote, memory_order_relaxed)) return;
  pthread_mutex_lock(&l->rmu);
  weft__cb_node *h = l->r_head, *t = l->r_tail;
  l->r_head = l->r_tail = NULL;
  atomic_store(&l->has_remote, false);
  pthread_mutex_unlock(&l->rmu);
  if (!h) return;
  if (l->q_tail) l->q_tail->next = h;
  else l->q_head = h;
  l->q_tail = t;
}

/* Frees the public records of a dropped callback list. */
static void drop_list(weft__cb_node *n) {
  while (n) {
    weft__cb_node *next = n->next;
    if (n->cb == pcb_run) weft__free(n->arg);
    n = next;
  }
}

/* ---- misc internal hooks ------------------------------------------------ */

void weft__loop_task_added(weft_loop *loop) { loop->live_tasks++; }
void weft__loop_task_removed(weft_loop *loop) {
  if (loop->live_tasks > 0) loop->live_tasks--;
}

void weft__loop_set_running(weft_loop *loop, const char *what) {
  if (!loop || !loop->detect) return;
  pthread_mutex_lock(&loop->wmu);
  loop->what = what;
  pthread_mutex_unlock(&loop->wmu);
  /* A task starts its own stall; back in the loop's hands nothing is
   * stalled (the task layer may also switch outside any callback, e.g. in
   * its destroy hook, so the stamp must not outlive the task). */
  atomic_store_explicit(&loop->cb_start_ns, what ? weft_now_ns() : 0, memory_order_relaxed);
}

size_t weft__loop_stack_size(const weft_loop *loop) {
  return loop ? loop->stack_size : DEFAULT_STACK;
}

void weft__loop_set_destroy_hook(weft_loop *loop, void (*hook)(weft_loop *loop, void *arg),
                                 void *arg) {
  if (!loop) return;
  loop->destroy_hook = hook;
  loop->destroy_arg = arg;
}

void *weft__loop_destroy_hook_arg(const weft_loop *loop) {
  return loop ? loop->destroy_arg : NULL;
}

weft_loop *weft_loop_current(void) { return tls_current; }

/* ---- fd watches --------------------------------------------------------- */

int weft_loop_watch(weft_loop *loop, int fd, unsigned events, weft_fd_cb cb, void *arg) {
  if (!loop || fd < 0 || fd == loop->efd) return WEFT_EINVAL;
  if (events & ~(WEFT_READABLE | WEFT_WRITABLE)) return WEFT_EINVAL;
  if (events && !cb) return WEFT_EINVAL;
  if ((size_t)fd >= loop->fds_cap) {
    if (!events) return 0; /* never watched */
    size_t cap = loop->fds_cap ? loop->fds_cap : 64;
    while (cap <= (size_t)fd) cap *= 2;
    fdwatch *t = weft__realloc(loop->fds, cap * sizeof *t);
    if (!t) return WEFT_ENOMEM;
    memset(t + loop->fds_cap, 0, (cap - loop->fds_cap) * sizeof *t);
    loop->fds = t;
    loop->fds_cap = cap;
  }
  fdwatch *w = &loop->fds[fd];
  if (w->events != events) {
    int rc = loop->ops->ctl(loop->poller, fd, w->events, events);
    if (rc) return rc;
  }
  if (!w->events && events) loop->nwatched++;
  if (w->events && !events) loop->nwatched--;
  w->events = events;
  w->cb = events ? cb : NULL;
  w->arg = events ? arg : NULL;
  return 0;
}

/* ---- blocking detector -------------------------------------------------- */

static void *watchdog(void *arg) {
  weft_loop *l = arg;
  int64_t period = l->block_ms / 4;
  if (period < 1) period = 1;
  if (period > 250) period = 250;
  uint64_t reported = 0;
  char msg[256];
  pthread_mutex_lock(&l->wmu);
  while (!l->wd_quit) {
    weft__cond_wait(&l->wcv, &l->wmu, weft_deadline_in(period));
    if (l->wd_quit) break;
    uint64_t start = atomic_load_explicit(&l->cb_start_ns, memory_order_relaxed);
    if (start == 0 || start == reported) continue;
    uint64_t now = weft_now_ns();
    if (now <= start || (now - start) / 1000000u <= (uint64_t)l->block_ms) continue;
    reported = start; /* once per stall */
    /* `what` is read under wmu, which set_running also takes, so the
     * string cannot be freed while it is copied. */
    int n = snprintf(msg, sizeof msg, "weft: loop blocked for %llu ms by %s\n",
                     (unsigned long long)((now - start) / 1000000u),
                     l->what ? l->what : "a callback");
    if (n < 0) continue;
    size_t len = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
    if (len > 0 && msg[len - 1] != '\n') msg[len - 1] = '\n';
    pthread_mutex_unlock(&l->wmu);
    ssize_t w = write(STDERR_FILENO, msg, len);
    (void)w;
    pthread_mutex_lock(&l->wmu);
  }
  pthread_mutex_unlock(&l->wmu);
  return NULL;
}

static int resolve_block_ms(int opt) {
  if (opt > 0) return opt;
  if (opt < 0) return 0;
  const char *s = getenv("WEFT_BLOCK_WARN_MS");
  if (!s) return 0;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  /* "1" (a plain "on") and anything below 1 ms or unreadable mean 100. */
  if (end == s || errno || v <= 1) return 100;
  return v > INT_MAX ? INT_MAX : (int)v;
}

/* ---- create / destroy --------------------------------------------------- */

static void efd_ready(weft_loop *l) {
  uint64_t v;
  ssize_t r;
  do r = read(l->efd, &v, sizeof v);
  while (r < 0 && errno == EINTR);
}

int weft_loop_create(weft_loop **out, const weft_loop_opts *opts) {
  if (!out) return WEFT_EINVAL;
  *out = NULL;
  const weft__poller_ops *ops = NULL;
  if (!opts || !opts->backend || strcmp(opts->backend, "epoll") == 0) ops = &weft__poller_epoll;
  else return WEFT_EINVAL;

  weft_loop *l = weft__calloc(1, sizeof *l);
  if (!l) return WEFT_ENOMEM;
  l->ops = ops;
  l->efd = -1;
  l->free_slot = UINT32_MAX;
  size_t ss = opts && opts->stack_size ? opts->stack_size : DEFAULT_STACK;
  long pg = sysconf(_SC_PAGESIZE);
  size_t page = pg > 0 ? (size_t)pg : 4096;
  if (ss > SIZE_MAX - page) ss = SIZE_MAX - page;
  l->stack_size = (ss + page - 1) / page * page;
  atomic_init(&l->running, 0);
  atomic_init(&l->stop, false);
  atomic_init(&l->sleeping, 0);
  atomic_init(&l->has_remote, false);
  atomic_init(&l->cb_start_ns, 0);

  int rc = ops->create(&l->poller);
  if (rc) goto fail;
  l->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (l->efd < 0) {
    rc = -errno;
    goto fail;
  }
  rc = ops->ctl(l->poller, l->efd, 0, WEFT_READABLE);
  if (rc) goto fail;
  if (pthread_mutex_init(&l->rmu, NULL) != 0) {
    rc = WEFT_ENOMEM;
    goto fail;
  }
  if (pthread_mutex_init(&l->wmu, NULL) != 0) {
    pthread_mutex_destroy(&l->rmu);
    rc = WEFT_ENOMEM;
    goto fail;
  }
  l->block_ms = resolve_block_ms(opts ? opts->block_warn_ms : 0);
  if (l->block_ms > 0) {
    if (weft__cond_init(&l->wcv) != 0) {
      rc = WEFT_ENOMEM;
      goto fail_mutex;
    }
    l->detect = true;
    int e = pthread_create(&l->wd, NULL, watchdog, l);
    if (e) {
      pthread_cond_destroy(&l->wcv);
      l->detect = false;
      rc = e == EAGAIN ? WEFT_EAGAIN : -e;
      goto fail_mutex;
    }
  }
  *out = l;
  return 0;

fail_mutex:
  pthread_mutex_destroy(&l->rmu);
  pthread_mutex_destroy(&l->wmu);
fail:
  if (l->efd >= 0) close(l->efd);
  if (l->poller) ops->destroy(l->poller);
  weft__free(l);
  return rc;
}

/* What is guaranteed to threads posting while destroy runs: a post is
 * either refused with WEFT_ECLOSED (public ones from the moment destroy
 * begins, internal ones once the destroy hook has returned) or accepted
 * under rmu, and then it runs (if the hook runs the loop) or is dropped and
 * freed here. No poster touches the eventfd after `closed` is set, since
 * the wake-up happens under rmu. What cannot be guaranteed is a call that
 * starts after destroy has returned (the loop's memory is gone): posting
 * threads must be finished (joined, or told through the hook) by then. */
void weft_loop_destroy(weft_loop *loop) {
  if (!loop) return;
  /* Destroying a running loop is a caller's mistake: leave it alone rather
   * than free memory the running loop still uses. */
  if (atomic_load(&loop->running) || tls_current == loop) return;

  pthread_mutex_lock(&loop->rmu);
  loop->closing = true;
  pthread_mutex_unlock(&loop->rmu);

  /* The task layer may run the loop to finish its tasks: everything stays
   * usable until the hook returns. */
  if (loop->destroy_hook) loop->destroy_hook(loop, loop->destroy_arg);

  pthread_mutex_lock(&loop->rmu);
  loop->closed = true;
  weft__cb_node *remote = loop->r_head;
  loop->r_head = loop->r_tail = NULL;
  pthread_mutex_unlock(&loop->rmu);

  if (loop->detect) {
    pthread_mutex_lock(&loop->wmu);
    loop->wd_quit = true;
    pthread_cond_signal(&loop->wcv);
    pthread_mutex_unlock(&loop->wmu);
    pthread_join(loop->wd, NULL);
    pthread_cond_destroy(&loop->wcv);
  }

  drop_list(loop->q_head);
  drop_list(remote);
  /* Internal timers belong to their owners: just forget them. */
  for (size_t i = 0; i < loop->heap_len; i++) loop->heap[i]->heap_index = NOT_ARMED;
  for (uint32_t s = 0; s < loop->nslots; s++) weft__free(loop->slots[s].rec);
  weft__free(loop->slots);
  weft__free(loop->heap);
  weft__free(loop->fds);
  loop->ops->destroy(loop->poller);
  close(loop->efd);
  pthread_mutex_destroy(&loop->rmu);
  pthread_mutex_destroy(&loop->wmu);
  weft__free(loop);
}

/* ---- running ------------------------------------------------------------ */

static void tok_unref(until_tok *t) {
  if (atomic_fetch_sub(&t->refs, 1) == 1) {
    pthread_mutex_destroy(&t->mu);
    weft__free(t);
  }
}

/* weft_future_on_done callback: any thread, maybe after run_until left. */
static void tok_done(weft_future *f, void *arg) {
  (void)f;
  until_tok *t = arg;
  pthread_mutex_lock(&t->mu);
  atomic_store(&t->done, true);
  /* loop is non-NULL only while run_until runs, so the loop is alive. */
  if (t->loop) wake(t->loop);
  pthread_mutex_unlock(&t->mu);
  tok_unref(t);
}

static void fd_ready(int fd, unsigned events, void *ctx) {
  weft_loop *l = ctx;
  if (fd == l->efd) {
    efd_ready(l);
    return;
  }
  /* A callback earlier in this batch may have stopped the loop or changed
   * this watch: read the table afresh. */
  if (atomic_load_explicit(&l->stop, memory_order_relaxed)) return;
  if (fd < 0 || (size_t)fd >= l->fds_cap) return;
  fdwatch *w = &l->fds[fd];
  unsigned ev = events & (w->events | WEFT_FD_ERROR);
  if (!w->events || !ev) return;
  if (WEFT__UNLIKELY(l->detect)) {
    atomic_store_explicit(&l->cb_start_ns, weft_now_ns(), memory_order_relaxed);
    w->cb(fd, ev, w->arg);
    atomic_store_explicit(&l->cb_start_ns, 0, memory_order_relaxed);
  } else {
    w->cb(fd, ev, w->arg);
  }
}

static bool stopped(weft_loop *l) { return atomic_load_explicit(&l->stop, memory_order_relaxed); }

/* One iteration. Returns 1 when nothing is left (run without a future),
 * 0 to go on, or a negative poller error. */
static int iterate(weft_loop *l, int64_t deadline) {
  take_remote(l);

  /* Callbacks queued when the iteration began. */
  weft__cb_node *n = l->q_head, *batch_tail = l->q_tail;
  l->q_head = l->q_tail = NULL;
  while (n) {
    weft__cb_node *next = n == batch_tail ? NULL : n->next;
    invoke(l, n->cb, n->arg); /* may re-post n: next was read before */
    n = next;
    if (n && stopped(l)) {
      /* Put the rest back in front of what the callbacks queued. */
      batch_tail->next = l->q_head;
      if (!l->q_head) l->q_tail = batch_tail;
      l->q_head = n;
      return 0;
    }
  }
  if (stopped(l)) return 0;

  /* Due timers armed before this phase (a timer armed now for now runs
   * next iteration, so a self-re-arming timer cannot spin here). */
  if (l->heap_len) {
    int64_t now = weft_now();
    uint64_t limit = l->timer_seq;
    while (l->heap_len && l->heap[0]->when <= now && l->heap[0]->seq < limit) {
      weft__timer *t = l->heap[0];
      heap_remove(l, t);
      invoke(l, t->cb, t->arg);
      if (stopped(l)) return 0;
    }
  }

  /* IO: block only if nothing is queued. */
  int timeout = -1;
  if (l->q_head || atomic_load_explicit(&l->has_remote, memory_order_relaxed)) timeout = 0;
  int64_t wake_at = -1;
  if (l->heap_len) wake_at = l->heap[0]->when;
  if (deadline >= 0 && (wake_at < 0 || deadline < wake_at)) wake_at = deadline;
  if (timeout != 0 && wake_at >= 0) {
    /* weft_now() truncates to whole ms, so when - now never undershoots. */
    int64_t now = weft_now();
    int64_t d = wake_at > now ? wake_at - now : 0;
    timeout = d > INT_MAX ? INT_MAX : (int)d;
  }
  if (timeout < 0 && !l->tok && l->nwatched == 0 && l->live_tasks == 0) return 1;

  /* Busy with no fd watched: nothing a poll could report (cross-thread
   * posts are seen through has_remote), so skip the syscall. A stale
   * eventfd count is drained by the next blocking poll. */
  if (timeout == 0 && l->nwatched == 0) return 0;
  if (timeout != 0) {
    atomic_store(&l->sleeping, 1);
    if (atomic_load(&l->has_remote) || atomic_load(&l->stop) ||
        (l->tok && atomic_load(&l->tok->done)))
      timeout = 0;
  }
  int rc = l->ops->wait(l->poller, timeout, fd_ready, l);
  if (timeout != 0) atomic_store(&l->sleeping, 0);
  if (rc < 0 && rc != -EINTR) return rc;
  return 0;
}

static int run_common(weft_loop *l, until_tok *tok, int64_t deadline) {
  if (tls_current) return WEFT_EBUSY;
  int expect = 0;
  if (!atomic_compare_exchange_strong(&l->running, &expect, 1)) return WEFT_EBUSY;
  tls_current = l;
  l->tok = tok;
  int rc;
  for (;;) {
    if (tok && atomic_load(&tok->done)) {
      rc = 0;
      break;
    }
    if (stopped(l)) {
      /* A stop is consumed by the run it ends; one that arrives between
       * runs ends the next run at once. */
      atomic_store(&l->stop, false);
      rc = tok ? WEFT_ECANCELED : 0;
      break;
    }
    int r = iterate(l, tok ? deadline : -1);
    if (r < 0) {
      rc = r;
      break;
    }
    if (r == 1) {
      rc = 0;
      break;
    }
    if (tok && !atomic_load(&tok->done) && weft__deadline_passed(deadline)) {
      rc = WEFT_ETIMEDOUT;
      break;
    }
  }
  l->tok = NULL;
  tls_current = NULL;
  atomic_store(&l->running, 0);
  return rc;
}

int weft_loop_run(weft_loop *loop) {
  if (!loop) return WEFT_EINVAL;
  return run_common(loop, NULL, -1);
}

int weft_loop_run_until(weft_loop *loop, weft_future *f, int64_t deadline) {
  if (!loop || !f) return WEFT_EINVAL;
  if (weft_future_done(f)) return 0;
  if (tls_current || atomic_load(&loop->running)) return WEFT_EBUSY;
  until_tok *t = weft__malloc(sizeof *t);
  if (!t) return WEFT_ENOMEM;
  if (pthread_mutex_init(&t->mu, NULL) != 0) {
    weft__free(t);
    return WEFT_ENOMEM;
  }
  atomic_init(&t->refs, 2);
  atomic_init(&t->done, false);
  t->loop = loop;
  int rc = weft_future_on_done(f, tok_done, t);
  if (rc) {
    pthread_mutex_destroy(&t->mu);
    weft__free(t);
    return rc;
  }
  rc = run_common(loop, t, deadline);
  pthread_mutex_lock(&t->mu);
  t->loop = NULL;
  pthread_mutex_unlock(&t->mu);
  tok_unref(t);
  return rc;
}

int weft_loop_stop(weft_loop *loop) {
  if (!loop) return WEFT_EINVAL;
  atomic_store(&loop->stop, true);
  wake(loop);
  return 0;
}

/* Added by the lead for the task layer's destroy hook: forget every queued
 * callback (local and posted from other threads) without running it, so
 * that the owners of intrusive nodes may free them. */
void weft__loop_discard_queued(weft_loop *loop) {
  take_remote(loop);
  weft__cb_node *n = loop->q_head;
  loop->q_head = loop->q_tail = NULL;
  drop_list(n);
}
