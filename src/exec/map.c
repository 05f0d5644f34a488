/*
 * map.c — map, imap and imap_unordered for every executor.
 *
 * Design note. A batch cuts its n items into chunks ("records") of `chunk`
 * items; each record embeds the job that carries it to a worker, and slots
 * for its items' results. A batch owns a fixed number of records (the
 * window), so memory is bounded however large n is: the consumer submits a
 * record, and only when all of a record's results have been handed out does
 * the record return to the free list and carry the next chunk. That is the
 * back-pressure: at most window items are submitted and not yet consumed.
 *
 * Threads. The consumer (the thread calling map or imap_next) alone touches
 * the free list, the submission FIFO and the record being handed out, so
 * they need no lock. Workers only fill their record's slots and then, under
 * `mu`, mark it done, queue it on the completion FIFO and wake the consumer.
 *
 * Lifetime. Each submitted record counts in jobs_out. Destroying an iterator
 * cancels what has not started and waits for jobs_out to drain. A map that
 * hits its deadline instead detaches the batch; the last job to finish frees
 * it. Results travel through the batch's own memory and are copied out by
 * the consumer, so a timed-out map never writes to the caller's arrays after
 * it has returned.
 */
#include "internal.h"

#include <string.h>

typedef struct slot {
  int err;
  char *msg;
  void *data; /* == inl, == the record's part of the slab, or owned */
  size_t size;
  unsigned char inl[16];
} slot;

typedef struct rec {
  weft__job job; /* first: the job is how a worker finds its record */
  struct weft__batch *b;
  size_t id;
  size_t first, count; /* items [first, first + count) */
  size_t taken;        /* consumer: items handed out */
  bool done;           /* under b->mu */
  slot *slots;
} rec;

struct weft__batch {
  weft_executor *ex;
  weft_fn fn;
  const unsigned char *items;
  size_t item_size, n;
  bool ordered;
  bool fixed;         /* map: results go to slab slots of result_size bytes */
  size_t result_size;
  unsigned char *slab;
  size_t chunk, nrec;
  rec *recs;
  slot *slot_mem;

  /* consumer-only */
  size_t *free_ids, nfree;
  size_t *subq, subq_head, subq_len; /* ordered: records in submit order */
  size_t next_submit;                /* next item to submit */
  size_t returned;                   /* items handed out */
  rec *cur;                          /* record being handed out */

  /* shared with workers, under mu */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t *doneq, doneq_head, doneq_len; /* unordered: completion order */
  size_t jobs_out;
  bool waiting;
  bool detached;
  atomic_bool cancel;
};

typedef struct weft__batch batch;

struct weft_imap {
  batch *b;
};

static void slot_clear(batch *b, slot *s) {
  if (s->data && s->data != s->inl && !(b->fixed)) weft__free(s->data);
  weft__free(s->msg);
  s->data = NULL;
  s->msg = NULL;
  s->size = 0;
  s->err = 0;
}

/* Frees the batch's memory (not its mutex and condition variable). */
static void batch_free_mem(batch *b) {
  weft__free(b->slab);
  weft__free(b->recs);
  weft__free(b->slot_mem);
  weft__free(b->free_ids);
  weft__free(b->subq);
  weft__free(b->doneq);
  weft__free(b);
}

static void batch_free(batch *b) {
  for (size_t i = 0; i < b->nrec * b->chunk; i++) slot_clear(b, &b->slot_mem[i]);
  pthread_cond_destroy(&b->cv);
  pthread_mutex_destroy(&b->mu);
  batch_free_mem(b);
}

/* Marks a record complete; the last job of a detached batch frees it. */
static void rec_finish(rec *r) {
  batch *b = r->b;
  weft_executor *ex = r->job.ex;
  pthread_mutex_lock(&b->mu);
  r->done = true;
  if (!b->ordered) b->doneq[(b->doneq_head + b->doneq_len++) % b->nrec] = r->id;
  b->jobs_out--;
  bool free_it = b->detached && b->jobs_out == 0;
  if (b->waiting) pthread_cond_signal(&b->cv);
  pthread_mutex_unlock(&b->mu);
  if (free_it) batch_free(b);
  if (ex) weft__executor_job_done(ex);
}

