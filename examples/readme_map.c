#include <stdio.h>
#include <weft.h>

static long fib(long n) { return n <= 2 ? 1 : fib(n - 1) + fib(n - 2); }

static int fib_task(const void *in, size_t size, weft_out *out) {
  (void)size;
  long r = fib(*(const long *)in);
  return weft_out_set(out, &r, sizeof r);
}
WEFT_REGISTER(fib_task); /* so that process workers can find it by name */

int main(int argc, char **argv) {
  const char *kind = argc > 1 ? argv[1] : "thread_pool"; /* or "inline", "process_pool" */
  long numbers[] = {28, 29, 30, 31, 32}, results[5];
  weft_executor *ex;
  int rc = weft_executor_create(&ex, kind, NULL);
  if (rc == 0)
    rc = weft_executor_map(ex, fib_task, numbers, sizeof(long), 5, results, sizeof(long), NULL,
                           WEFT_FOREVER);
  for (int i = 0; rc == 0 && i < 5; i++) printf("fib(%ld) = %ld\n", numbers[i], results[i]);
  weft_executor_destroy(ex);
  if (rc) fprintf(stderr, "%s: %s\n", kind, weft_strerror(rc));
  return rc ? 1 : 0;
}
