/*
 * proc_zygote.c — the fork server ("zygote") and the process worker loop.
 *
 * Design note. fork() in a program with running threads copies only the
 * calling thread; a lock another thread held stays held forever in the
 * child. So workers are never forked from the program itself: the program
 * forks one small single-threaded server, once (weft_process_init, or the
 * first process executor), and the server forks every worker. The registry
 * lock is held across that one fork, so the server gets a consistent table.
 *
 * The server keeps fds 0-2 and its own sockets only (close_range), so
 * neither it nor a worker holds a pipe or socket of the program open. It
 * polls: its main socket (EOF = the program closed it or died: kill every
 * worker, reap, exit), a signalfd for SIGCHLD (reap and report each exit to
 * the worker's session), and one SEQPACKET socket per executor (a session,
 * see proc_wire.h). It dies with the program (PR_SET_PDEATHSIG), and the
 * workers with it. It ignores SIGINT, so that ^C kills the program first
 * and the server then follows by its death signal, having reaped nothing
 * it should not; workers take SIGINT and SIGTERM with default actions.
 *
 * Only the server signals workers (KILL requests): it alone reaps them, so a
 * pid it is asked to kill cannot have been reused yet.
 */
#include "internal.h"
#include "proc_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <linux/futex.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

/* Room for one passed fd in a message's control data. */
union fd_cmsg {
  char buf[CMSG_SPACE(sizeof(int))];
  struct cmsghdr align;
};

/* Makes mh carry fd (SCM_RIGHTS) in u; fd < 0 carries nothing. */
static void attach_fd(struct msghdr *mh, union fd_cmsg *u, int fd) {
  if (fd < 0) return;
  memset(u, 0, sizeof *u);
  mh->msg_control = u->buf;
  mh->msg_controllen = sizeof u->buf;
  struct cmsghdr *c = CMSG_FIRSTHDR(mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
}

/* ---- zmsg over SEQPACKET, with an optional fd ---- */

int weft__zmsg_send(int sock, const struct zmsg *m, int fd) {
  struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof *m};
  union fd_cmsg u;
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  attach_fd(&mh, &u, fd);
  for (;;) {
    ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    if (n == (ssize_t)sizeof *m) return 0;
    if (n < 0 && errno == EINTR) continue;
    return n < 0 ? -errno : -EIO;
  }
}

ssize_t weft__recv_fd(int sock, void *buf, size_t len, int flags, int *passed) {
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  union fd_cmsg u;
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                      .msg_controllen = sizeof u.buf};
  ssize_t n;
  do n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return n;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int got;
      memcpy(&got, CMSG_DATA(c), sizeof got);
      if (*passed < 0) *passed = got;
      else close(got);
    }
  }
  return n;
}

int weft__zmsg_recv(int sock, struct zmsg *m, int *fd, int dontwait) {
  int got = -1;
  ssize_t n = weft__recv_fd(sock, m, sizeof *m, dontwait ? MSG_DONTWAIT : 0, &got);
  if (n < 0) return -errno;
  if (n != 0 && n != (ssize_t)sizeof *m) {
    if (got >= 0) close(got);
    got = -1;
    n = -EPROTO;
  }
  if (fd) *fd = got;
  else if (got >= 0) close(got);
  return n < 0 ? (int)n : n == 0 ? 0 : 1;
}

/* ---- the worker ---- */

