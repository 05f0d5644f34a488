/*
 * study.h — what the 18 study cases share (shared/spec/study-workload.md):
 * options, the URLS and NUMBERS inputs, the task functions, and the checks.
 *
 * Each case is one short file that does its work with weft and nothing else;
 * everything that would be the same in all of them lives here, so that two
 * cases side by side differ only where their models differ.
 *
 * Options (or the environment): --url BASE (WEFT_STUDY_URL), the ten-sites
 * server, e.g. http://127.0.0.1:8000 (`weft serve` starts one); --scale X
 * (WEFT_STUDY_SCALE), the latency scale the server applies, only reported.
 * Exit status: 0 when every byte count and every fib value is right (one
 * summary line on stdout), 1 when any is wrong or failed (what, on stderr),
 * 2 for a usage error.
 */
#ifndef WEFT_STUDY_H
#define WEFT_STUDY_H

#include <weft.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Functions here are static inline: each case uses only some of them. */

enum { STUDY_URLS = 30, STUDY_NUMBERS = 21 };

/* The whole case must finish within this time (a stuck server fails it). */
#define STUDY_TIMEOUT_MS 600000

/* One fetch. The URL is held inline, so the item travels to process workers
 * as plain bytes. */
typedef struct study_url {
  int site;          /* 0..9 */
  int64_t deadline;  /* absolute, weft_now() clock (the same in every process) */
  char url[232];
} study_url;

/* What a task of cases 13-18 returns: its fetch's byte count, and the fib
 * value (13-15) or the blocking fetch's byte count (16-18). */
typedef struct study_pair {
  size_t bytes;
  long second;
} study_pair;

typedef struct study {
  char name[64];  /* the case's name: its file name without ".c" */
  char base[160]; /* server address, no trailing '/' */
  double scale;
  int64_t deadline;
  study_url urls[STUDY_URLS];     /* sites 0..9, three times */
  long numbers[STUDY_NUMBERS];    /* 28..34, three times */
  /* Where the cases put their results: item i's error code (WEFT_EPENDING
   * until it is set) and its value, by case group. */
  int errors[STUDY_URLS];
  size_t bytes[STUDY_URLS];       /* 01-07 */
  long fibs[STUDY_NUMBERS];       /* 08-12 */
  study_pair pairs[STUDY_URLS];   /* 13-18 */
} study;

/* fib(28) .. fib(34), to check the computed values against. */
static const long study_fib_expected[7] = {317811,  514229,  832040, 1346269,
                                           2178309, 3524578, 5702887};

/* The naive recursive Fibonacci: the study's CPU-bound work, computed for
 * real (n comes from the input at run time, so nothing can be folded). */
static inline long study_fib(long n) { return n <= 2 ? 1 : study_fib(n - 1) + study_fib(n - 2); }

/* The n of cases 13-15's fib(32); volatile, so no compiler folds the call. */
static volatile long study_fib_n = 32;

static inline long study_fib_want(long n) {
  return n >= 28 && n <= 34 ? study_fib_expected[n - 28] : -1;
}

static inline void study_usage(FILE *f, const char *name) {
  fprintf(f,
          "usage: %s [--url BASE] [--scale X]\n"
          "  --url BASE   the ten-sites server, e.g. http://127.0.0.1:8000\n"
          "               (default: $WEFT_STUDY_URL; `weft serve` starts one;\n"
          "               the cpu cases fetch nothing and need none)\n"
          "  --scale X    the latency scale the server applies, for the summary\n"
          "               (default: $WEFT_STUDY_SCALE, else 1)\n",
          name);
}

/* Says what is wrong with the command line, shows the usage, exits 2. */
__attribute__((format(printf, 2, 3))) static inline void study_usage_error(const study *s,
                                                                            const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", s->name);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  study_usage(stderr, s->name);
  exit(2);
}

