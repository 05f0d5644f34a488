/*
 * bench/async — weft's async layer against its peers, in one run:
 *
 *   memory  resident memory per idle task: 100,000 weft tasks each waiting on
 *           one future, against 100,000 Python asyncio tasks waiting on one
 *           asyncio.Event (bench/python/idle_tasks.py, Debian's python3) and
 *           100,000 goroutines blocked on one channel (bench/go/idle.go, when
 *           Go is installed). Goal: no more than Go.
 *   http    requests per second of weft's HTTP server (one loop thread)
 *           against nginx (one process, master_process off) serving the same
 *           bytes (the study's site 9: 5,000 bytes), both under
 *           `wrk -t2 -c100 -dSECONDSs` on loopback, alternating, medians.
 *           Goal: at least 0.8x nginx.
 *
 * The coroutine switch itself is measured by bench/coro.
 *
 * Prints one `bench=...` line per measurement. Exit status 1 if a peer's
 * result was wrong (non-2xx responses, a task that did not finish).
 */
#include "weft.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef BENCH_SOURCE_DIR
#define BENCH_SOURCE_DIR "bench"
#endif

static int opt_tasks = 100000;
static int opt_repeat = 3;
static int opt_seconds = 5;
static int opt_conns = 100;
static int failed;

static long rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, res = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
    fclose(f);
  }
  return res * sysconf(_SC_PAGESIZE);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Runs a command, returns its first output line (static buffer) or NULL. */
static const char *run_line(const char *cmd) {
  static char line[512];
  FILE *p = popen(cmd, "r");
  if (!p) return NULL;
  const char *r = fgets(line, sizeof line, p) ? line : NULL;
  int st = pclose(p);
  if (st != 0) return NULL;
  return r;
}

/* ---- memory per idle task ---- */

typedef struct idle_ctx {
  weft_future *go;   /* every waiter awaits it */
  long before, after;
  int finished;
} idle_ctx;

static int idle_waiter(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  idle_ctx *c = (idle_ctx *)in;
  if (weft_await(c->go, WEFT_FOREVER) == 0) c->finished++;
  return 0;
}

static int idle_measure(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  idle_ctx *c = (idle_ctx *)in;
  /* Spawned last: every waiter has run up to its await by now. */
  c->after = rss_bytes();
  weft_future_set_result(c->go, NULL, 0);
  return 0;
}

static double weft_idle_bytes(int n) {
  weft_loop *loop;
  if (weft_loop_create(&loop, NULL) != 0) return -1;
  idle_ctx c = {0};
  weft_future_create(&c.go);
  /* Warm up the allocator and the stack pool's first slab. */
  c.before = rss_bytes();
  for (int i = 0; i < n; i++)
    if (weft_spawn(loop, idle_waiter, &c, sizeof c, NULL, NULL) != 0) {
      fprintf(stderr, "bench: spawn %d failed\n", i);
      failed = 1;
      break;
    }
  weft_spawn(loop, idle_measure, &c, sizeof c, NULL, NULL);
  weft_loop_run(loop);
  if (c.finished != n) {
    fprintf(stderr, "bench: only %d of %d weft tasks finished\n", c.finished, n);
    failed = 1;
  }
  weft_future_release(c.go);
  weft_loop_destroy(loop);
  return (double)(c.after - c.before) / n;
}

static double peer_idle_bytes(const char *cmd) {
  const char *l = run_line(cmd);
  char name[32];
  long n;
  double b;
  if (!l || sscanf(l, "%31s %ld %lf", name, &n, &b) != 3) return -1;
  return b;
}

