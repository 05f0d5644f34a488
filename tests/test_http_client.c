/*
 * test_http_client.c — weft_http_get (blocking and in tasks) against a tiny
 * HTTP/1.1 server that each test starts and stops itself.
 *
 * The server is one thread polling its listening socket and every
 * connection (so keep-alive connections and many concurrent clients are
 * served at once). It parses requests in a loop on each connection and
 * counts the connections it accepted, which is how keep-alive is checked.
 * Paths:
 *   /bytes/N  200 with N bytes of pat(i)
 *   /404      404 with the body "nope" (and any unknown path)
 *   /500      500 with the body "oops"
 *   /302      302 to /bytes/1 (not followed: 3xx is a result)
 *   /slow     no answer ever (the connection is held until the client goes);
 *             each such request is announced on an eventfd, so a test knows
 *             the request has arrived without sleeping
 *   /reset    headers promising 100000 bytes, 1000 of them, then an RST
 *   /close    the same, then a plain close (FIN)
 */
#include "wt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the test server ------------------------------------------------------ */

static unsigned char pat(size_t i) { return (unsigned char)(i * 31u + (i >> 8) + 7u); }

#define SRV_MAXC 1024

typedef struct sconn {
  int fd;
  size_t len;
  bool hold; /* /slow: never answer, wait for the client to go */
  char buf[4096];
} sconn;

typedef struct srv {
  int lfd, port;
  int wake[2];  /* stop: a byte on wake[1] */
  int slow_efd; /* +1 per /slow request received */
  pthread_t th;
  atomic_int accepted, requests;
  pthread_mutex_t mu; /* guards closed, signalled on cv */
  pthread_cond_t cv;
  int closed;         /* connections closed (by either side) */
  sconn *c[SRV_MAXC];
  int nc;
  struct pollfd *pfd; /* the poll set (here, not on the thread's stack) */
} srv;

/* The running server, reachable from a forked child too (whose copy of the
 * server thread is gone), so leak checkers there see no loss. */
static srv *volatile g_srv; /* volatile: never read, must not be optimised away */

static void write_all(int fd, const void *p, size_t n) {
  const char *s = p;
  while (n > 0) {
    ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return; /* the client went away: its test will say so */
    s += w;
    n -= (size_t)w;
  }
}

static void send_reply(int fd, int status, const char *reason, const unsigned char *body,
                       size_t n) {
  char head[256];
  int h = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nContent-Type: "
                   "application/octet-stream\r\n\r\n",
                   status, reason, n);
  write_all(fd, head, (size_t)h);
  if (n) write_all(fd, body, n);
}

/* Answers one request; false if the connection must be closed now. */
static bool serve_one(srv *s, sconn *c, const char *target) {
  atomic_fetch_add(&s->requests, 1);
  if (strncmp(target, "/bytes/", 7) == 0) {
    size_t n = strtoul(target + 7, NULL, 10);
    unsigned char *b = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) b[i] = pat(i);
    send_reply(c->fd, 200, "OK", b, n);
    free(b);
    return true;
  }
  if (strcmp(target, "/302") == 0) {
    const char *r = "HTTP/1.1 302 Found\r\nLocation: /bytes/1\r\nContent-Length: 0\r\n\r\n";
    write_all(c->fd, r, strlen(r));
    return true;
  }
  if (strcmp(target, "/500") == 0) {
    send_reply(c->fd, 500, "Internal Server Error", (const unsigned char *)"oops", 4);
    return true;
  }
  if (strcmp(target, "/slow") == 0) {
    c->hold = true;
    uint64_t one = 1;
    ssize_t w = write(s->slow_efd, &one, sizeof one);
    (void)w;
    return true;
  }
  if (strcmp(target, "/reset") == 0 || strcmp(target, "/close") == 0) {
    unsigned char part[1000];
    for (size_t i = 0; i < sizeof part; i++) part[i] = pat(i);
    const char *head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
    write_all(c->fd, head, strlen(head));
    write_all(c->fd, part, sizeof part);
    if (strcmp(target, "/reset") == 0) {
      struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* close sends RST */
      setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    return false;
  }
  send_reply(c->fd, 404, "Not Found", (const unsigned char *)"nope", 4);
  return true;
}

