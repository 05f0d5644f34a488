/* test_process.c — the function registry and the process executors
 * ("process_pool", "process"): results, task errors, crash isolation,
 * cancellation of running work, payloads, shutdown, fds and zombies. */
#include "wt.h"
#include "exec/proc_wire.h" /* weft__process_configure */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define LONG_DEADLINE weft_deadline_in(60000)

/* ---- task functions (registered at load, so workers know them) ---- */

static int square(const void *in, size_t n, weft_out *out) {
  if (n != sizeof(int64_t)) return weft_out_fail(out, WEFT_EINVAL, "size %zu", n);
  int64_t v;
  memcpy(&v, in, sizeof v);
  v *= v;
  return weft_out_set(out, &v, sizeof v);
}
WEFT_REGISTER(square);

static int echo(const void *in, size_t n, weft_out *out) { return weft_out_set(out, in, n); }
WEFT_REGISTER(echo);

static int fails(const void *in, size_t n, weft_out *out) {
  (void)n;
  int v;
  memcpy(&v, in, sizeof v);
  return weft_out_fail(out, WEFT_EINVAL, "bad %d", v);
}
WEFT_REGISTER(fails);

static int my_pid(const void *in, size_t n, weft_out *out) {
  (void)in;
  (void)n;
  int64_t pid = getpid();
  return weft_out_set(out, &pid, sizeof pid);
}
WEFT_REGISTER(my_pid);

static int blocker(const void *in, size_t n, weft_out *out) {
  (void)in;
  (void)n;
  /* In a worker nothing sets the flag: this blocks until killed. */
  while (!weft_out_cancelled(out)) pause();
  return WEFT_ECANCELED;
}
WEFT_REGISTER(blocker);

/* Creates the file named by its input, then blocks until killed: lets a
 * test know that a map is really running in a worker. */
static int mark_and_block(const void *in, size_t n, weft_out *out) {
  char path[256];
  if (n == 0 || n >= sizeof path) return WEFT_EINVAL;
  memcpy(path, in, n);
  path[n] = '\0';
  int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  if (fd >= 0) close(fd);
  while (!weft_out_cancelled(out)) pause();
  return WEFT_ECANCELED;
}
WEFT_REGISTER(mark_and_block);

enum { OK_, SEGV, ABRT, EXIT3, KILL9 };
struct crash_in {
  int64_t value;
  int64_t mode; /* no padding: every byte travels */
};
static int crashy(const void *in, size_t n, weft_out *out) {
  (void)n;
  struct crash_in c;
  memcpy(&c, in, sizeof c);
  switch ((int)c.mode) {
  case SEGV: raise(SIGSEGV); break;
  case ABRT: abort();
  case EXIT3: _exit(3);
  case KILL9: kill(getpid(), SIGKILL); break;
  default: break;
  }
  int64_t v = 2 * c.value;
  return weft_out_set(out, &v, sizeof v);
}
WEFT_REGISTER(crashy);

/* A result of the size asked for. */
static int grow(const void *in, size_t n, weft_out *out) {
  (void)n;
  uint64_t size;
  memcpy(&size, in, sizeof size);
  unsigned char *p = weft_out_alloc(out, (size_t)size);
  if (!p && size) return WEFT_ENOMEM;
  if (size) memset(p, 0xab, (size_t)size);
  return 0;
}
WEFT_REGISTER(grow);

/* Worker state set by the initializer, read by tasks. */
static int64_t g_init_value = -1;
static int64_t g_init_runs;
static int init_worker(const void *in, size_t n, weft_out *out) {
  if (n != sizeof g_init_value) return weft_out_fail(out, WEFT_EINVAL, "init arg of %zu bytes", n);
  memcpy(&g_init_value, in, sizeof g_init_value);
  g_init_runs++;
  return 0;
}
WEFT_REGISTER(init_worker);

static int init_fails(const void *in, size_t n, weft_out *out) {
  (void)in;
  (void)n;
  return weft_out_fail(out, WEFT_EINVAL, "no database");
}
WEFT_REGISTER(init_fails);

struct init_seen {
  int64_t value, runs, pid;
};
static int read_init(const void *in, size_t n, weft_out *out) {
  (void)in;
  (void)n;
  struct init_seen r = {g_init_value, g_init_runs, getpid()};
  return weft_out_set(out, &r, sizeof r);
}
WEFT_REGISTER(read_init);

/* How many shared regions of each kind this worker has mapped. */
static int count_maps(const void *in, size_t n, weft_out *out) {
  (void)in;
  (void)n;
  FILE *fp = fopen("/proc/self/maps", "r");
  if (!fp) return weft_out_fail(out, WEFT_ENOENT, "no maps");
  char line[512];
  int64_t counts[2] = {0, 0};
  while (fgets(line, sizeof line, fp)) {
    counts[0] += strstr(line, "memfd:weft-in") != NULL;
    counts[1] += strstr(line, "memfd:weft-out") != NULL;
  }
  fclose(fp);
  return weft_out_set(out, counts, sizeof counts);
}
WEFT_REGISTER(count_maps);

/* The fds open in this worker (and in its fork server, via /proc). */
static int fd_counts(const void *in, size_t n, weft_out *out) {
  (void)in;
  (void)n;
  int64_t r[2] = {wt_count_fds(), -1};
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd", (int)getppid());
  DIR *d = opendir(path);
  if (d) {
    struct dirent *e;
    r[1] = 0;
    while ((e = readdir(d)) != NULL) r[1] += e->d_name[0] != '.';
    closedir(d);
  }
  return weft_out_set(out, r, sizeof r);
}
WEFT_REGISTER(fd_counts);

static int my_ppid(const void *in, size_t n, weft_out *out) {
  (void)in;
  (void)n;
  int64_t pid = getppid();
  return weft_out_set(out, &pid, sizeof pid);
}
WEFT_REGISTER(my_ppid);

static int not_registered(const void *in, size_t n, weft_out *out) {
  (void)in;
  (void)n;
  (void)out;
  return 0;
}

/* ---- helpers ---- */

static weft_executor *make(const char *kind, int workers, size_t chunksize) {
  weft_executor_opts o = {0};
  o.workers = workers;
  o.chunksize = chunksize;
  weft_executor *ex = NULL;
  ASSERT_OK(weft_executor_create(&ex, kind, &o));
  return ex;
}

static int64_t run_square(weft_executor *ex, int64_t v) {
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, square, &v, sizeof v, &f));
  ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
  ASSERT_OK(weft_future_error(f));
  const void *data;
  size_t size;
  ASSERT_OK(weft_future_result(f, &data, &size));
  ASSERT_EQ(size, sizeof(int64_t));
  int64_t r;
  memcpy(&r, data, sizeof r);
  weft_future_release(f);
  return r;
}

/* Waits (bounded) until f runs in a worker. */
static void wait_running(weft_future *f) {
  int64_t end = weft_deadline_in(30000);
  while (weft_future_state(f) != WEFT_RUNNING) {
    if (weft_now() > end) WT_FAIL("future never started running");
    sched_yield();
  }
}

