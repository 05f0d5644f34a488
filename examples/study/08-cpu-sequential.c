/*
 * 08-cpu-sequential: fib over the 21 NUMBERS one after another, in the
 * caller (the "inline" executor): one core's worth of work, on one core.
 */
#include "study.h"

int main(int argc, char **argv) {
  study s;
  study_begin_cpu(&s, argc, argv);
  weft_executor *ex = NULL;
  int rc = weft_executor_create(&ex, "inline", NULL);
  if (rc == 0)
    rc = weft_executor_map(ex, study_fib_task, s.numbers, sizeof s.numbers[0], STUDY_NUMBERS,
                           s.fibs, sizeof s.fibs[0], s.errors, s.deadline);
  weft_executor_destroy(ex);
  return study_end_fibs(&s, rc);
}
