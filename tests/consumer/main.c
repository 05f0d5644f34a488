/*
 * An outside program that uses an installed weft: squares a few ints on a
 * thread pool with weft_executor_map and checks every result. Built by
 * tests/consumer/run.sh with find_package(weft) and with pkg-config.
 */
#include <stdio.h>
#include <string.h>

#include <weft.h>

static int square(const void *in, size_t in_size, weft_out *out) {
  if (in_size != sizeof(int)) return weft_out_fail(out, WEFT_EINVAL, "in_size %zu", in_size);
  int v;
  memcpy(&v, in, sizeof v);
  int r = v * v;
  return weft_out_set(out, &r, sizeof r);
}

int main(void) {
  if (strcmp(weft_version(), WEFT_VERSION_STRING) != 0) {
    fprintf(stderr, "consumer: library %s, header %s\n", weft_version(), WEFT_VERSION_STRING);
    return 1;
  }
  enum { N = 100 };
  int items[N], results[N], errors[N];
  for (int i = 0; i < N; i++) items[i] = i - 7;

  weft_executor *ex;
  weft_executor_opts opts = {.workers = 3};
  int rc = weft_executor_create(&ex, "thread_pool", &opts);
  if (rc != 0) {
    fprintf(stderr, "consumer: weft_executor_create: %s\n", weft_strerror(rc));
    return 1;
  }
  rc = weft_executor_map(ex, square, items, sizeof items[0], N, results, sizeof results[0],
                         errors, weft_deadline_in(30000));
  weft_executor_destroy(ex);
  if (rc != 0) {
    fprintf(stderr, "consumer: weft_executor_map: %s\n", weft_strerror(rc));
    return 1;
  }
  for (int i = 0; i < N; i++) {
    if (errors[i] != 0 || results[i] != items[i] * items[i]) {
      fprintf(stderr, "consumer: item %d: error %d, result %d, want %d\n", i, errors[i],
              results[i], items[i] * items[i]);
      return 1;
    }
  }
  printf("consumer ok: weft %s, %d items on a thread pool\n", weft_version(), N);
  return 0;
}
