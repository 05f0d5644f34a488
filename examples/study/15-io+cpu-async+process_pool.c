/*
 * 15-io+cpu-async+process_pool: as 14, but fib(32) goes to a pool of `cores`
 * worker processes (the default size). weft_process_init() comes first, so
 * the fork server starts before any thread does.
 */
#include "study.h"

static weft_executor *pool; /* where the tasks send fib(32) */

static int fetch_then_fib(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  const study_url *u = in;
  study_pair r = {0};
  long n = study_fib_n;
  weft_future *f = NULL;
  int rc = study_get(weft_http_get, u, &r.bytes, out); /* the task waits, others run */
  if (rc == 0) { /* the task waits for the pool, others run */
    rc = weft_run_in_executor(pool, study_fib_task, &n, sizeof n, u->deadline, &f);
    rc = study_take(rc, f, &r.second, sizeof r.second, out);
  }
  return rc ? rc : weft_out_set(out, &r, sizeof r);
}

int main(int argc, char **argv) {
  weft_process_init();
  study s;
  study_begin(&s, argc, argv);
  weft_executor *ex = NULL;
  int rc = weft_executor_create(&pool, "process_pool", NULL);
  if (rc == 0) rc = weft_executor_create(&ex, "async", NULL);
  if (rc == 0)
    rc = weft_executor_map(ex, fetch_then_fib, s.urls, sizeof s.urls[0], 10, s.pairs,
                           sizeof s.pairs[0], s.errors, s.deadline);
  weft_executor_destroy(ex);
  weft_executor_destroy(pool);
  return study_end_io_cpu(&s, rc, 10);
}