/* Is pid still a process (zombies included)? */
static int exists(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

/* The crash messages name the worker and the cause. Under ASan a raised
 * SIGSEGV is caught by the sanitizer, which exits with status 1. (Under
 * valgrind a worker's _exit(3) may become status 1 when its leak check
 * finds errors: the tests that check causes are labelled novalgrind.) */
static void check_cause(const char *msg, int mode) {
  ASSERT_TRUE(msg != NULL);
  int pid = 0;
  char rest[128] = "";
  ASSERT_EQ(sscanf(msg, "worker %d %127[^\n]", &pid, rest), 2);
  ASSERT_GT(pid, 0);
  switch (mode) {
  case SEGV:
    if (strcmp(rest, "killed by signal 11 (Segmentation fault)") != 0 &&
        strcmp(rest, "exited with status 1") != 0)
      WT_FAIL("segv cause: \"%s\"", msg);
    break;
  case ABRT: ASSERT_STREQ(rest, "killed by signal 6 (Aborted)"); break;
  case EXIT3: ASSERT_STREQ(rest, "exited with status 3"); break;
  case KILL9: ASSERT_STREQ(rest, "killed by signal 9 (Killed)"); break;
  default: WT_FAIL("mode %d", mode);
  }
}

/* ---- registry ---- */

TEST(registry_errors) {
  ASSERT_RC(weft_register(NULL, echo), WEFT_EINVAL);
  ASSERT_RC(weft_register("x", NULL), WEFT_EINVAL);
  ASSERT_RC(weft_register("", echo), WEFT_EINVAL);
  char name[WEFT_REGISTRY_NAME_MAX + 2];
  memset(name, 'a', sizeof name - 1);
  name[sizeof name - 1] = '\0'; /* 64 bytes */
  ASSERT_RC(weft_register(name, echo), WEFT_EINVAL);
  name[WEFT_REGISTRY_NAME_MAX] = '\0'; /* 63 bytes */
  ASSERT_OK(weft_register(name, echo));
  ASSERT_TRUE(weft_registry_find(name) == echo);
  /* the macro registered these at load */
  ASSERT_TRUE(weft_registry_find("square") == square);
  ASSERT_STREQ(weft_registry_name(square), "square");
  ASSERT_STREQ(weft_registry_name(echo), "echo"); /* the first name */
  ASSERT_OK(weft_register("square", square)); /* the same pair again */
  ASSERT_RC(weft_register("square", echo), WEFT_EBUSY);
  ASSERT_TRUE(weft_registry_find("square") == square);
  ASSERT_TRUE(weft_registry_find("nope") == NULL);
  ASSERT_TRUE(weft_registry_find(NULL) == NULL);
  ASSERT_TRUE(weft_registry_name(not_registered) == NULL);
  ASSERT_TRUE(weft_registry_name(NULL) == NULL);
}

TEST(registry_full) {
  char name[32];
  int rc = 0, i;
  for (i = 0; i < 2000 && rc == 0; i++) {
    snprintf(name, sizeof name, "fill_%d", i);
    rc = weft_register(name, echo);
  }
  ASSERT_RC(rc, WEFT_ENOMEM);
  ASSERT_LT(i, 1025);
  ASSERT_TRUE(weft_registry_find("square") == square);
}

/* ---- results and errors ---- */

static void results_for(const char *kind) {
  weft_executor *ex = make(kind, 2, 7);
  ASSERT_STREQ(weft_executor_name(ex), kind);
  ASSERT_EQ(run_square(ex, 12), 144);
  enum { N = 100 };
  int64_t in[N], out[N];
  int errs[N];
  for (int i = 0; i < N; i++) in[i] = i - 50;
  ASSERT_OK(weft_executor_map(ex, square, in, sizeof in[0], N, out, sizeof out[0], errs,
                              LONG_DEADLINE));
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(errs[i], 0);
    ASSERT_EQ(out[i], in[i] * in[i]);
  }
  /* a task's own error comes back with its code and message */
  int v = 7;
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, fails, &v, sizeof v, &f));
  ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
  ASSERT_RC(weft_future_error(f), WEFT_EINVAL);
  ASSERT_STREQ(weft_future_errmsg(f), "bad 7");
  weft_future_release(f);
  /* fire and forget */
  int64_t x = 3;
  ASSERT_OK(weft_executor_submit(ex, square, &x, sizeof x, NULL));
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, LONG_DEADLINE));
  weft_executor_stats st;
  ASSERT_OK(weft_executor_stats_get(ex, &st));
  ASSERT_EQ(st.submitted, st.completed);
  weft_executor_destroy(ex);
}

TEST(pool_results) { results_for("process_pool"); }
TEST(process_results) { results_for("process"); }

TEST(pool_default_size) {
  weft_executor *ex = make("process_pool", 0, 0);
  ASSERT_EQ(run_square(ex, 5), 25);
  weft_executor_stats st;
  ASSERT_OK(weft_executor_stats_get(ex, &st));
  ASSERT_STREQ(st.name, "process_pool");
  ASSERT_LE(st.size, weft_cpu_count());
  weft_executor_destroy(ex);
}

TEST(process_new_process_per_task) {
  weft_executor *ex = make("process", 0, 0);
  int64_t pids[5];
  for (int i = 0; i < 5; i++) {
    weft_future *f;
    ASSERT_OK(weft_executor_submit(ex, my_pid, NULL, 0, &f));
    ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
    const void *d;
    size_t n;
    ASSERT_OK(weft_future_result(f, &d, &n));
    memcpy(&pids[i], d, sizeof pids[i]);
    ASSERT_NE(pids[i], getpid());
    for (int j = 0; j < i; j++) ASSERT_NE(pids[i], pids[j]);
    weft_future_release(f);
  }
  weft_executor_destroy(ex);
}

TEST(pool_reuses_workers) {
  weft_executor *ex = make("process_pool", 1, 0);
  int64_t first = 0;
  for (int i = 0; i < 5; i++) {
    weft_future *f;
    ASSERT_OK(weft_executor_submit(ex, my_pid, NULL, 0, &f));
    ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
    const void *d;
    size_t n;
    ASSERT_OK(weft_future_result(f, &d, &n));
    int64_t pid;
    memcpy(&pid, d, sizeof pid);
    if (i == 0) first = pid;
    ASSERT_EQ(pid, first);
    weft_future_release(f);
  }
  weft_executor_destroy(ex);
}

TEST(unregistered_fn) {
  const char *kinds[] = {"process_pool", "process"};
  for (int k = 0; k < 2; k++) {
    weft_executor *ex = make(kinds[k], 2, 0);
    weft_future *f = (weft_future *)1;
    ASSERT_RC(weft_executor_submit(ex, not_registered, NULL, 0, &f), WEFT_ENOENT);
    ASSERT_TRUE(f == NULL);
    int64_t in[10] = {0}, out[10];
    ASSERT_RC(weft_executor_map(ex, not_registered, in, sizeof in[0], 10, out, sizeof out[0],
                                NULL, LONG_DEADLINE),
              WEFT_ENOENT);
    ASSERT_EQ(run_square(ex, 9), 81); /* nothing broke */
    weft_executor_destroy(ex);
  }
}

/* ---- crash isolation ---- */

static int mode_of(int i) { return i % 20 == 7 ? 1 + (i / 20) % 4 : OK_; }

TEST(crash_injection_submit) /* labels: novalgrind */ {
  weft_executor *ex = make("process_pool", 0, 0);
  enum { N = 1000 };
  static weft_future *f[N];
  static struct crash_in c[N]; /* inputs live until their tasks are done */
  int crashes = 0;
  for (int i = 0; i < N; i++) {
    c[i] = (struct crash_in){.value = i, .mode = mode_of(i)};
    crashes += c[i].mode != OK_;
    ASSERT_OK(weft_executor_submit(ex, crashy, &c[i], sizeof c[i], &f[i]));
  }
  ASSERT_EQ(crashes, 50);
  ASSERT_OK(weft_future_wait_all(f, N, LONG_DEADLINE));
  int good = 0, bad = 0;
  for (int i = 0; i < N; i++) {
    if (mode_of(i) == OK_) {
      ASSERT_OK(weft_future_error(f[i]));
      const void *d;
      size_t n;
      ASSERT_OK(weft_future_result(f[i], &d, &n));
      int64_t v;
      ASSERT_EQ(n, sizeof v);
      memcpy(&v, d, sizeof v);
      ASSERT_EQ(v, 2 * i);
      good++;
    } else {
      ASSERT_RC(weft_future_error(f[i]), WEFT_ECRASHED);
      check_cause(weft_future_errmsg(f[i]), mode_of(i));
      bad++;
    }
    weft_future_release(f[i]);
  }
  ASSERT_EQ(good, 950);
  ASSERT_EQ(bad, 50);
  ASSERT_EQ(run_square(ex, 11), 121); /* the pool still works */
  weft_executor_destroy(ex);
}