/* Reads what is there and answers every complete request in the buffer. */
static bool serve_conn(srv *s, sconn *c) {
  ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
  if (r <= 0) return false; /* EOF or error (e.g. reset by the client) */
  c->len += (size_t)r;
  c->buf[c->len] = '\0';
  for (;;) {
    if (c->hold) {
      c->len = 0; /* ignore anything after a /slow */
      return true;
    }
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end) return c->len < sizeof c->buf - 1;
    char method[16], target[512];
    if (sscanf(c->buf, "%15s %511s", method, target) != 2) return false;
    size_t used = (size_t)(end + 4 - c->buf);
    memmove(c->buf, c->buf + used, c->len - used + 1);
    c->len -= used;
    if (!serve_one(s, c, target)) return false;
  }
}

static void *srv_main(void *arg) {
  srv *s = arg;
  struct pollfd *p = s->pfd;
  for (;;) {
    p[0] = (struct pollfd){.fd = s->wake[0], .events = POLLIN};
    p[1] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
    for (int i = 0; i < s->nc; i++) p[2 + i] = (struct pollfd){.fd = s->c[i]->fd, .events = POLLIN};
    int n = poll(p, (nfds_t)(2 + s->nc), -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || p[0].revents) break;
    /* Connections first: the indexes of p match s->c only before accepts. */
    for (int i = s->nc - 1; i >= 0; i--) {
      if (!p[2 + i].revents) continue;
      if (!serve_conn(s, s->c[i])) {
        close(s->c[i]->fd);
        free(s->c[i]);
        s->c[i] = s->c[--s->nc];
        pthread_mutex_lock(&s->mu);
        s->closed++;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
      }
    }
    if (p[1].revents & POLLIN) {
      int fd = accept(s->lfd, NULL, NULL);
      if (fd >= 0) {
        if (s->nc == SRV_MAXC) {
          close(fd);
        } else {
          /* Head and body go out in two writes: without this, Nagle holds
           * the body until the client's delayed ACK (40 ms a request). */
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          sconn *c = calloc(1, sizeof *c);
          c->fd = fd;
          s->c[s->nc++] = c;
          atomic_fetch_add(&s->accepted, 1);
        }
      }
    }
  }
  for (int i = 0; i < s->nc; i++) {
    close(s->c[i]->fd);
    free(s->c[i]);
  }
  s->nc = 0;
  return NULL;
}

static srv *srv_start(void) {
  srv *s = calloc(1, sizeof *s);
  ASSERT_TRUE(s != NULL);
  s->pfd = calloc(SRV_MAXC + 2, sizeof *s->pfd);
  ASSERT_TRUE(s->pfd != NULL);
  g_srv = s;
  s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(s->lfd, 0);
  int one = 1;
  setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  ASSERT_EQ(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
  ASSERT_EQ(listen(s->lfd, 512), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(getsockname(s->lfd, (struct sockaddr *)&a, &len), 0);
  s->port = ntohs(a.sin_port);
  ASSERT_EQ(pipe(s->wake), 0);
  s->slow_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ASSERT_GE(s->slow_efd, 0);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  ASSERT_EQ(pthread_create(&s->th, NULL, srv_main, s), 0);
  return s;
}

static void srv_stop(srv *s) {
  char b = 1;
  ASSERT_EQ(write(s->wake[1], &b, 1), 1);
  ASSERT_EQ(pthread_join(s->th, NULL), 0);
  close(s->lfd);
  close(s->wake[0]);
  close(s->wake[1]);
  close(s->slow_efd);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s->pfd);
  free(s);
  g_srv = NULL;
}

/* Waits (at most 20 s) until the server has seen n connections closed. */
static void srv_wait_closed(srv *s, int n) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += 20;
  pthread_mutex_lock(&s->mu);
  while (s->closed < n)
    if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) != 0) break;
  int closed = s->closed;
  pthread_mutex_unlock(&s->mu);
  ASSERT_GE(closed, n);
}

static void url_of(char *buf, size_t n, const srv *s, const char *path) {
  snprintf(buf, n, "http://127.0.0.1:%d%s", s->port, path);
}

static void check_bytes(const weft_http_response *r, size_t n) {
  ASSERT_EQ(r->status, 200);
  ASSERT_UEQ(r->body_size, n);
  ASSERT_TRUE(n == 0 || r->body != NULL);
  for (size_t i = 0; i < n; i++)
    if (r->body[i] != pat(i)) WT_FAIL("byte %zu: %d vs %d", i, r->body[i], pat(i));
  ASSERT_STREQ(r->error, "");
}

/* ---- blocking path -------------------------------------------------------- */

