/*
 * test_study.c — the study's 18 cases (examples/study) run as the programs
 * they are, against the ten-sites server started here on 127.0.0.1 (scale
 * 0.05), each with a time limit: exit status 0 and the exact summary line.
 * Then the failures: wrong bytes or a refused connection exit 1 and say
 * what was wrong; a bad option exits 2.
 *
 * The case binaries are in <build>/study/, found from this binary's own path
 * (<build>/tests/test_study). The cases run natively and spawn processes of
 * their own, hence the labels: not under valgrind, not under TSan.
 */
#include "wt.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define CASE_LIMIT_MS 60000 /* one case at scale 0.05 takes about a second */
#define SCALE 0.05

/* ---- a ten-sites server on a loop in a thread of its own ----------------- */

typedef struct server {
  pthread_t th;
  weft_http_handler handler;
  double scale;
  weft_event *ready;
  weft_future *stop;
  int port;
  int rc;
} server;

static void *server_main(void *arg) {
  server *sv = arg;
  weft_loop *loop = NULL;
  weft_http_server *srv = NULL;
  sv->rc = weft_loop_create(&loop, NULL);
  if (sv->rc == 0) sv->rc = weft_http_server_start(&srv, loop, NULL, sv->handler, &sv->scale);
  if (sv->rc == 0) sv->port = weft_http_server_port(srv);
  weft_event_set(sv->ready);
  if (sv->rc == 0) (void)weft_loop_run_until(loop, sv->stop, WEFT_FOREVER);
  if (srv) weft_http_server_stop(srv);
  weft_loop_destroy(loop);
  return NULL;
}

static server *server_start(weft_http_handler h) {
  server *sv = calloc(1, sizeof *sv);
  ASSERT_TRUE(sv != NULL);
  sv->handler = h;
  sv->scale = SCALE;
  ASSERT_OK(weft_event_create(&sv->ready));
  ASSERT_OK(weft_future_create(&sv->stop));
  ASSERT_EQ(pthread_create(&sv->th, NULL, server_main, sv), 0);
  ASSERT_OK(weft_event_wait(sv->ready, weft_deadline_in(10000)));
  ASSERT_OK(sv->rc);
  return sv;
}

static void server_stop(server *sv) {
  ASSERT_OK(weft_future_set_result(sv->stop, NULL, 0));
  ASSERT_EQ(pthread_join(sv->th, NULL), 0);
  weft_future_release(sv->stop);
  weft_event_destroy(sv->ready);
  free(sv);
}

/* ---- running a case ------------------------------------------------------ */

typedef struct run {
  int status; /* exit status, or 128 + signal */
  char out[4096];
  char err[16384];
} run;

/* <build>/study/<name>, from <build>/tests/test_study. */
static void case_path(char *buf, size_t n, const char *name) {
  char self[PATH_MAX];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  ASSERT_GT(len, 0);
  self[len] = '\0';
  for (int up = 0; up < 2; up++) {
    char *slash = strrchr(self, '/');
    ASSERT_TRUE(slash != NULL);
    *slash = '\0';
  }
  ASSERT_LT(snprintf(buf, n, "%s/study/%s", self, name), (int)n);
  if (access(buf, X_OK) != 0) WT_FAIL("case binary %s is missing (build the study_* targets)", buf);
}

/* Reads what the case wrote to memory file fd into buf (NUL-terminated). */
static void slurp(int fd, char *buf, size_t n) {
  size_t got = 0;
  ASSERT_EQ(lseek(fd, 0, SEEK_SET), 0);
  for (;;) {
    ssize_t r = read(fd, buf + got, n - 1 - got);
    if (r <= 0) break;
    got += (size_t)r;
  }
  buf[got] = '\0';
  close(fd);
}

