/*
 * test_http_server.c — the embedded HTTP/1.1 server and the study's ten
 * sites, driven by raw-socket clients running as tasks on the same loop.
 */
#include "wt.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- a minimal client: one request, reads the status and the body ---- */

typedef struct resp {
  int status;
  size_t len;
  unsigned char *body;
  int keep_alive;
} resp;

/* Reads one response from fd (buffered in *buf, which may hold the start of
 * the next pipelined response). */
static int read_response(int fd, char *buf, size_t cap, size_t *have, resp *r) {
  memset(r, 0, sizeof *r);
  char *end;
  for (;;) {
    buf[*have] = 0;
    end = strstr(buf, "\r\n\r\n");
    if (end) break;
    if (*have + 1 >= cap) return WEFT_ETOOBIG;
    size_t got;
    int rc = weft_read(fd, buf + *have, cap - 1 - *have, weft_deadline_in(20000), &got);
    if (rc) return rc;
    if (got == 0) return WEFT_EIO;
    *have += got;
  }
  if (sscanf(buf, "HTTP/1.1 %d", &r->status) != 1) return WEFT_EPROTO;
  const char *cl = strstr(buf, "Content-Length: ");
  if (!cl || cl > end) return WEFT_EPROTO;
  r->len = strtoul(cl + 16, NULL, 10);
  r->keep_alive = strstr(buf, "Connection: keep-alive") && strstr(buf, "Connection: keep-alive") < end;
  size_t head = (size_t)(end + 4 - buf);
  r->body = malloc(r->len + 1);
  size_t inbuf = *have - head < r->len ? *have - head : r->len;
  memcpy(r->body, buf + head, inbuf);
  int rc = 0;
  if (inbuf < r->len) rc = weft_read_exactly(fd, r->body + inbuf, r->len - inbuf, weft_deadline_in(20000), NULL);
  memmove(buf, buf + head + inbuf, *have - head - inbuf);
  *have -= head + inbuf;
  return rc;
}

static int fetch(int port, const char *req, resp *r) {
  int fd;
  int rc = weft_tcp_connect("127.0.0.1", port, weft_deadline_in(20000), &fd);
  if (rc) return rc;
  rc = weft_write_all(fd, req, strlen(req), weft_deadline_in(20000));
  char buf[4096];
  size_t have = 0;
  if (rc == 0) rc = read_response(fd, buf, sizeof buf, &have, r);
  weft_close(fd);
  return rc;
}

static void check_site_body(int site, const resp *r) {
  ASSERT_EQ(r->status, 200);
  ASSERT_UEQ(r->len, weft_site_size(site));
  for (size_t i = 0; i < r->len; i++)
    if (r->body[i] != weft_site_byte(site, i)) WT_FAIL("site %d byte %zu differs", site, i);
}

/* ---- a server on its own loop, for the tests below ---- */

typedef struct fixture {
  weft_loop *loop;
  weft_http_server *srv;
  int port;
  double scale;
} fixture;

static void start(fixture *fx, double scale, const weft_http_server_opts *o) {
  fx->scale = scale;
  ASSERT_OK(weft_loop_create(&fx->loop, NULL));
  ASSERT_OK(weft_http_server_start(&fx->srv, fx->loop, o, weft_sites_handler, &fx->scale));
  fx->port = weft_http_server_port(fx->srv);
  ASSERT_GT(fx->port, 0);
}

static void stop(fixture *fx) {
  weft_http_server_stop(fx->srv);
  weft_loop_destroy(fx->loop);
}

/* ---- the ten sites, the latency floor ---- */

typedef struct site_job {
  int port;
  int site;
  int64_t took;
} site_job;

static int fetch_site(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  site_job *j = (site_job *)in;
  char req[128];
  snprintf(req, sizeof req, "GET /site/%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", j->site);
  resp r;
  int64_t t0 = weft_now();
  int rc = fetch(j->port, req, &r);
  j->took = weft_now() - t0;
  if (rc == 0) check_site_body(j->site, &r);
  free(r.body);
  return rc;
}