/* Parses the options and builds the inputs; exits 2 on a usage error.
 * Called through study_begin (cases that fetch: a server is required) or
 * study_begin_cpu (cases that do not), which pass the case's file name. */
static inline void study_begin_(study *s, const char *file, int argc, char **argv,
                                int need_url) {
  memset(s, 0, sizeof *s);
  const char *slash = strrchr(file, '/');
  snprintf(s->name, sizeof s->name, "%s", slash ? slash + 1 : file);
  char *dot = strrchr(s->name, '.');
  if (dot) *dot = '\0';
  const char *url = getenv("WEFT_STUDY_URL"), *scale = getenv("WEFT_STUDY_SCALE");
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      study_usage(stdout, s->name);
      exit(0);
    } else if (!strcmp(argv[i], "--url") && i + 1 < argc) {
      url = argv[++i];
    } else if (!strcmp(argv[i], "--scale") && i + 1 < argc) {
      scale = argv[++i];
    } else {
      study_usage_error(s, "unknown or incomplete option '%s'", argv[i]);
    }
  }
  if ((!url || !*url) && !need_url) url = "http://127.0.0.1"; /* never used */
  if (!url || !*url)
    study_usage_error(s, "no server: give --url BASE or set WEFT_STUDY_URL");
  size_t len = strlen(url);
  while (len > 0 && url[len - 1] == '/') len--;
  if (strncmp(url, "http://", 7) != 0 || len <= 7 || len >= sizeof s->base)
    study_usage_error(s, "--url wants http://HOST:PORT, not '%s'", url);
  memcpy(s->base, url, len);
  s->scale = 1.0;
  if (scale) {
    char *end;
    s->scale = strtod(scale, &end);
    if (end == scale || *end || !isfinite(s->scale) || s->scale <= 0)
      study_usage_error(s, "--scale wants a number > 0, not '%s'", scale);
  }
  s->deadline = weft_deadline_in(STUDY_TIMEOUT_MS);
  for (int i = 0; i < STUDY_URLS; i++) {
    s->urls[i].site = i % 10;
    s->urls[i].deadline = s->deadline;
    snprintf(s->urls[i].url, sizeof s->urls[i].url, "%s/site/%d", s->base, i % 10);
  }
  for (int i = 0; i < STUDY_NUMBERS; i++) s->numbers[i] = 28 + i % 7;
  for (int i = 0; i < STUDY_URLS; i++) s->errors[i] = WEFT_EPENDING;
}
#define study_begin(s, argc, argv) study_begin_((s), __FILE__, (argc), (argv), 1)
#define study_begin_cpu(s, argc, argv) study_begin_((s), __FILE__, (argc), (argv), 0)

/* ---- the task functions (weft_fn), registered for the process executors. */

/* GET one study_url with `get` (weft_http_get: asynchronous in a task,
 * blocking elsewhere; or weft_http_get_blocking) and set *bytes. */
static inline int study_get(int (*get)(const char *, int64_t, weft_http_response *),
                            const study_url *u, size_t *bytes, weft_out *out) {
  weft_http_response r;
  memset(&r, 0, sizeof r);
  int rc = get(u->url, u->deadline, &r);
  *bytes = r.body_size;
  if (rc != 0)
    rc = weft_out_fail(out, rc, "GET %s: %s (status %d)", u->url,
                       r.error[0] ? r.error : weft_strerror(rc), r.status);
  weft_http_response_free(&r);
  return rc;
}

/* study_url in, its byte count (size_t) out. */
static inline int study_fetch_task(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  size_t bytes;
  int rc = study_get(weft_http_get, in, &bytes, out);
  return rc ? rc : weft_out_set(out, &bytes, sizeof bytes);
}
WEFT_REGISTER(study_fetch_task);

static inline int study_fetch_blocking_task(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  size_t bytes;
  int rc = study_get(weft_http_get_blocking, in, &bytes, out);
  return rc ? rc : weft_out_set(out, &bytes, sizeof bytes);
}
WEFT_REGISTER(study_fetch_blocking_task);

