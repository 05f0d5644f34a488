/*
 * 04-io-thread_pool: a pool of min(32, cores + 4) threads (weft_io_workers)
 * takes the 30 blocking GETs from one queue.
 */
#include "study.h"

int main(int argc, char **argv) {
  study s;
  study_begin(&s, argc, argv);
  weft_executor *ex = NULL;
  int rc = weft_executor_create(&ex, "thread_pool",
                                &(weft_executor_opts){.workers = weft_io_workers()});
  if (rc == 0)
    rc = weft_executor_map(ex, study_fetch_blocking_task, s.urls, sizeof s.urls[0], STUDY_URLS,
                           s.bytes, sizeof s.bytes[0], s.errors, s.deadline);
  weft_executor_destroy(ex);
  return study_end_fetches(&s, rc, STUDY_URLS);
}
