/*
 * 02-io-threads: one thread per URL. The "thread" executor starts a thread
 * for every task (chunksize 1: one URL per task); each blocks in its own GET.
 */
#include "study.h"

int main(int argc, char **argv) {
  study s;
  study_begin(&s, argc, argv);
  weft_executor *ex = NULL;
  int rc = weft_executor_create(&ex, "thread", &(weft_executor_opts){.chunksize = 1});
  if (rc == 0)
    rc = weft_executor_map(ex, study_fetch_blocking_task, s.urls, sizeof s.urls[0], STUDY_URLS,
                           s.bytes, sizeof s.bytes[0], s.errors, s.deadline);
  weft_executor_destroy(ex);
  return study_end_fetches(&s, rc, STUDY_URLS);
}
