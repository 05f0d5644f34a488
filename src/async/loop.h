/*
 * loop.h — what the task layer (async/task.c) and the libcurl driver
 * (async/http_client.c) need of the event loop (async/loop.c) beyond the
 * public API: callbacks and timers embedded in the caller's own structs (no
 * allocation per post), and the blocking detector's hooks.
 *
 * OS backends (async/loop_epoll.c; io_uring could follow) implement
 * weft__poller; loop.c picks one by name.
 */
#ifndef WEFT_ASYNC_LOOP_H
#define WEFT_ASYNC_LOOP_H
#include "weft.h"
#include <stdbool.h>
#include <stdint.h>

/* A queued callback owned by the caller. Post it at most once at a time. */
typedef struct weft__cb_node {
  struct weft__cb_node *next;
  weft_cb cb;
  void *arg;
} weft__cb_node;

/* Loop thread: queue n (FIFO with weft_loop_call_soon). */
void weft__loop_post(weft_loop *loop, weft__cb_node *n);
/* Any thread: the same, waking the loop if it sleeps. 0 or WEFT_ECLOSED. */
int weft__loop_post_threadsafe(weft_loop *loop, weft__cb_node *n);

/* A timer owned by the caller (zero it before first use). */
typedef struct weft__timer {
  int64_t when;       /* weft_now() ms */
  uint64_t seq;       /* set by the loop: FIFO among equal `when` */
  size_t heap_index;  /* set by the loop; (size_t)-1 when not armed */
  weft_cb cb;
  void *arg;
} weft__timer;
/* Loop thread: arm t (re-arming an armed timer moves it). 0 or WEFT_ENOMEM. */
int weft__loop_timer_arm(weft_loop *loop, weft__timer *t, int64_t when, weft_cb cb, void *arg);
/* Loop thread: disarm if armed (harmless otherwise). */
void weft__loop_timer_disarm(weft_loop *loop, weft__timer *t);

/* Live-task count: weft_loop_run keeps running while it is above zero. */
void weft__loop_task_added(weft_loop *loop);
void weft__loop_task_removed(weft_loop *loop);

/* Blocking detector: the task layer names what runs now (a task's name and
 * spawn site, as a string that stays valid while it runs), NULL when the
 * loop is back in control. The loop stamps the time of every callback it
 * starts. */
void weft__loop_set_running(weft_loop *loop, const char *what);

/* Default task stack size for this loop. */
size_t weft__loop_stack_size(const weft_loop *loop);

/* For the loop destroy path: the task layer registers one hook per loop that
 * cancels and finishes every live task (called by weft_loop_destroy). */
void weft__loop_set_destroy_hook(weft_loop *loop, void (*hook)(weft_loop *loop, void *arg),
                                 void *arg);
/* The argument given with the destroy hook, or NULL (added by the lead for
 * the task layer, which keeps its per-loop state there). */
void *weft__loop_destroy_hook_arg(const weft_loop *loop);
/* For the destroy hook: drops every queued callback without running it
 * (intrusive nodes are simply forgotten), so their owners may be freed. */
void weft__loop_discard_queued(weft_loop *loop);

/* ---- OS backends ---- */
typedef struct weft__poller weft__poller;
typedef struct weft__poller_ops {
  const char *name;
  int (*create)(weft__poller **out);
  /* events: WEFT_READABLE | WEFT_WRITABLE; 0 = remove. */
  int (*ctl)(weft__poller *p, int fd, unsigned old_events, unsigned new_events);
  /* Waits up to timeout_ms (-1 forever, 0 poll), calling ready(fd, events,
   * ctx) for each ready fd. Returns the count or a negated errno (EINTR is
   * retried by the caller). */
  int (*wait)(weft__poller *p, int timeout_ms, void (*ready)(int fd, unsigned events, void *ctx),
              void *ctx);
  void (*destroy)(weft__poller *p);
} weft__poller_ops;
extern const weft__poller_ops weft__poller_epoll;

#endif