/* Crashes in the middle of map chunks: only the crashing item fails, the
 * rest of its chunk runs on the replacement worker. */
TEST(crash_injection_imap) /* labels: novalgrind */ {
  weft_executor *ex = make("process_pool", 2, 16);
  enum { N = 1000 };
  static struct crash_in in[N];
  for (int i = 0; i < N; i++) in[i] = (struct crash_in){.value = i, .mode = mode_of(i)};
  weft_imap *it;
  ASSERT_OK(weft_executor_imap(ex, crashy, in, sizeof in[0], N, &it));
  int good = 0, bad = 0;
  for (int i = 0; i < N; i++) {
    weft_item item;
    ASSERT_OK(weft_imap_next(it, LONG_DEADLINE, &item));
    ASSERT_EQ(item.index, i);
    if (mode_of(i) == OK_) {
      if (item.error) fprintf(stderr, "item %d failed: %s\n", i, item.errmsg ? item.errmsg : "no message");
      ASSERT_RC(item.error, 0);
      int64_t v;
      ASSERT_EQ(item.size, sizeof v);
      memcpy(&v, item.data, sizeof v);
      ASSERT_EQ(v, 2 * i);
      good++;
    } else {
      ASSERT_RC(item.error, WEFT_ECRASHED);
      check_cause(item.errmsg, mode_of(i));
      bad++;
    }
  }
  weft_item item;
  ASSERT_RC(weft_imap_next(it, LONG_DEADLINE, &item), WEFT_ECLOSED);
  weft_imap_destroy(it);
  ASSERT_EQ(good, 950);
  ASSERT_EQ(bad, 50);
  ASSERT_EQ(run_square(ex, 4), 16);
  weft_executor_destroy(ex);
}

TEST(process_crash) /* labels: novalgrind */ {
  weft_executor *ex = make("process", 0, 0);
  struct crash_in c = {.value = 1, .mode = EXIT3};
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, crashy, &c, sizeof c, &f));
  ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
  ASSERT_RC(weft_future_error(f), WEFT_ECRASHED);
  check_cause(weft_future_errmsg(f), EXIT3);
  weft_future_release(f);
  ASSERT_EQ(run_square(ex, 6), 36);
  weft_executor_destroy(ex);
}

/* ---- cancellation of running work ---- */

static void cancel_running(const char *kind) {
  weft_executor *ex = make(kind, 1, 0);
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, blocker, NULL, 0, &f));
  wait_running(f);
  ASSERT_RC(weft_future_cancel(f), WEFT_EBUSY); /* running: asked, not done */
  ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
  ASSERT_RC(weft_future_error(f), WEFT_ECANCELED);
  ASSERT_EQ(weft_future_state(f), WEFT_CANCELLED);
  const char *msg = weft_future_errmsg(f);
  ASSERT_TRUE(msg && strstr(msg, "cancelled while running") != NULL);
  weft_future_release(f);
  ASSERT_EQ(run_square(ex, 8), 64); /* replaced */
  weft_executor_destroy(ex);
}

TEST(pool_cancel_running) { cancel_running("process_pool"); }
TEST(process_cancel_running) { cancel_running("process"); }

TEST(shutdown_cancel_kills_running_and_queued) {
  weft_executor *ex = make("process_pool", 1, 0);
  weft_future *run, *q[5];
  ASSERT_OK(weft_executor_submit(ex, blocker, NULL, 0, &run));
  wait_running(run);
  static int64_t v[5];
  for (int i = 0; i < 5; i++) {
    v[i] = i;
    ASSERT_OK(weft_executor_submit(ex, square, &v[i], sizeof v[i], &q[i]));
  }
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_CANCEL, LONG_DEADLINE));
  ASSERT_RC(weft_future_error(run), WEFT_ECANCELED);
  for (int i = 0; i < 5; i++) {
    ASSERT_RC(weft_future_error(q[i]), WEFT_ECANCELED);
    weft_future_release(q[i]);
  }
  weft_future_release(run);
  ASSERT_RC(weft_executor_submit(ex, square, &v[0], sizeof v[0], NULL), WEFT_ESHUTDOWN);
  weft_executor_destroy(ex);
}

TEST(shutdown_finish_runs_queued) {
  weft_executor *ex = make("process_pool", 1, 0);
  enum { N = 20 };
  weft_future *f[N];
  static int64_t v[N];
  for (int i = 0; i < N; i++) {
    v[i] = i;
    ASSERT_OK(weft_executor_submit(ex, square, &v[i], sizeof v[i], &f[i]));
  }
  ASSERT_OK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_FINISH, LONG_DEADLINE));
  for (int i = 0; i < N; i++) {
    ASSERT_OK(weft_future_error(f[i]));
    const void *d;
    size_t n;
    ASSERT_OK(weft_future_result(f[i], &d, &n));
    int64_t r;
    memcpy(&r, d, sizeof r);
    ASSERT_EQ(r, (int64_t)i * i);
    weft_future_release(f[i]);
  }
  weft_executor_destroy(ex);
}

TEST(destroy_with_running_work) {
  weft_executor *ex = make("process_pool", 2, 0);
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, blocker, NULL, 0, &f));
  wait_running(f);
  weft_executor_destroy(ex); /* kills the worker, cancels the task */
  ASSERT_RC(weft_future_error(f), WEFT_ECANCELED);
  weft_future_release(f);
}

/* ---- payloads ---- */

static void round_trip(weft_executor *ex, size_t size) {
  unsigned char *in = malloc(size ? size : 1);
  ASSERT_TRUE(in != NULL);
  for (size_t i = 0; i < size; i++) in[i] = (unsigned char)(i * 131 + (i >> 11) + 7);
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, echo, size ? in : NULL, size, &f));
  ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
  ASSERT_OK(weft_future_error(f));
  const void *d;
  size_t n;
  ASSERT_OK(weft_future_result(f, &d, &n));
  ASSERT_UEQ(n, size);
  if (size && memcmp(d, in, size) != 0) WT_FAIL("payload of %zu bytes differs", size);
  weft_future_release(f);
  free(in);
}

TEST(pool_payloads) {
  weft_executor *ex = make("process_pool", 2, 0);
  size_t sizes[] = {0, 1, 65535, 65536, 65537, 16u << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) round_trip(ex, sizes[i]);
  weft_executor_destroy(ex);
}

/* Large payloads go through one input and one output region per worker,
 * reused from task to task (grown when a payload needs more). */
TEST(shm_regions_reused) {
  weft_executor *ex = make("process_pool", 1, 0);
  for (int i = 0; i < 20; i++) round_trip(ex, (size_t)(64 << 10) + (size_t)i * 4096);
  round_trip(ex, 3u << 20); /* grows both regions once */
  round_trip(ex, 100);      /* small ones still use the socket */
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, count_maps, NULL, 0, &f));
  ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
  ASSERT_OK(weft_future_error(f));
  const void *d;
  size_t n;
  ASSERT_OK(weft_future_result(f, &d, &n));
  int64_t counts[2];
  ASSERT_EQ(n, sizeof counts);
  memcpy(counts, d, sizeof counts);
  ASSERT_EQ(counts[0], 1);
  ASSERT_EQ(counts[1], 1);
  weft_future_release(f);
  weft_executor_destroy(ex);
}

