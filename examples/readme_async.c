#include <stdio.h>
#include <weft.h>

/* A task: fetch one URL. Inside a task, weft_http_get waits without holding
 * the loop, so every fetch waits at the same time, on one thread. */
static int fetch(const void *url, size_t size, weft_out *out) {
  (void)size;
  weft_http_response r;
  int rc = weft_http_get(url, weft_deadline_in(10000), &r);
  if (rc == 0) rc = weft_out_set(out, &r.body_size, sizeof r.body_size);
  weft_http_response_free(&r);
  return rc;
}

int main(void) {
  weft_loop *loop;
  weft_http_server *srv;
  double scale = 0.1; /* the study's ten sites, ten times faster: 10 ms ... 100 ms */
  if (weft_loop_create(&loop, NULL) ||
      weft_http_server_start(&srv, loop, NULL, weft_sites_handler, &scale))
    return 1;
  char url[30][64];
  weft_future *f[30];
  for (int i = 0; i < 30; i++) { /* sites 0..9, three times */
    snprintf(url[i], sizeof url[i], "http://127.0.0.1:%d/site/%d", weft_http_server_port(srv), i % 10);
    if (weft_spawn(loop, fetch, url[i], sizeof url[i], NULL, &f[i])) return 1;
  }
  int64_t t0 = weft_now();
  size_t bytes = 0;
  for (int i = 0; i < 30; i++) { /* runs the loop (server and fetches) until f[i] is done */
    const void *n;
    size_t len;
    if (weft_loop_run_until(loop, f[i], weft_deadline_in(10000)) ||
        weft_future_result(f[i], &n, &len)) {
      fprintf(stderr, "fetch %s: %s\n", url[i], weft_strerror(weft_future_error(f[i])));
      return 1;
    }
    bytes += *(const size_t *)n;
    weft_future_release(f[i]);
  }
  printf("30 fetches, %zu bytes, in %lld ms (one after another: 1650 ms)\n", bytes,
         (long long)(weft_now() - t0));
  weft_http_server_stop(srv);
  weft_loop_destroy(loop);
  return bytes == 3 * 646004 ? 0 : 1; /* every body, byte count checked */
}
