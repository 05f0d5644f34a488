/*
 * task.h — suspension points for weft's own async code (sockets, the HTTP
 * client and server): how a task waits for something the loop will see.
 * Implemented by async/task.c.
 */
#ifndef WEFT_ASYNC_TASK_H
#define WEFT_ASYNC_TASK_H
#include "weft.h"
#include <stdint.h>

typedef struct weft__task weft__task;

/* The task running on this thread, or NULL outside any task. */
weft__task *weft__task_self(void);
/* The loop a task runs on. */
weft_loop *weft__task_loop(const weft__task *t);

/*
 * Suspends the calling task (weft__task_self() != NULL) until
 * weft__task_wake(t, code) is called for it (returns that code), the
 * deadline passes (WEFT_ETIMEDOUT), or the task is cancelled
 * (WEFT_ECANCELED). A cancellation that arrived before the call returns
 * WEFT_ECANCELED at once. Whoever arranged the wake-up must forget it when
 * this returns something else (disarm its callback or ignore it).
 */
int weft__task_suspend(int64_t deadline);

/* Loop thread: resumes t (soon, from the loop) with `code`, if it is
 * suspended in weft__task_suspend and not already being woken; else does
 * nothing. */
void weft__task_wake(weft__task *t, int code);

/* Suspends the calling task until fd is ready for `events` (WEFT_READABLE,
 * WEFT_WRITABLE). Returns the ready events (> 0, WEFT_FD_ERROR included),
 * WEFT_ETIMEDOUT or WEFT_ECANCELED, or a negated errno from epoll. Outside a
 * task it polls with poll(2). */
int weft__task_wait_fd(int fd, unsigned events, int64_t deadline);

/* For the "async" executor (exec/async.c), on the loop thread: runs an
 * executor job as a task (weft__job_run inside the coroutine, so the job's
 * function may await). Cancelling the job's future, or a cancelling
 * shutdown of its executor, reaches the task as its own cancellation would.
 * A job whose task is cancelled before it starts is cancelled
 * (weft__job_cancel). `where` names the spawner in messages. */
struct weft__job;
int weft__task_spawn_job(weft_loop *loop, struct weft__job *job, const char *where);

/* Loop thread: cancels every task of the loop (as weft_future_cancel would,
 * also for tasks spawned without a future). */
void weft__task_cancel_all(weft_loop *loop);

#endif