TEST(blocking_get_bytes) {
  srv *s = srv_start();
  char url[128];
  weft_http_response r;
  url_of(url, sizeof url, s, "/bytes/300000");
  ASSERT_OK(weft_http_get(url, weft_deadline_in(20000), &r));
  check_bytes(&r, 300000);
  weft_http_response_free(&r);
  ASSERT_TRUE(r.body == NULL);
  weft_http_response_free(&r); /* twice is harmless */

  url_of(url, sizeof url, s, "/bytes/0");
  ASSERT_OK(weft_http_get_blocking(url, WEFT_FOREVER, &r));
  check_bytes(&r, 0);
  weft_http_response_free(&r);
  srv_stop(s);
}

TEST(blocking_404) {
  srv *s = srv_start();
  char url[128];
  weft_http_response r;
  url_of(url, sizeof url, s, "/404");
  ASSERT_RC(weft_http_get(url, weft_deadline_in(20000), &r), WEFT_EHTTP);
  ASSERT_EQ(r.status, 404);
  ASSERT_STREQ(r.error, "HTTP 404");
  ASSERT_UEQ(r.body_size, 4);
  ASSERT_TRUE(memcmp(r.body, "nope", 4) == 0);
  weft_http_response_free(&r);
  url_of(url, sizeof url, s, "/500");
  ASSERT_RC(weft_http_get(url, weft_deadline_in(20000), &r), WEFT_EHTTP);
  ASSERT_EQ(r.status, 500);
  ASSERT_STREQ(r.error, "HTTP 500");
  ASSERT_UEQ(r.body_size, 4);
  weft_http_response_free(&r);
  url_of(url, sizeof url, s, "/302");
  ASSERT_OK(weft_http_get(url, weft_deadline_in(20000), &r));
  ASSERT_EQ(r.status, 302);
  ASSERT_UEQ(r.body_size, 0);
  ASSERT_STREQ(r.error, "");
  weft_http_response_free(&r);
  ASSERT_EQ(atomic_load(&s->requests), 3); /* the redirect was not followed */
  srv_stop(s);
}

