/*
 * future.c — the one future type of every executor.
 *
 * Design note. The whole state of a future is one atomic word:
 *   bits 0-2  the state (PENDING, RUNNING, DONE, FAILED, CANCELLED, or the
 *             private COMPLETING, held while a completer writes the result)
 *   bit  3    CANCEL_REQ: somebody asked a running task to stop
 *   bit  4    WAITERS: a thread sleeps in weft_future_wait on this future
 *   bit  5    MULTI: a thread sleeps in wait_any over this future
 *   bit  6    CBS: a done-callback was added (the list may be non-empty)
 *
 * Completing costs one compare-and-swap to COMPLETING, plain writes of the
 * result, and one release store of the final state. No lock is taken unless
 * a waiter announced itself with WAITERS/MULTI, so futures nobody waits on
 * (fire and forget, callbacks only, or waited on after completion) never
 * touch a mutex or make a system call.
 *
 * Sleeping waiters park on a small table of mutex/condition pairs chosen by
 * the future's address (a "parking lot"), so a future carries no mutex of its
 * own. A waiter sets WAITERS while holding its stripe's mutex and re-reads the
 * state in the same atomic operation; a completer that sees WAITERS in the
 * word it replaced takes the same mutex before broadcasting, so a wake-up
 * cannot fall between a waiter's check and its sleep.
 *
 * Done-callbacks form a lock-free stack. on_done first sets CBS in the word;
 * if the word was already final it runs the callback at once. Otherwise it
 * pushes a node, and completion, having seen CBS in the word it replaced,
 * swaps the head for the CLOSED marker and runs the list in the order it was
 * added; a push that finds CLOSED runs its callback itself. Whoever moves the
 * head decides, so every callback runs exactly once, and a future that never
 * had a callback costs nothing here.
 *
 * Recycling. A future is allocated per task, by the submitting thread, and
 * freed by a worker; through malloc that costs two arena-locked trips per
 * task. Freed futures go instead to a per-thread list; at LOCAL_MAX a
 * worker moves the whole list to a shared stack (one CAS), and a thread with
 * nothing cached takes the whole shared stack (one exchange: no ABA, since
 * no single element is ever popped). Each block remembers the free function it
 * was allocated with, so a change of allocator never frees a block wrongly.
 */
#include "internal.h"

#include <stdalign.h>
#include <string.h>

enum {
  ST_MASK = 7u,
  ST_COMPLETING = 5u,
  F_CANCEL_REQ = 1u << 3,
  F_WAITERS = 1u << 4,
  F_MULTI = 1u << 5,
  F_CBS = 1u << 6,
};

#define WEFT__INLINE_RESULT 16

struct cb_node {
  struct cb_node *next;
  weft_future_cb cb;
  void *arg;
};
#define CB_CLOSED ((struct cb_node *)(uintptr_t)1)

struct weft_future {
  atomic_uint word;
  weft__free_fn free_fn; /* how this block is freed */
  bool by_executor;       /* an executor completes it: set_* are refused */
  weft_future *next_free;
  atomic_int refs;
  _Atomic(struct cb_node *) cbs;
  int error;
  char *msg;
  void *data;
  size_t size;
  weft__job job; /* the submit job lives here: one allocation per task */
  /* Called (once, by the first weft_future_cancel of a running future, in
   * that caller's thread) so that the owner can interrupt running work; an
   * async task's wakes the task. NULL for executor futures. */
  void (*cancel_hook)(weft_future *f, void *owner);
  void *owner;
  void *tag; /* the owner's per-future pointer (an async task's task) */
  alignas(16) unsigned char inl[WEFT__INLINE_RESULT];
};

/* ---- the parking lot ---- */

#define LOT_STRIPES 64
struct lot_stripe {
  pthread_mutex_t mu;
  pthread_cond_t cv;
} __attribute__((aligned(WEFT__CACHELINE)));

/* Stripe LOT_STRIPES is for wait_any over several futures. */
static struct lot_stripe g_lot[LOT_STRIPES + 1];
static pthread_once_t g_lot_once = PTHREAD_ONCE_INIT;

