/*
 * weft fetch — the study's "sitesize" example: fetches URLs concurrently on
 * any executor and prints "URL BYTES" per URL as each completes
 * (weft_executor_imap_unordered, as the study's example does).
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A URL travels inline so that the item is plain bytes for process workers. */
typedef struct fetch_item {
  char url[2048];
} fetch_item;

static int64_t g_timeout_ms = 60000;

/* The task: one GET; the result is the body's size (uint64_t). In a task of
 * the async executor the fetch is asynchronous; elsewhere it blocks. */
static int fetch_task(const void *in, size_t in_size, weft_out *out) {
  if (in_size != sizeof(fetch_item)) return weft_out_fail(out, WEFT_EINVAL, "bad item");
  const fetch_item *it = in;
  weft_http_response resp;
  int rc = weft_http_get(it->url, weft_deadline_in(g_timeout_ms), &resp);
  if (rc != 0) {
    if (rc == WEFT_EHTTP)
      weft_out_fail(out, rc, "HTTP status %d", resp.status);
    else
      weft_out_fail(out, rc, "%s", resp.error[0] ? resp.error : weft_strerror(rc));
    weft_http_response_free(&resp);
    return rc;
  }
  uint64_t size = resp.body_size;
  weft_http_response_free(&resp);
  return weft_out_set(out, &size, sizeof size);
}
WEFT_REGISTER(fetch_task);

static void usage(FILE *f) {
  fprintf(f, "usage: weft fetch [--executor KIND] [--workers N] [--timeout S] URL...\n"
             "Fetches the URLs concurrently and prints \"URL BYTES\" per line as each\n"
             "completes. A failed URL prints its error on stderr; the exit status is then 1.\n"
             "  --executor KIND  default thread_pool; one of\n                  ");
  for (const char *const *k = weft_executor_kinds(); *k; k++) fprintf(f, " %s", *k);
  fprintf(f, "\n"
             "  --workers N      workers (default: the executor's; thread_pool: %d)\n"
             "  --timeout S      per-URL time limit in seconds (default 60)\n",
          weft_io_workers());
}

int weft_cli_fetch(int argc, char **argv) {
  const char *kind = "thread_pool";
  int workers = -1, i = 1;
  double timeout = 60;
  for (; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--")) {
      i++;
      break;
    } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--executor") && v) {
      kind = argv[++i];
    } else if (!strcmp(a, "--workers") && v) {
      if (weft_cli_parse_int(argv[++i], 1, 4096, &workers) != 0) {
        fprintf(stderr, "weft fetch: --workers wants 1..4096, not '%s'\n", argv[i]);
        return 2;
      }
    } else if (!strcmp(a, "--timeout") && v) {
      if (weft_cli_parse_double(argv[++i], &timeout) != 0 || !(timeout > 0)) {
        fprintf(stderr, "weft fetch: --timeout wants seconds > 0, not '%s'\n", argv[i]);
        return 2;
      }
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "weft fetch: unknown or incomplete option '%s'\n", a);
      usage(stderr);
      return 2;
    } else {
      break;
    }
  }
  int n = argc - i;
  if (n <= 0) {
    fprintf(stderr, "weft fetch: no URL given\n");
    usage(stderr);
    return 2;
  }
  int known = 0;
  for (const char *const *k = weft_executor_kinds(); *k; k++) known |= !strcmp(*k, kind);
  if (!known) {
    fprintf(stderr, "weft fetch: unknown executor '%s'\n", kind);
    usage(stderr);
    return 2;
  }
  g_timeout_ms = (int64_t)(timeout * 1000);
  fetch_item *items = calloc((size_t)n, sizeof *items);
  if (!items) {
    fprintf(stderr, "weft fetch: out of memory\n");
    return 1;
  }
  for (int k = 0; k < n; k++) {
    if (strlen(argv[i + k]) >= sizeof items[k].url) {
      fprintf(stderr, "weft fetch: URL longer than %zu bytes: %.60s...\n",
              sizeof items[k].url - 1, argv[i + k]);
      free(items);
      return 2;
    }
    strcpy(items[k].url, argv[i + k]);
  }
  /* Process workers are forked by a fork server: start it while we are
   * still single-threaded. */
  if (!strncmp(kind, "process", 7)) weft_process_init();
  weft_executor_opts eo = {0};
  if (workers > 0) eo.workers = workers;
  else if (!strcmp(kind, "thread_pool")) eo.workers = weft_io_workers();
  eo.chunksize = 1; /* every URL its own trip: results stream as they come */
  weft_executor *ex;
  int rc = weft_executor_create(&ex, kind, &eo);
  if (rc != 0) {
    fprintf(stderr, "weft fetch: cannot create a %s executor: %s\n", kind, weft_strerror(rc));
    free(items);
    return 1;
  }
  weft_imap *it;
  rc = weft_executor_imap_unordered(ex, fetch_task, items, sizeof *items, (size_t)n, &it);
  int failed = 0;
  if (rc != 0) {
    fprintf(stderr, "weft fetch: %s\n", weft_strerror(rc));
    failed = 1;
  } else {
    weft_item item;
    while ((rc = weft_imap_next(it, WEFT_FOREVER, &item)) == 0) {
      const char *url = items[item.index].url;
      if (item.error == 0 && item.size == sizeof(uint64_t)) {
        uint64_t size;
        memcpy(&size, item.data, sizeof size);
        printf("%s %llu\n", url, (unsigned long long)size);
        fflush(stdout);
      } else {
        fprintf(stderr, "%s error: %s\n", url,
                item.errmsg ? item.errmsg : weft_strerror(item.error ? item.error : WEFT_EIO));
        failed = 1;
      }
    }
    weft_imap_destroy(it);
  }
  weft_executor_destroy(ex);
  free(items);
  return failed ? 1 : 0;
}