/* Runs the record's items; abort < 0 fails them all with that code instead. */
static void run_items(rec *r, int abort) {
  batch *b = r->b;
  for (size_t j = 0; j < r->count; j++) {
    slot *s = &r->slots[j];
    if (abort < 0) {
      s->err = abort;
      continue;
    }
    if (atomic_load_explicit(&b->cancel, memory_order_relaxed)) {
      s->err = WEFT_ECANCELED;
      continue;
    }
    weft_out out = {0};
    out.cancel = &b->cancel;
    out.ex_cancel = r->job.ex ? &r->job.ex->cancelling : NULL;
    if (b->fixed) {
      out.slot = b->slab + (r->id * b->chunk + j) * b->result_size;
      out.slot_size = b->result_size;
    } else {
      out.inl = s->inl;
      out.inl_size = sizeof s->inl;
    }
    size_t i = r->first + j;
    int rc = b->fn(b->items ? b->items + i * b->item_size : NULL, b->item_size, &out);
    rc = weft__out_code(&out, rc);
    if (rc < 0) {
      if (out.data && out.data != out.slot && out.data != out.inl) weft__free(out.data);
      s->err = rc;
      s->data = NULL;
      s->size = 0;
    } else {
      s->err = 0;
      s->data = out.data;
      s->size = out.size;
    }
    s->msg = out.msg;
  }
}

void weft__batch_run(weft__job *job) {
  rec *r = (rec *)job;
  run_items(r, 0);
  rec_finish(r);
}

void weft__batch_abort(weft__job *job, int code) {
  rec *r = (rec *)job;
  run_items(r, code);
  rec_finish(r);
}

/* ---- remote execution (see weft__job_start in internal.h) ---- */

bool weft__batch_start(weft__job *job) {
  rec *r = (rec *)job;
  return !atomic_load_explicit(&r->b->cancel, memory_order_relaxed);
}

bool weft__batch_cancel_requested(const weft__job *job) {
  const rec *r = (const rec *)job;
  return atomic_load_explicit(&r->b->cancel, memory_order_relaxed);
}

void weft__batch_deliver(weft__job *job, size_t i, int code, void *data, size_t size, char *msg) {
  rec *r = (rec *)job;
  batch *b = r->b;
  WEFT__ASSERT(i < r->count);
  slot *s = &r->slots[i];
  if (code >= 0 && b->fixed) {
    /* a map: the result goes into the item's slab slot */
    if (size > b->result_size) {
      code = WEFT_ETOOBIG;
    } else {
      unsigned char *dst = b->slab + (r->id * b->chunk + i) * b->result_size;
      if (size) memcpy(dst, data, size);
      weft__free(data);
      data = dst;
    }
  } else if (code >= 0 && size <= sizeof s->inl) {
    if (size) memcpy(s->inl, data, size);
    weft__free(data);
    data = size ? s->inl : NULL;
  }
  if (code < 0) {
    weft__free(data);
    s->err = code;
    s->data = NULL;
    s->size = 0;
  } else {
    s->err = 0;
    s->data = data;
    s->size = size;
  }
  s->msg = msg;
}

void weft__batch_finish(weft__job *job) { rec_finish((rec *)job); }

static size_t auto_chunk(size_t n, int workers) {
  size_t c = n / (8 * (size_t)workers);
  if (c < 1) c = 1;
  if (c > 256) c = 256;
  return c;
}

