/* inline.c — the sequential executor: every job runs in the submitting
 * thread before submit returns. It is the study's baseline, and the
 * executor to switch to when debugging (no thread ever changes). */
#include "internal.h"

typedef struct {
  atomic_int busy;
} inline_impl;

static int inline_init(weft_executor *ex) {
  inline_impl *im = weft__calloc(1, sizeof *im);
  if (!im) return WEFT_ENOMEM;
  atomic_init(&im->busy, 0);
  ex->impl = im;
  return 0;
}

static int inline_submit(weft_executor *ex, weft__job *job) {
  inline_impl *im = ex->impl;
  atomic_fetch_add_explicit(&im->busy, 1, memory_order_relaxed);
  weft__job_run(job);
  atomic_fetch_sub_explicit(&im->busy, 1, memory_order_relaxed);
  return 0;
}

static int inline_shutdown(weft_executor *ex, int flags, int64_t deadline) {
  (void)flags; /* nothing is ever pending */
  return weft__executor_wait_idle(ex, deadline);
}

static void inline_destroy(weft_executor *ex) { weft__free(ex->impl); }

static void inline_stats(weft_executor *ex, weft_executor_stats *st) {
  inline_impl *im = ex->impl;
  st->size = 1;
  st->busy = atomic_load_explicit(&im->busy, memory_order_relaxed);
  st->queued = 0;
}

const weft__backend weft__backend_inline = {
    .name = "inline",
    .sizing = WEFT__SIZE_ONE,
    .init = inline_init,
    .submit = inline_submit,
    .shutdown = inline_shutdown,
    .destroy = inline_destroy,
    .stats = inline_stats,
};