/* Waits for pid until the deadline (a pidfd: no polling); 1 if it exited. */
static int wait_exit(pid_t pid, int64_t deadline, int *wstatus) {
  int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
  for (;;) {
    pid_t w = waitpid(pid, wstatus, WNOHANG);
    if (w == pid) break;
    ASSERT_EQ(w, 0);
    int64_t left = deadline - weft_now();
    if (left <= 0) {
      if (pfd >= 0) close(pfd);
      return 0;
    }
    if (pfd >= 0) {
      struct pollfd p = {.fd = pfd, .events = POLLIN};
      (void)poll(&p, 1, left > 1000 ? 1000 : (int)left);
    } else {
      struct timespec ts = {0, 10 * 1000 * 1000}; /* no pidfd: poll the pid */
      nanosleep(&ts, NULL);
    }
  }
  if (pfd >= 0) close(pfd);
  return 1;
}

/* Runs case `name` with argv extra (NULL-terminated, may be NULL) and the
 * environment plus WEFT_STUDY_URL=url (url NULL: none at all). */
static void run_case(run *r, const char *name, const char *url, const char *const *extra) {
  char path[PATH_MAX];
  case_path(path, sizeof path, name);
  const char *argv[16] = {path};
  int argc = 1;
  for (int i = 0; extra && extra[i]; i++) argv[argc++] = extra[i];
  argv[argc] = NULL;
  /* The environment is built before fork: the child of a threaded process
   * may only exec. */
  size_t n = 0;
  while (environ[n]) n++;
  const char **envp = calloc(n + 3, sizeof *envp);
  ASSERT_TRUE(envp != NULL);
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "WEFT_STUDY_", 11) != 0) envp[k++] = environ[i];
  char url_env[256], scale_env[64];
  if (url) {
    snprintf(url_env, sizeof url_env, "WEFT_STUDY_URL=%s", url);
    envp[k++] = url_env;
  }
  snprintf(scale_env, sizeof scale_env, "WEFT_STUDY_SCALE=%g", SCALE);
  envp[k++] = scale_env;
  envp[k] = NULL;
  int out = memfd_create("study-out", MFD_CLOEXEC), err = memfd_create("study-err", MFD_CLOEXEC);
  ASSERT_GE(out, 0);
  ASSERT_GE(err, 0);
  int64_t deadline = weft_deadline_in(CASE_LIMIT_MS);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (dup2(out, 1) < 0 || dup2(err, 2) < 0) _exit(126);
    execve(path, (char *const *)argv, (char *const *)envp);
    _exit(127);
  }
  free(envp);
  int ws = 0;
  if (!wait_exit(pid, deadline, &ws)) {
    kill(pid, SIGKILL);
    waitpid(pid, &ws, 0);
    slurp(err, r->err, sizeof r->err);
    fprintf(stderr, "%s", r->err);
    WT_FAIL("%s did not finish within %d ms", name, CASE_LIMIT_MS);
  }
  r->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  slurp(out, r->out, sizeof r->out);
  slurp(err, r->err, sizeof r->err);
}

/* Runs a case against the ten-sites server: exit 0, exactly the summary,
 * and no faster than min_ms, the floor of its model (sequential waits add
 * up: a case that beats it did not wait for every site as it should). */
static void check_case_floor(const char *name, const char *summary, int64_t min_ms) {
  server *sv = server_start(weft_sites_handler);
  char url[64], want[256];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", sv->port);
  run *r = calloc(1, sizeof *r);
  ASSERT_TRUE(r != NULL);
  int64_t t0 = weft_now();
  run_case(r, name, url, NULL);
  int64_t ms = weft_now() - t0;
  fprintf(stderr, "%s: %" PRId64 " ms\n", name, ms);
  server_stop(sv);
  if (r->status != 0) fprintf(stderr, "--- stderr of %s:\n%s", name, r->err);
  ASSERT_EQ(r->status, 0);
  snprintf(want, sizeof want, "%s: %s, scale 0.05, ok\n", name, summary);
  ASSERT_STREQ(r->out, want);
  ASSERT_GE(ms, min_ms);
  free(r);
}

static void check_case(const char *name, const char *summary) {
  check_case_floor(name, summary, 0);
}

/* The sum of the ten sites' latencies at SCALE, in ms (825 at 0.05). */
static int64_t ten_sites_ms(void) {
  int64_t sum = 0;
  for (int i = 0; i < WEFT_SITES; i++) sum += weft_site_latency_ms(i);
  return (int64_t)((double)sum * SCALE);
}