/* A map whose chunks are large goes through the regions too. */
TEST(shm_map_chunks) {
  weft_executor *ex = make("process_pool", 2, 64);
  enum { N = 1024 };
  static int64_t in[N][128], out[N][128]; /* 1 KiB items: 64 KiB chunks */
  static int errs[N];
  for (int i = 0; i < N; i++)
    for (int j = 0; j < 128; j++) in[i][j] = (int64_t)i * 1000 + j;
  ASSERT_OK(weft_executor_map(ex, echo, in, sizeof in[0], N, out, sizeof out[0], errs,
                              LONG_DEADLINE));
  ASSERT_TRUE(memcmp(in, out, sizeof in) == 0);
  weft_executor_destroy(ex);
}

TEST(process_payloads) {
  weft_executor *ex = make("process", 0, 0);
  size_t sizes[] = {0, 1, 65536, 16u << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) round_trip(ex, sizes[i]);
  weft_executor_destroy(ex);
}

/* ---- no leaks: fds, zombies ---- */

TEST(no_fd_leak) {
  ASSERT_OK(weft_process_init());
  ASSERT_OK(weft_process_init()); /* idempotent */
  int before = wt_count_fds();
  const char *kinds[] = {"process_pool", "process"};
  for (int k = 0; k < 2; k++) {
    weft_executor *ex = make(kinds[k], 2, 3);
    int64_t in[50], out[50];
    for (int i = 0; i < 50; i++) in[i] = i;
    ASSERT_OK(weft_executor_map(ex, square, in, sizeof in[0], 50, out, sizeof out[0], NULL,
                                LONG_DEADLINE));
    struct crash_in c = {.value = 1, .mode = KILL9};
    weft_future *f;
    ASSERT_OK(weft_executor_submit(ex, crashy, &c, sizeof c, &f));
    ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
    ASSERT_RC(weft_future_error(f), WEFT_ECRASHED);
    weft_future_release(f);
    round_trip(ex, 1u << 20); /* shared memory regions too */
    weft_executor_destroy(ex);
  }
  ASSERT_EQ(wt_count_fds(), before);
}

TEST(no_zombies_after_destroy) {
  weft_executor *ex = make("process_pool", 3, 0);
  enum { N = 12 };
  int64_t pids[N];
  for (int i = 0; i < N; i++) {
    weft_future *f;
    ASSERT_OK(weft_executor_submit(ex, my_pid, NULL, 0, &f));
    ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
    const void *d;
    size_t n;
    ASSERT_OK(weft_future_result(f, &d, &n));
    memcpy(&pids[i], d, sizeof pids[i]);
    ASSERT_TRUE(exists((pid_t)pids[i]));
    weft_future_release(f);
  }
  weft_executor_destroy(ex);
  /* destroy returns after the fork server has reaped every worker */
  for (int i = 0; i < N; i++)
    if (exists((pid_t)pids[i])) WT_FAIL("worker %lld still exists", (long long)pids[i]);
  /* and none of our own children is a zombie */
  DIR *d = opendir("/proc");
  ASSERT_TRUE(d != NULL);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char path[300], buf[512];
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    FILE *fp = fopen(path, "r");
    if (!fp) continue;
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    char state;
    int ppid;
    if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == getpid())
      if (state == 'Z') WT_FAIL("zombie child %s", e->d_name);
  }
  closedir(d);
}

/* ---- per-task timeout, initializer, recycling, payload limit ---- */

static void configure(weft_executor *ex, weft__process_opts o) {
  ASSERT_OK(weft__process_configure(ex, &o));
}

TEST(configure_errors) {
  weft_executor *ex = make("process_pool", 1, 0), *th = make("thread_pool", 1, 0);
  weft__process_opts o = {0};
  ASSERT_RC(weft__process_configure(th, &o), WEFT_EINVAL);
  ASSERT_RC(weft__process_configure(NULL, &o), WEFT_EINVAL);
  o.task_timeout_ms = -1;
  ASSERT_RC(weft__process_configure(ex, &o), WEFT_EINVAL);
  o = (weft__process_opts){.initializer = not_registered};
  ASSERT_RC(weft__process_configure(ex, &o), WEFT_ENOENT);
  int64_t big[4] = {0};
  o = (weft__process_opts){.initializer = init_worker, .init_arg = big, .init_arg_size = 32,
                           .max_payload = 16};
  ASSERT_RC(weft__process_configure(ex, &o), WEFT_ETOOBIG);
  o = (weft__process_opts){.task_timeout_ms = 5};
  ASSERT_OK(weft__process_configure(ex, &o));
  ASSERT_RC(weft__process_configure(ex, &o), WEFT_EBUSY);
  weft_executor_destroy(th);
  weft_executor_destroy(ex);
}

static void timeout_kills(const char *kind) {
  weft_executor *ex = make(kind, 1, 4);
  configure(ex, (weft__process_opts){.task_timeout_ms = 200});
  int64_t t0 = weft_now();
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, blocker, NULL, 0, &f));
  ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
  ASSERT_GE(weft_now() - t0, 200);
  ASSERT_RC(weft_future_error(f), WEFT_ETIMEDOUT);
  const char *msg = weft_future_errmsg(f);
  ASSERT_TRUE(msg && strstr(msg, "timed out after 200 ms: worker ") == msg);
  weft_future_release(f);
  ASSERT_EQ(run_square(ex, 3), 9); /* replaced */
  /* in a map chunk: the blocking item alone times out, the rest runs */
  struct crash_in in[8];
  int errs[8];
  int64_t out[8];
  for (int i = 0; i < 8; i++) in[i] = (struct crash_in){.value = i, .mode = OK_};
  ASSERT_OK(weft_executor_map(ex, crashy, in, sizeof in[0], 8, out, sizeof out[0], errs,
                              LONG_DEADLINE));
  for (int i = 0; i < 8; i++) ASSERT_EQ(out[i], 2 * i);
  weft_executor_destroy(ex);
}

TEST(pool_timeout_kills_and_replaces) /* labels: novalgrind */ { timeout_kills("process_pool"); }
TEST(process_timeout_kills) /* labels: novalgrind */ { timeout_kills("process"); }

/* Mixed in one chunk: block forever at item 2 of a chunk of 4. */
static int block_at(const void *in, size_t n, weft_out *out) {
  int64_t v;
  memcpy(&v, in, sizeof v);
  if (v == 2) return blocker(in, n, out);
  return square(in, n, out);
}
WEFT_REGISTER(block_at);

TEST(timeout_in_chunk_fails_one_item) /* labels: novalgrind */ {
  weft_executor *ex = make("process_pool", 1, 4);
  configure(ex, (weft__process_opts){.task_timeout_ms = 150});
  int64_t in[8], out[8];
  int errs[8];
  for (int i = 0; i < 8; i++) in[i] = i;
  ASSERT_RC(weft_executor_map(ex, block_at, in, sizeof in[0], 8, out, sizeof out[0], errs,
                              LONG_DEADLINE),
            WEFT_ETIMEDOUT);
  for (int i = 0; i < 8; i++) {
    if (i == 2) {
      ASSERT_RC(errs[i], WEFT_ETIMEDOUT);
    } else {
      ASSERT_RC(errs[i], 0);
      ASSERT_EQ(out[i], (int64_t)i * i);
    }
  }
  weft_executor_destroy(ex);
}

