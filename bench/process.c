/*
 * process.c — cross-process round trips: weft's process executors against
 * Python's multiprocessing.Pool and concurrent.futures.ProcessPoolExecutor,
 * a plain pipe between two processes, and memcpy (the physical limit),
 * measured in one run.
 *
 * Two kinds of work, the same for every implementation:
 *   small  a task gets an 8-byte integer and returns it plus one;
 *   echo   a task gets a payload of --size bytes (default 1 MiB) and returns
 *          it unchanged (every payload differs from the last: its first 8
 *          bytes hold the round-trip index).
 * Every result is checked outside the timed region; a wrong one fails the run
 * (exit 1). Two ways of running it:
 *   seq    one round trip at a time (submit, wait for the result): latency;
 *   batch  many in flight (map with chunksize 1): throughput.
 *
 * Each measurement runs --repeat times; the repeats are interleaved (round r
 * runs every measurement once, the Python peers in one python3 run per round)
 * so slow phases of a shared machine hit every implementation alike, and the
 * figures are medians over the repeats. Ratios compare medians of this run:
 *   ratio_vs_<peer> = peer's time per round trip / this impl's time per round trip
 * over the peers doing the same work the same way (seq or batch); above 1
 * means faster than the peer. memcpy is timed per copy of --size bytes, so
 * ratio_vs_memcpy is this impl's one-way bandwidth over memcpy's: memcpy
 * between two warm buffers (in cache: the strict floor) and memcpy.cold
 * (buffers rotating over 2 x 64 payloads: main memory).
 * One-way bandwidth (gb_per_s) = payload bytes x round trips / time: the
 * bytes delivered each way per second.
 *
 * The Python peers come from bench/python/process_peers.py, run with
 * /usr/bin/python3 (Debian's, not a python3 found on PATH; --python to
 * change it). Without it, they are skipped and their ratios print as na.
 *
 * Output: a human table, then one `bench=process ...` line per measurement on
 * stdout; progress on stderr.
 */
#include <weft.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The weft part needs the process executors and the function registry; it
 * is compiled when the header offers them (WEFT_REGISTER defined). Build
 * with -DBENCH_WEFT_PROCESS=0 to leave it out. */
#ifndef BENCH_WEFT_PROCESS
#if defined(WEFT_REGISTER)
#define BENCH_WEFT_PROCESS 1
#else
#define BENCH_WEFT_PROCESS 0
#endif
#endif

#ifndef BENCH_PYTHON_SCRIPT
#define BENCH_PYTHON_SCRIPT "bench/python/process_peers.py"
#endif

#define DEADLINE_MS 300000 /* a broken library fails the run, not hangs it */
#define PIPE_BIG (1u << 20)

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Prints a FAIL line naming the measurement and exits with status 1. */
_Noreturn static void fail(const char *impl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
_Noreturn static void fail(const char *impl, const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  fprintf(stderr, "process: FAIL impl=%s ", impl);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL) fail("process", "malloc(%zu): out of memory", n);
  return p;
}

/* ------------------------------------------------------------------------ */
/* The work                                                                 */
/* ------------------------------------------------------------------------ */

static size_t payload_size = 1u << 20;

