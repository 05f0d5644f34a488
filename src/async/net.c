/*
 * net.c — TCP sockets that suspend a task (or block a thread) while they
 * wait. Every fd is non-blocking: an operation first tries the system call,
 * and only on EAGAIN waits for readiness (weft__task_wait_fd: the loop in a
 * task, poll(2) elsewhere), so a ready socket costs no loop round trip.
 * Name resolution runs on the weft_to_thread pool: getaddrinfo blocks.
 */
#include "internal.h"
#include "async/task.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void set_nodelay(int fd) {
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ---- name resolution off the loop ---- */

typedef struct resolve_req {
  const char *host;
  char port[16];
  struct addrinfo *res;
  int gai;
} resolve_req;

static int resolve_fn(const void *in, size_t in_size, weft_out *out) {
  (void)in_size;
  (void)out;
  resolve_req *r = (resolve_req *)in;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV;
  r->gai = getaddrinfo(r->host, r->port, &hints, &r->res);
  return 0;
}

static int gai_code(int gai) {
  switch (gai) {
  case 0: return 0;
  case EAI_MEMORY: return WEFT_ENOMEM;
  case EAI_SYSTEM: return errno ? -errno : WEFT_EDNS;
  default: return WEFT_EDNS;
  }
}

/* A request given up on (deadline, cancel) while getaddrinfo may still run
 * is freed by whoever finishes last: this callback. */
static void resolve_abandoned(weft_future *f, void *arg) {
  (void)f;
  resolve_req *r = arg;
  if (r->res) freeaddrinfo(r->res);
  weft__free(r);
}

static int resolve(const char *host, int port, int64_t deadline, struct addrinfo **res) {
  *res = NULL;
  resolve_req *r = weft__calloc(1, sizeof *r + strlen(host) + 1);
  if (!r) return WEFT_ENOMEM;
  r->host = memcpy(r + 1, host, strlen(host) + 1);
  snprintf(r->port, sizeof r->port, "%d", port);
  /* A numeric address needs no resolver: parse it here, on the loop. */
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  if (getaddrinfo(r->host, r->port, &hints, res) == 0) {
    weft__free(r);
    return 0;
  }
  *res = NULL;
  if (!weft__task_self()) { /* a thread may block: resolve here */
    resolve_fn(r, sizeof *r, NULL);
    int rc = gai_code(r->gai);
    *res = r->res;
    weft__free(r);
    return rc;
  }
  weft_future *f;
  int rc = weft_to_thread(resolve_fn, r, sizeof *r, deadline, &f);
  if (!f) { /* never submitted */
    weft__free(r);
    return rc;
  }
  if (rc == 0) {
    rc = weft_future_error(f);
    if (rc == 0) rc = gai_code(r->gai);
    if (rc == 0) *res = r->res;
    else if (r->res) freeaddrinfo(r->res);
    weft__free(r);
  } else if (weft_future_on_done(f, resolve_abandoned, r) != 0) {
    /* Without memory for the callback, leaking r is the safe choice. */
  }
  weft_future_release(f);
  return rc;
}

/* ---- connect ---- */

static int connect_one(const struct addrinfo *ai, int64_t deadline, int *fd_out) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) return -errno;
  int rc = 0;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) {
      rc = -errno;
    } else {
      int ev = weft__task_wait_fd(fd, WEFT_WRITABLE, deadline);
      if (ev < 0) {
        rc = ev;
      } else {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        rc = err ? -err : 0;
      }
    }
  }
  if (rc != 0) {
    close(fd);
    return rc;
  }
  set_nodelay(fd);
  *fd_out = fd;
  return 0;
}

int weft_tcp_connect(const char *host, int port, int64_t deadline, int *fd) {
  if (!fd) return WEFT_EINVAL;
  *fd = -1;
  if (!host || !*host || port <= 0 || port > 65535) return WEFT_EINVAL;
  struct addrinfo *res = NULL;
  int rc = resolve(host, port, deadline, &res);
  if (rc != 0) return rc;
  rc = WEFT_EDNS;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    rc = connect_one(ai, deadline, fd);
    if (rc == 0 || rc == WEFT_ETIMEDOUT || rc == WEFT_ECANCELED) break;
  }
  freeaddrinfo(res);
  return rc;
}