/* Timed out, cancelled, crashed and failed are four distinct outcomes. */
TEST(four_outcomes) /* labels: novalgrind */ {
  weft_executor *ex = make("process_pool", 2, 0);
  configure(ex, (weft__process_opts){.task_timeout_ms = 1000});
  weft_future *timed, *cancelled, *crashed, *failed;
  ASSERT_OK(weft_executor_submit(ex, blocker, NULL, 0, &timed));
  ASSERT_OK(weft_executor_submit(ex, blocker, NULL, 0, &cancelled));
  wait_running(cancelled);
  ASSERT_RC(weft_future_cancel(cancelled), WEFT_EBUSY);
  static struct crash_in c = {.value = 0, .mode = EXIT3};
  static int bad = 5;
  ASSERT_OK(weft_executor_submit(ex, crashy, &c, sizeof c, &crashed));
  ASSERT_OK(weft_executor_submit(ex, fails, &bad, sizeof bad, &failed));
  weft_future *all[4] = {timed, cancelled, crashed, failed};
  ASSERT_OK(weft_future_wait_all(all, 4, LONG_DEADLINE));
  ASSERT_RC(weft_future_error(timed), WEFT_ETIMEDOUT);
  ASSERT_RC(weft_future_error(cancelled), WEFT_ECANCELED);
  ASSERT_RC(weft_future_error(crashed), WEFT_ECRASHED);
  ASSERT_RC(weft_future_error(failed), WEFT_EINVAL);
  ASSERT_EQ(weft_future_state(timed), WEFT_FAILED);
  ASSERT_EQ(weft_future_state(cancelled), WEFT_CANCELLED);
  for (int i = 0; i < 4; i++) weft_future_release(all[i]);
  weft_executor_destroy(ex);
}

static struct init_seen run_read_init(weft_executor *ex) {
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, read_init, NULL, 0, &f));
  ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
  ASSERT_OK(weft_future_error(f));
  const void *d;
  size_t n;
  ASSERT_OK(weft_future_result(f, &d, &n));
  struct init_seen r;
  ASSERT_EQ(n, sizeof r);
  memcpy(&r, d, sizeof r);
  weft_future_release(f);
  return r;
}

TEST(initializer_once_per_worker) {
  weft_executor *ex = make("process_pool", 1, 0);
  int64_t arg = 42;
  configure(ex, (weft__process_opts){.initializer = init_worker, .init_arg = &arg,
                                     .init_arg_size = sizeof arg});
  arg = 0; /* copied */
  for (int i = 0; i < 4; i++) {
    struct init_seen r = run_read_init(ex);
    ASSERT_EQ(r.value, 42);
    ASSERT_EQ(r.runs, 1);
  }
  ASSERT_EQ(g_init_runs, 0); /* never in the parent */
  weft_executor_destroy(ex);
}

TEST(initializer_failure_fails_tasks) {
  weft_executor *ex = make("process_pool", 1, 0);
  configure(ex, (weft__process_opts){.initializer = init_fails});
  int64_t v = 2;
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, square, &v, sizeof v, &f));
  ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
  ASSERT_RC(weft_future_error(f), WEFT_EINVAL);
  ASSERT_STREQ(weft_future_errmsg(f), "worker initializer \"init_fails\" failed: no database");
  weft_future_release(f);
  weft_executor_destroy(ex);
}

TEST(recycle_after_max_tasks) {
  weft_executor *ex = make("process_pool", 1, 0);
  int64_t arg = 7;
  configure(ex, (weft__process_opts){.max_tasks_per_worker = 2, .initializer = init_worker,
                                     .init_arg = &arg, .init_arg_size = sizeof arg});
  struct init_seen r[6];
  for (int i = 0; i < 6; i++) {
    r[i] = run_read_init(ex);
    ASSERT_EQ(r[i].value, 7);
    ASSERT_EQ(r[i].runs, 1); /* each new worker ran the initializer once */
  }
  for (int i = 0; i < 6; i += 2) {
    ASSERT_EQ(r[i].pid, r[i + 1].pid);
    if (i) ASSERT_NE(r[i].pid, r[i - 1].pid);
  }
  weft_executor_destroy(ex);
}

TEST(max_payload) {
  weft_executor *ex = make("process_pool", 1, 0);
  configure(ex, (weft__process_opts){.max_payload = 1024});
  static unsigned char buf[2048];
  weft_future *f = (weft_future *)1;
  ASSERT_RC(weft_executor_submit(ex, echo, buf, 1025, &f), WEFT_ETOOBIG);
  ASSERT_TRUE(f == NULL);
  round_trip(ex, 1024);
  static uint64_t sizes[2] = {1024, 1025};
  for (int i = 0; i < 2; i++) {
    ASSERT_OK(weft_executor_submit(ex, grow, &sizes[i], sizeof sizes[i], &f));
    ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
    ASSERT_RC(weft_future_error(f), i ? WEFT_ETOOBIG : 0);
    weft_future_release(f);
  }
  ASSERT_EQ(run_square(ex, 2), 4);
  weft_executor_destroy(ex);
}

/* ---- the fork server and the program dying ---- */

static int64_t run_pid_fn(weft_executor *ex, weft_fn fn) {
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, fn, NULL, 0, &f));
  ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
  ASSERT_OK(weft_future_error(f));
  const void *d;
  size_t n;
  ASSERT_OK(weft_future_result(f, &d, &n));
  int64_t pid;
  memcpy(&pid, d, sizeof pid);
  weft_future_release(f);
  return pid;
}

/* Dead, or a zombie nobody has reaped yet (its parent died too). */
static int gone(pid_t pid) {
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *fp = fopen(path, "r");
  if (!fp) return 1;
  size_t n = fread(buf, 1, sizeof buf - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  char *rp = strrchr(buf, ')');
  return rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

static void wait_gone(pid_t pid) {
  int64_t end = weft_deadline_in(30000);
  while (!gone(pid)) {
    if (weft_now() > end) WT_FAIL("process %d still alive", (int)pid);
    sched_yield();
  }
}

/* Killing the fork server fails what runs, and a new executor starts a
 * new server. */
TEST(fork_server_killed) {
  weft_executor *ex = make("process_pool", 1, 0);
  pid_t server = (pid_t)run_pid_fn(ex, my_ppid);
  pid_t worker = (pid_t)run_pid_fn(ex, my_pid);
  ASSERT_NE(server, getpid());
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, blocker, NULL, 0, &f));
  wait_running(f);
  ASSERT_OK(kill(server, SIGKILL));
  ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
  ASSERT_RC(weft_future_error(f), WEFT_ECRASHED);
  ASSERT_STREQ(weft_future_errmsg(f), "the process fork server died");
  weft_future_release(f);
  wait_gone(worker); /* died with its server */
  int64_t v = 1;
  ASSERT_RC(weft_executor_submit(ex, square, &v, sizeof v, NULL), WEFT_EAGAIN);
  weft_executor_destroy(ex);
  ex = make("process_pool", 1, 0);
  ASSERT_NE(run_pid_fn(ex, my_ppid), server);
  ASSERT_EQ(run_square(ex, 5), 25);
  weft_executor_destroy(ex);
}

/* When the program dies, its fork server and workers die too. */
TEST(program_death_takes_workers) {
  int fds[2];
  ASSERT_OK(pipe(fds));
  pid_t child = fork();
  ASSERT_TRUE(child >= 0);
  if (child == 0) {
    close(fds[0]);
    weft_executor *ex = make("process_pool", 2, 0);
    int64_t pids[2] = {run_pid_fn(ex, my_ppid), run_pid_fn(ex, my_pid)};
    if (write(fds[1], pids, sizeof pids) != (ssize_t)sizeof pids) _exit(1);
    for (;;) pause();
  }
  close(fds[1]);
  int64_t pids[2];
  ASSERT_EQ(read(fds[0], pids, sizeof pids), sizeof pids);
  close(fds[0]);
  ASSERT_OK(kill(child, SIGKILL));
  ASSERT_EQ(waitpid(child, NULL, 0), child);
  wait_gone((pid_t)pids[0]);
  wait_gone((pid_t)pids[1]);
}