TEST(thirty_fetches_latency_floor) {
  fixture fx;
  start(&fx, 0.1, NULL);
  site_job jobs[30];
  weft_future *f[30];
  for (int i = 0; i < 30; i++) {
    jobs[i] = (site_job){.port = fx.port, .site = i % 10};
    ASSERT_OK(weft_spawn(fx.loop, fetch_site, &jobs[i], sizeof jobs[i], NULL, &f[i]));
  }
  int64_t t0 = weft_now();
  for (int i = 0; i < 30; i++) ASSERT_OK(weft_loop_run_until(fx.loop, f[i], weft_deadline_in(20000)));
  int64_t took = weft_now() - t0;
  for (int i = 0; i < 30; i++) {
    ASSERT_OK(weft_future_error(f[i]));
    ASSERT_GE(jobs[i].took, weft_site_latency_ms(jobs[i].site) / 10);
    weft_future_release(f[i]);
  }
  fprintf(stderr, "30 fetches at scale 0.1: %lld ms (sequential would be 1650)\n", (long long)took);
  ASSERT_GE(took, 100);
  ASSERT_LT(took, 600); /* about 0.1 s, not 1.65 s */
  stop(&fx);
}

TEST(site_table) {
  static const int lat[10] = {100, 200, 300, 400, 500, 600, 700, 800, 900, 1000};
  static const size_t size[10] = {15655, 12630, 98527, 42000, 120000, 8192, 64000, 250000, 30000, 5000};
  for (int i = 0; i < 10; i++) {
    ASSERT_EQ(weft_site_latency_ms(i), lat[i]);
    ASSERT_UEQ(weft_site_size(i), size[i]);
  }
}

/* ---- protocol: 404, 400, keep-alive, pipelining, limits ---- */

typedef struct raw_job {
  int port;
  const char *req;
  int want_status[3];
  int nresp;
  int keep_alive_last;
} raw_job;

static int raw_exchange(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  raw_job *j = (raw_job *)in;
  int fd;
  ASSERT_OK(weft_tcp_connect("127.0.0.1", j->port, weft_deadline_in(20000), &fd));
  ASSERT_OK(weft_write_all(fd, j->req, strlen(j->req), weft_deadline_in(20000)));
  char buf[8192];
  size_t have = 0;
  for (int i = 0; i < j->nresp; i++) {
    resp r;
    ASSERT_OK(read_response(fd, buf, sizeof buf, &have, &r));
    ASSERT_EQ(r.status, j->want_status[i]);
    j->keep_alive_last = r.keep_alive;
    free(r.body);
  }
  /* After an error or Connection: close the server closes its side. */
  if (!j->keep_alive_last) {
    char c;
    size_t got;
    ASSERT_OK(weft_read(fd, &c, 1, weft_deadline_in(5000), &got));
    ASSERT_EQ(got, 0);
  }
  weft_close(fd);
  return 0;
}

static void exchange(fixture *fx, raw_job *j) {
  j->port = fx->port;
  weft_future *f;
  ASSERT_OK(weft_spawn(fx->loop, raw_exchange, j, sizeof *j, NULL, &f));
  ASSERT_OK(weft_loop_run_until(fx->loop, f, weft_deadline_in(20000)));
  ASSERT_OK(weft_future_error(f));
  weft_future_release(f);
}

TEST(not_found_and_bad_request) {
  fixture fx;
  start(&fx, 0.01, NULL);
  raw_job nf = {.req = "GET /nothing HTTP/1.1\r\n\r\n", .want_status = {404}, .nresp = 1};
  exchange(&fx, &nf);
  ASSERT_EQ(nf.keep_alive_last, 1);
  raw_job bad = {.req = "THIS IS NOT HTTP\r\n\r\n", .want_status = {400}, .nresp = 1};
  exchange(&fx, &bad);
  ASSERT_EQ(bad.keep_alive_last, 0);
  raw_job bad2 = {.req = "GET / HTTP/1.1\r\nBad Header\r\n\r\n", .want_status = {400}, .nresp = 1};
  exchange(&fx, &bad2);
  raw_job ver = {.req = "GET /site/1 HTTP/2.0\r\n\r\n", .want_status = {505}, .nresp = 1};
  exchange(&fx, &ver);
  raw_job te = {.req = "POST /site/1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", .want_status = {501}, .nresp = 1};
  exchange(&fx, &te);
  /* The server still serves after all that. */
  raw_job ok = {.req = "GET /site/9 HTTP/1.1\r\nConnection: close\r\n\r\n", .want_status = {200}, .nresp = 1};
  exchange(&fx, &ok);
  stop(&fx);
}