/* Sends every byte of iov; passfd >= 0 rides on the first byte. */
int weft__send_iov(int fd, struct iovec *iov, int niov, int passfd) {
  union fd_cmsg u;
  while (niov) {
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)niov};
    attach_fd(&mh, &u, passfd);
    ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (n > 0) passfd = -1;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    size_t left = (size_t)n;
    while (niov && left >= iov->iov_len) {
      left -= iov->iov_len;
      iov++;
      niov--;
    }
    if (niov) {
      iov->iov_base = (char *)iov->iov_base + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

/* Runs one task into out; returns its code. */
static int run_one(weft_fn fn, const char *name, const unsigned char *in, size_t size,
                   weft_out *out) {
  if (!fn)
    return weft_out_fail(out, WEFT_ENOENT, "function \"%s\" is not registered in the worker",
                         name);
  return weft__out_code(out, fn(in, size, out));
}

/* The worker reads its socket through a buffer: a small job (header,
 * name, items) then costs one recvmsg, and jobs queued behind one another
 * may come in together. An fd rides on the first bytes of its req; fds
 * are queued in arrival order and each req that announces one (shm_size
 * > 0) takes the oldest. */
static unsigned char rbuf[16384];
static size_t rb_off, rb_len;
static int fdq[4];
static int nfdq;

/* Reads exactly n bytes: 0, or -1 at EOF or on an error. */
static int rd(int fd, void *p, size_t n) {
  unsigned char *b = p;
  while (n) {
    if (rb_off < rb_len) {
      size_t k = n < rb_len - rb_off ? n : rb_len - rb_off;
      memcpy(b, rbuf + rb_off, k);
      rb_off += k;
      b += k;
      n -= k;
      continue;
    }
    int passed = -1;
    bool direct = n >= sizeof rbuf; /* a large read goes straight in */
    ssize_t r = weft__recv_fd(fd, direct ? b : rbuf, direct ? n : sizeof rbuf, 0, &passed);
    if (passed >= 0) {
      if (nfdq < (int)(sizeof fdq / sizeof fdq[0])) fdq[nfdq++] = passed;
      else close(passed); /* cannot happen: at most two reqs are in flight */
    }
    if (r <= 0) return -1;
    if (direct) {
      b += r;
      n -= (size_t)r;
    } else {
      rb_off = 0;
      rb_len = (size_t)r;
    }
  }
  return 0;
}

/* The oldest fd received, or -1. */
static int take_fd(void) {
  if (nfdq == 0) return -1;
  int fd = fdq[0];
  memmove(fdq, fdq + 1, (size_t)--nfdq * sizeof fdq[0]);
  return fd;
}

/* The worker's two output regions (see proc_wire.h): a result goes in one
 * while the parent may still copy the last one out of the other. */
static struct oreg {
  unsigned char *base; /* the mapping: out_ctl, then at OUT_HDR the data */
  size_t cap;          /* data bytes */
  uint32_t made;       /* results written in it */
} oreg[2];
static int out_last; /* the region written last */

static struct out_ctl *ctl_of(int r) { return (struct out_ctl *)(void *)oreg[r].base; }

/* True when the parent has copied out every result written in region r. */
static bool out_free(int r) {
  return oreg[r].base &&
         atomic_load_explicit(&ctl_of(r)->acked, memory_order_acquire) == oreg[r].made;
}

/* A free region, the older first; -1 if none. */
static int out_pick(void) {
  int older = 1 - out_last;
  return out_free(older) ? older : out_free(out_last) ? out_last : -1;
}

/* Waits until region r is free. -1 if the parent is gone (it closed our
 * socket: it will never ack). */
static int out_wait(int fd, int r) {
  struct out_ctl *c = ctl_of(r);
  while (!out_free(r)) {
    atomic_store(&c->waiting, 1);
    uint32_t seen = atomic_load(&c->acked);
    if (seen != oreg[r].made) {
      /* Bounded, so that a parent that closed our socket is noticed. */
      struct timespec ts = {0, 50 * 1000 * 1000};
      long rc = syscall(SYS_futex, (uint32_t *)&c->acked, FUTEX_WAIT, seen, &ts, NULL, 0);
      if (rc != 0 && errno == ETIMEDOUT) {
        struct pollfd pf = {.fd = fd, .events = POLLRDHUP};
        if (poll(&pf, 1, 0) > 0 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR))) return -1;
      }
    }
    atomic_store(&c->waiting, 0);
  }
  return 0;
}

/* Makes the free (or absent) region r hold `size` bytes: 0, with *newfd >=
 * 0 when a new region must ride along with the answer; -1 if none can be
 * had (the result then goes through the socket). */