#define IO30 "30 fetches, 1,938,012 bytes"
#define CPU21 "21 fib values (28..34), ok"

/* CPU cases fetch nothing (the URL is accepted and unused) and print no
 * scale. */
static void check_cpu_case(const char *name) {
  char want[128];
  run *r = calloc(1, sizeof *r);
  ASSERT_TRUE(r != NULL);
  run_case(r, name, "http://127.0.0.1:9", NULL);
  if (r->status != 0) fprintf(stderr, "--- stderr of %s:\n%s", name, r->err);
  ASSERT_EQ(r->status, 0);
  snprintf(want, sizeof want, "%s: " CPU21 "\n", name);
  ASSERT_STREQ(r->out, want);
  free(r);
}

TEST(case_01) /* labels: novalgrind notsan */ {
  check_case_floor("01-io-sequential", IO30, 3 * ten_sites_ms());
}
TEST(case_02) /* labels: novalgrind notsan */ { check_case("02-io-threads", IO30); }
TEST(case_03) /* labels: novalgrind notsan */ { check_case("03-io-processes", IO30); }
TEST(case_04) /* labels: novalgrind notsan */ { check_case("04-io-thread_pool", IO30); }
TEST(case_05) /* labels: novalgrind notsan */ { check_case("05-io-process_pool", IO30); }
TEST(case_06) /* labels: novalgrind notsan */ { check_case("06-io-async", IO30); }
TEST(case_07) /* labels: novalgrind notsan */ {
  check_case_floor("07-io-async-sequential", IO30, 3 * ten_sites_ms());
}
TEST(case_08) /* labels: novalgrind notsan */ { check_cpu_case("08-cpu-sequential"); }
TEST(case_09) /* labels: novalgrind notsan */ { check_cpu_case("09-cpu-threads"); }
TEST(case_10) /* labels: novalgrind notsan */ { check_cpu_case("10-cpu-processes"); }
TEST(case_11) /* labels: novalgrind notsan */ { check_cpu_case("11-cpu-thread_pool"); }
TEST(case_12) /* labels: novalgrind notsan */ { check_cpu_case("12-cpu-process_pool"); }

#define IOCPU10 "10 fetches + 10 x fib(32), 646,004 bytes"
#define IOIO20 "20 async + 20 blocking fetches, 2,584,016 bytes"
TEST(case_13) /* labels: novalgrind notsan */ { check_case("13-io+cpu-async", IOCPU10); }
TEST(case_14) /* labels: novalgrind notsan */ {
  check_case("14-io+cpu-async+thread_pool", IOCPU10);
}
TEST(case_15) /* labels: novalgrind notsan */ {
  check_case("15-io+cpu-async+process_pool", IOCPU10);
}
TEST(case_16) /* labels: novalgrind notsan */ {
  /* The 20 blocking fetches hold the loop one after another. */
  check_case_floor("16-io+io_blocking-async", IOIO20, 2 * ten_sites_ms());
}
TEST(case_17) /* labels: novalgrind notsan */ {
  check_case("17-io+io_blocking-async+thread_pool", IOIO20);
}
TEST(case_18) /* labels: novalgrind notsan */ {
  check_case("18-io+io_blocking-async+process_pool", IOIO20);
}

/* ---- failures ------------------------------------------------------------ */

/* A server that answers every request with 100 bytes: wrong for every site. */
static int short_handler(const weft_http_request *req, weft_http_reply *rep, void *arg) {
  (void)req;
  (void)arg;
  static const char body[100] = "short";
  return weft_http_reply_set(rep, 200, "text/plain", body, sizeof body);
}

/* A case whose fetches come back with the wrong size exits 1 and says which. */
static void check_wrong_bytes(const char *name) {
  server *sv = server_start(short_handler);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", sv->port);
  run *r = calloc(1, sizeof *r);
  ASSERT_TRUE(r != NULL);
  run_case(r, name, url, NULL);
  server_stop(sv);
  ASSERT_EQ(r->status, 1);
  ASSERT_STREQ(r->out, "");
  char want[128];
  snprintf(want, sizeof want, "GET %s/site/3: 100 bytes, want 42000", url);
  if (!strstr(r->err, want)) WT_FAIL("stderr lacks \"%s\":\n%s", want, r->err);
  ASSERT_TRUE(strstr(r->err, "FAILED") != NULL);
  free(r);
}