static int batch_new(batch **out, weft_executor *ex, weft_fn fn, const void *items,
                     size_t item_size, size_t n, bool ordered, bool fixed, size_t result_size) {
  int workers = ex->workers > 0 ? ex->workers : weft_cpu_count();
  size_t chunk = ex->chunksize                ? ex->chunksize
                 : ex->be->one_item_per_trip ? 1
                                             : auto_chunk(n, workers);
  size_t window = ex->max_inflight;
  if (window) {
    if (chunk > window) chunk = window;
  } else {
    window = 4 * chunk * (size_t)workers;
    if (window < 1024) window = 1024;
    /* A map's result slab holds window results: keep it under 16 MiB. */
    if (fixed && result_size && window * result_size > ((size_t)16 << 20)) {
      size_t by_mem = ((size_t)16 << 20) / result_size;
      size_t least = 2 * chunk * (size_t)workers;
      window = by_mem > least ? by_mem : least;
    }
  }
  size_t nrec = window / chunk;
  if (nrec < 1) nrec = 1;
  size_t needed = n / chunk + (n % chunk != 0);
  if (nrec > needed) nrec = needed ? needed : 1;

  batch *b = weft__calloc(1, sizeof *b);
  if (!b) return WEFT_ENOMEM;
  b->ex = ex;
  b->fn = fn;
  b->items = items;
  b->item_size = item_size;
  b->n = n;
  b->ordered = ordered;
  b->fixed = fixed;
  b->result_size = result_size;
  b->chunk = chunk;
  b->nrec = nrec;
  atomic_init(&b->cancel, false);
  b->recs = weft__calloc(nrec, sizeof *b->recs);
  b->slot_mem = weft__calloc(nrec * chunk, sizeof *b->slot_mem);
  b->free_ids = weft__calloc(nrec, sizeof *b->free_ids);
  b->subq = weft__calloc(nrec, sizeof *b->subq);
  b->doneq = weft__calloc(nrec, sizeof *b->doneq);
  if (fixed) { /* not zeroed: every slot is written before it is read */
    size_t rs = result_size ? result_size : 1;
    if (nrec * chunk <= SIZE_MAX / rs) b->slab = weft__malloc(nrec * chunk * rs);
  }
  bool ok = b->recs && b->slot_mem && b->free_ids && b->subq && b->doneq && (!fixed || b->slab);
  if (ok && pthread_mutex_init(&b->mu, NULL) != 0) ok = false;
  if (ok && weft__cond_init(&b->cv) != 0) {
    pthread_mutex_destroy(&b->mu);
    ok = false;
  }
  if (!ok) {
    batch_free_mem(b);
    return WEFT_ENOMEM;
  }
  for (size_t i = 0; i < nrec; i++) {
    b->recs[i].b = b;
    b->recs[i].id = i;
    b->recs[i].slots = &b->slot_mem[i * chunk];
    b->free_ids[b->nfree++] = nrec - 1 - i;
  }
  *out = b;
  return 0;
}

/* Submits chunks while records are free. Consumer thread only. */
static void refill(batch *b) {
  while (b->nfree > 0 && b->next_submit < b->n) {
    rec *r = &b->recs[b->free_ids[--b->nfree]];
    r->first = b->next_submit;
    r->count = b->n - r->first < b->chunk ? b->n - r->first : b->chunk;
    r->taken = 0;
    r->done = false;
    b->next_submit += r->count;
    if (b->ordered) b->subq[(b->subq_head + b->subq_len++) % b->nrec] = r->id;

    memset(&r->job, 0, sizeof r->job);
    r->job.fn = b->fn;
    r->job.in = b->items ? b->items + r->first * b->item_size : NULL;
    r->job.in_size = b->item_size;
    r->job.count = r->count;
    r->job.first = r->first;
    r->job.batch = b;
    pthread_mutex_lock(&b->mu);
    b->jobs_out++;
    pthread_mutex_unlock(&b->mu);
    int rc = weft__executor_submit_job(b->ex, &r->job);
    if (rc) {
      /* Not queued: every item of the chunk fails with the reason, and the
       * record completes here (no executor count to give back). */
      for (size_t j = 0; j < r->count; j++) r->slots[j].err = rc;
      r->job.ex = NULL;
      rec_finish(r);
    }
  }
}

/* Gives the current record back once all its items have been handed out. */
static void recycle_cur(batch *b) {
  rec *r = b->cur;
  if (!r || r->taken < r->count) return;
  for (size_t j = 0; j < r->count; j++) slot_clear(b, &r->slots[j]);
  b->free_ids[b->nfree++] = r->id;
  b->cur = NULL;
}

static int batch_next(batch *b, int64_t deadline, weft_item *item) {
  recycle_cur(b);
  if (b->returned == b->n) return WEFT_ECLOSED;
  refill(b);
  if (!b->cur) {
    int rc = 0;
    pthread_mutex_lock(&b->mu);
    for (;;) {
      if (b->ordered) {
        rec *r = &b->recs[b->subq[b->subq_head]];
        if (r->done) {
          b->subq_head = (b->subq_head + 1) % b->nrec;
          b->subq_len--;
          b->cur = r;
          break;
        }
      } else if (b->doneq_len) {
        b->cur = &b->recs[b->doneq[b->doneq_head]];
        b->doneq_head = (b->doneq_head + 1) % b->nrec;
        b->doneq_len--;
        break;
      }
      if (weft__deadline_passed(deadline)) {
        rc = WEFT_ETIMEDOUT;
        break;
      }
      b->waiting = true;
      weft__cond_wait(&b->cv, &b->mu, deadline);
      b->waiting = false;
    }
    pthread_mutex_unlock(&b->mu);
    if (rc) return rc;
  }
  rec *r = b->cur;
  slot *s = &r->slots[r->taken];
  item->index = r->first + r->taken;
  item->error = s->err;
  item->errmsg = s->msg;
  item->data = s->err ? NULL : s->data;
  item->size = s->err ? 0 : s->size;
  r->taken++;
  b->returned++;
  return 0;
}