static int out_region(int r, size_t size, int *newfd) {
  *newfd = -1;
  if (oreg[r].base && size <= oreg[r].cap) return 0;
  size_t cap = SHM_FIRST;
  while (cap < size) cap *= 2;
  int mfd = memfd_create("weft-out", MFD_CLOEXEC);
  if (mfd < 0) return -1;
  void *m = MAP_FAILED;
  if (ftruncate(mfd, (off_t)(OUT_HDR + cap)) == 0)
    m = mmap(NULL, OUT_HDR + cap, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  if (m == MAP_FAILED) {
    close(mfd);
    return -1;
  }
  if (oreg[r].base) munmap(oreg[r].base, OUT_HDR + oreg[r].cap);
  oreg[r] = (struct oreg){.base = m, .cap = cap}; /* zero-filled: acked == 0 */
  *newfd = mfd;
  return 0;
}

/* Puts a large result that is not in a region yet into one: its index, or
 * -1 (then it goes through the socket); *newfd as out_region. */
static int out_place(int fd, const void *data, size_t size, int *newfd) {
  int r = out_pick();
  if (r < 0) {
    /* Both busy or absent: a second region before waiting for the first. */
    r = !oreg[0].base ? 0 : !oreg[1].base ? 1 : 1 - out_last;
    if (oreg[r].base && out_wait(fd, r)) _exit(0);
  }
  if (out_region(r, size, newfd)) return -1;
  memcpy(oreg[r].base + OUT_HDR, data, size);
  return r;
}

/* Runs jobs from `fd` until EOF. Never returns. A failed initializer fails
 * every later item of this worker with its code and message. */
static _Noreturn void worker_main(int fd) {
  int init_code = 0;
  char *init_msg = NULL;
  unsigned char *in_base[2] = {NULL, NULL}; /* the input regions, read-only here */
  size_t in_cap[2] = {0, 0};
  for (;;) {
    struct req h;
    if (rd(fd, &h, sizeof h)) _exit(0);
    if (h.region > 1) _exit(2);
    if (h.shm_size) {
      int passed = take_fd();
      if (passed < 0) _exit(2);
      void *m = mmap(NULL, (size_t)h.shm_size, PROT_READ, MAP_SHARED, passed, 0);
      if (m == MAP_FAILED) _exit(2);
      close(passed);
      if (in_base[h.region]) munmap(in_base[h.region], in_cap[h.region]);
      in_base[h.region] = m;
      in_cap[h.region] = (size_t)h.shm_size;
    }
    char name[WEFT_REGISTRY_NAME_MAX + 1], iname[WEFT_REGISTRY_NAME_MAX + 1];
    if (h.name_len > WEFT_REGISTRY_NAME_MAX || h.init_name_len > WEFT_REGISTRY_NAME_MAX ||
        rd(fd, name, h.name_len))
      _exit(2);
    name[h.name_len] = '\0';
    if (h.init_name_len) {
      if (rd(fd, iname, h.init_name_len)) _exit(2);
      iname[h.init_name_len] = '\0';
      unsigned char *arg = weft__malloc(h.init_arg_size ? (size_t)h.init_arg_size : 1);
      if (!arg || rd(fd, arg, (size_t)h.init_arg_size)) _exit(2);
      weft_out out = {0};
      init_code = run_one(weft_registry_find(iname), iname, arg, (size_t)h.init_arg_size, &out);
      if (init_code < 0) {
        char buf[300];
        snprintf(buf, sizeof buf, "worker initializer \"%s\" failed: %s", iname,
                 out.msg ? out.msg : weft_strerror(init_code));
        init_msg = weft__strdup(buf);
      }
      weft__out_reset(&out);
      weft__free(arg);
    }
    size_t total = (size_t)h.item_size * (size_t)h.count;
    if (h.item_size && total / h.item_size != h.count) _exit(2);
    bool shm = h.flags & WIRE_SHM;
    if (shm && total > in_cap[h.region]) _exit(2);
    unsigned char *items = shm ? in_base[h.region] : weft__malloc(total ? total : 1);
    if (!items) _exit(2);
    if (!shm && rd(fd, items, total)) _exit(0);
    weft_fn fn = weft_registry_find(name);
    for (uint64_t i = 0; i < h.count; i++) {
      unsigned char inl[256];
      weft_out out = {0};
      /* A free output region takes the result in place: a large one then
       * travels without a copy here. */
      int direct = out_pick();
      out.inl = direct >= 0 ? oreg[direct].base + OUT_HDR : inl;
      out.inl_size = direct >= 0 ? oreg[direct].cap : sizeof inl;
      int code;
      if (init_code < 0) {
        code = init_code;
        out.msg = init_msg ? weft__strdup(init_msg) : NULL;
      } else {
        code = run_one(fn, name, items + i * h.item_size, (size_t)h.item_size, &out);
        if (code >= 0 && out.size > h.max_result)
          code = weft_out_fail(&out, WEFT_ETOOBIG, "result of %zu bytes is above max_payload",
                               out.size);
      }
      struct rsp r = {.code = code, .msg_len = out.msg ? (uint32_t)strlen(out.msg) : 0,
                      .size = code < 0 ? 0 : out.size};
      struct iovec iov[3] = {{&r, sizeof r}, {out.msg, r.msg_len}, {out.data, (size_t)r.size}};
      int newfd = -1;
      if (r.size >= SHM_MIN) {
        int rg = direct >= 0 && out.data == oreg[direct].base + OUT_HDR
                     ? direct
                     : out_place(fd, out.data, (size_t)r.size, &newfd);
        if (rg >= 0) {
          r.flags = WIRE_SHM;
          r.region = (uint32_t)rg;
          r.shm_size = newfd >= 0 ? OUT_HDR + oreg[rg].cap : 0;
          iov[2].iov_len = 0;
          oreg[rg].made++;
          out_last = rg;
        }
      }
      if (weft__send_iov(fd, iov, 3, newfd)) _exit(0);
      if (newfd >= 0) close(newfd);
      weft__out_reset(&out);
    }
    if (!shm) weft__free(items);
  }
}

/* ---- the server ---- */

struct zsess {
  int fd; /* -1: free */
  bool closing;
};
struct zwork {
  pid_t pid;
  int sess; /* -1: its session is gone */
};

static struct zsess *sess;
static int nsess;
static struct zwork *work;
static int nwork, capwork;

static void close_others(int keep_max) {
  if (close_range((unsigned)keep_max + 1, ~0U, 0) == 0) return;
  for (int fd = keep_max + 1; fd < 65536; fd++) close(fd);
}

static void session_bye_if_done(int s) {
  if (sess[s].fd < 0 || !sess[s].closing) return;
  for (int i = 0; i < nwork; i++)
    if (work[i].sess == s) return;
  struct zmsg m = {.type = Z_BYE};
  weft__zmsg_send(sess[s].fd, &m, -1);
  close(sess[s].fd);
  sess[s].fd = -1;
}

static void kill_session(int s, bool forget) {
  for (int i = 0; i < nwork; i++) {
    if (work[i].sess != s) continue;
    kill(work[i].pid, SIGKILL);
    if (forget) work[i].sess = -1;
  }
}

static void reap(void) {
  int st;
  pid_t pid;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
    for (int i = 0; i < nwork; i++) {
      if (work[i].pid != pid) continue;
      int s = work[i].sess;
      work[i] = work[--nwork];
      if (s >= 0 && sess[s].fd >= 0) {
        struct zmsg m = {.type = Z_EXIT, .pid = pid, .arg = st};
        weft__zmsg_send(sess[s].fd, &m, -1);
        session_bye_if_done(s);
      }
      break;
    }
  }
}