TEST(wrong_bytes_sequential) /* labels: novalgrind notsan */ {
  check_wrong_bytes("01-io-sequential");
}
TEST(wrong_bytes_async) /* labels: novalgrind notsan */ { check_wrong_bytes("06-io-async"); }
TEST(wrong_bytes_process_pool) /* labels: novalgrind notsan */ {
  check_wrong_bytes("05-io-process_pool");
}
TEST(wrong_bytes_async_thread_pool) /* labels: novalgrind notsan */ {
  check_wrong_bytes("17-io+io_blocking-async+thread_pool");
}

/* A port nobody listens on (bound, then closed): every fetch is refused. */
TEST(refused_exits_1) /* labels: novalgrind notsan */ {
  int fd, port;
  ASSERT_OK(weft_tcp_listen(NULL, 0, 1, &fd, &port));
  ASSERT_OK(weft_close(fd));
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
  const char *cases[] = {"04-io-thread_pool", "07-io-async-sequential",
                         "15-io+cpu-async+process_pool"};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    run *r = calloc(1, sizeof *r);
    ASSERT_TRUE(r != NULL);
    run_case(r, cases[i], url, NULL);
    ASSERT_EQ(r->status, 1);
    ASSERT_STREQ(r->out, "");
    if (!strstr(r->err, "connection refused")) WT_FAIL("%s: stderr:\n%s", cases[i], r->err);
    free(r);
  }
}

/* Usage errors exit 2 with a message; --help exits 0; a cpu case needs no
 * server. */
TEST(usage) /* labels: novalgrind notsan */ {
  const char *io = "06-io-async", *cpu = "12-cpu-process_pool", *url = "http://127.0.0.1:9";
  struct {
    const char *name;
    const char *url;
    const char *args[4];
    int status;
    const char *says;   /* on stderr */
    const char *prints; /* on stdout */
  } t[] = {
      {io, url, {"--bogus", NULL}, 2, "unknown or incomplete option '--bogus'", NULL},
      {cpu, url, {"--bogus", NULL}, 2, "unknown or incomplete option '--bogus'", NULL},
      {io, url, {"--scale", "0", NULL}, 2, "--scale wants a number > 0, not '0'", NULL},
      {cpu, url, {"--scale", "x1", NULL}, 2, "--scale wants a number > 0, not 'x1'", NULL},
      {io, url, {"--url", NULL}, 2, "unknown or incomplete option '--url'", NULL},
      {io, url, {"--url", "ftp://h", NULL}, 2, "--url wants http://HOST:PORT, not 'ftp://h'", NULL},
      {io, NULL, {NULL}, 2, "no server: give --url BASE or set WEFT_STUDY_URL", NULL},
      {io, NULL, {"--help", NULL}, 0, NULL, "usage: 06-io-async [--url BASE] [--scale X]"},
      {cpu, NULL, {NULL}, 0, NULL, "12-cpu-process_pool: " CPU21 "\n"},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    run *r = calloc(1, sizeof *r);
    ASSERT_TRUE(r != NULL);
    run_case(r, t[i].name, t[i].url, t[i].args);
    if (r->status != t[i].status) fprintf(stderr, "row %zu: stderr:\n%s", i, r->err);
    ASSERT_EQ(r->status, t[i].status);
    if (t[i].says && !strstr(r->err, t[i].says))
      WT_FAIL("row %zu: stderr lacks \"%s\":\n%s", i, t[i].says, r->err);
    if (t[i].status == 2) ASSERT_TRUE(strstr(r->err, "usage:") != NULL);
    if (t[i].status == 2) ASSERT_STREQ(r->out, "");
    if (t[i].prints && !strstr(r->out, t[i].prints))
      WT_FAIL("row %zu: stdout lacks \"%s\":\n%s", i, t[i].prints, r->out);
    free(r);
  }
}
