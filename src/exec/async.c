/*
 * async.c — the "async" executor: every task (and every map item: chunks
 * are one item by default) runs as a coroutine task on one event loop,
 * driven by a thread the executor owns. Task functions may await (weft_sleep,
 * weft_http_get, weft_await, sockets ...): while one waits, the loop runs
 * the others, so 30 fetches submitted at once wait together, on one thread.
 * A function that never awaits simply runs to the end, one at a time: this
 * is the study's "async" model, with its strengths and its weakness.
 *
 * Jobs cross from the submitting thread to the loop as posted callbacks;
 * the loop thread spawns a task per job. Cancelling a job's future, or a
 * cancelling shutdown, cancels its task (seen at its next await).
 */
#include "internal.h"
#include "async/loop.h"
#include "async/task.h"

typedef struct async_impl {
  weft_loop *loop;
  pthread_t th;
  weft_future *stop; /* set by destroy: the loop thread returns */
  atomic_size_t queued;
  weft__cb_node cancel_node; /* a cancelling shutdown's pass over the tasks */
  atomic_bool cancel_posted;
} async_impl;

typedef struct job_msg {
  weft__cb_node node;
  weft__job *job;
  async_impl *im;
} job_msg;

static void cancel_all_cb(void *arg) { /* loop thread */
  async_impl *im = arg;
  weft__task_cancel_all(im->loop);
}

static void *loop_main(void *arg) {
  async_impl *im = arg;
  (void)weft_loop_run_until(im->loop, im->stop, WEFT_FOREVER);
  weft_loop_destroy(im->loop); /* on its own thread; nothing is left by now */
  return NULL;
}

static int async_init(weft_executor *ex) {
  async_impl *im = weft__calloc(1, sizeof *im);
  if (!im) return WEFT_ENOMEM;
  weft_loop_opts lo = {0};
  int rc = weft_loop_create(&im->loop, &lo);
  if (rc == 0) rc = weft_future_create(&im->stop);
  if (rc == 0 && pthread_create(&im->th, NULL, loop_main, im) != 0) rc = WEFT_EAGAIN;
  if (rc != 0) {
    weft_future_release(im->stop);
    if (im->loop) weft_loop_destroy(im->loop);
    weft__free(im);
    return rc;
  }
  atomic_init(&im->queued, 0);
  atomic_init(&im->cancel_posted, false);
  im->cancel_node.cb = cancel_all_cb;
  im->cancel_node.arg = im;
  ex->impl = im;
  return 0;
}

static void start_job(void *arg) { /* loop thread */
  job_msg *m = arg;
  weft__job *job = m->job;
  async_impl *im = m->im;
  weft__free(m);
  atomic_fetch_sub_explicit(&im->queued, 1, memory_order_relaxed);
  if (atomic_load_explicit(&job->ex->cancelling, memory_order_relaxed)) {
    weft__job_cancel(job);
    return;
  }
  int rc = weft__task_spawn_job(im->loop, job, "async executor");
  if (rc != 0) weft__job_abort(job, rc);
}

static int async_submit(weft_executor *ex, weft__job *job) {
  async_impl *im = ex->impl;
  job_msg *m = weft__malloc(sizeof *m);
  if (!m) return WEFT_ENOMEM;
  m->job = job;
  m->im = im;
  m->node.cb = start_job;
  m->node.arg = m;
  atomic_fetch_add_explicit(&im->queued, 1, memory_order_relaxed);
  if (weft__loop_post_threadsafe(im->loop, &m->node) != 0) {
    atomic_fetch_sub_explicit(&im->queued, 1, memory_order_relaxed);
    weft__free(m);
    return WEFT_ESHUTDOWN;
  }
  return 0;
}

static int async_shutdown(weft_executor *ex, int flags, int64_t deadline) {
  async_impl *im = ex->impl;
  /* Cancelling is sticky, so one pass over the running tasks is enough:
   * jobs still queued see ex->cancelling when they reach the loop, and the
   * node is posted once (it lives in im, so nothing leaks if the loop ends
   * before running it). */
  if (flags == WEFT_SHUTDOWN_CANCEL && !atomic_exchange(&im->cancel_posted, true))
    (void)weft__loop_post_threadsafe(im->loop, &im->cancel_node);
  return weft__executor_wait_idle(ex, deadline);
}

static void async_destroy(weft_executor *ex) {
  async_impl *im = ex->impl;
  (void)weft_future_set_result(im->stop, NULL, 0);
  pthread_join(im->th, NULL);
  weft_future_release(im->stop);
  weft__free(im);
}

static void async_stats(weft_executor *ex, weft_executor_stats *st) {
  async_impl *im = ex->impl;
  size_t queued = atomic_load_explicit(&im->queued, memory_order_relaxed);
  size_t out = weft__executor_outstanding(ex);
  st->size = 1;
  st->queued = queued;
  st->busy = out > queued ? out - queued : 0;
}

const weft__backend weft__backend_async = {
    .name = "async",
    .sizing = WEFT__SIZE_ONE,
    .one_item_per_trip = true,
    .init = async_init,
    .submit = async_submit,
    .shutdown = async_shutdown,
    .destroy = async_destroy,
    .stats = async_stats,
};