static void lot_init(void) {
  for (int i = 0; i <= LOT_STRIPES; i++) {
    pthread_mutex_init(&g_lot[i].mu, NULL);
    if (weft__cond_init(&g_lot[i].cv) != 0) WEFT__ASSERT(!"cannot init parking lot");
  }
}

static struct lot_stripe *lot_for(const void *p) {
  pthread_once(&g_lot_once, lot_init);
  uintptr_t h = (uintptr_t)p >> 6;
  h ^= h >> 7;
  return &g_lot[h % LOT_STRIPES];
}

static struct lot_stripe *lot_multi(void) {
  pthread_once(&g_lot_once, lot_init);
  return &g_lot[LOT_STRIPES];
}

static void lot_wake(struct lot_stripe *s) {
  /* Taking the lock orders the wake after any waiter's check of the state
   * (it checks and sleeps under the lock); broadcasting after unlocking
   * spares the woken thread a trip into a still-held mutex. The stripes are
   * static, so the condition variable outlives the unlock. */
  pthread_mutex_lock(&s->mu);
  pthread_mutex_unlock(&s->mu);
  pthread_cond_broadcast(&s->cv);
}

static inline unsigned st_of(unsigned w) { return w & ST_MASK; }
static inline bool final_st(unsigned s) {
  return s == WEFT_DONE || s == WEFT_FAILED || s == WEFT_CANCELLED;
}

/* ---- recycling ---- */

enum { LOCAL_MAX = 256, SHARED_MAX = 1 << 16 };

/* `fresh` holds blocks this thread freed, newest first, with its tail known,
 * so that giving the list away is O(1); `taken` holds a chain taken from the
 * shared stack (tail unknown), used once `fresh` is empty. */
struct local_cache {
  weft_future *fresh, *fresh_tail;
  int nfresh;
  weft_future *taken;
  bool registered;
};
static _Thread_local struct local_cache tl_cache;
static _Atomic(weft_future *) g_shared;
static atomic_long g_shared_n;
static pthread_key_t g_cache_key;
static pthread_once_t g_cache_once = PTHREAD_ONCE_INIT;

static void free_chain(weft_future *f) {
  while (f) {
    weft_future *next = f->next_free;
    f->free_fn(f);
    f = next;
  }
}

/* Moves a chain first..last of n blocks to the shared stack, or frees it
 * when the shared stack already holds plenty. */
static void shared_push(weft_future *first, weft_future *last, long n) {
  if (atomic_load_explicit(&g_shared_n, memory_order_relaxed) > SHARED_MAX) {
    last->next_free = NULL;
    free_chain(first);
    return;
  }
  atomic_fetch_add_explicit(&g_shared_n, n, memory_order_relaxed);
  weft_future *head = atomic_load_explicit(&g_shared, memory_order_relaxed);
  do {
    last->next_free = head;
  } while (!atomic_compare_exchange_weak_explicit(&g_shared, &head, first, memory_order_release,
                                                  memory_order_relaxed));
}

/* At thread exit, the thread's lists go to the shared stack. */
static void cache_thread_exit(void *arg) {
  struct local_cache *c = arg;
  if (c->fresh) shared_push(c->fresh, c->fresh_tail, c->nfresh);
  if (c->taken) {
    long n = 1;
    weft_future *last = c->taken;
    for (; last->next_free; n++) last = last->next_free;
    shared_push(c->taken, last, n);
  }
  c->fresh = c->fresh_tail = c->taken = NULL;
  c->nfresh = 0;
}

static void cache_key_init(void) { pthread_key_create(&g_cache_key, cache_thread_exit); }

/* A thread's lists must go back to the shared stack when the thread exits,
 * however it came to hold blocks (freeing them, or taking the shared stack). */
static void cache_register(struct local_cache *c) {
  if (WEFT__LIKELY(c->registered)) return;
  pthread_once(&g_cache_once, cache_key_init);
  pthread_setspecific(g_cache_key, c);
  c->registered = true;
}