static uint64_t get_u64(const void *p) {
  uint64_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* Fills buf with the echo payload of round trip `i`: a fixed pattern with i
 * in the first 8 bytes (when it fits). */
static void fill_payload(unsigned char *buf, size_t size, uint64_t i) {
  for (size_t k = 0; k < size; k++) buf[k] = (unsigned char)(k * 131 + 7);
  if (size >= sizeof i) memcpy(buf, &i, sizeof i);
}

static void set_index(unsigned char *buf, size_t size, uint64_t i) {
  if (size >= sizeof i) memcpy(buf, &i, sizeof i);
}

static void check_echo(const char *impl, const unsigned char *want, const void *got,
                       size_t got_size, size_t i) {
  if (got_size != payload_size)
    fail(impl, "round trip %zu: result of %zu bytes, expected %zu", i, got_size, payload_size);
  if (payload_size && memcmp(want, got, payload_size) != 0)
    fail(impl, "round trip %zu: result differs from the payload", i);
}

/* ------------------------------------------------------------------------ */
/* Measurements                                                             */
/* ------------------------------------------------------------------------ */

enum work { SMALL, ECHO };
enum mode { SEQ, BATCH };
static const char *const work_name[] = {"small", "echo"};
static const char *const mode_name[] = {"seq", "batch"};

typedef struct meas meas;
/* Runs `ops` round trips and returns the seconds of the timed region. */
typedef double (*run_fn)(meas *m, size_t ops);

struct meas {
  const char *impl;
  const char *desc;
  enum work work;
  enum mode mode;
  run_fn run;    /* NULL: a Python peer, filled from the script's output */
  int is_peer;   /* not weft: a ratio column */
  int on;        /* selected (--only) and available */
  size_t ops;    /* round trips (or items) per repeat */
  double *secs;  /* per repeat */
  size_t nsecs;  /* repeats filled */
  double med_s, min_s, max_s, per_op_s;
};

/* --workers: pool size for weft and Python (0 = weft_cpu_count()). */
static int workers;

/* ---- memcpy: the floor */

/* Through a volatile pointer, so no copy is folded away. */
static void *(*volatile memcpy_fn)(void *, const void *, size_t) = memcpy;

static double run_memcpy(meas *m, size_t ops) {
  unsigned char *a = xmalloc(payload_size), *b = xmalloc(payload_size);
  fill_payload(a, payload_size, 0);
  memset(b, 0, payload_size);
  memcpy_fn(b, a, payload_size); /* warm: both buffers faulted in, in cache */
  uint64_t t0 = now_ns();
  for (size_t i = 0; i < ops; i++) memcpy_fn(i % 2 ? a : b, i % 2 ? b : a, payload_size);
  double s = (double)(now_ns() - t0) / 1e9;
  check_echo(m->impl, a, b, payload_size, ops);
  free(a);
  free(b);
  return s;
}

/* The same from cache-cold memory: source and destination rotate over
 * COLD_BUFS payloads each (2 x 64 MiB for 1 MiB payloads, beyond this
 * machine's caches), so every copy reads and writes main memory. */
#define COLD_BUFS 64
static unsigned char *cold_src, *cold_dst;

static double run_memcpy_cold(meas *m, size_t ops) {
  if (cold_src == NULL) {
    cold_src = xmalloc(COLD_BUFS * payload_size);
    cold_dst = xmalloc(COLD_BUFS * payload_size);
    for (size_t k = 0; k < COLD_BUFS; k++) fill_payload(cold_src + k * payload_size, payload_size, k);
    memset(cold_dst, 0, COLD_BUFS * payload_size); /* faulted in before the clock */
  }
  uint64_t t0 = now_ns();
  for (size_t i = 0; i < ops; i++) {
    size_t k = i % COLD_BUFS, j = (i * 7 + 3) % COLD_BUFS;
    memcpy_fn(cold_dst + j * payload_size, cold_src + k * payload_size, payload_size);
  }
  double s = (double)(now_ns() - t0) / 1e9;
  size_t k = (ops - 1) % COLD_BUFS, j = ((ops - 1) * 7 + 3) % COLD_BUFS;
  check_echo(m->impl, cold_src + k * payload_size, cold_dst + j * payload_size, payload_size,
             ops - 1);
  return s;
}

/* ---- a plain pipe between two processes */

static int read_full(int fd, void *buf, size_t n) {
  unsigned char *p = buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static int write_full(int fd, const void *buf, size_t n) {
  const unsigned char *p = buf;
  while (n > 0) {
    ssize_t r = write(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

typedef struct pipe_peer {
  pid_t pid;
  int to, from; /* parent's ends */
} pipe_peer;

/* Forks a child that reads messages of `msg` bytes from one pipe and writes
 * the answer to the other (small: the integer plus one; echo: the message)
 * until EOF. big: both pipes set to 1 MiB with F_SETPIPE_SZ. */
static void pipe_start(const char *impl, pipe_peer *pp, enum work w, size_t msg, int big) {
  int down[2], up[2];
  if (pipe2(down, O_CLOEXEC) != 0 || pipe2(up, O_CLOEXEC) != 0)
    fail(impl, "pipe2: %s", strerror(errno));
  if (big) {
    for (int k = 0; k < 2; k++) {
      int fd = k ? up[0] : down[0];
      if (fcntl(fd, F_SETPIPE_SZ, (int)PIPE_BIG) < (int)PIPE_BIG)
        fail(impl, "fcntl(F_SETPIPE_SZ, %u): %s", PIPE_BIG, strerror(errno));
    }
  }
  unsigned char *buf = xmalloc(msg); /* the child's, allocated before fork */
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) fail(impl, "fork: %s", strerror(errno));
  if (pid == 0) {
    close(down[1]);
    close(up[0]);
    while (read_full(down[0], buf, msg) == 0) {
      if (w == SMALL) {
        uint64_t v = get_u64(buf) + 1;
        memcpy(buf, &v, sizeof v);
      }
      if (write_full(up[1], buf, msg) != 0) _exit(4);
    }
    _exit(0);
  }
  free(buf);
  close(down[0]);
  close(up[1]);
  pp->pid = pid;
  pp->to = down[1];
  pp->from = up[0];
}

static void pipe_stop(const char *impl, pipe_peer *pp) {
  close(pp->to);
  close(pp->from);
  int st;
  while (waitpid(pp->pid, &st, 0) < 0)
    if (errno != EINTR) fail(impl, "waitpid: %s", strerror(errno));
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail(impl, "echo child ended with status %d", st);
}

static double pipe_run(meas *m, size_t ops, int big) {
  size_t msg = m->work == SMALL ? sizeof(uint64_t) : payload_size;
  unsigned char *out = xmalloc(msg), *in = xmalloc(msg);
  pipe_peer pp;
  pipe_start(m->impl, &pp, m->work, msg, big);
  if (m->work == ECHO) fill_payload(out, msg, 0);
  /* warm-up round trip */
  if (write_full(pp.to, out, msg) != 0 || read_full(pp.from, in, msg) != 0)
    fail(m->impl, "pipe round trip failed");
  uint64_t total = 0;
  for (size_t i = 0; i < ops; i++) {
    uint64_t v = i;
    if (m->work == SMALL)
      memcpy(out, &v, sizeof v);
    else
      set_index(out, msg, v);
    uint64_t t0 = now_ns();
    if (write_full(pp.to, out, msg) != 0 || read_full(pp.from, in, msg) != 0)
      fail(m->impl, "pipe round trip %zu failed", i);
    total += now_ns() - t0;
    if (m->work == SMALL) {
      if (get_u64(in) != v + 1)
        fail(m->impl, "round trip %zu: got %llu, expected %llu", i,
             (unsigned long long)get_u64(in), (unsigned long long)(v + 1));
    } else {
      check_echo(m->impl, out, in, msg, i);
    }
  }
  pipe_stop(m->impl, &pp);
  free(out);
  free(in);
  return (double)total / 1e9;
}

static double run_pipe(meas *m, size_t ops) { return pipe_run(m, ops, 0); }
static double run_pipe_big(meas *m, size_t ops) { return pipe_run(m, ops, 1); }

/* ---- weft's process executors */

#if BENCH_WEFT_PROCESS

/* The tasks. They run in the worker processes, found there by name. */
static int small_task(const void *in, size_t in_size, weft_out *out) {
  if (in_size != sizeof(uint64_t))
    return weft_out_fail(out, WEFT_EINVAL, "small: %zu bytes of input", in_size);
  uint64_t v = get_u64(in) + 1;
  return weft_out_set(out, &v, sizeof v);
}

static int echo_task(const void *in, size_t in_size, weft_out *out) {
  return weft_out_set(out, in, in_size);
}

WEFT_REGISTER(small_task);
WEFT_REGISTER(echo_task);

static void check_rc(const char *impl, const char *call, int rc) {
  if (rc < 0) fail(impl, "%s returned %d (%s)", call, rc, weft_strerror(rc));
}

static void check_future(const char *impl, weft_future *f, size_t i) {
  int rc = weft_future_error(f);
  if (rc != 0) {
    const char *msg = weft_future_errmsg(f);
    fail(impl, "round trip %zu: task failed with %d (%s)%s%s", i, rc, weft_strerror(rc),
         msg ? ": " : "", msg ? msg : "");
  }
}

/* One small round trip, checked; returns its nanoseconds. */
static uint64_t small_trip(const char *impl, weft_executor *ex, uint64_t v) {
  weft_future *f = NULL;
  uint64_t t0 = now_ns();
  check_rc(impl, "weft_executor_submit", weft_executor_submit(ex, small_task, &v, sizeof v, &f));
  check_rc(impl, "weft_future_wait", weft_future_wait(f, weft_deadline_in(DEADLINE_MS)));
  uint64_t ns = now_ns() - t0;
  check_future(impl, f, (size_t)v);
  const void *data = NULL;
  size_t size = 0;
  check_rc(impl, "weft_future_result", weft_future_result(f, &data, &size));
  if (size != sizeof v || get_u64(data) != v + 1)
    fail(impl, "round trip %llu: wrong result (%zu bytes)", (unsigned long long)v, size);
  weft_future_release(f);
  return ns;
}

/* One echo round trip of buf, checked; returns its nanoseconds. */
static uint64_t echo_trip(const char *impl, weft_executor *ex, const unsigned char *buf,
                          size_t i) {
  weft_future *f = NULL;
  uint64_t t0 = now_ns();
  check_rc(impl, "weft_executor_submit",
           weft_executor_submit(ex, echo_task, buf, payload_size, &f));
  check_rc(impl, "weft_future_wait", weft_future_wait(f, weft_deadline_in(DEADLINE_MS)));
  uint64_t ns = now_ns() - t0;
  check_future(impl, f, i);
  const void *data = NULL;
  size_t size = 0;
  check_rc(impl, "weft_future_result", weft_future_result(f, &data, &size));
  check_echo(impl, buf, data, size, i);
  weft_future_release(f);
  return ns;
}

/* Creates the executor and warms it (every worker started and has run both
 * tasks, as far as the pool hands them out). Not timed. */
static weft_executor *make(const char *impl, const char *kind) {
  weft_executor_opts o = {0};
  o.workers = workers;
  o.chunksize = 1;
  weft_executor *ex = NULL;
  check_rc(impl, "weft_executor_create", weft_executor_create(&ex, kind, &o));
  unsigned char *buf = xmalloc(payload_size);
  fill_payload(buf, payload_size, 0);
  for (int k = 0; k < 2 * workers; k++) {
    small_trip(impl, ex, (uint64_t)k);
    echo_trip(impl, ex, buf, (size_t)k);
  }
  free(buf);
  return ex;
}

static void finish(const char *impl, weft_executor *ex) {
  check_rc(impl, "weft_executor_shutdown",
           weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, weft_deadline_in(DEADLINE_MS)));
  weft_executor_destroy(ex);
}

static const char *kind_of(const meas *m) {
  if (strncmp(m->impl, "weft.inline.", 12) == 0) return "inline";
  return strncmp(m->impl, "weft.process_pool.", 18) == 0 ? "process_pool" : "process";
}

/* seq: ops round trips in turn; the clock covers submit + wait only. */
static double run_weft_seq(meas *m, size_t ops) {
  weft_executor *ex = make(m->impl, kind_of(m));
  uint64_t total = 0;
  if (m->work == SMALL) {
    for (size_t i = 0; i < ops; i++) total += small_trip(m->impl, ex, (uint64_t)i);
  } else {
    unsigned char *buf = xmalloc(payload_size);
    fill_payload(buf, payload_size, 0);
    for (size_t i = 0; i < ops; i++) {
      set_index(buf, payload_size, (uint64_t)i);
      total += echo_trip(m->impl, ex, buf, i);
    }
    free(buf);
  }
  finish(m->impl, ex);
  return (double)total / 1e9;
}

/* batch: one weft_executor_map over ops items, chunksize 1 (one trip per
 * item, up to max_inflight in flight); the clock covers the map call. */
static double run_weft_map(meas *m, size_t ops) {
  weft_executor *ex = make(m->impl, kind_of(m));
  size_t isz = m->work == SMALL ? sizeof(uint64_t) : payload_size;
  unsigned char *items = xmalloc(ops * isz), *results = xmalloc(ops * isz);
  for (size_t i = 0; i < ops; i++) {
    if (m->work == SMALL) {
      uint64_t v = i;
      memcpy(items + i * isz, &v, sizeof v);
    } else {
      fill_payload(items + i * isz, isz, (uint64_t)i);
    }
  }
  memset(results, 0, ops * isz);
  weft_fn fn = m->work == SMALL ? small_task : echo_task;
  uint64_t t0 = now_ns();
  check_rc(m->impl, "weft_executor_map",
           weft_executor_map(ex, fn, items, isz, ops, results, isz, NULL,
                             weft_deadline_in(DEADLINE_MS)));
  double s = (double)(now_ns() - t0) / 1e9;
  for (size_t i = 0; i < ops; i++) {
    if (m->work == SMALL) {
      if (get_u64(results + i * isz) != (uint64_t)i + 1)
        fail(m->impl, "item %zu: wrong result", i);
    } else {
      check_echo(m->impl, items + i * isz, results + i * isz, isz, i);
    }
  }
  free(items);
  free(results);
  finish(m->impl, ex);
  return s;
}

#endif /* BENCH_WEFT_PROCESS */

/* ---- the table */

#define W(name, d, w, md, fn) {.impl = name, .desc = d, .work = w, .mode = md, .run = fn}
#define P(name, d, w, md, fn) \
  {.impl = name, .desc = d, .work = w, .mode = md, .run = fn, .is_peer = 1}
static meas ms[] = {
#if BENCH_WEFT_PROCESS
    W("weft.process_pool.submit_wait", "pool alive: submit one + future_wait, in turn", SMALL,
      SEQ, run_weft_seq),
    W("weft.process_pool.map_chunk1", "pool alive: one map, chunksize 1", SMALL, BATCH,
      run_weft_map),
    W("weft.process.submit_wait", "one process per task: submit one + wait, in turn", SMALL,
      SEQ, run_weft_seq),
    W("weft.process_pool.submit_wait", "pool alive: submit one payload + wait, in turn", ECHO,
      SEQ, run_weft_seq),
    W("weft.process_pool.map_chunk1", "pool alive: one map over payloads, chunksize 1", ECHO,
      BATCH, run_weft_map),
    W("weft.process.submit_wait", "one process per task: submit one payload + wait", ECHO, SEQ,
      run_weft_seq),
    /* What the map itself costs with no process at all (the task writes
     * into the map's result slot, the map copies it to the caller): the
     * in-process floor for weft.process_pool.map_chunk1 echo. */
    P("weft.inline.map_chunk1", "in-process floor: inline executor, one map, chunksize 1", ECHO,
      BATCH, run_weft_map),
#endif
    P("python.mp_pool.apply", "multiprocessing.Pool.apply, in turn", SMALL, SEQ, NULL),
    P("python.futures.submit", "ProcessPoolExecutor.submit().result(), in turn", SMALL, SEQ,
      NULL),
    P("python.mp_pool.map_chunk1", "multiprocessing.Pool.map, chunksize=1", SMALL, BATCH, NULL),
    P("python.futures.map_chunk1", "ProcessPoolExecutor.map, chunksize=1", SMALL, BATCH, NULL),
    P("pipe.default", "write + read on two pipes to an echo child, 64 KiB pipes", SMALL, SEQ,
      run_pipe),
    P("python.mp_pool.apply", "multiprocessing.Pool.apply, in turn", ECHO, SEQ, NULL),
    P("python.futures.submit", "ProcessPoolExecutor.submit().result(), in turn", ECHO, SEQ,
      NULL),
    P("python.mp_pool.map_chunk1", "multiprocessing.Pool.map, chunksize=1", ECHO, BATCH, NULL),
    P("python.futures.map_chunk1", "ProcessPoolExecutor.map, chunksize=1", ECHO, BATCH, NULL),
    P("pipe.default", "write + read on two pipes to an echo child, 64 KiB pipes", ECHO, SEQ,
      run_pipe),
    P("pipe.1MiB", "the same with F_SETPIPE_SZ 1 MiB on both pipes", ECHO, SEQ, run_pipe_big),
    P("memcpy", "memcpy of the payload between two warm buffers (one way)", ECHO, SEQ,
      run_memcpy),
    P("memcpy.cold", "memcpy of the payload, buffers rotating over 2 x 64 payloads", ECHO,
      SEQ, run_memcpy_cold),
};
#undef W
#undef P
#define NMEAS (sizeof ms / sizeof ms[0])

static meas *find(const char *impl, enum work w) {
  for (size_t i = 0; i < NMEAS; i++)
    if (ms[i].work == w && strcmp(ms[i].impl, impl) == 0) return &ms[i];
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* The Python peers                                                         */
/* ------------------------------------------------------------------------ */

static const char *python = "/usr/bin/python3";
static const char *script = BENCH_PYTHON_SCRIPT;
static char python_version[32] = "none";
static char python_start[32] = "none";

/* Ops of the Python measurements (set in main). */
static size_t small_ops, map_ops, echo_ops, echo_map_ops;

static int python_wanted(void) {
  for (size_t i = 0; i < NMEAS; i++)
    if (ms[i].on && ms[i].run == NULL) return 1;
  return 0;
}

/* Copies the value of `key=` in line (up to a space) into buf; 0 or -1. */
static int field(const char *line, const char *key, char *buf, size_t cap) {
  size_t kl = strlen(key);
  for (const char *p = line; (p = strstr(p, key)) != NULL; p += kl) {
    if ((p == line || p[-1] == ' ') && p[kl] == '=') {
      const char *v = p + kl + 1;
      size_t n = strcspn(v, " \n");
      if (n >= cap) n = cap - 1;
      memcpy(buf, v, n);
      buf[n] = '\0';
      return 0;
    }
  }
  return -1;
}

/* Runs the script once (one repeat of every selected Python measurement)
 * and stores its figures in slot r. */
static void python_round(size_t r) {
  char a_workers[24], a_small[24], a_map[24], a_echo[24], a_echo_map[24], a_size[24];
  char only[512] = "";
  snprintf(a_workers, sizeof a_workers, "%d", workers);
  snprintf(a_small, sizeof a_small, "%zu", small_ops);
  snprintf(a_map, sizeof a_map, "%zu", map_ops);
  snprintf(a_echo, sizeof a_echo, "%zu", echo_ops);
  snprintf(a_echo_map, sizeof a_echo_map, "%zu", echo_map_ops);
  snprintf(a_size, sizeof a_size, "%zu", payload_size);
  for (size_t i = 0; i < NMEAS; i++) {
    if (!ms[i].on || ms[i].run != NULL) continue;
    size_t l = strlen(only);
    snprintf(only + l, sizeof only - l, "%s%s.%s", l ? "," : "", ms[i].impl,
             work_name[ms[i].work]);
  }
  char *argv[] = {(char *)python, (char *)script, "--workers", a_workers, "--small-ops",
                  a_small, "--map-ops", a_map, "--echo-ops", a_echo, "--echo-map-ops",
                  a_echo_map, "--size", a_size, "--only", only, NULL};
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) fail("python", "pipe2: %s", strerror(errno));
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) fail("python", "fork: %s", strerror(errno));
  if (pid == 0) {
    dup2(fds[1], 1);
    execv(python, argv);
    fprintf(stderr, "process: exec %s: %s\n", python, strerror(errno));
    _exit(127);
  }
  close(fds[1]);
  FILE *in = fdopen(fds[0], "r");
  if (in == NULL) fail("python", "fdopen: %s", strerror(errno));
  char line[1024], impl[64], work[16], v[64];
  while (fgets(line, sizeof line, in)) {
    if (field(line, "peer", impl, sizeof impl) != 0) continue;
    if (strcmp(impl, "info") == 0) {
      field(line, "python", python_version, sizeof python_version);
      field(line, "start_method", python_start, sizeof python_start);
      continue;
    }
    if (field(line, "work", work, sizeof work) != 0) fail("python", "no work= in: %s", line);
    meas *m = find(impl, strcmp(work, "echo") == 0 ? ECHO : SMALL);
    if (m == NULL || m->run != NULL) fail("python", "unknown measurement in: %s", line);
    if (field(line, "ok", v, sizeof v) != 0 || strcmp(v, "1") != 0)
      fail(m->impl, "Python's results were wrong: %s", line);
    if (field(line, "ops", v, sizeof v) != 0 || strtoull(v, NULL, 10) != m->ops)
      fail(m->impl, "ops differ from the %zu asked: %s", m->ops, line);
    if (field(line, "total_s", v, sizeof v) != 0) fail("python", "no total_s= in: %s", line);
    m->secs[r] = strtod(v, NULL);
    m->nsecs = r + 1;
    fprintf(stderr, "  [%zu] %-32s %-5s %10.2f ms  %9.1f us/op\n", r + 1, m->impl, work,
            m->secs[r] * 1e3, m->secs[r] * 1e6 / (double)m->ops);
  }
  fclose(in);
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) fail("python", "waitpid: %s", strerror(errno));
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fail("python", "%s %s failed (status %d)", python, script, st);
  for (size_t i = 0; i < NMEAS; i++)
    if (ms[i].on && ms[i].run == NULL && ms[i].nsecs != r + 1)
      fail(ms[i].impl, "%s: no figure from %s", work_name[ms[i].work], script);
}

/* ------------------------------------------------------------------------ */
/* The driver                                                               */
/* ------------------------------------------------------------------------ */

static int cmp_dbl(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median_dbl(const double *s, size_t n) {
  return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2.0;
}

static void usage(FILE *to) {
  fprintf(to,
          "usage: process [--size BYTES] [--small-ops N] [--map-ops N] [--echo-ops N]\n"
          "               [--echo-map-ops N] [--process-ops N] [--repeat R] [--workers N]\n"
          "               [--python PATH] [--script PATH] [--no-python]\n"
          "               [--only SUBSTRING]... [--help]\n"
          "\n"
          "Cross-process round trips: weft's process executors against Python's\n"
          "multiprocessing.Pool and ProcessPoolExecutor, a pipe between two processes and\n"
          "memcpy, in one run. Two kinds of work: small (8-byte integer in, plus one out)\n"
          "and echo (a --size payload in, the same bytes out). Prints a table, then one\n"
          "`bench=process ...` line per measurement with medians over R interleaved\n"
          "repeats and ratios (ratio_vs_<peer> = peer time / impl time per round trip;\n"
          "> 1 means faster than the peer).\n"
          "\n"
          "  --size BYTES       echo payload (default 1048576)\n"
          "  --small-ops N      small round trips in turn per repeat (default 2000)\n"
          "  --map-ops N        small items per map (default 20000)\n"
          "  --echo-ops N       echo round trips in turn per repeat (default 100)\n"
          "  --echo-map-ops N   echo items per map (default 64)\n"
          "  --process-ops N    round trips for weft.process (one process per task;\n"
          "                     default 200)\n"
          "  --memcpy-ops N     copies per memcpy repeat (default 2000)\n"
          "  --repeat R         repeats of every measurement (default 5)\n"
          "  --workers N        pool size, weft and Python (default: weft_cpu_count())\n"
          "  --python PATH      the Python of the peers (default /usr/bin/python3)\n"
          "  --script PATH      the peers' script (default %s)\n"
          "  --no-python        skip the Python peers\n"
          "  --only SUBSTRING   run only measurements whose name (impl.work) contains it\n"
          "                     (repeatable; ratios against peers not run print as na)\n"
          "\n"
          "measurements (impl work mode):\n",
          BENCH_PYTHON_SCRIPT);
  for (size_t i = 0; i < NMEAS; i++)
    fprintf(to, "  %-30s %-5s %-5s %s\n", ms[i].impl, work_name[ms[i].work],
            mode_name[ms[i].mode], ms[i].desc);
#if !BENCH_WEFT_PROCESS
  fprintf(to, "\n(built without weft's process executors: only the peers run)\n");
#endif
}

static int parse_count(const char *flag, const char *v, size_t *out, int zero_ok) {
  char *end;
  if (v == NULL || *v == '\0' || *v == '-') goto bad;
  errno = 0;
  unsigned long long x = strtoull(v, &end, 10);
  if (*end != '\0' || errno != 0 || (x == 0 && !zero_ok)) goto bad;
  *out = (size_t)x;
  return 0;
bad:
  fprintf(stderr, "process: %s needs a %s integer, got '%s'\n", flag,
          zero_ok ? "non-negative" : "positive", v ? v : "");
  return -1;
}

/* One ratio column of the human table: peer time / m's time, or na. */
static void print_ratio(const meas *peer, const meas *m) {
  if (peer && peer->on)
    printf(" %8.3fx", peer->per_op_s / m->per_op_s);
  else
    printf(" %9s", "na");
}

#define MAX_ONLY 16

int main(int argc, char **argv) {
#if BENCH_WEFT_PROCESS
  /* weft's fork server first, while this program has no other thread (see
   * "Fork safety" in weft.h); the tasks are registered already (at load). */
  int prc = weft_process_init();
  if (prc < 0) fail("weft", "weft_process_init returned %d (%s)", prc, weft_strerror(prc));
#endif
  size_t repeat = 5, nworkers = 0, proc_ops = 200, memcpy_ops = 2000;
  const char *only[MAX_ONLY];
  size_t nonly = 0;
  int use_python = 1;
  small_ops = 2000, map_ops = 20000, echo_ops = 100, echo_map_ops = 64;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *eq = strchr(a, '=');
    char flag[32];
    size_t fl = eq ? (size_t)(eq - a) : strlen(a);
    if (fl >= sizeof flag) fl = sizeof flag - 1;
    memcpy(flag, a, fl);
    flag[fl] = '\0';
    const char *val = eq ? eq + 1 : NULL;
    size_t *dst = NULL;
    const char **sdst = NULL;
    int zero_ok = 0;
    if (strcmp(flag, "--help") == 0 || strcmp(flag, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(flag, "--no-python") == 0 && !val) {
      use_python = 0;
      continue;
    } else if (strcmp(flag, "--size") == 0) {
      dst = &payload_size;
      zero_ok = 1;
    } else if (strcmp(flag, "--small-ops") == 0) {
      dst = &small_ops;
    } else if (strcmp(flag, "--map-ops") == 0) {
      dst = &map_ops;
    } else if (strcmp(flag, "--echo-ops") == 0) {
      dst = &echo_ops;
    } else if (strcmp(flag, "--echo-map-ops") == 0) {
      dst = &echo_map_ops;
    } else if (strcmp(flag, "--process-ops") == 0) {
      dst = &proc_ops;
    } else if (strcmp(flag, "--memcpy-ops") == 0) {
      dst = &memcpy_ops;
    } else if (strcmp(flag, "--repeat") == 0) {
      dst = &repeat;
    } else if (strcmp(flag, "--workers") == 0) {
      dst = &nworkers;
    } else if (strcmp(flag, "--python") == 0) {
      sdst = &python;
    } else if (strcmp(flag, "--script") == 0) {
      sdst = &script;
    } else if (strcmp(flag, "--only") != 0) {
      fprintf(stderr, "process: unknown argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
    if (!val) {
      if (i + 1 >= argc) {
        fprintf(stderr, "process: %s needs a value\n", flag);
        usage(stderr);
        return 2;
      }
      val = argv[++i];
    }
    if (sdst) {
      *sdst = val;
    } else if (dst == NULL) { /* --only */
      if (nonly == MAX_ONLY) {
        fprintf(stderr, "process: at most %d --only\n", MAX_ONLY);
        return 2;
      }
      only[nonly++] = val;
    } else if (parse_count(flag, val, dst, zero_ok) != 0) {
      usage(stderr);
      return 2;
    }
  }
  if (nworkers > 1024) {
    fprintf(stderr, "process: --workers at most 1024\n");
    return 2;
  }
  if (payload_size > ((size_t)1 << 30)) {
    fprintf(stderr, "process: --size at most 1 GiB\n");
    return 2;
  }
  workers = nworkers ? (int)nworkers : weft_cpu_count();
  /* A child that dies must fail its measurement, not kill the benchmark. */
  signal(SIGPIPE, SIG_IGN);

  int python_ok = 0;
  if (use_python) {
    if (access(python, X_OK) != 0)
      fprintf(stderr,
              "process: %s not found (%s): the Python peers are skipped and their ratios "
              "print as na (install Debian's python3, or pass --python PATH)\n",
              python, strerror(errno));
    else if (access(script, R_OK) != 0)
      fprintf(stderr, "process: the peers' script %s is missing (%s): Python peers skipped\n",
              script, strerror(errno));
    else
      python_ok = 1;
  }

  size_t nrun = 0;
  for (size_t i = 0; i < NMEAS; i++) {
    meas *m = &ms[i];
    char name[80];
    snprintf(name, sizeof name, "%s.%s", m->impl, work_name[m->work]);
    m->on = nonly == 0;
    for (size_t k = 0; k < nonly; k++) m->on |= strstr(name, only[k]) != NULL;
    if (m->run == NULL && !python_ok) m->on = 0;
    if (strncmp(m->impl, "memcpy", 6) == 0)
      m->ops = memcpy_ops;
    else if (strncmp(m->impl, "weft.process.", 13) == 0)
      m->ops = proc_ops;
    else if (m->work == SMALL)
      m->ops = m->mode == SEQ ? small_ops : map_ops;
    else
      m->ops = m->mode == SEQ ? echo_ops : echo_map_ops;
    m->secs = calloc(repeat, sizeof *m->secs);
    if (m->secs == NULL) fail("process", "out of memory");
    nrun += m->on;
  }
  if (nrun == 0) {
    fprintf(stderr, "process: nothing to run\n");
    return 2;
  }
  int run_python = python_ok && python_wanted();

  fprintf(stderr,
          "process: %zu measurements x %zu repeats; payload %zu bytes; workers=%d; python=%s%s\n",
          nrun, repeat, payload_size, workers, run_python ? python : "skipped",
          BENCH_WEFT_PROCESS ? "" : "; weft's process executors NOT built");

  /* Interleaved repeats: round r runs every measurement once, the Python
   * peers last (one python3 run). */
  for (size_t r = 0; r < repeat; r++) {
    for (size_t i = 0; i < NMEAS; i++) {
      meas *m = &ms[i];
      if (!m->on || m->run == NULL) continue;
      m->secs[r] = m->run(m, m->ops);
      m->nsecs = r + 1;
      fprintf(stderr, "  [%zu/%zu] %-32s %-5s %10.2f ms  %9.2f us/op\n", r + 1, repeat,
              m->impl, work_name[m->work], m->secs[r] * 1e3,
              m->secs[r] * 1e6 / (double)m->ops);
    }
    if (run_python) python_round(r);
  }

  for (size_t i = 0; i < NMEAS; i++) {
    meas *m = &ms[i];
    if (!m->on) continue;
    qsort(m->secs, repeat, sizeof *m->secs, cmp_dbl);
    m->med_s = median_dbl(m->secs, repeat);
    m->min_s = m->secs[0];
    m->max_s = m->secs[repeat - 1];
    m->per_op_s = m->med_s / (double)m->ops;
  }

  /* The human tables. "vs Pool": the Python Pool doing the work the same
   * way (apply in turn, or map); "vs pipe": the default pipe (seq only). */
  const meas *mc = find("memcpy", ECHO), *mcc = find("memcpy.cold", ECHO);
  for (int w = SMALL; w <= ECHO; w++) {
    int any = 0;
    for (size_t i = 0; i < NMEAS; i++) any |= ms[i].on && ms[i].work == (enum work)w;
    if (!any) continue;
    const meas *pa = find("python.mp_pool.apply", (enum work)w);
    const meas *pm = find("python.mp_pool.map_chunk1", (enum work)w);
    const meas *pp = find("pipe.default", (enum work)w);
    if (w == SMALL)
      printf("\nSmall round trips (8-byte integer in, plus one out): medians of %zu "
             "repeats; workers=%d\n",
             repeat, workers);
    else
      printf("\nEcho round trips of %zu bytes (the payload out and back): medians of %zu "
             "repeats; workers=%d\n",
             payload_size, repeat, workers);
    printf("%-30s %-5s %7s %10s %11s", "impl", "mode", "ops", "us/trip", "trips/s");
    if (w == ECHO) printf(" %8s", "GB/s");
    printf(" %9s %9s", "vs Pool", "vs pipe");
    if (w == ECHO) printf(" %9s %9s", "vs memcpy", "vs cold");
    printf("\n");
    for (size_t i = 0; i < NMEAS; i++) {
      const meas *m = &ms[i];
      if (!m->on || m->work != (enum work)w) continue;
      const meas *py = m->mode == SEQ ? pa : pm;
      printf("%-30s %-5s %7zu %10.2f %11.0f", m->impl, mode_name[m->mode], m->ops,
             m->per_op_s * 1e6, 1.0 / m->per_op_s);
      if (w == ECHO) printf(" %8.3f", (double)payload_size / m->per_op_s / 1e9);
      print_ratio(py, m);
      if (m->mode == SEQ)
        print_ratio(pp, m);
      else
        printf(" %9s", "-");
      if (w == ECHO) {
        print_ratio(mc, m);
        print_ratio(mcc, m);
      }
      printf("\n");
    }
  }
  printf("(us/trip and trips/s: per item for batch; GB/s: payload bytes one way per "
         "second; vs X = X's time / this time: > 1 is faster)\n");

  /* The machine-readable lines. */
  printf("\nbench=process.info weft=%s cpus=%d workers=%d size=%zu weft_process=%s python=%s "
         "python_version=%s python_start_method=%s small_ops=%zu map_ops=%zu echo_ops=%zu "
         "echo_map_ops=%zu process_ops=%zu memcpy_ops=%zu repeats=%zu "
         "ratio=peer_time/impl_time\n",
         weft_version(), weft_cpu_count(), workers, payload_size,
         BENCH_WEFT_PROCESS ? "built" : "not_built", run_python ? python : "skipped",
         python_version, python_start, small_ops, map_ops, echo_ops, echo_map_ops, proc_ops,
         memcpy_ops, repeat);
  for (size_t i = 0; i < NMEAS; i++) {
    const meas *m = &ms[i];
    if (!m->on) continue;
    size_t size = m->work == SMALL ? sizeof(uint64_t) : payload_size;
    printf("bench=process impl=%s work=%s mode=%s size=%zu ops=%zu repeats=%zu median_s=%.6f "
           "min_s=%.6f max_s=%.6f us_per_op=%.3f per_s=%.0f",
           m->impl, work_name[m->work], mode_name[m->mode], size, m->ops, repeat, m->med_s,
           m->min_s, m->max_s, m->per_op_s * 1e6, 1.0 / m->per_op_s);
    if (m->work == ECHO) printf(" gb_per_s=%.3f", (double)size / m->per_op_s / 1e9);
    /* Ratios against every peer doing the same work the same way, and
     * against memcpy for payloads. */
    for (size_t k = 0; k < NMEAS; k++) {
      const meas *p = &ms[k];
      if (!p->is_peer || p == m || p->work != m->work) continue;
      int is_memcpy = strncmp(p->impl, "memcpy", 6) == 0;
      if (p->mode != m->mode && !is_memcpy) continue;
      if (p->on)
        printf(" ratio_vs_%s=%.3f", p->impl, p->per_op_s / m->per_op_s);
      else
        printf(" ratio_vs_%s=na", p->impl);
    }
    printf("\n");
  }

  /* The goals for 1 MiB round trips, judged on this run's medians:
   * at least 10x Python's Pool.apply and at least half of memcpy's bandwidth
   * (warm buffers: the strict floor; cold: main memory). */
  const meas *we = find("weft.process_pool.submit_wait", ECHO);
  const meas *pe = find("python.mp_pool.apply", ECHO);
  if (we && we->on) {
    printf("bench=process.goal impl=weft.process_pool.submit_wait size=%zu", payload_size);
    if (pe && pe->on) {
      double r = pe->per_op_s / we->per_op_s;
      printf(" vs_python.mp_pool.apply=%.2f goal_10x_python=%s", r, r >= 10 ? "met" : "not_met");
    } else {
      printf(" goal_10x_python=na");
    }
    if (mc && mc->on) {
      double r = mc->per_op_s / we->per_op_s;
      printf(" vs_memcpy=%.3f goal_half_memcpy=%s", r, r >= 0.5 ? "met" : "not_met");
    } else {
      printf(" goal_half_memcpy=na");
    }
    if (mcc && mcc->on) {
      double r = mcc->per_op_s / we->per_op_s;
      printf(" vs_memcpy.cold=%.3f goal_half_memcpy_cold=%s", r, r >= 0.5 ? "met" : "not_met");
    }
    printf("\n");
  }
  return 0;
}