/* Workers hold 0-2 and their socket only (valgrind adds fds of its own:
 * novalgrind); the fork server's fds come back
 * to where they were once an executor is gone. */
TEST(worker_and_server_fds) /* labels: novalgrind */ {
  weft_executor *ex = make("process_pool", 1, 0);
  round_trip(ex, 1u << 20); /* regions mapped; their fds are closed */
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, fd_counts, NULL, 0, &f));
  ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
  const void *d;
  size_t n;
  ASSERT_OK(weft_future_result(f, &d, &n));
  int64_t first[2];
  memcpy(first, d, sizeof first);
  weft_future_release(f);
  ASSERT_EQ(first[0], 4);
  ASSERT_GT(first[1], 0);
  for (int k = 0; k < 3; k++) {
    weft_executor *other = make(k == 1 ? "process" : "process_pool", 2, 0);
    round_trip(other, 1u << 20);
    ASSERT_EQ(run_square(other, 3), 9);
    weft_executor_destroy(other);
  }
  ASSERT_OK(weft_executor_submit(ex, fd_counts, NULL, 0, &f));
  ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
  ASSERT_OK(weft_future_result(f, &d, &n));
  int64_t again[2];
  memcpy(again, d, sizeof again);
  weft_future_release(f);
  ASSERT_EQ(again[0], 4);
  ASSERT_EQ(again[1], first[1]);
  weft_executor_destroy(ex);
}

/* "process": a crash in the middle of a chunk; the rest of the chunk runs
 * in a new process. */
TEST(process_crash_in_chunk) {
  weft_executor *ex = make("process", 2, 10);
  enum { N = 60 };
  static struct crash_in in[N];
  int64_t out[N];
  int errs[N];
  for (int i = 0; i < N; i++) in[i] = (struct crash_in){.value = i, .mode = i % 10 == 4 ? KILL9 : OK_};
  ASSERT_RC(weft_executor_map(ex, crashy, in, sizeof in[0], N, out, sizeof out[0], errs,
                              LONG_DEADLINE),
            WEFT_ECRASHED);
  for (int i = 0; i < N; i++) {
    if (i % 10 == 4) {
      ASSERT_RC(errs[i], WEFT_ECRASHED);
    } else {
      ASSERT_RC(errs[i], 0);
      ASSERT_EQ(out[i], 2 * i);
    }
  }
  weft_executor_destroy(ex);
}

/* The same settings through weft_executor_opts. */
TEST(public_options) /* labels: novalgrind */ {
  int64_t arg = 9;
  weft_executor_opts o = {.workers = 1, .task_timeout_ms = 200, .max_payload = 4096,
                          .initializer = init_worker, .init_arg = &arg,
                          .init_arg_size = sizeof arg, .max_tasks_per_worker = 2};
  weft_executor *ex;
  ASSERT_OK(weft_executor_create(&ex, "process_pool", &o));
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, blocker, NULL, 0, &f));
  ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
  ASSERT_RC(weft_future_error(f), WEFT_ETIMEDOUT);
  weft_future_release(f);
  static unsigned char big[4097];
  ASSERT_RC(weft_executor_submit(ex, echo, big, sizeof big, &f), WEFT_ETOOBIG);
  struct init_seen a = run_read_init(ex), b = run_read_init(ex), c = run_read_init(ex);
  ASSERT_EQ(a.value, 9);
  ASSERT_EQ(a.pid, b.pid);
  ASSERT_NE(b.pid, c.pid);
  ASSERT_RC(weft__process_configure(ex, &(weft__process_opts){.task_timeout_ms = 1}), WEFT_EBUSY);
  weft_executor_destroy(ex);
  o.initializer = not_registered;
  ASSERT_RC(weft_executor_create(&ex, "process", &o), WEFT_ENOENT);
  ASSERT_TRUE(ex == NULL);
}

/* The system refuses new processes (RLIMIT_NPROC, which the kernel does not
 * apply to root, so the child drops to an unprivileged user first): creating
 * the first process executor, which must fork the fork server, fails cleanly
 * with WEFT_EAGAIN and leaves nothing behind, and works once processes can be
 * had. (Workers are forked by the fork server, whose limits are those it had
 * when it started, so a limit set later in the program does not reach them.) */
static int child_without_processes(void) {
  if (getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) return 20;
  struct rlimit rl;
  getrlimit(RLIMIT_NPROC, &rl);
  struct rlimit low = {1, rl.rlim_max};
  /* a fresh program's first process executor must start the fork server */
  if (setrlimit(RLIMIT_NPROC, &low) != 0) return 21;
  weft_executor *ex = (weft_executor *)1;
  int rc = weft_executor_create(&ex, "process_pool", NULL);
  if (rc != WEFT_EAGAIN || ex != NULL) {
    fprintf(stderr, "create under RLIMIT_NPROC=1: %s\n", weft_err_name(rc));
    return 22;
  }
  if (setrlimit(RLIMIT_NPROC, &rl) != 0) return 23;
  weft_executor_opts o = {.workers = 1};
  ASSERT_OK(weft_executor_create(&ex, "process_pool", &o));
  long v = 7, r = 0;
  ASSERT_OK(weft_executor_map(ex, square, &v, sizeof v, 1, &r, sizeof r, NULL, weft_deadline_in(20000)));
  ASSERT_EQ(r, 49);
  weft_executor_destroy(ex);
  return 0;
}

TEST(system_refuses_processes) {
  pid_t pid = fork();
  ASSERT_TRUE(pid >= 0);
  if (pid == 0) _exit(child_without_processes());
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 0);
}

/* Ctrl-C during a map: the program dies of SIGINT, and its fork server and
 * workers go with it (nothing is left behind). */
TEST(sigint_during_map_leaves_nothing) {
  char mark[128];
  snprintf(mark, sizeof mark, "/tmp/weft-sigint-%d", (int)getpid());
  unlink(mark);
  int fds[2];
  ASSERT_OK(pipe(fds));
  pid_t child = fork();
  ASSERT_TRUE(child >= 0);
  if (child == 0) {
    signal(SIGINT, SIG_DFL); /* whatever the test runner gave us */
    close(fds[0]);
    weft_executor *ex = make("process_pool", 1, 0);
    int64_t pids[2] = {run_pid_fn(ex, my_ppid), run_pid_fn(ex, my_pid)};
    if (write(fds[1], pids, sizeof pids) != (ssize_t)sizeof pids) _exit(1);
    char item[128] = {0}; /* the path, NUL-padded */
    memcpy(item, mark, strlen(mark));
    weft_executor_map(ex, mark_and_block, item, sizeof item, 1, NULL, 0, NULL, WEFT_FOREVER);
    _exit(2); /* not reached: the map blocks until the signal */
  }
  close(fds[1]);
  int64_t pids[2];
  ASSERT_EQ(read(fds[0], pids, sizeof pids), sizeof pids);
  close(fds[0]);
  int64_t end = weft_deadline_in(30000);
  while (access(mark, F_OK) != 0) {
    if (weft_now() > end) WT_FAIL("the map never started in the worker");
    sched_yield();
  }
  ASSERT_OK(kill(child, SIGINT));
  int st;
  ASSERT_EQ(waitpid(child, &st, 0), child);
  ASSERT_TRUE(WIFSIGNALED(st));
  ASSERT_EQ(WTERMSIG(st), SIGINT);
  wait_gone((pid_t)pids[0]); /* the fork server */
  wait_gone((pid_t)pids[1]); /* the worker running the map */
  unlink(mark);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WEFT_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define WEFT_TEST_SANITIZED 1
#endif
#endif

#ifndef WEFT_TEST_SANITIZED
static long vm_size_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long kib = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmSize: %ld kB", &kib) == 1) break;
  fclose(f);
  return kib;
}