void weft__future_cache_flush(void) {
  free_chain(tl_cache.fresh);
  free_chain(tl_cache.taken);
  tl_cache.fresh = tl_cache.fresh_tail = tl_cache.taken = NULL;
  tl_cache.nfresh = 0;
  free_chain(atomic_exchange_explicit(&g_shared, NULL, memory_order_acquire));
  atomic_store_explicit(&g_shared_n, 0, memory_order_relaxed);
}

static weft_future *future_alloc(void) {
  struct local_cache *c = &tl_cache;
  weft__free_fn cur = weft__current_free();
  for (;;) {
    weft_future *f;
    if (c->fresh) {
      f = c->fresh;
      c->fresh = f->next_free;
      if (!c->fresh) c->fresh_tail = NULL;
      c->nfresh--;
    } else {
      if (!c->taken) {
        if (!atomic_load_explicit(&g_shared, memory_order_relaxed)) break;
        cache_register(c);
        c->taken = atomic_exchange_explicit(&g_shared, NULL, memory_order_acquire);
        atomic_store_explicit(&g_shared_n, 0, memory_order_relaxed);
        if (!c->taken) break;
      }
      f = c->taken;
      c->taken = f->next_free;
    }
    if (f->free_fn == cur) return f;
    f->free_fn(f); /* from an allocator no longer in force */
  }
  weft_future *f = weft__malloc(sizeof *f);
  if (f) f->free_fn = cur;
  return f;
}

static void future_dealloc(weft_future *f) {
  struct local_cache *c = &tl_cache;
  if (f->free_fn != weft__current_free()) {
    f->free_fn(f);
    return;
  }
  cache_register(c);
  f->next_free = c->fresh;
  if (!c->fresh) c->fresh_tail = f;
  c->fresh = f;
  if (++c->nfresh >= LOCAL_MAX) {
    shared_push(c->fresh, c->fresh_tail, c->nfresh);
    c->fresh = c->fresh_tail = NULL;
    c->nfresh = 0;
  }
}

/* ---- lifecycle ---- */

static weft_future *future_new(int refs) {
  weft_future *f = future_alloc();
  if (!f) return NULL;
  atomic_init(&f->word, WEFT_PENDING);
  atomic_init(&f->refs, refs);
  atomic_init(&f->cbs, NULL);
  f->error = 0;
  f->msg = NULL;
  f->data = NULL;
  f->size = 0;
  f->cancel_hook = NULL;
  f->owner = NULL;
  f->tag = NULL;
  return f;
}

int weft_future_create(weft_future **out) {
  if (!out) return WEFT_EINVAL;
  *out = future_new(1);
  if (*out) (*out)->by_executor = false;
  return *out ? 0 : WEFT_ENOMEM;
}

/* For the executor layer: a future with `refs` references whose job is
 * embedded; see weft__future_job / weft__job_future. */
weft_future *weft__future_new(int refs) {
  weft_future *f = future_new(refs);
  if (f) f->by_executor = true;
  return f;
}
weft__job *weft__future_job(weft_future *f) { return &f->job; }
void weft__future_set_cancel_hook(weft_future *f, void (*hook)(weft_future *, void *),
                                  void *owner, void *tag) {
  f->cancel_hook = hook;
  f->owner = owner;
  f->tag = tag;
}
void *weft__future_tag(const weft_future *f) { return f->tag; }
weft_future *weft__job_future(weft__job *job) {
  return (weft_future *)((char *)job - offsetof(weft_future, job));
}
unsigned char *weft__future_inline(weft_future *f, size_t *size) {
  *size = sizeof f->inl;
  return f->inl;
}

weft_future *weft_future_retain(weft_future *f) {
  if (f) atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
  return f;
}

static void free_result(weft_future *f) {
  if (f->data != f->inl) weft__free(f->data);
  weft__free(f->msg);
}

void weft__future_free_detached(weft_future *f) {
  free_result(f);
  future_dealloc(f);
}