/* A port nobody listens on: bound once, then closed. */
static int dead_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  ASSERT_EQ(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

TEST(blocking_refused) {
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/", dead_port());
  weft_http_response r;
  int64_t t0 = weft_now();
  ASSERT_RC(weft_http_get(url, weft_deadline_in(20000), &r), WEFT_ECONNREFUSED);
  ASSERT_LT(weft_now() - t0, 5000);
  ASSERT_EQ(r.status, 0);
  ASSERT_TRUE(r.body == NULL);
  ASSERT_TRUE(r.error[0] != '\0');
  weft_http_response_free(&r);
}

TEST(blocking_dns) {
  weft_http_response r;
  int64_t t0 = weft_now();
  /* .invalid never resolves (RFC 6761), with or without a DNS server. */
  ASSERT_RC(weft_http_get("http://nonexistent.invalid/", weft_deadline_in(30000), &r), WEFT_EDNS);
  ASSERT_LT(weft_now() - t0, 15000);
  ASSERT_TRUE(r.error[0] != '\0');
  weft_http_response_free(&r);
}

TEST(blocking_deadline) {
  srv *s = srv_start();
  char url[128];
  weft_http_response r;
  url_of(url, sizeof url, s, "/slow");
  int64_t t0 = weft_now();
  ASSERT_RC(weft_http_get(url, t0 + 300, &r), WEFT_ETIMEDOUT);
  int64_t took = weft_now() - t0;
  ASSERT_GE(took, 299);
  ASSERT_LT(took, 3000);
  ASSERT_TRUE(r.error[0] != '\0');
  ASSERT_TRUE(r.body == NULL);
  weft_http_response_free(&r);

  /* A deadline already passed: no request at all. */
  int before = atomic_load(&s->requests);
  url_of(url, sizeof url, s, "/bytes/10");
  ASSERT_RC(weft_http_get(url, 0, &r), WEFT_ETIMEDOUT);
  ASSERT_RC(weft_http_get_blocking(url, weft_now() - 1, &r), WEFT_ETIMEDOUT);
  ASSERT_STREQ(r.error, "deadline passed");
  ASSERT_EQ(atomic_load(&s->requests), before);
  weft_http_response_free(&r);
  srv_stop(s);
}

TEST(blocking_reset_mid_body) {
  srv *s = srv_start();
  char url[128];
  weft_http_response r;
  const char *paths[] = {"/reset", "/close"};
  for (int i = 0; i < 2; i++) {
    url_of(url, sizeof url, s, paths[i]);
    ASSERT_RC(weft_http_get(url, weft_deadline_in(20000), &r), WEFT_EIO);
    ASSERT_TRUE(r.body == NULL); /* the partial body is not handed over */
    ASSERT_UEQ(r.body_size, 0);
    ASSERT_TRUE(r.error[0] != '\0');
    weft_http_response_free(&r);
  }
  /* The thread's handle still works after a broken connection. */
  url_of(url, sizeof url, s, "/bytes/5000");
  ASSERT_OK(weft_http_get(url, weft_deadline_in(20000), &r));
  check_bytes(&r, 5000);
  weft_http_response_free(&r);
  srv_stop(s);
}

TEST(blocking_bad_url) {
  weft_http_response r;
  ASSERT_RC(weft_http_get("http://exa mple.com/", WEFT_FOREVER, &r), WEFT_EINVAL);
  ASSERT_TRUE(r.error[0] != '\0');
  weft_http_response_free(&r);
  ASSERT_RC(weft_http_get("http://[::1/", WEFT_FOREVER, &r), WEFT_EINVAL);
  ASSERT_RC(weft_http_get("ftp://127.0.0.1/x", WEFT_FOREVER, &r), WEFT_EINVAL);
  ASSERT_RC(weft_http_get("file:///etc/passwd", WEFT_FOREVER, &r), WEFT_EINVAL);
  ASSERT_TRUE(r.body == NULL);
  ASSERT_RC(weft_http_get(NULL, WEFT_FOREVER, &r), WEFT_EINVAL);
  ASSERT_RC(weft_http_get("http://127.0.0.1/", WEFT_FOREVER, NULL), WEFT_EINVAL);
  weft_http_response_free(NULL);
}

TEST(blocking_keepalive) {
  srv *s = srv_start();
  char url[128];
  for (int i = 0; i < 20; i++) {
    weft_http_response r;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/bytes/%d", s->port, 1000 + i);
    ASSERT_OK(weft_http_get(url, weft_deadline_in(20000), &r));
    check_bytes(&r, (size_t)(1000 + i));
    weft_http_response_free(&r);
  }
  ASSERT_EQ(atomic_load(&s->requests), 20);
  ASSERT_EQ(atomic_load(&s->accepted), 1);
  srv_stop(s);
}

/* Threads each have their own handle, freed when they exit (leak checkers
 * would see it otherwise). */
static void *fetch_thread(void *arg) {
  srv *s = arg;
  char url[128];
  for (int i = 0; i < 10; i++) {
    weft_http_response r;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/bytes/%d", s->port, 777 * i);
    ASSERT_OK(weft_http_get(url, weft_deadline_in(30000), &r));
    check_bytes(&r, (size_t)(777 * i));
    weft_http_response_free(&r);
  }
  return NULL;
}

TEST(blocking_threads) {
  srv *s = srv_start();
  pthread_t th[4];
  for (int i = 0; i < 4; i++) ASSERT_EQ(pthread_create(&th[i], NULL, fetch_thread, s), 0);
  for (int i = 0; i < 4; i++) ASSERT_EQ(pthread_join(th[i], NULL), 0);
  ASSERT_EQ(atomic_load(&s->requests), 40);
  ASSERT_EQ(atomic_load(&s->accepted), 4); /* one kept-alive connection each */
  srv_stop(s);
}

/* A forked child does not reuse (or close) its parent's kept-alive
 * connection: it makes its own, and the parent's still works afterwards. */
TEST(blocking_fork_child_own_connection) {
  srv *s = srv_start();
  char url[128];
  weft_http_response r;
  url_of(url, sizeof url, s, "/bytes/1000");
  ASSERT_OK(weft_http_get(url, weft_deadline_in(20000), &r));
  weft_http_response_free(&r);
  ASSERT_EQ(atomic_load(&s->accepted), 1);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int rc = weft_http_get(url, weft_deadline_in(20000), &r);
    int ok = rc == 0 && r.body_size == 1000 && r.body[999] == pat(999);
    weft_http_response_free(&r);
    _exit(ok ? 0 : 1);
  }
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 0);
  ASSERT_EQ(atomic_load(&s->accepted), 2);
  ASSERT_OK(weft_http_get(url, weft_deadline_in(20000), &r));
  check_bytes(&r, 1000);
  weft_http_response_free(&r);
  ASSERT_EQ(atomic_load(&s->accepted), 2);
  srv_stop(s);
}

/* ---- async path ----------------------------------------------------------- */

/* What one fetching task does and what it saw. */
typedef struct job {
  char url[128];
  size_t want;      /* expected body size (for /bytes) */
  int64_t timeout;  /* ms from the task's start; -1 = none */
  int repeat;       /* sequential fetches (>= 1) */
  int rc;           /* the last weft_http_get's return */
  int64_t took;     /* ms the last fetch took */
  bool in_task;
} job;