/* The program runs out of address space (RLIMIT_AS) while a 16 MiB payload
 * travels: no shared region, no buffer for the result. The task gets a
 * clear outcome (its result, or an error with a code), nothing hangs, and
 * the pool keeps working for tasks that fit. */
static int child_without_address_space(void) {
  size_t big = 16u << 20;
  unsigned char *in = malloc(big);
  if (!in) return 30;
  memset(in, 0x5a, big);
  weft_executor *ex = make("process_pool", 1, 0);
  ASSERT_EQ(run_square(ex, 4), 16); /* the worker and the monitor are up */
  long kib = vm_size_kib();
  if (kib <= 0) return 31;
  struct rlimit rl;
  getrlimit(RLIMIT_AS, &rl);
  struct rlimit low = {(rlim_t)(kib + 8 * 1024) * 1024, rl.rlim_max};
  if (setrlimit(RLIMIT_AS, &low) != 0) return 32;
  weft_future *f;
  ASSERT_OK(weft_executor_submit(ex, echo, in, big, &f));
  ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
  int rc = weft_future_error(f);
  if (rc == 0) {
    const void *d;
    size_t n;
    ASSERT_OK(weft_future_result(f, &d, &n));
    ASSERT_UEQ(n, big);
  } else {
    ASSERT_TRUE(rc == WEFT_ENOMEM || rc == WEFT_ECRASHED);
    fprintf(stderr, "16 MiB under RLIMIT_AS: %s (%s)\n", weft_err_name(rc),
            weft_future_errmsg(f) ? weft_future_errmsg(f) : "no message");
  }
  weft_future_release(f);
  ASSERT_EQ(run_square(ex, 5), 25); /* small work still flows */
  setrlimit(RLIMIT_AS, &rl);
  round_trip(ex, big); /* and large work again once memory is back */
  weft_executor_destroy(ex);
  free(in);
  return 0;
}

#endif /* !WEFT_TEST_SANITIZED */

TEST(address_space_exhausted) /* labels: novalgrind */ {
#ifdef WEFT_TEST_SANITIZED
  fprintf(stderr, "skipped: sanitizers reserve more address space than RLIMIT_AS can allow\n");
#else
  pid_t pid = fork();
  ASSERT_TRUE(pid >= 0);
  if (pid == 0) _exit(child_without_address_space());
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 0);
#endif
}

/* ---- pipelining: a map's next chunk waits in a busy worker's socket ---- */

/* A large item: its crash mode first, then bytes the result must echo. */
enum { BIG_ITEM = 96 << 10 }; /* above SHM_MIN: every item goes through a region */
static int crashy_big(const void *in, size_t n, weft_out *out) {
  struct crash_in c;
  if (n < sizeof c) return WEFT_EINVAL;
  memcpy(&c, in, sizeof c);
  if (c.mode != OK_) return crashy(in, sizeof c, out);
  return weft_out_set(out, in, n);
}
WEFT_REGISTER(crashy_big);

static void fill_big(unsigned char *p, int i) {
  struct crash_in c = {.value = i, .mode = mode_of(i)};
  for (size_t k = 0; k < BIG_ITEM; k++) p[k] = (unsigned char)(k * 7 + (size_t)i);
  memcpy(p, &c, sizeof c);
}

/* Large items, one per chunk, two workers: chunks go out while the workers
 * run, through both input and both output regions; every byte comes back
 * in place, and each worker maps at most two regions of each kind. */
TEST(pipelined_map_large_items) {
  weft_executor *ex = make("process_pool", 2, 1);
  enum { N = 40 };
  unsigned char *in = malloc((size_t)N * BIG_ITEM), *out = malloc((size_t)N * BIG_ITEM);
  ASSERT_TRUE(in && out);
  for (int i = 0; i < N; i++) fill_big(in + (size_t)i * BIG_ITEM, i % 20 == 7 ? 0 : i);
  int errs[N];
  ASSERT_OK(weft_executor_map(ex, crashy_big, in, BIG_ITEM, N, out, BIG_ITEM, errs,
                              LONG_DEADLINE));
  for (int i = 0; i < N; i++) {
    ASSERT_RC(errs[i], 0);
    if (memcmp(in + (size_t)i * BIG_ITEM, out + (size_t)i * BIG_ITEM, BIG_ITEM) != 0)
      WT_FAIL("item %d differs", i);
  }
  for (int w = 0; w < 4; w++) {
    weft_future *f;
    ASSERT_OK(weft_executor_submit(ex, count_maps, NULL, 0, &f));
    ASSERT_OK(weft_future_wait(f, LONG_DEADLINE));
    ASSERT_OK(weft_future_error(f));
    const void *d;
    size_t n;
    ASSERT_OK(weft_future_result(f, &d, &n));
    int64_t counts[2];
    memcpy(counts, d, sizeof counts);
    ASSERT_LE(counts[0], 2);
    ASSERT_LE(counts[1], 2);
    weft_future_release(f);
  }
  free(in);
  free(out);
  weft_executor_destroy(ex);
}

/* Results of changing sizes while chunks are queued behind: the output
 * regions grow under a worker that has the next chunk waiting. */
TEST(pipelined_results_grow) {
  weft_executor *ex = make("process_pool", 2, 1);
  enum { N = 24 };
  uint64_t sizes[N];
  for (int i = 0; i < N; i++)
    sizes[i] = i % 4 == 0 ? 100 : i % 4 == 1 ? (70u << 10) : i % 4 == 2 ? (1u << 20) + 1 : (3u << 20) + (uint64_t)i;
  weft_imap *it;
  ASSERT_OK(weft_executor_imap(ex, grow, sizes, sizeof sizes[0], N, &it));
  for (int i = 0; i < N; i++) {
    weft_item item;
    ASSERT_OK(weft_imap_next(it, LONG_DEADLINE, &item));
    ASSERT_EQ(item.index, i);
    ASSERT_RC(item.error, 0);
    ASSERT_UEQ(item.size, sizes[i]);
    const unsigned char *d = item.data;
    for (size_t k = 0; k < item.size; k += 4093)
      if (d[k] != 0xab) WT_FAIL("item %d byte %zu", i, k);
    if (d[item.size - 1] != 0xab) WT_FAIL("item %d last byte", i);
  }
  weft_imap_destroy(it);
  weft_executor_destroy(ex);
}

/* Crashes among large pipelined items: each crash fails its own item, the
 * chunk queued behind it runs on the replacement, nothing else is lost. */
TEST(pipelined_crashes_large_items) /* labels: novalgrind */ {
  weft_executor *ex = make("process_pool", 2, 1);
  enum { N = 100 };
  unsigned char *in = malloc((size_t)N * BIG_ITEM);
  ASSERT_TRUE(in != NULL);
  for (int i = 0; i < N; i++) fill_big(in + (size_t)i * BIG_ITEM, i);
  weft_imap *it;
  ASSERT_OK(weft_executor_imap(ex, crashy_big, in, BIG_ITEM, N, &it));
  int good = 0, bad = 0;
  for (int i = 0; i < N; i++) {
    weft_item item;
    ASSERT_OK(weft_imap_next(it, LONG_DEADLINE, &item));
    ASSERT_EQ(item.index, i);
    if (mode_of(i) == OK_) {
      ASSERT_RC(item.error, 0);
      ASSERT_UEQ(item.size, (size_t)BIG_ITEM);
      if (memcmp(item.data, in + (size_t)i * BIG_ITEM, BIG_ITEM) != 0) WT_FAIL("item %d differs", i);
      good++;
    } else {
      ASSERT_RC(item.error, WEFT_ECRASHED);
      check_cause(item.errmsg, mode_of(i));
      bad++;
    }
  }
  weft_imap_destroy(it);
  ASSERT_EQ(good, 95);
  ASSERT_EQ(bad, 5);
  ASSERT_EQ(run_square(ex, 12), 144);
  free(in);
  weft_executor_destroy(ex);
}