void weft_future_release(weft_future *f) {
  if (!f) return;
  /* acq_rel: the last releaser must see every write made by the others. */
  if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1) return;
  free_result(f);
  /* Callbacks never run on a future nobody holds; a completed future has
   * CB_CLOSED here, a never-completed one may still hold nodes. */
  struct cb_node *n = atomic_load_explicit(&f->cbs, memory_order_acquire);
  while (n && n != CB_CLOSED) {
    struct cb_node *next = n->next;
    weft__free(n);
    n = next;
  }
  future_dealloc(f);
}

/* ---- state ---- */

const char *weft_state_name(weft_state s) {
  switch (s) {
  case WEFT_PENDING: return "pending";
  case WEFT_RUNNING: return "running";
  case WEFT_DONE: return "done";
  case WEFT_FAILED: return "failed";
  case WEFT_CANCELLED: return "cancelled";
  }
  return "?";
}

weft_state weft_future_state(const weft_future *f) {
  if (!f) return WEFT_PENDING;
  unsigned s = st_of(atomic_load_explicit(&((weft_future *)f)->word, memory_order_acquire));
  /* COMPLETING is not visible outside: it is still "running" until the
   * result is published. */
  if (s == ST_COMPLETING) return WEFT_RUNNING;
  return (weft_state)s;
}

int weft_future_done(const weft_future *f) {
  return f && final_st(st_of(atomic_load_explicit(&((weft_future *)f)->word,
                                                  memory_order_acquire)));
}

bool weft__future_start(weft_future *f) {
  unsigned w = atomic_load_explicit(&f->word, memory_order_relaxed);
  for (;;) {
    if (st_of(w) != WEFT_PENDING) return false;
    /* Release: a cancel hook set before the start is visible to whoever
     * cancels the running future (their fetch_or acquires). */
    if (atomic_compare_exchange_weak_explicit(&f->word, &w, (w & ~ST_MASK) | WEFT_RUNNING,
                                              memory_order_acq_rel, memory_order_relaxed))
      return true;
  }
}

bool weft__future_cancel_requested(const weft_future *f) {
  return atomic_load_explicit(&((weft_future *)f)->word, memory_order_relaxed) & F_CANCEL_REQ;
}

/* Moves PENDING/RUNNING -> COMPLETING. False if someone else completed it. */
static bool begin_complete(weft_future *f) {
  unsigned w = atomic_load_explicit(&f->word, memory_order_relaxed);
  for (;;) {
    unsigned s = st_of(w);
    if (s != WEFT_PENDING && s != WEFT_RUNNING) return false;
    if (atomic_compare_exchange_weak_explicit(&f->word, &w, (w & ~ST_MASK) | ST_COMPLETING,
                                              memory_order_acquire, memory_order_relaxed))
      return true;
  }
}

/* Publishes the final state, wakes sleepers, runs callbacks. The state bits
 * hold `from` (COMPLETING, or RUNNING for the worker that runs the task),
 * which only the caller can leave, so adding final - from moves them without
 * touching the flags (no carry or borrow). Release: the result fields
 * written before become visible with the state. The old word tells which
 * waiters and callbacks announced themselves before this instant; later ones
 * see the final state. */
static void end_complete_from(weft_future *f, unsigned from, unsigned final) {
  unsigned w = atomic_fetch_add_explicit(&f->word, final - from, memory_order_acq_rel);
  WEFT__ASSERT(st_of(w) == from);
  if (WEFT__UNLIKELY(w & F_WAITERS)) lot_wake(lot_for(f));
  if (WEFT__UNLIKELY(w & F_MULTI)) lot_wake(lot_multi());
  if (!(w & F_CBS)) return;

  struct cb_node *list = atomic_exchange_explicit(&f->cbs, CB_CLOSED, memory_order_acq_rel);
  if (list) {
    /* The stack is newest-first; run oldest-first. */
    struct cb_node *rev = NULL;
    while (list) {
      struct cb_node *next = list->next;
      list->next = rev;
      rev = list;
      list = next;
    }
    while (rev) {
      struct cb_node *next = rev->next;
      rev->cb(f, rev->arg);
      weft__free(rev);
      rev = next;
    }
  }
}

static void end_complete(weft_future *f, unsigned final) {
  end_complete_from(f, ST_COMPLETING, final);
}