/* long n in, fib(n) (long) out. */
static inline int study_fib_task(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  long r = study_fib(*(const long *)in);
  return weft_out_set(out, &r, sizeof r);
}
WEFT_REGISTER(study_fib_task);

/* The outcome of a weft_run_in_executor that returned rc and gave future f
 * (NULL if the submit failed): copies f's result (size bytes) to res and
 * releases f. Returns 0, or the failure (also recorded in out). */
static inline int study_take(int rc, weft_future *f, void *res, size_t size, weft_out *out) {
  if (rc == 0) rc = weft_future_error(f);
  const void *data = NULL;
  size_t got = 0;
  if (rc == 0) rc = weft_future_result(f, &data, &got);
  if (rc == 0 && got != size) rc = WEFT_EPROTO;
  if (rc == 0) memcpy(res, data, size);
  if (rc != 0) {
    const char *msg = f ? weft_future_errmsg(f) : NULL;
    rc = weft_out_fail(out, rc, "%s", msg ? msg : weft_strerror(rc));
  }
  weft_future_release(f);
  return rc;
}

/* ---- the checks, and the end of a case. */

static int study_failures;

/* Says what was wrong, on stderr, and counts it. */
__attribute__((format(printf, 2, 3))) static inline void study_fail(const study *s,
                                                                     const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", s->name);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  study_failures++;
}

/* Fetch i's outcome: its error code, or its byte count. */
static inline void study_check_fetch(const study *s, int i, int err, size_t bytes) {
  const study_url *u = &s->urls[i];
  if (err != 0)
    study_fail(s, "GET %s failed: %s", u->url, weft_strerror(err));
  else if (bytes != weft_site_size(u->site))
    study_fail(s, "GET %s: %zu bytes, want %zu", u->url, bytes, weft_site_size(u->site));
}

/* fib(n)'s outcome. */
static inline void study_check_fib(const study *s, long n, int err, long value) {
  if (err != 0)
    study_fail(s, "fib(%ld) failed: %s", n, weft_strerror(err));
  else if (value != study_fib_want(n))
    study_fail(s, "fib(%ld) = %ld, want %ld", n, value, study_fib_want(n));
}

static inline size_t study_bytes(const study *s, int n) {
  size_t sum = 0;
  for (int i = 0; i < n; i++) sum += weft_site_size(s->urls[i].site);
  return sum;
}

/* 1938012 -> "1,938,012" */
static inline const char *study_commas(char *buf, size_t n) {
  char digits[32];
  int len = snprintf(digits, sizeof digits, "%zu", n), j = 0;
  for (int i = 0; i < len; i++) {
    if (i > 0 && (len - i) % 3 == 0) buf[j++] = ',';
    buf[j++] = digits[i];
  }
  buf[j] = '\0';
  return buf;
}

/* The last step of every case: rc is what the call that ran the work
 * returned (a map, a loop run ...). Prints the one-line summary and returns
 * 0 if rc is 0 and nothing was wrong; else says so and returns 1. */
static inline int study_verdict(const study *s, int rc, const char *what, size_t bytes) {
  if (rc != 0 && study_failures == 0) study_fail(s, "failed: %s", weft_strerror(rc));
  if (study_failures != 0) {
    fprintf(stderr, "%s: FAILED (%d wrong)\n", s->name, study_failures);
    return 1;
  }
  char buf[40];
  printf("%s: %s, %s bytes, scale %g, ok\n", s->name, what,
         study_commas(buf, bytes), s->scale);
  return 0;
}

/* Cases 01-07: the n fetches of s->urls, results in s->errors and s->bytes. */
static inline int study_end_fetches(const study *s, int rc, int n) {
  for (int i = 0; i < n; i++) study_check_fetch(s, i, s->errors[i], s->bytes[i]);
  char what[32];
  snprintf(what, sizeof what, "%d fetches", n);
  return study_verdict(s, rc, what, study_bytes(s, n));
}