static void bench_memory(void) {
  int n = opt_tasks;
  /* Each measurement in its own process, so that one's memory does not
   * count in another's. */
  double w[16];
  int reps = opt_repeat > 16 ? 16 : opt_repeat;
  for (int r = 0; r < reps; r++) {
    int fds[2];
    if (pipe(fds) != 0) return;
    pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      double b = weft_idle_bytes(n);
      if (write(fds[1], &b, sizeof b) != sizeof b) _exit(1);
      _exit(failed);
    }
    close(fds[1]);
    double b = -1;
    if (read(fds[0], &b, sizeof b) != sizeof b) b = -1;
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) failed = 1;
    w[r] = b;
  }
  double weft_b = median(w, reps);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/python/idle_tasks.py %d 2>/dev/null", BENCH_SOURCE_DIR, n);
  double py = access("/usr/bin/python3", X_OK) == 0 ? peer_idle_bytes(cmd) : -1;
  snprintf(cmd, sizeof cmd,
           "cd %s/go && HOME=${HOME:-/tmp} GOCACHE=${GOCACHE:-/tmp/weft-gocache} GOFLAGS=-mod=mod "
           "go run idle.go %d 2>/dev/null",
           BENCH_SOURCE_DIR, n);
  double go = system("command -v go >/dev/null 2>&1") == 0 ? peer_idle_bytes(cmd) : -1;
  printf("bench=memory.weft_task tasks=%d bytes_per_idle=%.0f", n, weft_b);
  if (go > 0) printf(" ratio_vs_go=%.2f goal_le_go=%s", weft_b / go, weft_b <= go ? "met" : "NOT_met");
  else printf(" ratio_vs_go=na");
  if (py > 0) printf(" ratio_vs_asyncio=%.2f", weft_b / py);
  printf("\n");
  if (py > 0) printf("bench=memory.python_asyncio tasks=%d bytes_per_idle=%.0f\n", n, py);
  else printf("bench=memory.python_asyncio skipped (no /usr/bin/python3)\n");
  if (go > 0) printf("bench=memory.go_goroutine tasks=%d bytes_per_idle=%.0f\n", n, go);
  else printf("bench=memory.go_goroutine skipped (no go)\n");
}

/* ---- HTTP requests per second ---- */

static const unsigned char *g_body;
static size_t g_body_size;

static int static_handler(const weft_http_request *req, weft_http_reply *rep, void *arg) {
  (void)arg;
  if (strcmp(req->target, "/site/9") != 0) return weft_http_reply_set(rep, 404, "text/plain", "no\n", 3);
  return weft_http_reply_set(rep, 200, "application/octet-stream", g_body, g_body_size);
}

static pid_t start_weft_server(int *port) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    weft_loop *loop;
    weft_http_server *srv;
    if (weft_loop_create(&loop, NULL) != 0) _exit(1);
    if (weft_http_server_start(&srv, loop, NULL, static_handler, NULL) != 0) _exit(1);
    int p = weft_http_server_port(srv);
    if (write(fds[1], &p, sizeof p) != sizeof p) _exit(1);
    close(fds[1]);
    weft_loop_run(loop); /* until killed */
    _exit(0);
  }
  close(fds[1]);
  int p = 0;
  if (read(fds[0], &p, sizeof p) != sizeof p) p = 0;
  close(fds[0]);
  *port = p;
  return p ? pid : -1;
}

static char nginx_dir[256];

static pid_t start_nginx(int port) {
  snprintf(nginx_dir, sizeof nginx_dir, "/tmp/weft-bench-nginx-XXXXXX");
  if (!mkdtemp(nginx_dir)) return -1;
  char path[512];
  snprintf(path, sizeof path, "%s/www", nginx_dir);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/www/site", nginx_dir);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/www/site/9", nginx_dir);
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  fwrite(g_body, 1, g_body_size, f);
  fclose(f);
  snprintf(path, sizeof path, "%s/nginx.conf", nginx_dir);
  f = fopen(path, "w");
  if (!f) return -1;
  fprintf(f,
          "daemon off;\nmaster_process off;\nworker_processes 1;\n"
          "error_log %s/error.log;\npid %s/nginx.pid;\n"
          "events { worker_connections 4096; }\n"
          "http {\n  access_log off;\n  default_type application/octet-stream;\n"
          "  keepalive_requests 1000000;\n"
          "  client_body_temp_path %s; proxy_temp_path %s; fastcgi_temp_path %s;\n"
          "  uwsgi_temp_path %s; scgi_temp_path %s;\n"
          "  server { listen 127.0.0.1:%d; location / { root %s/www; } }\n}\n",
          nginx_dir, nginx_dir, nginx_dir, nginx_dir, nginx_dir, nginx_dir, nginx_dir, port,
          nginx_dir);
  fclose(f);
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execl("/usr/sbin/nginx", "nginx", "-p", nginx_dir, "-c", path, (char *)NULL);
    _exit(127);
  }
  return pid;
}

/* Waits until something accepts on port (bounded). */
static int wait_port(int port) {
  for (int i = 0; i < 200; i++) {
    int fd;
    if (weft_tcp_connect("127.0.0.1", port, weft_deadline_in(100), &fd) == 0) {
      weft_close(fd);
      return 0;
    }
    weft_sleep(10);
  }
  return -1;
}

/* One wrk run: requests/s, or -1 (and `failed`) on errors. */
static double wrk_rps(int port) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "wrk -t2 -c%d -d%ds http://127.0.0.1:%d/site/9 2>&1", opt_conns,
           opt_seconds, port);
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  char line[256];
  double rps = -1;
  while (fgets(line, sizeof line, p)) {
    if (sscanf(line, "Requests/sec: %lf", &rps) == 1) continue;
    if (strstr(line, "Non-2xx") || strstr(line, "Socket errors")) {
      fprintf(stderr, "bench: wrk on port %d: %s", port, line);
      if (strstr(line, "Non-2xx")) failed = 1;
    }
  }
  pclose(p);
  return rps;
}