/* One worker, chunks of one item: item 2 blocks and times out while item 3
 * waits behind it in the worker's socket; only item 2 fails. */
TEST(pipelined_timeout_fails_one_item) /* labels: novalgrind */ {
  weft_executor *ex = make("process_pool", 1, 1);
  configure(ex, (weft__process_opts){.task_timeout_ms = 150});
  int64_t in[6], out[6];
  int errs[6];
  for (int i = 0; i < 6; i++) in[i] = i;
  ASSERT_RC(weft_executor_map(ex, block_at, in, sizeof in[0], 6, out, sizeof out[0], errs,
                              LONG_DEADLINE),
            WEFT_ETIMEDOUT);
  for (int i = 0; i < 6; i++) {
    if (i == 2) {
      ASSERT_RC(errs[i], WEFT_ETIMEDOUT);
    } else {
      ASSERT_RC(errs[i], 0);
      ASSERT_EQ(out[i], (int64_t)i * i);
    }
  }
  weft_executor_destroy(ex);
}

/* A submitted task never goes behind a busy worker: it stays queued, so it
 * can still be cancelled before it starts. */
TEST(queued_submit_not_pipelined) {
  weft_executor *ex = make("process_pool", 1, 0);
  weft_future *run, *q;
  ASSERT_OK(weft_executor_submit(ex, blocker, NULL, 0, &run));
  wait_running(run);
  static int64_t v = 5;
  ASSERT_OK(weft_executor_submit(ex, square, &v, sizeof v, &q));
  /* No signal says "the monitor chose not to send it": watch it stay
   * pending for a while (the submit woke the monitor, which would have
   * sent it within microseconds). */
  int64_t until = weft_deadline_in(50);
  while (!weft__deadline_passed(until)) {
    ASSERT_EQ(weft_future_state(q), WEFT_PENDING);
    sched_yield();
  }
  ASSERT_OK(weft_future_cancel(q));
  ASSERT_EQ(weft_future_state(q), WEFT_CANCELLED);
  ASSERT_RC(weft_future_cancel(run), WEFT_EBUSY);
  ASSERT_OK(weft_future_wait(run, LONG_DEADLINE));
  ASSERT_RC(weft_future_error(run), WEFT_ECANCELED);
  weft_future_release(run);
  weft_future_release(q);
  ASSERT_EQ(run_square(ex, 7), 49);
  weft_executor_destroy(ex);
}

/* A map that gives up (its deadline) while chunks wait behind a blocked
 * worker: the map returns, the worker is killed, the pool works on. */
TEST(pipelined_map_deadline) {
  weft_executor *ex = make("process_pool", 1, 1);
  int64_t in[4] = {2, 2, 2, 2}, out[4];
  ASSERT_RC(weft_executor_map(ex, block_at, in, sizeof in[0], 4, out, sizeof out[0], NULL,
                              weft_deadline_in(200)),
            WEFT_ETIMEDOUT);
  ASSERT_EQ(run_square(ex, 9), 81);
  weft_executor_destroy(ex);
}

/* Chunks sent behind a worker's first job (which carries the initializer)
 * see the initializer's state: it ran once per worker, before any of them. */
TEST(pipelined_map_with_initializer) {
  weft_executor *ex = make("process_pool", 2, 1);
  int64_t arg = 99;
  configure(ex, (weft__process_opts){.initializer = init_worker, .init_arg = &arg,
                                     .init_arg_size = sizeof arg});
  enum { N = 200 };
  static struct init_seen out[N];
  ASSERT_OK(weft_executor_map(ex, read_init, NULL, 0, N, out, sizeof out[0], NULL,
                              LONG_DEADLINE));
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(out[i].value, 99);
    ASSERT_EQ(out[i].runs, 1);
  }
  weft_executor_destroy(ex);
}

/* With recycling no chunk is queued behind a worker (it would be closed
 * with the chunk in its socket): a map still completes, each process runs
 * at most max_tasks_per_worker items. */
TEST(map_with_recycling) {
  weft_executor *ex = make("process_pool", 2, 1);
  configure(ex, (weft__process_opts){.max_tasks_per_worker = 3});
  enum { N = 30 };
  static struct init_seen out[N];
  ASSERT_OK(weft_executor_map(ex, read_init, NULL, 0, N, out, sizeof out[0], NULL,
                              LONG_DEADLINE));
  for (int i = 0; i < N; i++) {
    int same = 0;
    for (int k = 0; k < N; k++) same += out[k].pid == out[i].pid;
    ASSERT_LE(same, 3);
  }
  weft_executor_destroy(ex);
}

#ifndef WEFT_TEST_SANITIZED
/* A map of large items while the program has no address space left for
 * new regions: chunks that cannot get an input region wait for a free
 * worker (their items then go through the socket) instead of being queued
 * behind a busy one; every item gets its result or a clear error, nothing
 * hangs, and with memory back the pool works as before. */
static int child_map_without_address_space(void) {
  enum { N = 8, SZ = 3 << 20 }; /* 3 MiB: the regions made so far (1 MiB) are too small */
  unsigned char *in = malloc((size_t)N * SZ), *out = malloc((size_t)N * SZ);
  if (!in || !out) return 30;
  for (size_t k = 0; k < (size_t)N * SZ; k++) in[k] = (unsigned char)(k * 13 + 1);
  memset(out, 0, (size_t)N * SZ);
  weft_executor *ex = make("process_pool", 1, 1);
  round_trip(ex, 100u << 10); /* regions of 1 MiB exist */
  long kib = vm_size_kib();
  if (kib <= 0) return 31;
  struct rlimit rl;
  getrlimit(RLIMIT_AS, &rl);
  struct rlimit low = {(rlim_t)(kib + 2 * 1024) * 1024, rl.rlim_max};
  if (setrlimit(RLIMIT_AS, &low) != 0) return 32;
  /* imap: no result slab to allocate, so the map itself can start */
  weft_imap *it;
  int rc = weft_executor_imap(ex, echo, in, SZ, N, &it);
  int got = 0, failed = 0;
  if (rc == 0) {
    for (int i = 0; i < N; i++) {
      weft_item item;
      if (weft_imap_next(it, LONG_DEADLINE, &item) != 0) return 33;
      if (item.index != (size_t)i) return 38;
      if (item.error == 0) {
        if (item.size != SZ || memcmp(in + (size_t)i * SZ, item.data, SZ) != 0) return 34;
        got++;
      } else if (item.error == WEFT_ENOMEM || item.error == WEFT_ECRASHED) {
        failed++;
      } else {
        return 35;
      }
    }
    weft_imap_destroy(it);
  } else if (rc != WEFT_ENOMEM) {
    return 37;
  }
  setrlimit(RLIMIT_AS, &rl);
  fprintf(stderr, "imap of %d x 3 MiB under RLIMIT_AS: %s, %d results, %d errors\n", N,
          weft_err_name(rc), got, failed);
  ASSERT_OK(weft_executor_map(ex, echo, in, SZ, N, out, SZ, NULL, LONG_DEADLINE));
  if (memcmp(in, out, (size_t)N * SZ) != 0) return 36;
  weft_executor_destroy(ex);
  free(in);
  free(out);
  return 0;
}
#endif

TEST(map_without_address_space) /* labels: novalgrind */ {
#ifdef WEFT_TEST_SANITIZED
  fprintf(stderr, "skipped: sanitizers reserve more address space than RLIMIT_AS can allow\n");
#else
  pid_t pid = fork();
  ASSERT_TRUE(pid >= 0);
  if (pid == 0) _exit(child_map_without_address_space());
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 0);
#endif
}