static void spawn(int s, int32_t tag) {
  struct zmsg m = {.type = Z_SPAWNED, .arg = tag};
  int sv[2] = {-1, -1};
  if (nwork == capwork) {
    int cap = capwork ? 2 * capwork : 16;
    struct zwork *w = weft__realloc(work, (size_t)cap * sizeof *w);
    if (!w) {
      m.pid = -ENOMEM;
      weft__zmsg_send(sess[s].fd, &m, -1);
      return;
    }
    work = w;
    capwork = cap;
  }
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    m.pid = -errno;
    weft__zmsg_send(sess[s].fd, &m, -1);
    return;
  }
  pid_t server = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    /* The worker: its socket replaces the server's main socket as fd 3
     * (sv[1] > 3 always), every other fd above 2 goes. */
    if (dup2(sv[1], 3) < 0) _exit(2);
    close_others(3);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != server) _exit(0);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    fcntl(3, F_SETFD, FD_CLOEXEC);
    prctl(PR_SET_NAME, "weft-worker"); /* for ps, top and perf */
    worker_main(3);
  }
  close(sv[1]);
  if (pid < 0) {
    m.pid = -errno;
    close(sv[0]);
    weft__zmsg_send(sess[s].fd, &m, -1);
    return;
  }
  work[nwork++] = (struct zwork){.pid = pid, .sess = s};
  m.pid = pid;
  weft__zmsg_send(sess[s].fd, &m, sv[0]);
  close(sv[0]);
}

static void session_msg(int s) {
  struct zmsg m;
  int rc = weft__zmsg_recv(sess[s].fd, &m, NULL, 1);
  if (rc == -EAGAIN) return;
  if (rc <= 0) { /* the executor is gone (or broke the protocol) */
    kill_session(s, true);
    close(sess[s].fd);
    sess[s].fd = -1;
    return;
  }
  switch (m.type) {
  case Z_SPAWN: spawn(s, m.arg); break;
  case Z_KILL:
    for (int i = 0; i < nwork; i++)
      if (work[i].pid == m.pid && work[i].sess == s) kill(m.pid, m.arg);
    break;
  case Z_KILLALL:
    sess[s].closing = true;
    kill_session(s, false);
    session_bye_if_done(s);
    break;
  default: break;
  }
}