/* Cancels what has not started and waits for every job of the batch. */
static void batch_destroy(batch *b) {
  atomic_store_explicit(&b->cancel, true, memory_order_relaxed);
  pthread_mutex_lock(&b->mu);
  while (b->jobs_out > 0) {
    b->waiting = true;
    weft__cond_wait(&b->cv, &b->mu, WEFT_FOREVER);
    b->waiting = false;
  }
  pthread_mutex_unlock(&b->mu);
  batch_free(b);
}

/* Cancels and lets the last job free the batch: never blocks. */
static void batch_detach(batch *b) {
  atomic_store_explicit(&b->cancel, true, memory_order_relaxed);
  pthread_mutex_lock(&b->mu);
  bool free_now = b->jobs_out == 0;
  b->detached = true;
  pthread_mutex_unlock(&b->mu);
  if (free_now) batch_free(b);
}

static int check_args(weft_executor *ex, weft_fn fn, const void *items, size_t item_size,
                      size_t n) {
  if (!ex || !fn) return WEFT_EINVAL;
  if (!items && item_size && n) return WEFT_EINVAL;
  if (atomic_load(&ex->closed)) return WEFT_ESHUTDOWN;
  return 0;
}

int weft_executor_map(weft_executor *ex, weft_fn fn, const void *items, size_t item_size,
                      size_t n, void *results, size_t result_size, int *errors,
                      int64_t deadline) {
  int rc = check_args(ex, fn, items, item_size, n);
  if (rc) return rc;
  if (!results && result_size && n) return WEFT_EINVAL;
  if (n == 0) return 0;
  batch *b;
  rc = batch_new(&b, ex, fn, items, item_size, n, false, true, result_size);
  if (rc) return rc;
  size_t first_bad = n;
  int first_err = 0;
  weft_item it;
  while ((rc = batch_next(b, deadline, &it)) == 0) {
    if (result_size) {
      unsigned char *dst = (unsigned char *)results + it.index * result_size;
      if (it.size) memcpy(dst, it.data, it.size);
      memset(dst + it.size, 0, result_size - it.size);
    }
    if (errors) errors[it.index] = it.error;
    if (it.error && it.index < first_bad) {
      first_bad = it.index;
      first_err = it.error;
    }
  }
  if (rc == WEFT_ETIMEDOUT) {
    batch_detach(b);
    return WEFT_ETIMEDOUT;
  }
  batch_destroy(b);
  return first_err;
}

static int imap_start(weft_executor *ex, weft_fn fn, const void *items, size_t item_size,
                      size_t n, bool ordered, weft_imap **out) {
  if (!out) return WEFT_EINVAL;
  *out = NULL;
  int rc = check_args(ex, fn, items, item_size, n);
  if (rc) return rc;
  weft_imap *it = weft__malloc(sizeof *it);
  if (!it) return WEFT_ENOMEM;
  rc = batch_new(&it->b, ex, fn, items, item_size, n, ordered, false, 0);
  if (rc) {
    weft__free(it);
    return rc;
  }
  refill(it->b); /* start working now, not at the first next() */
  *out = it;
  return 0;
}

int weft_executor_imap(weft_executor *ex, weft_fn fn, const void *items, size_t item_size,
                       size_t n, weft_imap **out) {
  return imap_start(ex, fn, items, item_size, n, true, out);
}

int weft_executor_imap_unordered(weft_executor *ex, weft_fn fn, const void *items,
                                 size_t item_size, size_t n, weft_imap **out) {
  return imap_start(ex, fn, items, item_size, n, false, out);
}

int weft_imap_next(weft_imap *it, int64_t deadline, weft_item *item) {
  if (!it || !item) return WEFT_EINVAL;
  return batch_next(it->b, deadline, item);
}

void weft_imap_destroy(weft_imap *it) {
  if (!it) return;
  batch_destroy(it->b);
  weft__free(it);
}