/* Writes the outcome and publishes it from state `from`. */
static void finish(weft_future *f, unsigned from, int code, void *data, size_t size, char *msg) {
  unsigned final;
  if (code >= 0) {
    final = WEFT_DONE;
    code = 0;
    f->data = data;
    f->size = size;
    weft__free(msg);
    msg = NULL;
  } else {
    final = code == WEFT_ECANCELED ? WEFT_CANCELLED : WEFT_FAILED;
    if (data != f->inl) weft__free(data);
  }
  f->error = code;
  f->msg = msg;
  end_complete_from(f, from, final);
}

int weft__future_complete(weft_future *f, int code, void *data, size_t size, char *msg) {
  if (!begin_complete(f)) {
    if (data != f->inl) weft__free(data);
    weft__free(msg);
    return WEFT_EBUSY;
  }
  finish(f, ST_COMPLETING, code, data, size, msg);
  return 0;
}

void weft__future_complete_running(weft_future *f, int code, void *data, size_t size, char *msg) {
  finish(f, WEFT_RUNNING, code, data, size, msg);
}

/* ---- hand completion (promises) ---- */

int weft_future_set_running(weft_future *f) {
  if (!f || f->by_executor) return WEFT_EINVAL;
  if (weft__future_start(f)) return 0;
  return weft_future_state(f) == WEFT_CANCELLED ? WEFT_ECANCELED : WEFT_EBUSY;
}

int weft_future_set_result(weft_future *f, const void *data, size_t size) {
  if (!f || f->by_executor || (!data && size)) return WEFT_EINVAL;
  if (size <= sizeof f->inl) {
    /* The inline buffer may only be written by the thread that won the race
     * to complete, so it is filled between begin and end. */
    if (!begin_complete(f)) return WEFT_EBUSY;
    if (size) memcpy(f->inl, data, size);
    f->data = f->inl;
    f->size = size;
    f->error = 0;
    f->msg = NULL;
    end_complete(f, WEFT_DONE);
    return 0;
  }
  if (weft_future_done(f)) return WEFT_EBUSY;
  void *copy = weft__malloc(size);
  if (!copy) {
    int rc = weft__future_complete(f, WEFT_ENOMEM, NULL, 0, NULL);
    return rc ? rc : WEFT_ENOMEM;
  }
  memcpy(copy, data, size);
  return weft__future_complete(f, 0, copy, size, NULL);
}

int weft_future_set_error(weft_future *f, int code, const char *msg) {
  if (!f || f->by_executor || code >= 0) return WEFT_EINVAL;
  char *m = NULL;
  if (msg) {
    m = weft__strdup(msg); /* on failure the code still travels, without text */
  }
  return weft__future_complete(f, code, NULL, 0, m);
}

/* ---- reading ---- */

int weft_future_error(const weft_future *f) {
  if (!f) return WEFT_EINVAL;
  if (!weft_future_done(f)) return WEFT_EPENDING;
  return f->error;
}

const char *weft_future_errmsg(const weft_future *f) {
  if (!f || !weft_future_done(f)) return NULL;
  return f->msg;
}

int weft_future_result(const weft_future *f, const void **data, size_t *size) {
  if (data) *data = NULL;
  if (size) *size = 0;
  if (!f) return WEFT_EINVAL;
  if (!weft_future_done(f)) return WEFT_EPENDING;
  if (f->error) return f->error;
  if (data) *data = f->data;
  if (size) *size = f->size;
  return 0;
}

/* ---- waiting ---- */

int weft_future_wait(weft_future *f, int64_t deadline) {
  if (!f) return WEFT_EINVAL;
  if (weft_future_done(f)) return 0;
  if (deadline >= 0 && weft__deadline_passed(deadline)) return WEFT_ETIMEDOUT;
  struct lot_stripe *s = lot_for(f);
  int rc = 0;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    /* Announce and re-check in one step (see the design note). */
    unsigned w = atomic_fetch_or_explicit(&f->word, F_WAITERS, memory_order_acq_rel);
    if (final_st(st_of(w))) break;
    if (weft__cond_wait(&s->cv, &s->mu, deadline) == WEFT_ETIMEDOUT) {
      rc = weft_future_done(f) ? 0 : WEFT_ETIMEDOUT;
      break;
    }
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int weft_future_wait_all(weft_future *const *futs, size_t n, int64_t deadline) {
  if (!futs && n) return WEFT_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!futs[i]) return WEFT_EINVAL;
  for (size_t i = 0; i < n; i++) {
    int rc = weft_future_wait(futs[i], deadline);
    if (rc) return rc;
  }
  return 0;
}