TEST(keep_alive_and_pipelining) {
  fixture fx;
  start(&fx, 0.01, NULL);
  raw_job pipe3 = {.req = "GET /site/0 HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\nGET /site/5 HTTP/1.1\r\nConnection: close\r\n\r\n",
                   .want_status = {200, 404, 200}, .nresp = 3};
  exchange(&fx, &pipe3);
  ASSERT_EQ(pipe3.keep_alive_last, 0);
  raw_job http10 = {.req = "GET /site/9 HTTP/1.0\r\n\r\n", .want_status = {200}, .nresp = 1};
  exchange(&fx, &http10);
  ASSERT_EQ(http10.keep_alive_last, 0);
  stop(&fx);
}

TEST(size_limits) {
  fixture fx;
  weft_http_server_opts o = {.max_header_bytes = 1024, .max_body_bytes = 100};
  start(&fx, 0.01, &o);
  char big[3000];
  int n = snprintf(big, sizeof big, "GET /site/0 HTTP/1.1\r\nX-Big: ");
  memset(big + n, 'a', 2000);
  strcpy(big + n + 2000, "\r\n\r\n");
  raw_job hdr = {.req = big, .want_status = {431}, .nresp = 1};
  exchange(&fx, &hdr);
  raw_job body = {.req = "POST /site/0 HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", .want_status = {413}, .nresp = 1};
  exchange(&fx, &body);
  raw_job small = {.req = "POST /site/0 HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", .want_status = {405}, .nresp = 1};
  exchange(&fx, &small);
  stop(&fx);
}

/* ---- many at once ---- */

typedef struct many_ctx {
  int port;
  int idx;
  int *ok;
} many_ctx;

static int many_fetch(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  const many_ctx *c = in;
  int site = c->idx % 10;
  char req[96];
  snprintf(req, sizeof req, "GET /site/%d HTTP/1.1\r\nConnection: close\r\n\r\n", site);
  resp r;
  int rc = fetch(c->port, req, &r);
  if (rc == 0) {
    check_site_body(site, &r);
    ++*c->ok;
  }
  free(r.body);
  return rc;
}

/* The server runs in a child process (forked before this process has any
 * thread), so that the client and server ends of 10,000 connections count
 * against two processes' fd limits. */
static pid_t server_child(double scale, int *port) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  pid_t pid = fork();
  ASSERT_TRUE(pid >= 0);
  if (pid == 0) {
    close(p[0]);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    fixture fx;
    start(&fx, scale, NULL);
    if (write(p[1], &fx.port, sizeof fx.port) != sizeof fx.port) _exit(1);
    close(p[1]);
    weft_loop_run(fx.loop); /* until killed */
    _exit(0);
  }
  close(p[1]);
  ASSERT_EQ(read(p[0], port, sizeof *port), (ssize_t)sizeof *port);
  close(p[0]);
  return pid;
}

TEST(ten_thousand_concurrent_fetches) /* labels: notsan */ {
  struct rlimit rl;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  long want = wt_scaled(10000);
  long fit = (long)rl.rlim_cur - 32;
  if (want > fit) {
    fprintf(stderr, "RLIMIT_NOFILE %lu: %ld fetches instead of %ld\n", (unsigned long)rl.rlim_cur, fit, want);
    want = fit;
  }
  int port;
  pid_t srv = server_child(0.01, &port);
  int fds0 = wt_count_fds();
  weft_loop *loop;
  ASSERT_OK(weft_loop_create(&loop, NULL));
  many_ctx *ctx = calloc((size_t)want, sizeof *ctx);
  int ok = 0;
  weft_task_opts o = {.stack_size = 64 * 1024};
  for (long i = 0; i < want; i++) {
    ctx[i] = (many_ctx){port, (int)i, &ok};
    ASSERT_OK(weft_spawn(loop, many_fetch, &ctx[i], sizeof ctx[i], &o, NULL));
  }
  int64_t t0 = weft_now();
  ASSERT_OK(weft_loop_run(loop)); /* returns when every client task is done */
  fprintf(stderr, "%ld concurrent fetches: %lld ms\n", want, (long long)(weft_now() - t0));
  ASSERT_EQ(ok, want);
  free(ctx);
  weft_loop_destroy(loop);
  ASSERT_EQ(wt_count_fds(), fds0);
  kill(srv, SIGKILL);
  int st;
  ASSERT_EQ(waitpid(srv, &st, 0), srv);
}

/* ---- failures stay with their own task ---- */

static int resetter(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  int lfd = *(const int *)in;
  int fd;
  ASSERT_OK(weft_accept(lfd, weft_deadline_in(20000), &fd));
  char buf[256];
  size_t got;
  ASSERT_OK(weft_read(fd, buf, sizeof buf, weft_deadline_in(20000), &got));
  struct linger lg = {1, 0}; /* close with a reset */
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  weft_close(fd);
  return 0;
}

