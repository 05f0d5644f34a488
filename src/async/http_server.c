/*
 * http_server.c — a small HTTP/1.1 server on a weft_loop: one task accepts,
 * one task per connection reads requests (async/http_parse.c), calls the
 * handler in that task (so a handler may await: the study's sites sleep
 * their latency), and writes the reply. Keep-alive and pipelining; limits on
 * header and body sizes; 400/413/431/501/505 for bad requests, after which
 * the connection is closed; a connection idle longer than the idle timeout
 * is closed.
 *
 * Lifetime: the server is reference counted by its own tasks and by the
 * user's handle; weft_http_server_stop cancels every task, waits for them
 * when it can (in a task, or outside the running loop), and the last
 * reference frees it.
 */
#include "internal.h"
#include "async/http_parse.h"
#include "async/loop.h"
#include "async/task.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define CONN_BUF_INITIAL 4096
#define ERROR_DRAIN_BYTES (64 * 1024)
#define ERROR_DRAIN_MS 1000

struct weft_http_reply {
  int status;
  bool set;
  bool borrowed; /* body points at storage that outlives the reply */
  char ctype[96];
  const unsigned char *body;
  size_t size;
};

typedef struct conn conn;

struct weft_http_server {
  weft_loop *loop;
  int lfd;
  int port;
  size_t max_header, max_body;
  int64_t idle_ms;
  weft_http_handler handler;
  void *arg;
  size_t refs;      /* the user's handle + one per task (loop thread only) */
  bool stopping;
  weft_future *accept_fut;
  conn *conns;
  weft_future *all_done; /* set when only the user's reference is left */
};

struct conn {
  conn *prev, *next;
  weft_http_server *srv;
  int fd;
  weft_future *fut;
};

static void srv_release(weft_http_server *s) {
  if (--s->refs > 0) {
    if (s->refs == 1 && s->all_done) (void)weft_future_set_result(s->all_done, NULL, 0);
    return;
  }
  weft_future_release(s->all_done);
  weft__free(s);
}

/* ---- replies ---- */

/* Sets the reply without copying: body must outlive the reply's sending. */
static void reply_set_static(weft_http_reply *rep, int status, const char *ctype,
                             const void *body, size_t size) {
  if (rep->body && !rep->borrowed) weft__free((void *)rep->body);
  rep->status = status;
  rep->set = true;
  rep->borrowed = true;
  snprintf(rep->ctype, sizeof rep->ctype, "%s", ctype ? ctype : "");
  rep->body = body;
  rep->size = size;
}

int weft_http_reply_set(weft_http_reply *rep, int status, const char *content_type,
                        const void *body, size_t size) {
  if (!rep || status < 100 || status > 999 || (!body && size)) return WEFT_EINVAL;
  if (content_type && strlen(content_type) >= sizeof rep->ctype) return WEFT_EINVAL;
  unsigned char *copy = NULL;
  if (size) {
    copy = weft__malloc(size);
    if (!copy) return WEFT_ENOMEM;
    memcpy(copy, body, size);
  }
  reply_set_static(rep, status, content_type, copy, size);
  rep->borrowed = false; /* the copy is the reply's own */
  return 0;
}

static void reply_clear(weft_http_reply *rep) {
  if (rep->body && !rep->borrowed) weft__free((void *)rep->body);
  memset(rep, 0, sizeof *rep);
}

/* Writes the head and body with as few system calls as the socket allows. */
static int write_reply(int fd, const char *head, size_t hlen, const unsigned char *body,
                       size_t blen, int64_t deadline) {
  struct iovec iov[2] = {{(void *)head, hlen}, {(void *)body, blen}};
  int niov = blen ? 2 : 1;
  struct iovec *v = iov;
  while (niov > 0) {
    struct msghdr mh = {0};
    mh.msg_iov = v;
    mh.msg_iovlen = (size_t)niov;
    ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
      int ev = weft__task_wait_fd(fd, WEFT_WRITABLE, deadline);
      if (ev < 0) return ev;
      continue;
    }
    size_t left = (size_t)w;
    while (niov > 0 && left >= v->iov_len) {
      left -= v->iov_len;
      v++;
      niov--;
    }
    if (niov > 0) {
      v->iov_base = (char *)v->iov_base + left;
      v->iov_len -= left;
    }
  }
  return 0;
}

static int send_reply(int fd, const weft_http_reply *rep, bool keep_alive, bool head_only,
                      int64_t deadline) {
  char head[512];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n%s%s%sConnection: %s\r\n\r\n",
                   rep->status, weft__http_reason(rep->status), rep->size,
                   rep->ctype[0] ? "Content-Type: " : "", rep->ctype,
                   rep->ctype[0] ? "\r\n" : "", keep_alive ? "keep-alive" : "close");
  return write_reply(fd, head, (size_t)n, head_only ? NULL : rep->body, head_only ? 0 : rep->size,
                     deadline);
}