static int fetch_task(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  (void)out;
  job *j = (job *)in;
  j->in_task = weft_in_task();
  for (int k = 0; k < (j->repeat ? j->repeat : 1); k++) {
    weft_http_response r;
    int64_t t0 = weft_now();
    j->rc = weft_http_get(j->url, j->timeout < 0 ? WEFT_FOREVER : weft_deadline_in(j->timeout), &r);
    j->took = weft_now() - t0;
    if (j->rc == 0) {
      /* Checked here, where the body is: a bad byte fails the test. */
      check_bytes(&r, j->want);
    } else {
      ASSERT_TRUE(r.body == NULL);
      ASSERT_TRUE(r.error[0] != '\0');
    }
    weft_http_response_free(&r);
    if (j->rc != 0) break;
  }
  return 0;
}

TEST(async_many_tasks) {
  srv *s = srv_start();
  weft_loop *loop;
  ASSERT_OK(weft_loop_create(&loop, NULL));
  int n = (int)wt_scaled(200);
  job *jobs = calloc((size_t)n, sizeof *jobs);
  weft_future **f = calloc((size_t)n, sizeof *f);
  for (int i = 0; i < n; i++) {
    jobs[i].want = i == 0 ? 2000000 : (size_t)(i * 97);
    jobs[i].timeout = 60000;
    snprintf(jobs[i].url, sizeof jobs[i].url, "http://127.0.0.1:%d/bytes/%zu", s->port,
             jobs[i].want);
    ASSERT_OK(weft_spawn(loop, fetch_task, &jobs[i], sizeof jobs[i], NULL, &f[i]));
  }
  ASSERT_OK(weft_loop_run(loop));
  for (int i = 0; i < n; i++) {
    ASSERT_TRUE(jobs[i].in_task);
    ASSERT_RC(jobs[i].rc, 0);
    ASSERT_OK(weft_future_error(f[i]));
    weft_future_release(f[i]);
  }
  ASSERT_EQ(atomic_load(&s->requests), n);
  /* They really waited at once: one connection each, not one for all. */
  ASSERT_GT(atomic_load(&s->accepted), 1);
  weft_loop_destroy(loop);
  free(jobs);
  free(f);
  srv_stop(s);
}

TEST(async_timeout_alone) {
  srv *s = srv_start();
  weft_loop *loop;
  ASSERT_OK(weft_loop_create(&loop, NULL));
  enum { N = 20 };
  job jobs[N + 1];
  memset(jobs, 0, sizeof jobs);
  url_of(jobs[0].url, sizeof jobs[0].url, s, "/slow");
  jobs[0].timeout = 300;
  ASSERT_OK(weft_spawn(loop, fetch_task, &jobs[0], sizeof jobs[0], NULL, NULL));
  for (int i = 1; i <= N; i++) {
    jobs[i].want = (size_t)(i * 1000);
    jobs[i].timeout = 20000;
    jobs[i].repeat = 5;
    snprintf(jobs[i].url, sizeof jobs[i].url, "http://127.0.0.1:%d/bytes/%zu", s->port,
             jobs[i].want);
    ASSERT_OK(weft_spawn(loop, fetch_task, &jobs[i], sizeof jobs[i], NULL, NULL));
  }
  ASSERT_OK(weft_loop_run(loop));
  ASSERT_RC(jobs[0].rc, WEFT_ETIMEDOUT);
  ASSERT_GE(jobs[0].took, 299);
  ASSERT_LT(jobs[0].took, 3000);
  for (int i = 1; i <= N; i++) ASSERT_RC(jobs[i].rc, 0);
  /* The /slow request may time out before the server reads it (valgrind). */
  int requests = atomic_load(&s->requests);
  ASSERT_GE(requests, 5 * N);
  ASSERT_LE(requests, 5 * N + 1);
  weft_loop_destroy(loop);
  srv_stop(s);
}

/* Cancels the /slow fetch once the server has its request: a real signal
 * (the server's eventfd), watched by the loop. */
typedef struct canceller {
  weft_loop *loop;
  srv *s;
  weft_future *victim;
} canceller;

static void on_slow_arrived(int fd, unsigned events, void *arg) {
  (void)events;
  canceller *c = arg;
  uint64_t v;
  ASSERT_EQ(read(fd, &v, sizeof v), (ssize_t)sizeof v);
  ASSERT_OK(weft_loop_watch(c->loop, fd, 0, NULL, NULL));
  weft_future_cancel(c->victim);
}