int weft_future_wait_any(weft_future *const *futs, size_t n, int64_t deadline, size_t *index) {
  if (!futs || n == 0) return WEFT_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!futs[i]) return WEFT_EINVAL;
  for (size_t i = 0; i < n; i++) {
    if (weft_future_done(futs[i])) {
      if (index) *index = i;
      return 0;
    }
  }
  if (weft__deadline_passed(deadline)) return WEFT_ETIMEDOUT;
  struct lot_stripe *s = lot_multi();
  int rc = 0;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    size_t hit = n;
    for (size_t i = 0; i < n; i++) {
      unsigned w = atomic_fetch_or_explicit(&futs[i]->word, F_MULTI, memory_order_acq_rel);
      if (final_st(st_of(w))) {
        hit = i;
        break;
      }
    }
    if (hit < n) {
      if (index) *index = hit;
      break;
    }
    if (weft__cond_wait(&s->cv, &s->mu, deadline) == WEFT_ETIMEDOUT) {
      rc = WEFT_ETIMEDOUT;
      for (size_t i = 0; i < n; i++) {
        if (weft_future_done(futs[i])) {
          if (index) *index = i;
          rc = 0;
          break;
        }
      }
      break;
    }
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* ---- cancel and callbacks ---- */

int weft_future_cancel(weft_future *f) {
  if (!f) return WEFT_EINVAL;
  unsigned w = atomic_load_explicit(&f->word, memory_order_relaxed);
  for (;;) {
    unsigned s = st_of(w);
    if (s == WEFT_PENDING) {
      if (atomic_compare_exchange_weak_explicit(&f->word, &w, (w & ~ST_MASK) | ST_COMPLETING,
                                                memory_order_acquire, memory_order_relaxed)) {
        f->error = WEFT_ECANCELED;
        f->msg = NULL;
        end_complete(f, WEFT_CANCELLED);
        return 0;
      }
    } else if (s == WEFT_RUNNING || s == ST_COMPLETING) {
      unsigned old = atomic_fetch_or_explicit(&f->word, F_CANCEL_REQ, memory_order_acquire);
      if (!(old & F_CANCEL_REQ) && st_of(old) == WEFT_RUNNING && f->cancel_hook)
        f->cancel_hook(f, f->owner);
      return WEFT_EBUSY;
    } else {
      return WEFT_EBUSY;
    }
  }
}

int weft_future_on_done(weft_future *f, weft_future_cb cb, void *arg) {
  if (!f || !cb) return WEFT_EINVAL;
  unsigned w = atomic_fetch_or_explicit(&f->word, F_CBS, memory_order_acq_rel);
  if (final_st(st_of(w))) {
    cb(f, arg);
    return 0;
  }
  struct cb_node *head = atomic_load_explicit(&f->cbs, memory_order_acquire);
  struct cb_node *n = weft__malloc(sizeof *n);
  if (!n) return WEFT_ENOMEM;
  n->cb = cb;
  n->arg = arg;
  for (;;) {
    if (head == CB_CLOSED) {
      weft__free(n);
      cb(f, arg);
      return 0;
    }
    n->next = head;
    if (atomic_compare_exchange_weak_explicit(&f->cbs, &head, n, memory_order_acq_rel,
                                              memory_order_acquire))
      return 0;
  }
}

/* ---- as_completed: a queue fed by done-callbacks ----
 * The iterator is reference counted: one reference for the caller and one
 * per callback not yet run, so destroying it early is safe. */