static void send_error(int fd, int status, int64_t deadline) {
  weft_http_reply rep = {0};
  char body[128];
  int n = snprintf(body, sizeof body, "%d %s\n", status, weft__http_reason(status));
  reply_set_static(&rep, status, "text/plain", body, (size_t)n);
  (void)send_reply(fd, &rep, false, false, deadline);
  /* Close gracefully: stop sending, then drain (bounded) what the client
   * still sends, so the kernel does not answer it with a reset that could
   * destroy the reply before the client has read it. */
  shutdown(fd, SHUT_WR);
  unsigned char sink[4096];
  size_t drained = 0;
  int64_t until = weft_deadline_in(ERROR_DRAIN_MS);
  while (drained < ERROR_DRAIN_BYTES) {
    size_t got;
    if (weft_read(fd, sink, sizeof sink, until, &got) != 0 || got == 0) break;
    drained += got;
  }
}

/* ---- one connection ---- */

static void conn_unlink(conn *c) {
  weft_http_server *s = c->srv;
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
}

static int conn_main(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  (void)out;
  conn *c = (conn *)in;
  weft_http_server *s = c->srv;
  weft__http_parser p;
  weft__http_parser_init(&p, s->max_header, s->max_body);
  size_t cap = CONN_BUF_INITIAL, len = 0;
  /* Room for the largest request we accept, and no more. */
  size_t limit = p.max_header_bytes + p.max_body_bytes + 1;
  unsigned char *buf = weft__malloc(cap);
  int rc = buf ? 0 : WEFT_ENOMEM;
  weft_http_reply rep = {0};
  while (rc == 0) {
    weft__http_request req;
    int pr = weft__http_parse(&p, buf, len, &req);
    if (pr < 0) {
      send_error(c->fd, -pr, weft_deadline_in(s->idle_ms));
      break;
    }
    if (pr == 0) {
      if (len == cap) {
        size_t ncap = cap * 2 > limit ? limit : cap * 2;
        if (ncap <= cap) { /* cannot happen: the parser rejects first */
          send_error(c->fd, 431, weft_deadline_in(s->idle_ms));
          break;
        }
        unsigned char *nb = weft__realloc(buf, ncap);
        if (!nb) {
          rc = WEFT_ENOMEM;
          break;
        }
        buf = nb;
        cap = ncap;
      }
      size_t got;
      rc = weft_read(c->fd, buf + len, cap - len, weft_deadline_in(s->idle_ms), &got);
      if (rc != 0 || got == 0) break; /* idle timeout, reset, cancel or EOF */
      len += got;
      continue;
    }
    /* A complete request: NUL-terminate method and target in place (the
     * bytes after them are the SP separators, consumed already). */
    char *method = (char *)req.method, *target = (char *)req.target;
    method[req.method_len] = '\0';
    target[req.target_len] = '\0';
    weft_http_request pub = {
        .method = method,
        .target = target,
        .body = req.body,
        .body_size = req.content_length,
        .keep_alive = req.keep_alive,
    };
    int hr = s->handler(&pub, &rep, s->arg);
    if (hr == WEFT_ECANCELED && !rep.set) break; /* the server is stopping */
    if (!rep.set) {
      char msg[] = "500 Internal Server Error\n";
      reply_set_static(&rep, 500, "text/plain", msg, sizeof msg - 1);
      rc = send_reply(c->fd, &rep, pub.keep_alive, false, weft_deadline_in(s->idle_ms));
    } else {
      rc = send_reply(c->fd, &rep, pub.keep_alive, strcmp(method, "HEAD") == 0,
                      weft_deadline_in(s->idle_ms));
    }
    reply_clear(&rep);
    if (!req.keep_alive) break;
    /* Pipelining: the next request starts right after this one. */
    len -= req.size;
    memmove(buf, buf + req.size, len);
  }
  reply_clear(&rep);
  weft__free(buf);
  weft_close(c->fd);
  conn_unlink(c);
  weft_future_release(c->fut);
  weft__free(c);
  srv_release(s);
  return 0;
}

/* ---- accepting ---- */