TEST(async_cancel_mid_fetch) {
  srv *s = srv_start();
  weft_loop *loop;
  ASSERT_OK(weft_loop_create(&loop, NULL));
  job slow = {.timeout = -1}, ok = {.timeout = 20000, .want = 12345};
  url_of(slow.url, sizeof slow.url, s, "/slow");
  url_of(ok.url, sizeof ok.url, s, "/bytes/12345");
  weft_future *fs, *fo;
  ASSERT_OK(weft_spawn(loop, fetch_task, &slow, sizeof slow, NULL, &fs));
  ASSERT_OK(weft_spawn(loop, fetch_task, &ok, sizeof ok, NULL, &fo));
  canceller c = {.loop = loop, .s = s, .victim = fs};
  ASSERT_OK(weft_loop_watch(loop, s->slow_efd, WEFT_READABLE, on_slow_arrived, &c));
  int64_t t0 = weft_now();
  ASSERT_OK(weft_loop_run(loop));
  ASSERT_LT(weft_now() - t0, 10000);
  ASSERT_RC(slow.rc, WEFT_ECANCELED);
  ASSERT_RC(ok.rc, 0);
  ASSERT_OK(weft_future_error(fo));
  weft_future_release(fs);
  weft_future_release(fo);

  /* The loop is still good for fetches afterwards. */
  job again = {.timeout = 20000, .want = 99};
  url_of(again.url, sizeof again.url, s, "/bytes/99");
  ASSERT_OK(weft_spawn(loop, fetch_task, &again, sizeof again, NULL, NULL));
  ASSERT_OK(weft_loop_run(loop));
  ASSERT_RC(again.rc, 0);
  weft_loop_destroy(loop);
  srv_stop(s);
}

/* Destroying a loop whose task is mid-fetch cancels the fetch and frees it
 * all (the leak checkers watch). */
static void stop_on_slow(int fd, unsigned events, void *arg) {
  (void)events;
  uint64_t v;
  ASSERT_EQ(read(fd, &v, sizeof v), (ssize_t)sizeof v);
  weft_loop *loop = arg;
  ASSERT_OK(weft_loop_watch(loop, fd, 0, NULL, NULL));
  ASSERT_OK(weft_loop_stop(loop));
}

TEST(async_destroy_mid_fetch) {
  srv *s = srv_start();
  weft_loop *loop;
  ASSERT_OK(weft_loop_create(&loop, NULL));
  job slow = {.timeout = -1};
  url_of(slow.url, sizeof slow.url, s, "/slow");
  weft_future *fs;
  ASSERT_OK(weft_spawn(loop, fetch_task, &slow, sizeof slow, NULL, &fs));
  ASSERT_OK(weft_loop_watch(loop, s->slow_efd, WEFT_READABLE, stop_on_slow, loop));
  ASSERT_OK(weft_loop_run(loop));
  weft_loop_destroy(loop);
  ASSERT_RC(slow.rc, WEFT_ECANCELED);
  ASSERT_TRUE(weft_future_done(fs));
  weft_future_release(fs);
  srv_stop(s);
}

TEST(async_keepalive) {
  srv *s = srv_start();
  weft_loop *loop;
  ASSERT_OK(weft_loop_create(&loop, NULL));
  job j = {.timeout = 20000, .want = 4096, .repeat = 20};
  url_of(j.url, sizeof j.url, s, "/bytes/4096");
  ASSERT_OK(weft_spawn(loop, fetch_task, &j, sizeof j, NULL, NULL));
  ASSERT_OK(weft_loop_run(loop));
  ASSERT_RC(j.rc, 0);
  ASSERT_EQ(atomic_load(&s->requests), 20);
  ASSERT_EQ(atomic_load(&s->accepted), 1);
  /* A second run of the loop still reuses the connection. */
  j.repeat = 3;
  ASSERT_OK(weft_spawn(loop, fetch_task, &j, sizeof j, NULL, NULL));
  ASSERT_OK(weft_loop_run(loop));
  ASSERT_RC(j.rc, 0);
  ASSERT_EQ(atomic_load(&s->accepted), 1);
  weft_loop_destroy(loop);
  srv_stop(s);
}

