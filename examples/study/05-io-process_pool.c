/*
 * 05-io-process_pool: a pool of `cores` worker processes (the default size)
 * takes the 30 blocking GETs; URLs and byte counts travel as bytes.
 */
#include "study.h"

int main(int argc, char **argv) {
  study s;
  study_begin(&s, argc, argv);
  weft_executor *ex = NULL;
  int rc = weft_executor_create(&ex, "process_pool", NULL);
  if (rc == 0)
    rc = weft_executor_map(ex, study_fetch_blocking_task, s.urls, sizeof s.urls[0], STUDY_URLS,
                           s.bytes, sizeof s.bytes[0], s.errors, s.deadline);
  weft_executor_destroy(ex);
  return study_end_fetches(&s, rc, STUDY_URLS);
}
