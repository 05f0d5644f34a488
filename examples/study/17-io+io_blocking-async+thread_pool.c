/*
 * 17-io+io_blocking-async+thread_pool: as 16, but each task hands its
 * blocking fetch to a pool of min(32, cores + 4) threads and awaits it: the
 * loop stays free while the pool's threads block.
 */
#include "study.h"

static weft_executor *pool; /* where the tasks send the blocking fetch */

static int fetch_twice(const void *in, size_t in_size, weft_out *out) {
  const study_url *u = in;
  study_pair r = {0};
  size_t again = 0;
  weft_future *f = NULL;
  int rc = study_get(weft_http_get, u, &r.bytes, out); /* the task waits, others run */
  if (rc == 0) { /* the task waits for the pool, others run */
    rc = weft_run_in_executor(pool, study_fetch_blocking_task, u, in_size, u->deadline, &f);
    rc = study_take(rc, f, &again, sizeof again, out);
  }
  r.second = (long)again;
  return rc ? rc : weft_out_set(out, &r, sizeof r);
}

int main(int argc, char **argv) {
  study s;
  study_begin(&s, argc, argv);
  weft_executor *ex = NULL;
  int rc = weft_executor_create(&pool, "thread_pool",
                                &(weft_executor_opts){.workers = weft_io_workers()});
  if (rc == 0) rc = weft_executor_create(&ex, "async", NULL);
  if (rc == 0)
    rc = weft_executor_map(ex, fetch_twice, s.urls, sizeof s.urls[0], 20, s.pairs,
                           sizeof s.pairs[0], s.errors, s.deadline);
  weft_executor_destroy(ex);
  weft_executor_destroy(pool);
  return study_end_io_io(&s, rc, 20);
}