static int errors_task(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  (void)out;
  const srv *s = in;
  char url[128];
  weft_http_response r;
  url_of(url, sizeof url, s, "/404");
  ASSERT_RC(weft_http_get(url, weft_deadline_in(20000), &r), WEFT_EHTTP);
  ASSERT_EQ(r.status, 404);
  ASSERT_STREQ(r.error, "HTTP 404");
  ASSERT_UEQ(r.body_size, 4);
  weft_http_response_free(&r);
  snprintf(url, sizeof url, "http://127.0.0.1:%d/", dead_port());
  ASSERT_RC(weft_http_get(url, weft_deadline_in(20000), &r), WEFT_ECONNREFUSED);
  ASSERT_RC(weft_http_get("http://nonexistent.invalid/", weft_deadline_in(30000), &r), WEFT_EDNS);
  ASSERT_RC(weft_http_get("http://exa mple.com/", WEFT_FOREVER, &r), WEFT_EINVAL);
  ASSERT_RC(weft_http_get("ftp://127.0.0.1/", WEFT_FOREVER, &r), WEFT_EINVAL);
  url_of(url, sizeof url, s, "/reset");
  ASSERT_RC(weft_http_get(url, weft_deadline_in(20000), &r), WEFT_EIO);
  ASSERT_TRUE(r.body == NULL);
  url_of(url, sizeof url, s, "/bytes/10");
  ASSERT_RC(weft_http_get(url, 0, &r), WEFT_ETIMEDOUT);
  /* A name (curl may try ::1 first, where nobody listens, then 127.0.0.1). */
  snprintf(url, sizeof url, "http://localhost:%d/bytes/10", s->port);
  ASSERT_OK(weft_http_get(url, weft_deadline_in(20000), &r));
  check_bytes(&r, 10);
  weft_http_response_free(&r);
  url_of(url, sizeof url, s, "/bytes/10");
  /* The blocking call works inside a task too (and blocks the loop). */
  ASSERT_OK(weft_http_get_blocking(url, weft_deadline_in(20000), &r));
  check_bytes(&r, 10);
  weft_http_response_free(&r);
  return 0;
}

TEST(async_errors) {
  srv *s = srv_start();
  weft_loop *loop;
  ASSERT_OK(weft_loop_create(&loop, NULL));
  weft_future *f;
  ASSERT_OK(weft_spawn(loop, errors_task, s, sizeof *s, NULL, &f));
  ASSERT_OK(weft_loop_run(loop));
  ASSERT_OK(weft_future_error(f));
  weft_future_release(f);
  weft_loop_destroy(loop);
  srv_stop(s);
}

/* Many fetches cancelled while the server holds them: each returns
 * WEFT_ECANCELED, and curl closes each connection (none is left open). */
typedef struct mass_cancel {
  weft_loop *loop;
  weft_future **f;
  int n;
  uint64_t seen;
} mass_cancel;

static void on_all_slow(int fd, unsigned events, void *arg) {
  (void)events;
  mass_cancel *m = arg;
  uint64_t v;
  if (read(fd, &v, sizeof v) == (ssize_t)sizeof v) m->seen += v;
  if (m->seen < (uint64_t)m->n) return;
  ASSERT_OK(weft_loop_watch(m->loop, fd, 0, NULL, NULL));
  for (int i = 0; i < m->n; i++) weft_future_cancel(m->f[i]);
}

TEST(async_cancel_many) {
  srv *s = srv_start();
  weft_loop *loop;
  ASSERT_OK(weft_loop_create(&loop, NULL));
  int n = (int)wt_scaled(50);
  job *jobs = calloc((size_t)n, sizeof *jobs);
  weft_future **f = calloc((size_t)n, sizeof *f);
  for (int i = 0; i < n; i++) {
    jobs[i].timeout = -1;
    url_of(jobs[i].url, sizeof jobs[i].url, s, "/slow");
    ASSERT_OK(weft_spawn(loop, fetch_task, &jobs[i], sizeof jobs[i], NULL, &f[i]));
  }
  mass_cancel m = {.loop = loop, .f = f, .n = n};
  ASSERT_OK(weft_loop_watch(loop, s->slow_efd, WEFT_READABLE, on_all_slow, &m));
  ASSERT_OK(weft_loop_run(loop));
  for (int i = 0; i < n; i++) {
    ASSERT_RC(jobs[i].rc, WEFT_ECANCELED);
    weft_future_release(f[i]);
  }
  ASSERT_EQ(atomic_load(&s->accepted), n);
  srv_wait_closed(s, n);
  weft_loop_destroy(loop);
  free(jobs);
  free(f);
  srv_stop(s);
}

/* Loops on several threads at once, each with its own transfers, and loops
 * made and destroyed again and again. */
