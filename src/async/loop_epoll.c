/*
 * loop_epoll.c — the epoll backend of the event loop (weft__poller_ops).
 *
 * Level-triggered, so a callback that leaves data unread is called again on
 * the next iteration and nothing is ever lost; the loop's own fd table
 * (loop.c) maps fds to callbacks, so the backend keeps no per-fd state and
 * reports only (fd, events) pairs.
 */
#include "async/loop.h"
#include "internal.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

/* Events fetched per epoll_wait: more ready fds than this are simply
 * reported by the next call (level-triggered). */
#define EPOLL_BATCH 256

struct weft__poller {
  int epfd;
  struct epoll_event ev[EPOLL_BATCH];
};

static int ep_create(weft__poller **out) {
  weft__poller *p = weft__malloc(sizeof *p);
  if (!p) return WEFT_ENOMEM;
  p->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (p->epfd < 0) {
    int e = -errno;
    weft__free(p);
    return e;
  }
  *out = p;
  return 0;
}

static uint32_t to_epoll(unsigned events) {
  uint32_t e = 0;
  if (events & WEFT_READABLE) e |= EPOLLIN;
  if (events & WEFT_WRITABLE) e |= EPOLLOUT;
  return e;
}

static int ep_ctl(weft__poller *p, int fd, unsigned old_events, unsigned new_events) {
  struct epoll_event ev = {.events = to_epoll(new_events), .data.fd = fd};
  int op = old_events == 0 ? EPOLL_CTL_ADD : new_events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
  if (old_events == 0 && new_events == 0) return 0;
  if (epoll_ctl(p->epfd, op, fd, &ev) < 0) {
    /* Removing an fd the kernel already dropped (closed before it was
     * unwatched) leaves the same state the caller asked for. */
    if (op == EPOLL_CTL_DEL && (errno == EBADF || errno == ENOENT)) return 0;
    /* The fd was closed while watched and its number reused: the kernel
     * forgot the old registration, so register the new file. */
    if (op == EPOLL_CTL_MOD && errno == ENOENT && epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
      return 0;
    return -errno;
  }
  return 0;
}

static int ep_wait(weft__poller *p, int timeout_ms,
                   void (*ready)(int fd, unsigned events, void *ctx), void *ctx) {
  int n = epoll_wait(p->epfd, p->ev, EPOLL_BATCH, timeout_ms);
  if (n < 0) return -errno;
  for (int i = 0; i < n; i++) {
    uint32_t e = p->ev[i].events;
    unsigned w = 0;
    if (e & EPOLLIN) w |= WEFT_READABLE;
    if (e & EPOLLOUT) w |= WEFT_WRITABLE;
    if (e & EPOLLERR) w |= WEFT_FD_ERROR;
    /* A hang-up is also "readable": the reader then sees end of file. */
    if (e & EPOLLHUP) w |= WEFT_FD_ERROR | WEFT_READABLE;
    ready(p->ev[i].data.fd, w, ctx);
  }
  return n;
}

static void ep_destroy(weft__poller *p) {
  if (!p) return;
  close(p->epfd);
  weft__free(p);
}

const weft__poller_ops weft__poller_epoll = {
    .name = "epoll",
    .create = ep_create,
    .ctl = ep_ctl,
    .wait = ep_wait,
    .destroy = ep_destroy,
};