/* ---- listen and accept ---- */

int weft_tcp_listen(const char *host, int port, int backlog, int *fd, int *port_out) {
  if (!fd) return WEFT_EINVAL;
  *fd = -1;
  if (port < 0 || port > 65535) return WEFT_EINVAL;
  if (!host) host = "127.0.0.1";
  if (backlog <= 0) backlog = SOMAXCONN;
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  char portstr[16];
  snprintf(portstr, sizeof portstr, "%d", port);
  int gai = getaddrinfo(host, portstr, &hints, &res);
  if (gai != 0) return gai_code(gai);
  int rc = WEFT_EDNS;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    int s = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (s < 0) {
      rc = -errno;
      continue;
    }
    int one = 1;
    (void)setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, ai->ai_addr, ai->ai_addrlen) != 0 || listen(s, backlog) != 0) {
      rc = -errno;
      close(s);
      continue;
    }
    if (port_out) {
      struct sockaddr_storage ss;
      socklen_t len = sizeof ss;
      if (getsockname(s, (struct sockaddr *)&ss, &len) == 0)
        *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    }
    *fd = s;
    rc = 0;
    break;
  }
  freeaddrinfo(res);
  return rc;
}

int weft_accept(int lfd, int64_t deadline, int *fd) {
  if (!fd) return WEFT_EINVAL;
  *fd = -1;
  if (lfd < 0) return WEFT_EINVAL;
  for (;;) {
    int s = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (s >= 0) {
      set_nodelay(s);
      *fd = s;
      return 0;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
    int ev = weft__task_wait_fd(lfd, WEFT_READABLE, deadline);
    if (ev < 0) return ev;
  }
}

/* ---- read and write ---- */

int weft_read(int fd, void *buf, size_t n, int64_t deadline, size_t *got) {
  if (got) *got = 0;
  if (fd < 0 || (!buf && n) || !got) return WEFT_EINVAL;
  if (n == 0) return 0;
  for (;;) {
    ssize_t r = read(fd, buf, n);
    if (r >= 0) {
      *got = (size_t)r;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
    int ev = weft__task_wait_fd(fd, WEFT_READABLE, deadline);
    if (ev < 0) return ev;
  }
}

int weft_read_exactly(int fd, void *buf, size_t n, int64_t deadline, size_t *got) {
  size_t done = 0;
  int rc = 0;
  if (got) *got = 0;
  if (fd < 0 || (!buf && n)) return WEFT_EINVAL;
  while (done < n) {
    size_t k;
    rc = weft_read(fd, (unsigned char *)buf + done, n - done, deadline, &k);
    if (rc != 0) break;
    if (k == 0) {
      rc = WEFT_EIO;
      break;
    }
    done += k;
  }
  if (got) *got = done;
  return rc;
}

int weft_write_all(int fd, const void *buf, size_t n, int64_t deadline) {
  if (fd < 0 || (!buf && n)) return WEFT_EINVAL;
  size_t done = 0;
  while (done < n) {
    ssize_t w = send(fd, (const unsigned char *)buf + done, n - done, MSG_NOSIGNAL);
    if (w >= 0) {
      done += (size_t)w;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == ENOTSOCK) { /* a pipe or file */
      w = write(fd, (const unsigned char *)buf + done, n - done);
      if (w >= 0) {
        done += (size_t)w;
        continue;
      }
      if (errno == EINTR) continue;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
    int ev = weft__task_wait_fd(fd, WEFT_WRITABLE, deadline);
    if (ev < 0) return ev;
  }
  return 0;
}

int weft_close(int fd) {
  if (fd < 0) return WEFT_EINVAL;
  weft_loop *loop = weft_loop_current();
  if (loop) (void)weft_loop_watch(loop, fd, 0, NULL, NULL);
  return close(fd) == 0 ? 0 : -errno;
}