static void *loop_thread(void *arg) {
  srv *s = arg;
  for (int round = 0; round < 3; round++) {
    weft_loop *loop;
    ASSERT_OK(weft_loop_create(&loop, NULL));
    job jobs[10];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < 10; i++) {
      jobs[i].want = (size_t)(i * 1111);
      jobs[i].timeout = 30000;
      jobs[i].repeat = 2;
      snprintf(jobs[i].url, sizeof jobs[i].url, "http://127.0.0.1:%d/bytes/%zu", s->port,
               jobs[i].want);
      ASSERT_OK(weft_spawn(loop, fetch_task, &jobs[i], sizeof jobs[i], NULL, NULL));
    }
    ASSERT_OK(weft_loop_run(loop));
    for (int i = 0; i < 10; i++) ASSERT_RC(jobs[i].rc, 0);
    weft_loop_destroy(loop);
  }
  return NULL;
}

TEST(async_loops_on_threads) {
  srv *s = srv_start();
  pthread_t th[3];
  for (int i = 0; i < 3; i++) ASSERT_EQ(pthread_create(&th[i], NULL, loop_thread, s), 0);
  for (int i = 0; i < 3; i++) ASSERT_EQ(pthread_join(th[i], NULL), 0);
  ASSERT_EQ(atomic_load(&s->requests), 3 * 3 * 10 * 2);
  srv_stop(s);
}

/* When curl fails as a whole (here: a watch cannot be recorded because
 * every weft__realloc fails), the fetch fails at once instead of waiting
 * forever, and the next fetch on the loop works (a fresh multi handle). */
static atomic_bool fail_realloc;
static void *flaky_realloc(void *p, size_t n) {
  return atomic_load(&fail_realloc) ? NULL : realloc(p, n);
}

static int broken_multi_task(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  (void)out;
  const srv *s = in;
  char url[128];
  weft_http_response r;
  url_of(url, sizeof url, s, "/bytes/100");
  atomic_store(&fail_realloc, true);
  int rc = weft_http_get(url, WEFT_FOREVER, &r);
  atomic_store(&fail_realloc, false);
  if (rc != WEFT_EIO && rc != WEFT_ENOMEM) WT_FAIL("rc %d (%s)", rc, weft_err_name(rc));
  ASSERT_TRUE(r.error[0] != '\0');
  ASSERT_TRUE(r.body == NULL);
  ASSERT_OK(weft_http_get(url, weft_deadline_in(20000), &r));
  check_bytes(&r, 100);
  weft_http_response_free(&r);
  return 0;
}

TEST(async_broken_multi) {
  ASSERT_OK(weft_set_allocator(malloc, flaky_realloc, free));
  srv *s = srv_start();
  weft_loop *loop;
  ASSERT_OK(weft_loop_create(&loop, NULL));
  weft_future *f;
  ASSERT_OK(weft_spawn(loop, broken_multi_task, s, sizeof *s, NULL, &f));
  ASSERT_OK(weft_loop_run(loop));
  ASSERT_OK(weft_future_error(f));
  weft_future_release(f);
  weft_loop_destroy(loop);
  srv_stop(s);
  ASSERT_OK(weft_set_allocator(NULL, NULL, NULL));
}

/* No busy polling: a fetch that waits 500 ms for a silent server costs the
 * thread almost no CPU. */
static int64_t thread_cpu_ms(void) {
  struct rusage ru;
  getrusage(RUSAGE_THREAD, &ru);
  return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

TEST(async_idle_wait_costs_no_cpu) /* labels: novalgrind */ {
  srv *s = srv_start();
  weft_loop *loop;
  ASSERT_OK(weft_loop_create(&loop, NULL));
  /* Warm up curl (its one-time initialisation is not the point). */
  job warm = {.timeout = 20000, .want = 10};
  url_of(warm.url, sizeof warm.url, s, "/bytes/10");
  ASSERT_OK(weft_spawn(loop, fetch_task, &warm, sizeof warm, NULL, NULL));
  ASSERT_OK(weft_loop_run(loop));
  ASSERT_RC(warm.rc, 0);
  job slow = {.timeout = 500};
  url_of(slow.url, sizeof slow.url, s, "/slow");
  ASSERT_OK(weft_spawn(loop, fetch_task, &slow, sizeof slow, NULL, NULL));
  int64_t cpu0 = thread_cpu_ms();
  ASSERT_OK(weft_loop_run(loop));
  int64_t cpu = thread_cpu_ms() - cpu0;
  ASSERT_RC(slow.rc, WEFT_ETIMEDOUT);
  ASSERT_GE(slow.took, 499);
  ASSERT_LT(cpu, 100);
  weft_loop_destroy(loop);
  srv_stop(s);
}
