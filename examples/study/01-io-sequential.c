/*
 * 01-io-sequential: the 30 fetches one after another. The "inline" executor
 * runs each task in the caller, so this is a plain loop of blocking GETs:
 * the wall time is the sum of every site's latency.
 */
#include "study.h"

int main(int argc, char **argv) {
  study s;
  study_begin(&s, argc, argv);
  weft_executor *ex = NULL;
  int rc = weft_executor_create(&ex, "inline", NULL);
  if (rc == 0)
    rc = weft_executor_map(ex, study_fetch_blocking_task, s.urls, sizeof s.urls[0], STUDY_URLS,
                           s.bytes, sizeof s.bytes[0], s.errors, s.deadline);
  weft_executor_destroy(ex);
  return study_end_fetches(&s, rc, STUDY_URLS);
}