static int accept_main(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  (void)out;
  weft_http_server *s = (weft_http_server *)in;
  while (!s->stopping) {
    int fd;
    int rc = weft_accept(s->lfd, WEFT_FOREVER, &fd);
    if (rc == WEFT_ECANCELED) break;
    if (rc == -EMFILE || rc == -ENFILE || rc == WEFT_ENOMEM) {
      /* Out of fds or memory: back off instead of spinning. */
      if (weft_sleep(10) == WEFT_ECANCELED) break;
      continue;
    }
    if (rc != 0) continue;
    conn *c = weft__calloc(1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->srv = s;
    c->fd = fd;
    weft_task_opts o = {.name = "http connection"};
    if (weft_spawn(s->loop, conn_main, c, sizeof *c, &o, &c->fut) != 0) {
      close(fd);
      weft__free(c);
      continue;
    }
    s->refs++;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
  }
  weft_close(s->lfd);
  s->lfd = -1;
  weft_future_release(s->accept_fut);
  s->accept_fut = NULL;
  srv_release(s);
  return 0;
}

int weft_http_server_start(weft_http_server **out, weft_loop *loop,
                           const weft_http_server_opts *opts, weft_http_handler h, void *arg) {
  if (!out) return WEFT_EINVAL;
  *out = NULL;
  if (!loop || !h) return WEFT_EINVAL;
  weft_http_server_opts o = {0};
  if (opts) o = *opts;
  if (o.port < 0 || o.port > 65535 || o.idle_timeout_ms < 0) return WEFT_EINVAL;
  weft_http_server *s = weft__calloc(1, sizeof *s);
  if (!s) return WEFT_ENOMEM;
  s->loop = loop;
  s->max_header = o.max_header_bytes;
  s->max_body = o.max_body_bytes;
  s->idle_ms = o.idle_timeout_ms ? o.idle_timeout_ms : 10000;
  s->handler = h;
  s->arg = arg;
  int rc = weft_future_create(&s->all_done);
  if (rc == 0) rc = weft_tcp_listen(o.host, o.port, 0, &s->lfd, &s->port);
  if (rc != 0) {
    weft_future_release(s->all_done);
    weft__free(s);
    return rc;
  }
  weft_task_opts to = {.name = "http accept"};
  rc = weft_spawn(loop, accept_main, s, sizeof *s, &to, &s->accept_fut);
  if (rc != 0) {
    close(s->lfd);
    weft_future_release(s->all_done);
    weft__free(s);
    return rc;
  }
  s->refs = 2; /* the user's handle and the accept task */
  *out = s;
  return 0;
}

int weft_http_server_port(const weft_http_server *srv) { return srv ? srv->port : WEFT_EINVAL; }

void weft_http_server_stop(weft_http_server *s) {
  if (!s) return;
  s->stopping = true;
  if (s->accept_fut) (void)weft_future_cancel(s->accept_fut);
  for (conn *c = s->conns; c; c = c->next) (void)weft_future_cancel(c->fut);
  if (s->refs > 1) {
    if (weft_in_task()) (void)weft_await(s->all_done, WEFT_FOREVER);
    else if (!weft_loop_current()) (void)weft_loop_run_until(s->loop, s->all_done, WEFT_FOREVER);
    /* From a plain loop callback we cannot wait: the last task frees it. */
  }
  srv_release(s);
}

/* ---- the study's ten sites ---- */

static unsigned char *site_body[WEFT_SITES];
static pthread_once_t sites_once = PTHREAD_ONCE_INIT;

static void sites_init(void) {
  for (int i = 0; i < WEFT_SITES; i++) {
    size_t n = weft_site_size(i);
    site_body[i] = weft__malloc(n);
    if (site_body[i]) weft__site_fill(i, 0, site_body[i], n);
  }
}

int weft_sites_handler(const weft_http_request *req, weft_http_reply *rep, void *arg) {
  if (!req || !rep) return WEFT_EINVAL;
  double scale = arg ? *(const double *)arg : 1.0;
  if (!(scale > 0)) scale = 1.0;
  const char *t = req->target;
  int site = -1;
  if (strncmp(t, "/site/", 6) == 0 && t[6] >= '0' && t[6] <= '9' && (t[7] == '\0' || t[7] == '?'))
    site = t[6] - '0';
  if (site < 0 || (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0)) {
    static const char nf[] = "404 Not Found\n", na[] = "405 Method Not Allowed\n";
    if (site < 0) reply_set_static(rep, 404, "text/plain", nf, sizeof nf - 1);
    else reply_set_static(rep, 405, "text/plain", na, sizeof na - 1);
    return 0;
  }
  pthread_once(&sites_once, sites_init);
  if (!site_body[site]) return WEFT_ENOMEM;
  int64_t ms = (int64_t)((double)weft_site_latency_ms(site) * scale + 0.5);
  int rc = weft_sleep(ms);
  if (rc != 0) return rc;
  reply_set_static(rep, 200, "application/octet-stream", site_body[site], weft_site_size(site));
  return 0;
}