static _Noreturn void zygote_main(int sock, pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(0);
  if (sock != 3) {
    if (dup2(sock, 3) < 0) _exit(2);
    sock = 3;
  }
  fcntl(sock, F_SETFD, FD_CLOEXEC);
  close_others(3);
  signal(SIGINT, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) _exit(2);
  struct pollfd *pfd = NULL;
  int cappfd = 0;
  for (;;) {
    if (cappfd < nsess + 2) {
      cappfd = nsess + 2;
      struct pollfd *p = weft__realloc(pfd, (size_t)cappfd * sizeof *p);
      if (!p) _exit(2);
      pfd = p;
    }
    pfd[0] = (struct pollfd){.fd = sock, .events = POLLIN};
    pfd[1] = (struct pollfd){.fd = sfd, .events = POLLIN};
    for (int s = 0; s < nsess; s++) pfd[2 + s] = (struct pollfd){.fd = sess[s].fd, .events = POLLIN};
    if (poll(pfd, (nfds_t)nsess + 2, -1) < 0) {
      if (errno == EINTR) continue;
      _exit(2);
    }
    if (pfd[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {
      }
      reap();
    }
    for (int s = 0; s < nsess; s++)
      if (sess[s].fd >= 0 && pfd[2 + s].revents) session_msg(s);
    if (pfd[0].revents) {
      struct zmsg m;
      int fd;
      int rc = weft__zmsg_recv(sock, &m, &fd, 1);
      if (rc == -EAGAIN) continue;
      if (rc <= 0) { /* the program is gone: take every worker with us */
        for (int i = 0; i < nwork; i++) kill(work[i].pid, SIGKILL);
        while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
        }
        _exit(0);
      }
      if (m.type != Z_SESSION || fd < 0) {
        if (fd >= 0) close(fd);
        continue;
      }
      int s = 0;
      while (s < nsess && sess[s].fd >= 0) s++;
      if (s == nsess) {
        struct zsess *ns = weft__realloc(sess, (size_t)(nsess + 1) * sizeof *ns);
        if (!ns) {
          close(fd); /* the executor sees EOF: its create fails */
          continue;
        }
        sess = ns;
        nsess++;
      }
      sess[s] = (struct zsess){.fd = fd, .closing = false};
    }
  }
}

/* ---- the program's side ---- */

static pthread_mutex_t zmu = PTHREAD_MUTEX_INITIALIZER;
static int zfd = -1;
static pid_t zpid = -1;
static pid_t zowner; /* the process that started the server */

/* A child forked from the program (without exec) inherits the connection
 * to its parent's server, whose workers would not die with it: it drops
 * its copy and starts its own server. */
static void forget_inherited(void) {
  if (zfd >= 0 && zowner != getpid()) {
    close(zfd);
    zfd = -1;
    zpid = -1;
  }
}

static int start_locked(void) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return errno == ENOMEM || errno == ENOBUFS ? WEFT_ENOMEM : WEFT_EAGAIN;
  pid_t parent = getpid();
  weft__registry_lock();
  pid_t pid = fork();
  weft__registry_unlock();
  if (pid == 0) {
    close(sv[0]);
    zygote_main(sv[1], parent);
  }
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    return errno == ENOMEM ? WEFT_ENOMEM : WEFT_EAGAIN;
  }
  zfd = sv[0];
  zpid = pid;
  zowner = parent;
  return 0;
}

int weft_process_init(void) {
  pthread_mutex_lock(&zmu);
  forget_inherited();
  int rc = zfd >= 0 ? 0 : start_locked();
  pthread_mutex_unlock(&zmu);
  return rc;
}

int weft__zygote_session(int *fd) {
  *fd = -1;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return errno == ENOMEM || errno == ENOBUFS ? WEFT_ENOMEM : WEFT_EAGAIN;
  pthread_mutex_lock(&zmu);
  forget_inherited();
  int rc = zfd >= 0 ? 0 : start_locked();
  struct zmsg m = {.type = Z_SESSION};
  if (rc == 0 && weft__zmsg_send(zfd, &m, sv[1]) != 0) {
    /* The server died (killed from outside): reap it and start another. */
    close(zfd);
    zfd = -1;
    kill(zpid, SIGKILL);
    while (waitpid(zpid, NULL, 0) < 0 && errno == EINTR) {
    }
    rc = start_locked();
    if (rc == 0 && weft__zmsg_send(zfd, &m, sv[1]) != 0) rc = WEFT_EAGAIN;
  }
  pthread_mutex_unlock(&zmu);
  close(sv[1]);
  if (rc) {
    close(sv[0]);
    return rc;
  }
  *fd = sv[0];
  return 0;
}