/* Cases 08-12: fib over s->numbers, results in s->errors and s->fibs. */
static inline int study_end_fibs(const study *s, int rc) {
  for (int i = 0; i < STUDY_NUMBERS; i++)
    study_check_fib(s, s->numbers[i], s->errors[i], s->fibs[i]);
  if (rc != 0 && study_failures == 0) study_fail(s, "failed: %s", weft_strerror(rc));
  if (study_failures != 0) {
    fprintf(stderr, "%s: FAILED (%d wrong)\n", s->name, study_failures);
    return 1;
  }
  printf("%s: %d fib values (28..34), ok\n", s->name, STUDY_NUMBERS);
  return 0;
}

/* Cases 13-15: n tasks, each a fetch then fib(32), in s->errors, s->pairs. */
static inline int study_end_io_cpu(const study *s, int rc, int n) {
  for (int i = 0; i < n; i++) {
    if (s->errors[i] != 0) {
      study_fail(s, "task for %s failed: %s", s->urls[i].url, weft_strerror(s->errors[i]));
      continue;
    }
    study_check_fetch(s, i, 0, s->pairs[i].bytes);
    study_check_fib(s, 32, 0, s->pairs[i].second);
  }
  char what[64];
  snprintf(what, sizeof what, "%d fetches + %d x fib(32)", n, n);
  return study_verdict(s, rc, what, study_bytes(s, n));
}

/* Cases 16-18: n tasks, each an async then a blocking fetch of one URL. */
static inline int study_end_io_io(const study *s, int rc, int n) {
  for (int i = 0; i < n; i++) {
    if (s->errors[i] != 0) {
      study_fail(s, "task for %s failed: %s", s->urls[i].url, weft_strerror(s->errors[i]));
      continue;
    }
    study_check_fetch(s, i, 0, s->pairs[i].bytes);
    study_check_fetch(s, i, 0, (size_t)s->pairs[i].second);
  }
  char what[64];
  snprintf(what, sizeof what, "%d async + %d blocking fetches", n, n);
  return study_verdict(s, rc, what, 2 * study_bytes(s, n));
}


/* ---- case 19 (cpu-distributed): the mpi executor needs its program
 * started by mpirun. Run directly, the case starts itself again under
 * mpirun (STUDY_MPIRUN, the path CMake found), on `ranks` ranks: rank 0
 * submits, the others compute. Under mpirun already (Open MPI or PMIx set
 * their rank variables), it returns. Root may run Open MPI only when told
 * so; --bind-to none keeps the CPU affinity the case was started with (the
 * lab's cores); --oversubscribe allows more ranks than cores. Exits 1 if
 * mpirun cannot be run. Only case 19 is built with STUDY_MPIRUN (and
 * defines _POSIX_C_SOURCE for setenv and execv). */
#ifdef STUDY_MPIRUN
#include <errno.h>
#include <unistd.h>
static inline void study_mpi_relaunch(const char *mpirun, int ranks, char **argv) {
  if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK")) return;
  char np[16];
  snprintf(np, sizeof np, "%d", ranks);
  char *args[64];
  int k = 0;
  args[k++] = (char *)mpirun;
  args[k++] = (char *)"-np";
  args[k++] = np;
  args[k++] = (char *)"--oversubscribe";
  args[k++] = (char *)"--bind-to";
  args[k++] = (char *)"none";
  for (int i = 0; argv[i] && k < 63; i++) args[k++] = argv[i];
  args[k] = NULL;
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  fflush(NULL);
  execv(mpirun, args);
  fprintf(stderr, "cannot run %s: %s\n", mpirun, strerror(errno));
  exit(1);
}
#endif /* STUDY_MPIRUN */

#endif /* WEFT_STUDY_H */