static int free_port(void) {
  int fd, port = 0;
  if (weft_tcp_listen(NULL, 0, 0, &fd, &port) != 0) return 0;
  weft_close(fd);
  return port;
}

static void bench_http(void) {
  if (system("command -v wrk >/dev/null 2>&1") != 0) {
    printf("bench=http skipped (no wrk; scripts/deps.sh bench installs it)\n");
    return;
  }
  int wport = 0;
  pid_t wpid = start_weft_server(&wport);
  if (wpid < 0 || wait_port(wport) != 0) {
    fprintf(stderr, "bench: the weft server did not start\n");
    failed = 1;
    return;
  }
  int nport = 0;
  pid_t npid = -1;
  if (access("/usr/sbin/nginx", X_OK) == 0) {
    nport = free_port();
    npid = start_nginx(nport);
    if (npid < 0 || wait_port(nport) != 0) {
      fprintf(stderr, "bench: nginx did not start (see %s/error.log)\n", nginx_dir);
      if (npid > 0) kill(npid, SIGKILL);
      npid = -1;
    }
  }
  double w[16], n[16];
  int reps = opt_repeat > 16 ? 16 : opt_repeat;
  for (int r = 0; r < reps; r++) {
    w[r] = wrk_rps(wport);
    n[r] = npid > 0 ? wrk_rps(nport) : -1;
    fprintf(stderr, "bench: http round %d: weft %.0f req/s, nginx %.0f req/s\n", r + 1, w[r], n[r]);
  }
  double wm = median(w, reps), nm = npid > 0 ? median(n, reps) : -1;
  printf("bench=http.weft_server wrk=\"-t2 -c%d -d%ds\" body=%zu rps=%.0f", opt_conns, opt_seconds,
         g_body_size, wm);
  if (nm > 0) printf(" ratio_vs_nginx=%.2f goal_ge_0.8=%s", wm / nm, wm / nm >= 0.8 ? "met" : "NOT_met");
  else printf(" ratio_vs_nginx=na");
  printf("\n");
  if (nm > 0) printf("bench=http.nginx wrk=\"-t2 -c%d -d%ds\" body=%zu rps=%.0f\n", opt_conns, opt_seconds, g_body_size, nm);
  else printf("bench=http.nginx skipped (no /usr/sbin/nginx)\n");
  kill(wpid, SIGKILL);
  waitpid(wpid, NULL, 0);
  if (npid > 0) {
    kill(npid, SIGTERM);
    waitpid(npid, NULL, 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", nginx_dir);
    if (system(cmd) != 0) fprintf(stderr, "bench: could not remove %s\n", nginx_dir);
  }
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: async [--tasks N] [--repeat R] [--seconds S] [--connections C] [--only memory|http]\n"
          "  --tasks N        idle tasks for the memory measurement (default 100000)\n"
          "  --repeat R       rounds, medians reported (default 3)\n"
          "  --seconds S      wrk duration per round (default 5)\n"
          "  --connections C  wrk connections (default 100)\n"
          "Measurements: memory.weft_task, memory.python_asyncio, memory.go_goroutine,\n"
          "http.weft_server, http.nginx (see the comment at the top of bench/async.c).\n");
}

int main(int argc, char **argv) {
  const char *only = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--tasks") && v) opt_tasks = atoi(argv[++i]);
    else if (!strcmp(a, "--repeat") && v) opt_repeat = atoi(argv[++i]);
    else if (!strcmp(a, "--seconds") && v) opt_seconds = atoi(argv[++i]);
    else if (!strcmp(a, "--connections") && v) opt_conns = atoi(argv[++i]);
    else if (!strcmp(a, "--only") && v) only = argv[++i];
    else {
      usage(stderr);
      return 2;
    }
  }
  if (opt_tasks < 1 || opt_repeat < 1 || opt_seconds < 1 || opt_conns < 1 ||
      (only && strcmp(only, "memory") && strcmp(only, "http"))) {
    usage(stderr);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  g_body_size = weft_site_size(9);
  unsigned char *body = malloc(g_body_size);
  for (size_t i = 0; i < g_body_size; i++) body[i] = weft_site_byte(9, i);
  g_body = body;
  if (!only || !strcmp(only, "memory")) bench_memory();
  if (!only || !strcmp(only, "http")) bench_http();
  free(body);
  return failed;
}