struct weft_as_completed {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t n, returned;
  size_t head, tail; /* ring of completed indices, capacity n */
  size_t *ring;
  weft_future **futs;
  atomic_size_t refs;
  struct ac_slot {
    struct weft_as_completed *it;
    size_t index;
  } *slots;
};

static void ac_unref(weft_as_completed *it) {
  if (atomic_fetch_sub_explicit(&it->refs, 1, memory_order_acq_rel) != 1) return;
  pthread_mutex_destroy(&it->mu);
  pthread_cond_destroy(&it->cv);
  weft__free(it->ring);
  weft__free(it->slots);
  weft__free(it->futs);
  weft__free(it);
}

static void ac_on_done(weft_future *f, void *arg) {
  (void)f;
  struct ac_slot *slot = arg;
  weft_as_completed *it = slot->it;
  pthread_mutex_lock(&it->mu);
  it->ring[it->tail++ % (it->n ? it->n : 1)] = slot->index;
  pthread_cond_signal(&it->cv);
  pthread_mutex_unlock(&it->mu);
  ac_unref(it);
}

int weft_as_completed_create(weft_as_completed **out, weft_future *const *futs, size_t n) {
  if (!out || (!futs && n)) return WEFT_EINVAL;
  *out = NULL;
  for (size_t i = 0; i < n; i++)
    if (!futs[i]) return WEFT_EINVAL;
  weft_as_completed *it = weft__calloc(1, sizeof *it);
  if (!it) return WEFT_ENOMEM;
  it->ring = weft__calloc(n ? n : 1, sizeof *it->ring);
  it->slots = weft__calloc(n ? n : 1, sizeof *it->slots);
  it->futs = weft__calloc(n ? n : 1, sizeof *it->futs);
  if (!it->ring || !it->slots || !it->futs || pthread_mutex_init(&it->mu, NULL) != 0) {
    weft__free(it->ring);
    weft__free(it->slots);
    weft__free(it->futs);
    weft__free(it);
    return WEFT_ENOMEM;
  }
  if (weft__cond_init(&it->cv) != 0) {
    pthread_mutex_destroy(&it->mu);
    weft__free(it->ring);
    weft__free(it->slots);
    weft__free(it->futs);
    weft__free(it);
    return WEFT_ENOMEM;
  }
  it->n = n;
  atomic_init(&it->refs, 1 + n);
  for (size_t i = 0; i < n; i++) {
    it->futs[i] = weft_future_retain(futs[i]);
    it->slots[i].it = it;
    it->slots[i].index = i;
  }
  for (size_t i = 0; i < n; i++) {
    if (weft_future_on_done(it->futs[i], ac_on_done, &it->slots[i]) != 0) {
      /* The callbacks already registered hold their own references to the
       * iterator, so giving up now frees it once they have all run. */
      size_t unregistered = n - i;
      atomic_fetch_sub_explicit(&it->refs, unregistered, memory_order_acq_rel);
      weft_as_completed_destroy(it);
      return WEFT_ENOMEM;
    }
  }
  *out = it;
  return 0;
}

int weft_as_completed_next(weft_as_completed *it, int64_t deadline, size_t *index) {
  if (!it || !index) return WEFT_EINVAL;
  int rc = 0;
  pthread_mutex_lock(&it->mu);
  while (it->returned < it->n && it->head == it->tail) {
    if (weft__deadline_passed(deadline) ||
        weft__cond_wait(&it->cv, &it->mu, deadline) == WEFT_ETIMEDOUT) {
      if (it->head == it->tail) rc = WEFT_ETIMEDOUT;
      break;
    }
  }
  if (rc == 0) {
    if (it->returned == it->n) {
      rc = WEFT_ECLOSED;
    } else {
      *index = it->ring[it->head++ % it->n];
      it->returned++;
    }
  }
  pthread_mutex_unlock(&it->mu);
  return rc;
}

void weft_as_completed_destroy(weft_as_completed *it) {
  if (!it) return;
  for (size_t i = 0; i < it->n; i++) weft_future_release(it->futs[i]);
  /* The futs array itself is freed with the last reference; pending
   * callbacks touch only the ring and slots. */
  ac_unref(it);
}