static int fetch_reset(const void *in, size_t n, weft_out *out) {
  (void)n;
  (void)out;
  int port = *(const int *)in;
  resp r = {0};
  int rc = fetch(port, "GET /site/0 HTTP/1.1\r\n\r\n", &r);
  free(r.body);
  return rc;
}

TEST(refused_and_reset_fail_only_their_task) {
  int fds0 = wt_count_fds();
  fixture fx;
  start(&fx, 0.05, NULL);
  int rlfd, rport, closed_port, tmp;
  ASSERT_OK(weft_tcp_listen(NULL, 0, 0, &rlfd, &rport));
  ASSERT_OK(weft_tcp_listen(NULL, 0, 0, &tmp, &closed_port));
  close(tmp);
  site_job good[10];
  weft_future *fg[10], *fr, *fres, *frs;
  for (int i = 0; i < 10; i++) {
    good[i] = (site_job){.port = fx.port, .site = i};
    ASSERT_OK(weft_spawn(fx.loop, fetch_site, &good[i], sizeof good[i], NULL, &fg[i]));
  }
  ASSERT_OK(weft_spawn(fx.loop, fetch_reset, &closed_port, sizeof closed_port, NULL, &fr));
  ASSERT_OK(weft_spawn(fx.loop, resetter, &rlfd, sizeof rlfd, NULL, &frs));
  ASSERT_OK(weft_spawn(fx.loop, fetch_reset, &rport, sizeof rport, NULL, &fres));
  for (int i = 0; i < 10; i++) ASSERT_OK(weft_loop_run_until(fx.loop, fg[i], weft_deadline_in(20000)));
  ASSERT_OK(weft_loop_run_until(fx.loop, fres, weft_deadline_in(20000)));
  ASSERT_OK(weft_loop_run_until(fx.loop, fr, weft_deadline_in(20000)));
  ASSERT_RC(weft_future_error(fr), WEFT_ECONNREFUSED);
  int rc = weft_future_error(fres);
  ASSERT_TRUE(rc == WEFT_ECONNRESET || rc == WEFT_EIO);
  for (int i = 0; i < 10; i++) {
    ASSERT_OK(weft_future_error(fg[i]));
    weft_future_release(fg[i]);
  }
  ASSERT_OK(weft_future_error(frs));
  weft_future_release(fr);
  weft_future_release(fres);
  weft_future_release(frs);
  close(rlfd);
  stop(&fx);
  ASSERT_EQ(wt_count_fds(), fds0);
}

/* Reads one response on each connection: afterwards they are served and idle. */
static int read_one_each(const void *in, size_t n, weft_out *out) {
  (void)out;
  const int *fds = in;
  for (size_t i = 0; i < n / sizeof(int); i++) {
    char buf[8192];
    size_t have = 0;
    resp r;
    int rc = read_response(fds[i], buf, sizeof buf, &have, &r);
    free(r.body);
    if (rc) return rc;
    if (r.status != 200 || !r.keep_alive) return WEFT_EPROTO;
  }
  return 0;
}

TEST(stop_with_idle_connections) {
  int fds0 = wt_count_fds();
  fixture fx;
  start(&fx, 0.01, NULL);
  /* Keep-alive connections, each served once and then left idle. */
  static const char req[] = "GET /site/9 HTTP/1.1\r\n\r\n";
  int fds[3];
  for (int i = 0; i < 3; i++) {
    ASSERT_OK(weft_tcp_connect("127.0.0.1", fx.port, weft_deadline_in(5000), &fds[i]));
    ASSERT_OK(weft_write_all(fds[i], req, strlen(req), weft_deadline_in(5000)));
  }
  weft_future *served;
  ASSERT_OK(weft_spawn(fx.loop, read_one_each, fds, sizeof fds, NULL, &served));
  ASSERT_OK(weft_loop_run_until(fx.loop, served, weft_deadline_in(10000)));
  ASSERT_OK(weft_future_error(served));
  weft_future_release(served);
  int64_t t0 = weft_now();
  stop(&fx); /* cancels the idle connections' tasks and waits for them */
  ASSERT_LT(weft_now() - t0, 3000);
  for (int i = 0; i < 3; i++) close(fds[i]);
  ASSERT_EQ(wt_count_fds(), fds0);
}
