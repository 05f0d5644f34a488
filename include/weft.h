/*
 * weft.h — the public interface of weft, and its reference manual.
 *
 * weft does many things at once behind one executor API: the same program maps
 * work over an inline (sequential) executor, one thread per task, or a
 * work-stealing thread pool, and moving between them is a one-line change.
 *
 * Conventions that hold for every function below (read once):
 *
 *  - Errors. Functions return an int: 0 (or a positive count where stated) on
 *    success, a negative WEFT_E* code on failure. The codes are negated errno
 *    values where one fits, so `weft_strerror()` and `strerror(-code)` agree for
 *    those. The library never prints, never exits and never aborts on a
 *    caller's mistake; a failed allocation is WEFT_ENOMEM, not a crash.
 *
 *  - Deadlines. Every call that may block takes `int64_t deadline`: an absolute
 *    time in milliseconds on the clock of `weft_now()`. -1 (WEFT_FOREVER) waits
 *    forever; 0 (WEFT_NOW), or any time already past, tries once without
 *    blocking. When the deadline passes the call returns WEFT_ETIMEDOUT and
 *    leaves everything as it was. Waits never end early.
 *
 *  - Values are bytes with a size. In-process executors (inline, thread,
 *    thread_pool) hand the task the caller's input pointer as it is, without
 *    copying: the caller keeps the input alive and unchanged until the task
 *    has completed. A task's result is copied into (or handed over to) its
 *    future, which owns it.
 *
 *  - Ownership. A function that returns a new object through an out-parameter
 *    gives the caller one reference, which the caller gives back with the
 *    matching destroy/release. Closing or shutting down an owner cancels what it
 *    owns; destroy returns only when everything it owned has finished.
 *
 *  - Threads. Unless a comment says otherwise, every function may be called
 *    from any thread, including from inside a running task.
 */
#ifndef WEFT_H
#define WEFT_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 1
#define WEFT_VERSION_PATCH 0
#define WEFT_VERSION_STRING "0.1.0"

/* Returns the library's version string, e.g. "0.1.0" (static storage). */
const char *weft_version(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * The error table: X(NAME, value, message). WEFT_E<NAME> is the code.
 * Codes from errno are negated errno values; weft's own codes live below
 * -4000, out of errno's range.
 */
#define WEFT_ERRNO_MAP(X)                                                      \
  X(INVAL, -EINVAL, "invalid argument")                                        \
  X(NOMEM, -ENOMEM, "out of memory")                                           \
  X(TIMEDOUT, -ETIMEDOUT, "deadline passed")                                   \
  X(CANCELED, -ECANCELED, "cancelled")                                         \
  X(SHUTDOWN, -ESHUTDOWN, "executor is shut down")                             \
  X(AGAIN, -EAGAIN, "resource temporarily unavailable")                        \
  X(BUSY, -EBUSY, "busy: already running")                                     \
  X(CLOSED, -EPIPE, "channel is closed")                                       \
  X(NOENT, -ENOENT, "no such entry")                                           \
  X(TOOBIG, -E2BIG, "value too large")                                         \
  X(NOSYS, -ENOSYS, "not supported")                                           \
  X(OVERFLOW, -EOVERFLOW, "value out of range")                                \
  X(TASK, -4001, "task failed")                                                \
  X(CRASHED, -4002, "worker crashed")                                          \
  X(PENDING, -4003, "not completed yet")                                       \
  X(CONNREFUSED, -ECONNREFUSED, "connection refused")                          \
  X(CONNRESET, -ECONNRESET, "connection reset by peer")                        \
  X(IO, -EIO, "input/output error")                                            \
  X(PROTO, -EPROTO, "protocol error")                                          \
  X(DNS, -4004, "name resolution failed")                                      \
  X(HTTP, -4005, "HTTP error status")

enum {
#define WEFT__ERR_ENUM(name, value, msg) WEFT_E##name = (value),
  WEFT_ERRNO_MAP(WEFT__ERR_ENUM)
#undef WEFT__ERR_ENUM
};

/* A human-readable message for any int code (static storage, never NULL).
 * Unknown negative codes are described with strerror() when errno knows them. */
const char *weft_strerror(int code);

/* The symbolic name of a code, e.g. "WEFT_ETIMEDOUT"; "WEFT_UNKNOWN" if unknown. */
const char *weft_err_name(int code);

/* ------------------------------------------------------------------------ */
/* Clock, deadlines, CPUs, allocation                                       */
/* ------------------------------------------------------------------------ */

#define WEFT_FOREVER ((int64_t)-1)
#define WEFT_NOW ((int64_t)0)

/* Milliseconds on a monotonic clock (CLOCK_MONOTONIC), never 0 or negative.
 * Deadlines are absolute times on this clock. */
int64_t weft_now(void);

/* A deadline `ms` milliseconds from now; ms < 0 gives WEFT_FOREVER.
 * Saturates instead of overflowing. */
int64_t weft_deadline_in(int64_t ms);

/* Nanoseconds on the same monotonic clock, for measurements. */
uint64_t weft_now_ns(void);

/*
 * The number of CPUs this process may really use: the CPUs in its affinity
 * mask (sched_getaffinity), lowered to the cgroup CPU quota (cgroup v2
 * cpu.max along the process's cgroup path, or v1 cpu.cfs_quota_us /
 * cpu.cfs_period_us), rounded up. Always >= 1. Under `taskset -c 0` it is 1.
 * Read afresh on every call (a few small file reads).
 */
int weft_cpu_count(void);

/*
 * Replaces the allocator weft uses for all its own memory (not for the
 * caller's). Call before creating any weft object, or never; objects allocated
 * with one allocator must not be freed after a switch. Any argument NULL
 * restores the C library's malloc/realloc/free for all three.
 * Returns 0. Not thread-safe with other weft calls.
 */
int weft_set_allocator(void *(*malloc_fn)(size_t), void *(*realloc_fn)(void *, size_t),
                       void (*free_fn)(void *));

/* ------------------------------------------------------------------------ */
/* Tasks: the function an executor runs                                     */
/* ------------------------------------------------------------------------ */

/* Where a running task puts its result. Valid only during the task's call. */
typedef struct weft_out weft_out;

/*
 * A task function. `in`/`in_size` is the task's input (for in-process
 * executors, the submitter's own pointer). It returns 0 on success, or a
 * negative code of its choosing on failure; a failure fails only its own
 * future (or map item), and the executor carries on.
 * The task's result is empty unless it calls weft_out_set()/weft_out_alloc().
 */
typedef int (*weft_fn)(const void *in, size_t in_size, weft_out *out);

/* Copies `size` bytes from `data` as the task's result, replacing any earlier
 * result. Returns 0, WEFT_EINVAL (out NULL, or data NULL with size > 0),
 * WEFT_ENOMEM, or WEFT_ETOOBIG if the result does not fit a map's result slot
 * (see weft_executor_map). */
int weft_out_set(weft_out *out, const void *data, size_t size);

/* Returns a buffer of `size` bytes, owned by the result, for the task to fill
 * in place (no copy). Replaces any earlier result. NULL on allocation failure,
 * or if `size` does not fit a map's result slot. */
void *weft_out_alloc(weft_out *out, size_t size);

/* Records a failure message (printf-style, truncated at 255 bytes) and returns
 * `code`, so a task can `return weft_out_fail(out, WEFT_EINVAL, "bad n=%d", n);`.
 * `code` should be negative; 0 or a positive code is replaced by WEFT_ETASK. */
int weft_out_fail(weft_out *out, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Nonzero if somebody asked to cancel this running task (weft_future_cancel,
 * or a shutdown that cancels). Running work is never stopped by force in
 * process; a long task should poll this and return WEFT_ECANCELED. */
int weft_out_cancelled(const weft_out *out);

/* ------------------------------------------------------------------------ */
/* Futures                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * A future is the one result type of every executor. It is reference counted:
 * whoever receives one (from weft_executor_submit or weft_future_create) owns
 * one reference and gives it back with weft_future_release(). An executor
 * keeps its own reference while the task is queued or running, so releasing
 * a future early never loses or breaks the task.
 */
typedef struct weft_future weft_future;

typedef enum weft_state {
  WEFT_PENDING = 0,   /* queued, not started */
  WEFT_RUNNING = 1,   /* a worker is running it */
  WEFT_DONE = 2,      /* completed with success; result available */
  WEFT_FAILED = 3,    /* completed with the task's (or worker's) error */
  WEFT_CANCELLED = 4  /* cancelled before it ran, or it returned WEFT_ECANCELED */
} weft_state;

/* Name of a state ("pending", "running", "done", "failed", "cancelled"). */
const char *weft_state_name(weft_state s);

/* A future completed by hand (a promise): starts PENDING. Returns 0,
 * WEFT_EINVAL (out NULL) or WEFT_ENOMEM. */
int weft_future_create(weft_future **out);

/* Adds one reference. Returns f. */
weft_future *weft_future_retain(weft_future *f);

/* Gives back one reference; the last one frees the future and its result.
 * NULL is ignored. */
void weft_future_release(weft_future *f);

/* Marks a PENDING future RUNNING. This and the two set_ functions below are
 * for futures made with weft_future_create only: on a future from an
 * executor they return WEFT_EINVAL (its worker alone completes it).
 * Returns 0, WEFT_ECANCELED if it was cancelled, WEFT_EBUSY if already
 * running or done, WEFT_EINVAL. */
int weft_future_set_running(weft_future *f);

/* Completes a pending or running hand-made future with a copy of the bytes.
 * Returns 0, WEFT_EBUSY if it has already completed (nothing changes),
 * WEFT_ENOMEM (the future is then failed with WEFT_ENOMEM), WEFT_EINVAL. */
int weft_future_set_result(weft_future *f, const void *data, size_t size);

/* Fails a pending or running hand-made future with `code` (< 0) and an
 * optional message (copied; may be NULL). WEFT_ECANCELED makes it CANCELLED.
 * Returns 0, WEFT_EBUSY if it has already completed, WEFT_EINVAL. */
int weft_future_set_error(weft_future *f, int code, const char *msg);

/* The current state (a snapshot). */
weft_state weft_future_state(const weft_future *f);

/* Nonzero once the future is DONE, FAILED or CANCELLED. */
int weft_future_done(const weft_future *f);

/*
 * Waits until the future completes or the deadline passes. Returns 0 when it
 * has completed (whatever the outcome: see weft_future_error), WEFT_ETIMEDOUT,
 * or WEFT_EINVAL. Blocks the calling thread (not other tasks).
 */
int weft_future_wait(weft_future *f, int64_t deadline);

/*
 * The outcome of a completed future: 0 if DONE, the task's negative code if
 * FAILED, WEFT_ECANCELED if CANCELLED, WEFT_EPENDING if not completed yet.
 */
int weft_future_error(const weft_future *f);

/* The failure message recorded with the error (weft_out_fail, or by the
 * executor), or NULL. Owned by the future. */
const char *weft_future_errmsg(const weft_future *f);

/*
 * The result of a completed future. On DONE sets *data and *size (either may
 * be NULL) to the result bytes, owned by the future and valid while the caller
 * holds a reference, and returns 0. Otherwise returns what weft_future_error
 * returns and sets *data = NULL, *size = 0. Never blocks: wait first.
 */
int weft_future_result(const weft_future *f, const void **data, size_t *size);

/*
 * Asks to cancel. A PENDING future is cancelled at once (its task will not
 * run; callbacks and waiters run now) and 0 is returned. A RUNNING task gets a
 * flag it may poll (weft_out_cancelled) and WEFT_EBUSY is returned. A
 * completed future is left alone and WEFT_EBUSY is returned.
 */
int weft_future_cancel(weft_future *f);

/* A done-callback: `f` is the completed future (borrowed for the call). */
typedef void (*weft_future_cb)(weft_future *f, void *arg);

/*
 * Runs cb(f, arg) exactly once when the future completes: in the thread that
 * completes it, or at once in the calling thread if it has already completed.
 * Callbacks run in the order added. A callback must not block for long (it
 * runs on a worker); it may call any weft function, including release of its
 * own reference to f. Returns 0, WEFT_EINVAL or WEFT_ENOMEM (then cb never runs).
 */
int weft_future_on_done(weft_future *f, weft_future_cb cb, void *arg);

/*
 * Waits until at least one of the n futures has completed. Sets *index (may be
 * NULL) to the lowest index of a completed one and returns 0; WEFT_ETIMEDOUT;
 * WEFT_EINVAL (n == 0, futs NULL or an entry NULL).
 */
int weft_future_wait_any(weft_future *const *futs, size_t n, int64_t deadline,
                         size_t *index);

/* Waits until all n futures have completed. Returns 0, WEFT_ETIMEDOUT or
 * WEFT_EINVAL. Outcomes are then read with weft_future_error per future. */
int weft_future_wait_all(weft_future *const *futs, size_t n, int64_t deadline);

/*
 * Iterates over futures in the order they complete.
 *
 *   weft_as_completed *it;
 *   weft_as_completed_create(&it, futs, n);
 *   size_t i;
 *   while (weft_as_completed_next(it, WEFT_FOREVER, &i) == 0) use(futs[i]);
 *   weft_as_completed_destroy(it);
 *
 * The iterator holds its own reference to each future.
 */
typedef struct weft_as_completed weft_as_completed;

/* Returns 0, WEFT_EINVAL (any pointer NULL) or WEFT_ENOMEM. n may be 0. */
int weft_as_completed_create(weft_as_completed **out, weft_future *const *futs, size_t n);

/* Sets *index to the next completed future's index and returns 0; returns
 * WEFT_ECLOSED when all n have been returned, WEFT_ETIMEDOUT, WEFT_EINVAL.
 * One thread at a time. */
int weft_as_completed_next(weft_as_completed *it, int64_t deadline, size_t *index);

/* Frees the iterator (at any point; futures not yet returned are unaffected). */
void weft_as_completed_destroy(weft_as_completed *it);

/* ------------------------------------------------------------------------ */
/* Executors                                                                */
/* ------------------------------------------------------------------------ */

typedef struct weft_executor weft_executor;

/*
 * Options for weft_executor_create. Zero means "the default" for every field,
 * so `weft_executor_opts o = {0};` or NULL is a fine start.
 */
typedef struct weft_executor_opts {
  /* Workers. thread_pool: default weft_cpu_count() (CPU-bound work); pass
   * weft_io_workers() for IO-bound work. thread: at most this many task
   * threads alive at once (default: no limit). process_pool: worker
   * processes, default weft_cpu_count(). process: at most this many task
   * processes alive at once (default: no limit). inline, async: ignored
   * (one thread). */
  int workers;
  /* map/imap: items per trip to a worker. 0 = automatic: n / (8 x workers),
   * clamped to [1, 256] (async: 1, every item its own task). 1 gives the
   * finest load balance. */
  size_t chunksize;
  /* map/imap: at most this many items submitted and not yet consumed
   * (back-pressure). 0 = default: max(1024, 4 x chunksize x workers). */
  size_t max_inflight;
  /* The rest is for the process executors ("process", "process_pool");
   * the others ignore it. */
  /* Per task (per item of a map): a task running longer has its worker
   * killed (SIGTERM, SIGKILL 100 ms later) and replaced, and fails with
   * WEFT_ETIMEDOUT. 0 = no limit. */
  int64_t task_timeout_ms;
  /* Largest input item and result, in bytes: a larger input is refused at
   * submit (WEFT_ETOOBIG), a larger result fails its task (WEFT_ETOOBIG).
   * 0 = 1 GiB. */
  size_t max_payload;
  /* A registered function (see weft_register) each worker runs once,
   * before its first task, with init_arg (init_arg_size bytes, copied at
   * create). If it fails, every task of that worker fails with its code and
   * a message naming it. NULL = none. */
  weft_fn initializer;
  const void *init_arg;
  size_t init_arg_size;
  /* A worker is replaced after this many tasks (checked when a map chunk
   * ends). 0 = never. */
  int max_tasks_per_worker;
} weft_executor_opts;

/* The default size of a pool for IO-bound work: min(32, weft_cpu_count() + 4). */
int weft_io_workers(void);

/*
 * Creates an executor of the named kind: "inline", "thread", "thread_pool",
 * "process", "process_pool" or "async" (weft_executor_kinds lists them).
 * "async" runs every task (every map item) as a coroutine task on one event
 * loop driven by a thread of its own: tasks that await (weft_sleep,
 * weft_http_get, sockets, weft_await ...) wait together, the rest run one
 * at a time; cancelling a task's future, or a cancelling shutdown, is seen
 * at its next await (see "Async" below). `opts` may be NULL. Returns 0,
 * WEFT_EINVAL (out or kind NULL, negative workers; process executors:
 * negative task_timeout_ms or max_tasks_per_worker, init_arg NULL with a
 * size), WEFT_ENOENT (unknown kind; an initializer that is not registered),
 * WEFT_ETOOBIG (init_arg above max_payload), WEFT_ENOMEM, WEFT_EAGAIN (the
 * system refused a thread, or a process).
 */
int weft_executor_create(weft_executor **out, const char *kind,
                         const weft_executor_opts *opts);

/* The names of the available kinds, NULL-terminated (static storage). */
const char *const *weft_executor_kinds(void);

/*
 * Submits one task: fn(in, in_size, out) runs on the executor and *fut
 * receives its future (the caller's reference). `fut` may be NULL to submit
 * without a future (fire and forget: the task's result and error are dropped).
 * The inline executor runs the task here, before returning.
 * Returns 0; WEFT_EINVAL (ex or fn NULL, in NULL with in_size > 0);
 * WEFT_ESHUTDOWN (after shutdown began; the task does not run);
 * WEFT_ENOMEM; WEFT_EAGAIN (thread executor: the system refused a thread);
 * WEFT_ENOENT (process executors: fn is not registered, see weft_register);
 * WEFT_ETOOBIG (process executors: in_size above 1 GiB).
 * On error *fut is set to NULL and nothing was queued.
 */
int weft_executor_submit(weft_executor *ex, weft_fn fn, const void *in, size_t in_size,
                         weft_future **fut);

/*
 * Maps fn over n items, in order, and waits. Item i is the `item_size` bytes at
 * (const char *)items + i * item_size. Item i's result goes to the
 * `result_size` bytes at (char *)results + i * result_size (a result larger than
 * the slot fails that item with WEFT_ETOOBIG; a smaller one fills the front of
 * the slot and the rest is zeroed). `results` may be NULL when result_size
 * is 0. `errors`, if not NULL, receives each item's code (0 or negative).
 * At most max_inflight items are in flight at once; items travel in chunks.
 * Returns 0 if every item succeeded; else the code of the lowest-index
 * failed item (every item still ran or was cancelled); WEFT_ETIMEDOUT at the
 * deadline (work not yet started is cancelled; work already running
 * finishes in the background and writes nothing to results or errors after
 * the return, but may still read its items: keep `items` alive until the
 * executor has been shut down or destroyed); WEFT_EINVAL; WEFT_ESHUTDOWN;
 * WEFT_ENOMEM. Blocks the calling thread until done or the deadline.
 */
int weft_executor_map(weft_executor *ex, weft_fn fn, const void *items, size_t item_size,
                      size_t n, void *results, size_t result_size, int *errors,
                      int64_t deadline);

/* One result of an imap iterator, valid until the next call on the iterator. */
typedef struct weft_item {
  size_t index;       /* the item's index in the input */
  int error;          /* 0, or the task's negative code (WEFT_ECANCELED ...) */
  const char *errmsg; /* failure message, or NULL */
  const void *data;   /* result bytes (NULL if none) */
  size_t size;        /* result size */
} weft_item;

typedef struct weft_imap weft_imap;

/*
 * Streams fn over n items (same layout as weft_executor_map): results come out
 * of weft_imap_next one by one, in input order (weft_executor_imap) or in
 * completion order (weft_executor_imap_unordered), while at most max_inflight
 * items are submitted and not yet consumed. The input must stay alive until
 * the iterator is destroyed. Returns 0, WEFT_EINVAL, WEFT_ESHUTDOWN or
 * WEFT_ENOMEM.
 */
int weft_executor_imap(weft_executor *ex, weft_fn fn, const void *items, size_t item_size,
                       size_t n, weft_imap **out);
int weft_executor_imap_unordered(weft_executor *ex, weft_fn fn, const void *items,
                                 size_t item_size, size_t n, weft_imap **out);

/*
 * The next result: fills *item and returns 0; WEFT_ECLOSED after the last one;
 * WEFT_ETIMEDOUT (call again later; nothing is lost); WEFT_EINVAL. An item's
 * own failure is reported in item->error, not in the return value.
 * One thread at a time per iterator.
 */
int weft_imap_next(weft_imap *it, int64_t deadline, weft_item *item);

/* Cancels what has not started, waits for what is running, frees the
 * iterator. Blocks until the iterator's running items have finished. */
void weft_imap_destroy(weft_imap *it);

/* Shutdown flags. */
#define WEFT_SHUTDOWN_FINISH 0 /* run the pending tasks, then stop */
#define WEFT_SHUTDOWN_CANCEL 1 /* cancel pending tasks (futures: CANCELLED) */

/*
 * Stops accepting work (later submits get WEFT_ESHUTDOWN), then finishes or
 * cancels pending tasks per `flags`, and waits for running tasks until the
 * deadline. Running tasks are asked to cancel (weft_out_cancelled) with
 * WEFT_SHUTDOWN_CANCEL. Returns 0 once no task is left, WEFT_ETIMEDOUT if the
 * deadline passed first (call again to keep waiting), WEFT_EINVAL. May be
 * called more than once; must not be called from one of its own tasks.
 */
int weft_executor_shutdown(weft_executor *ex, int flags, int64_t deadline);

/*
 * Shuts down (cancelling pending tasks), waits for running tasks without a
 * deadline, joins every thread and frees the executor. Futures still held by
 * the caller stay valid (each completed or cancelled). NULL is ignored.
 * Must not be called from one of its own tasks.
 */
void weft_executor_destroy(weft_executor *ex);

/* A snapshot of an executor's load. */
typedef struct weft_executor_stats {
  const char *name;   /* kind: "inline", "thread", "thread_pool", ... */
  int size;           /* workers (thread: task threads alive now) */
  int busy;           /* workers running a task now */
  size_t queued;      /* tasks (chunks) waiting for a worker */
  uint64_t submitted; /* tasks (chunks) accepted so far */
  uint64_t completed; /* tasks (chunks) finished so far (any outcome) */
} weft_executor_stats;

/* Fills *st. Returns 0 or WEFT_EINVAL. The counts are a racy snapshot. */
int weft_executor_stats_get(weft_executor *ex, weft_executor_stats *st);

/* The kind's name, e.g. "thread_pool" (static storage; "?" if ex is NULL). */
const char *weft_executor_name(const weft_executor *ex);

/* ------------------------------------------------------------------------ */
/* Processes: the function registry, "process" and "process_pool"          */
/* ------------------------------------------------------------------------ */

/*
 * Executors "process" (a new process per task, or per map chunk) and
 * "process_pool" (pre-started worker processes; default size
 * weft_cpu_count()) run tasks in other address spaces, behind the same API as
 * the thread executors: switching a program from "thread_pool" to
 * "process_pool" is a one-line change, provided its task functions are
 * registered (below). Inputs and results are copied as bytes; a result
 * handed to weft_out_set in the worker comes back byte for byte. Inputs are
 * copied when a task is sent to a worker, not at submit, so (as with every
 * executor) the caller keeps them alive until the task has completed. A
 * trip (one task, or one map chunk) of 64 KiB or more, and a result of
 * 64 KiB or more, travels through shared memory (an anonymous memfd per
 * worker and direction, mapped by both sides and reused from task to task);
 * smaller ones through the worker's socket. Results in a worker go through
 * weft_out as usual; weft_out_cancelled is always 0 there (running work is
 * stopped by killing its worker, below).
 *
 * Outcomes. A task's own error (weft_out_fail) comes back with its code and
 * message. A worker that dies while running a task (a signal, abort(), exit)
 * fails that task alone with WEFT_ECRASHED and a message naming the cause,
 * e.g. "worker 1234 killed by signal 11 (Segmentation fault)" or "worker 1234
 * exited with status 3"; the pool starts a replacement worker and every
 * other task (including the rest of the crashed task's map chunk) still
 * runs. A task cancelled while it runs (weft_future_cancel, or a shutdown
 * with WEFT_SHUTDOWN_CANCEL) has its worker killed (SIGTERM, then SIGKILL
 * after 100 ms) and replaced, and fails with WEFT_ECANCELED.
 *
 * Fork safety. Workers are forked by a small single-threaded fork server,
 * forked once per program by weft_process_init or, failing that, by the
 * first process executor created. A program that already runs threads when
 * the fork server is forked risks the server inheriting a lock held by one
 * of them (glibc's own malloc locks are safe): call weft_process_init() at
 * the start of main, before starting any thread. Workers see the function
 * registry as it was at that moment: register functions (WEFT_REGISTER does
 * so at program load) before it. The server and the workers die with the
 * program (PR_SET_PDEATHSIG) and hold none of the program's other file
 * descriptors. Destroying a process executor kills and reaps its workers.
 */

/* The longest name a function can be registered under, in bytes. */
#define WEFT_REGISTRY_NAME_MAX 63

/*
 * Registers fn under `name` (copied), so that process workers can find it.
 * Any thread, any time; registering the same pair again is harmless, and one
 * fn may have several names (weft_registry_name gives the first).
 * Returns 0; WEFT_EINVAL (name or fn NULL, name empty or longer than
 * WEFT_REGISTRY_NAME_MAX bytes); WEFT_EBUSY (the name belongs to another
 * function); WEFT_ENOMEM (the table of 1024 names is full).
 */
int weft_register(const char *name, weft_fn fn);

/* The function registered under `name`, or NULL. Any thread; does not block
 * beyond a short internal lock. */
weft_fn weft_registry_find(const char *name);

/* The (first) name fn is registered under, or NULL. The string is static
 * storage, valid for the life of the program. Any thread. */
const char *weft_registry_name(weft_fn fn);

/* Registers fn under its own name when the program (or library) is loaded,
 * before main: `WEFT_REGISTER(my_task);` at file scope after its definition.
 * (The trailing extern declaration takes the semicolon, so the line is
 * clean under -Wpedantic too.) */
#define WEFT_REGISTER(fn)                                                      \
  __attribute__((constructor)) static void weft__register_##fn(void) {         \
    (void)weft_register(#fn, fn);                                              \
  }                                                                            \
  extern int weft__registered_##fn

/*
 * Starts the fork server that forks process workers, if it is not running.
 * Call it at the start of main, before any thread starts (see "Fork safety"
 * above); otherwise the first process executor created starts it. Any
 * thread; blocks for one fork(). Returns 0 (also when already running),
 * WEFT_EAGAIN (fork refused) or WEFT_ENOMEM.
 */
int weft_process_init(void);

/* ------------------------------------------------------------------------ */
/* Distributed: the mpi executor                                            */
/* ------------------------------------------------------------------------ */

/*
 * Executor "mpi" runs tasks on the other ranks of an MPI job (Open MPI), on
 * this machine or on many, behind the same API: submit, map, imap and
 * imap_unordered work as with "process_pool". It lives in a library of its
 * own, libweft_mpi, built when MPI is found (link it as well as weft: CMake
 * target weft::weft_mpi or weft::weft_mpi_static; by hand `-lweft_mpi -lweft`
 * plus mpicc's flags), so that programs that do not use it do not load MPI.
 * The kind exists from weft_mpi_init on (weft_executor_kinds lists it then).
 *
 * The program is started by mpirun, e.g. `mpirun -np 4 ./prog` (as root:
 * OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; on fewer
 * cores than ranks: --oversubscribe), and calls weft_mpi_init first thing
 * in main. Rank 0 returns from it and runs the program's logic; every other
 * rank (a "worker") never returns: it serves rank 0's tasks, then finalizes
 * MPI and exits with status 0 when rank 0 calls weft_mpi_finalize (or
 * returns from main: an atexit hook calls it). Task functions are found by
 * name, so every rank runs the same program and registers them
 * (WEFT_REGISTER). Inputs and results travel as bytes, unchanged: the ranks
 * must share one data layout (one build of the program, one architecture).
 *
 *   int main(int argc, char **argv) {
 *     if (weft_mpi_init(&argc, &argv) != 0) return 1;  // workers stay inside
 *     weft_executor *ex;
 *     weft_executor_create(&ex, "mpi", NULL);          // all worker ranks
 *     weft_executor_map(ex, fib_task, ns, sizeof ns[0], n, fibs, sizeof fibs[0],
 *                       NULL, WEFT_FOREVER);
 *     weft_executor_destroy(ex);
 *     return weft_mpi_finalize();
 *   }
 *
 * Balance. Workers take work as they free up: a job (a task, or a map chunk
 * of `chunksize` items) goes to an idle rank first, so a slow rank gets
 * less. A rank running a map chunk gets the next one queued behind it (it
 * never waits for a round trip between chunks), and a rank that answers
 * within ~2 ms up to 8 jobs, so tiny tasks stream; other tasks wait on rank
 * 0 for the first rank that frees up. Options: workers
 * (use at most this many worker ranks; default all), chunksize and
 * max_inflight as for every executor; the process-only options are ignored.
 * Inputs and results up to 1 GiB per trip (WEFT_ETOOBIG above). A task's
 * cancellation reaches its rank: an item not started is cancelled, a
 * running one sees weft_out_cancelled.
 *
 * Failure: what survives and what does not.
 *  - A task's own failure (its code and weft_out_fail message) fails its own
 *    future or map item; everything else goes on.
 *  - A rank that dies (a crash, a kill, exit() in a task, a lost machine) is
 *    noticed by silence: a rank that holds work sends a heartbeat every
 *    250 ms, and one silent for WEFT_MPI_DEAD_MS ms (environment variable
 *    read at executor create; default 10000) is presumed dead. The work it
 *    held (the item running, and the rest of its chunk and of the chunk
 *    queued behind it) fails with WEFT_ECRASHED and a message such as "mpi
 *    rank 2 on node1 stopped answering (nothing for 10003 ms): presumed
 *    dead". All other work, queued or on other ranks, runs on the ranks left;
 *    when none is left it fails the same way. A presumed-dead rank gets no
 *    more work for the rest of the run (later executors skip it) and what it
 *    may still send is dropped. Nothing is retried elsewhere: a task may have
 *    had effects. A task that hangs in a live rank is not a dead rank: bound
 *    it with the map's deadline.
 *  - For the ranks left to survive at all, mpirun must not end the job when
 *    one rank dies, as it does by default: run it with
 *    `--mca orte_enable_recovery 1` (Open MPI 4). mpirun then exits 0
 *    whatever the ranks did: let rank 0 report its own outcome. Once a rank
 *    was presumed dead, weft_mpi_finalize skips MPI_Finalize on every rank
 *    (Open MPI's waits for all ranks, the dead one too, and was seen to
 *    hang): the processes exit without it.
 *  - Rank 0 is the program. If it exits (also through exit() with an
 *    executor still alive: the atexit hook abandons the executor's work),
 *    the workers are told to stop and exit once their running task ends
 *    (within 2 s; a task that runs longer is left behind by its rank's
 *    exit). If it crashes, mpirun ends the job by default; in recovery
 *    mode nothing tells the workers, so bound the run (mpirun --timeout).
 */

/*
 * Initialises MPI (MPI_Init_thread, MPI_THREAD_SERIALIZED: weft calls MPI
 * from one thread at a time) and weft's MPI session. If MPI was already
 * initialised by the program, with at least MPI_THREAD_SERIALIZED, weft uses
 * it and leaves MPI_Finalize to the program. argc and argv are MPI_Init's
 * (may be NULL). Every rank calls it, from the main thread, once, before
 * starting threads of its own. On rank 0 returns 0; on the other ranks
 * serves tasks and exits the process (status 0) when rank 0 finalizes.
 * Errors (rank 0, or any rank before it knows its rank): WEFT_EIO (MPI
 * failed to start), WEFT_ENOSYS (MPI offers less than
 * MPI_THREAD_SERIALIZED), WEFT_ENOMEM,
 * WEFT_EINVAL (called again after weft_mpi_finalize). A second call before
 * finalize returns 0.
 */
int weft_mpi_init(int *argc, char ***argv);

/* This process's rank (0 for the program), or WEFT_EINVAL before
 * weft_mpi_init. */
int weft_mpi_rank(void);

/* The number of ranks in the job (the worker ranks are this minus 1), or
 * WEFT_EINVAL before weft_mpi_init. */
int weft_mpi_size(void);

/*
 * Rank 0: tells every live worker rank to stop (they finalize and exit) and
 * finalizes MPI. Call it after destroying the mpi executor, from the thread
 * that called weft_mpi_init. Blocks at most ~5 s for the stop messages to
 * leave. Returns 0 (also when not initialised, or already finalized), or
 * WEFT_EBUSY while an mpi executor still exists (nothing is done).
 */
int weft_mpi_finalize(void);

/* weft_executor_create(&ex, "mpi", opts) on rank 0 returns, besides the
 * usual errors: WEFT_EINVAL (weft_mpi_init not called, or finalized),
 * WEFT_EBUSY (an mpi executor already exists: one at a time), WEFT_EAGAIN
 * (no worker rank: the job has one rank, or all are presumed dead). */

/* ------------------------------------------------------------------------ */
/* Sync: channel, event, semaphore                                          */
/* ------------------------------------------------------------------------ */

/*
 * A bounded multi-producer multi-consumer queue of fixed-size elements.
 * Elements are copied in and out.
 */
typedef struct weft_chan weft_chan;

/* capacity >= 1 elements of elem_size >= 1 bytes. Returns 0, WEFT_EINVAL
 * (out NULL, capacity or elem_size 0, or capacity x elem_size too large),
 * WEFT_ENOMEM. On failure *out is set to NULL (when out is not NULL). */
int weft_chan_create(weft_chan **out, size_t capacity, size_t elem_size);

/* Copies one element in, waiting for room until the deadline. Returns 0,
 * WEFT_ECLOSED (closed: nothing sent), WEFT_ETIMEDOUT, WEFT_EINVAL. */
int weft_chan_send(weft_chan *ch, const void *elem, int64_t deadline);

/* Copies one element out, waiting for one until the deadline. Elements sent
 * before close are still received after it. Returns 0, WEFT_ECLOSED (closed
 * and empty), WEFT_ETIMEDOUT, WEFT_EINVAL. */
int weft_chan_recv(weft_chan *ch, void *elem, int64_t deadline);

/* Closes the channel: senders get WEFT_ECLOSED at once (blocked ones wake);
 * receivers drain what is left, then get WEFT_ECLOSED. Returns 0, or
 * WEFT_ECLOSED if already closed, WEFT_EINVAL. */
int weft_chan_close(weft_chan *ch);

/* Elements queued now (snapshot); 0 for NULL. */
size_t weft_chan_len(weft_chan *ch);

/* Frees the channel. No thread may be using it. NULL is ignored. */
void weft_chan_destroy(weft_chan *ch);

/* An event: a flag that threads wait for. Starts clear. */
typedef struct weft_event weft_event;

/* 0, WEFT_EINVAL, WEFT_ENOMEM; on failure *out is NULL (when out is not NULL). */
int weft_event_create(weft_event **out);
int weft_event_set(weft_event *ev);                /* wakes all waiters; 0, WEFT_EINVAL */
int weft_event_clear(weft_event *ev);              /* 0, WEFT_EINVAL */
int weft_event_is_set(weft_event *ev);             /* 1 or 0 (0 for NULL) */
/* Returns 0 once the event is set, or has been set since the call began (a
 * set() at once followed by clear() still releases the threads waiting at the
 * time); WEFT_ETIMEDOUT; WEFT_EINVAL. */
int weft_event_wait(weft_event *ev, int64_t deadline);
void weft_event_destroy(weft_event *ev);           /* no waiters; NULL ignored */

/* A counting semaphore. */
typedef struct weft_sem weft_sem;

/* initial >= 0. Returns 0, WEFT_EINVAL, WEFT_ENOMEM; on failure *out is NULL
 * (when out is not NULL). */
int weft_sem_create(weft_sem **out, long initial);
/* Adds one (wakes one waiter). 0, WEFT_EOVERFLOW at LONG_MAX, WEFT_EINVAL. */
int weft_sem_post(weft_sem *s);
/* Takes one, waiting until the deadline: 0, WEFT_ETIMEDOUT, WEFT_EINVAL. */
int weft_sem_wait(weft_sem *s, int64_t deadline);
/* The current count (snapshot), or WEFT_EINVAL for NULL. */
long weft_sem_value(weft_sem *s);
void weft_sem_destroy(weft_sem *s);                /* no waiters; NULL ignored */

/* ------------------------------------------------------------------------ */
/* Async: event loop, coroutine tasks, sockets, HTTP                         */
/* ------------------------------------------------------------------------ */

/*
 * One thread, many tasks that yield only where they wait. A weft_loop runs
 * on the thread that calls weft_loop_run*; everything below that says "loop
 * thread" must be called from that thread (while the loop runs, or between
 * runs), and the rest from any thread.
 *
 * Tasks are stackful coroutines: a task is an ordinary weft_fn (the same
 * signature executors run) that runs on its own stack and whose outcome is
 * an ordinary weft_future, so it can be awaited, cancelled, passed to
 * weft_future_on_done, or waited for from another thread. Inside a task, the
 * "await" calls (weft_await*, weft_sleep, weft_yield, the socket and HTTP
 * calls) suspend only that task and let the loop run others. Called outside
 * any task, the same calls block the calling thread instead (weft_await is
 * then weft_future_wait, weft_sleep is nanosleep, sockets use poll), so a
 * function that uses them works both in a task and in a thread-pool worker.
 *
 * Cancellation: weft_future_cancel on a task that has not started cancels
 * it at once; on a running task it makes the task's current await return
 * WEFT_ECANCELED, and every later one too (cancellation is sticky, so a task
 * that just passes errors up unwinds quickly; such awaits still let the loop
 * run others once). weft_out_cancelled is then 1 as well. A task that
 * returns normally anyway completes normally; one that returns
 * WEFT_ECANCELED ends in state WEFT_CANCELLED. Cancelling a task from
 * another thread is allowed while its loop exists (not concurrently with
 * weft_loop_destroy).
 */
typedef struct weft_loop weft_loop;
typedef void (*weft_cb)(void *arg);

typedef struct weft_loop_opts {
  /* Default stack size of tasks, in bytes (rounded up to pages); 0 = 256 KiB.
   * Stacks are reserved, not committed: an idle task costs the pages its
   * stack has really touched (one page at least), and each has a guard page
   * below it that turns an overflow into a clear message. */
  size_t stack_size;
  /* Blocking detector: report (on stderr, while it happens) a task or
   * callback that holds the loop longer than this many ms. 0 = the
   * environment variable WEFT_BLOCK_WARN_MS if set (a number of ms; "1" and
   * other values below 1 ms mean 100), else off; < 0 = off. */
  int block_warn_ms;
  /* OS backend: NULL or "epoll" (the only one today). */
  const char *backend;
} weft_loop_opts;

/* Creates a loop (opts may be NULL). Returns 0, WEFT_EINVAL (unknown
 * backend), WEFT_ENOMEM, or a negated errno from epoll/eventfd. */
int weft_loop_create(weft_loop **out, const weft_loop_opts *opts);

/* Destroys a loop that is not running. Tasks still alive are cancelled and
 * run until they end (bounded: a task that ignores cancellation is
 * abandoned, its future completed with WEFT_ECANCELED and its stack freed);
 * callbacks and timers not yet run are dropped. Loop thread; NULL ignored. */
void weft_loop_destroy(weft_loop *loop);

/* The loop running on this thread (inside weft_loop_run*), or NULL. */
weft_loop *weft_loop_current(void);

/* Runs cb(arg) on the loop soon, after the callbacks already queued (FIFO).
 * Loop thread. 0, WEFT_EINVAL, WEFT_ENOMEM. */
int weft_loop_call_soon(weft_loop *loop, weft_cb cb, void *arg);

/* The same from any thread (wakes the loop through an eventfd). Callbacks
 * posted from one thread run in the order posted. 0, WEFT_EINVAL,
 * WEFT_ENOMEM, WEFT_ECLOSED from the moment weft_loop_destroy begins
 * (threads must not call it after destroy has returned: join them first). */
int weft_loop_call_soon_threadsafe(weft_loop *loop, weft_cb cb, void *arg);

/* Runs cb(arg) when weft_now() reaches `when` (call_at) or after `delay_ms`
 * (call_later; < 0 counts as 0). Timers due at the same ms run in the order
 * they were set, after callbacks already queued. If id is not NULL it gets a
 * handle for weft_loop_cancel_timer, unique for the loop's life. Loop thread.
 * 0, WEFT_EINVAL, WEFT_ENOMEM. */
int weft_loop_call_at(weft_loop *loop, int64_t when, weft_cb cb, void *arg, uint64_t *id);
int weft_loop_call_later(weft_loop *loop, int64_t delay_ms, weft_cb cb, void *arg, uint64_t *id);

/* Cancels a timer that has not run: 0; WEFT_ENOENT if it already ran, was
 * cancelled, or never existed. Loop thread. */
int weft_loop_cancel_timer(weft_loop *loop, uint64_t id);

/* Events for weft_loop_watch. */
#define WEFT_READABLE 1u
#define WEFT_WRITABLE 2u
/* Also passed to the callback: an error or hang-up on the fd. */
#define WEFT_FD_ERROR 4u
typedef void (*weft_fd_cb)(int fd, unsigned events, void *arg);

/* Calls cb(fd, events_ready, arg) on the loop whenever fd is ready for any
 * of `events` (level-triggered). Watching an fd again replaces its events,
 * callback and argument; events 0 stops watching it (do so before closing
 * the fd). One watch per fd per loop. Loop thread. 0, WEFT_EINVAL, WEFT_ENOMEM,
 * or a negated errno from epoll_ctl (e.g. -EPERM for a regular file). */
int weft_loop_watch(weft_loop *loop, int fd, unsigned events, weft_fd_cb cb, void *arg);

/* Runs the loop until weft_loop_stop, or until there is nothing left to do
 * (no queued callbacks, timers, watched fds or live tasks). Returns 0,
 * WEFT_EBUSY if the loop is already running (or another loop runs on this
 * thread), or a negated errno if waiting for events failed (not EINTR,
 * which is retried). Destroying a loop that is running does nothing. */
int weft_loop_run(weft_loop *loop);

/* Runs the loop until f is done (0), weft_loop_stop (WEFT_ECANCELED), or the
 * deadline (WEFT_ETIMEDOUT); f's own outcome is read from f. WEFT_EBUSY as
 * for weft_loop_run. */
int weft_loop_run_until(weft_loop *loop, weft_future *f, int64_t deadline);

/* Makes the running weft_loop_run* return after the current callback. Any
 * thread, and async-signal-safe (an atomic store and an eventfd write). A
 * stop sent while no run is under way ends the next run at once. 0,
 * WEFT_EINVAL. */
int weft_loop_stop(weft_loop *loop);

/* Options for one task (NULL = defaults). */
typedef struct weft_task_opts {
  size_t stack_size;  /* 0 = the loop's default (rounded up to pages) */
  const char *name;   /* for messages (copied); NULL = the function's address */
} weft_task_opts;

/*
 * Spawns fn(in, in_size, out) as a task on `loop`; it first runs when the
 * loop gets to it (after the callbacks already queued). `in` is borrowed:
 * keep it alive until the task completes. If fut is not NULL it gets the
 * task's future (one reference, the caller's to release); the task runs
 * either way. The spawn site (file:line) is remembered for messages.
 * Loop thread, or any thread while the loop does not run. 0, WEFT_EINVAL,
 * WEFT_ENOMEM, WEFT_EAGAIN (no stack could be mapped).
 */
#define weft_spawn(loop, fn, in, in_size, opts, fut)                           \
  weft_spawn_at(__FILE__, __LINE__, (loop), (fn), (in), (in_size), (opts), (fut))
int weft_spawn_at(const char *file, int line, weft_loop *loop, weft_fn fn, const void *in,
                  size_t in_size, const weft_task_opts *opts, weft_future **fut);

/* 1 if the caller runs inside a task, else 0. */
int weft_in_task(void);

/*
 * Waits until f is done: in a task it suspends the task, elsewhere it is
 * weft_future_wait. Returns 0 when f is done (read its outcome from f),
 * WEFT_ETIMEDOUT at the deadline, WEFT_ECANCELED if the waiting task was
 * cancelled (f is left alone), WEFT_EINVAL. Futures from any executor or
 * loop may be awaited.
 */
int weft_await(weft_future *f, int64_t deadline);

/* Waits until any of the n futures is done and sets *index to the lowest
 * such index. Same returns as weft_await (n == 0: WEFT_EINVAL). */
int weft_await_any(weft_future *const *futs, size_t n, int64_t deadline, size_t *index);

/* Waits until all n futures are done (asyncio.gather; read each outcome
 * from its future). Same returns as weft_await. */
int weft_await_all(weft_future *const *futs, size_t n, int64_t deadline);

/* Sleeps ms milliseconds (<= 0: just yields). In a task: suspends it;
 * elsewhere: blocks the thread. 0, WEFT_ECANCELED (task cancelled). */
int weft_sleep(int64_t ms);

/* Lets the other ready tasks run, then continues. 0, or WEFT_ECANCELED. */
int weft_yield(void);

/*
 * Runs fn(in, in_size) on executor ex and waits for it as weft_await does:
 * the task waits, the loop keeps running others. Works with every executor
 * kind (thread_pool, process_pool: fn must then be registered, ...). *fut
 * gets the future (the caller's reference) whatever the return, unless the
 * submit itself failed (then *fut is NULL and that error is returned). If
 * the waiting task is cancelled, the submitted work is cancelled too.
 */
int weft_run_in_executor(weft_executor *ex, weft_fn fn, const void *in, size_t in_size,
                         int64_t deadline, weft_future **fut);

/* weft_run_in_executor on a shared thread pool of weft_io_workers() threads,
 * created on first use and shut down at exit (asyncio.to_thread). */
int weft_to_thread(weft_fn fn, const void *in, size_t in_size, int64_t deadline,
                   weft_future **fut);

/*
 * A task group (structured concurrency). Tasks spawned into a group are its
 * children; weft_group_wait waits for all of them; the first child to fail
 * (an error other than WEFT_ECANCELED) cancels its siblings; and
 * weft_group_destroy cancels and waits for what is left, so no child
 * outlives its group. Loop thread.
 */
typedef struct weft_group weft_group;
int weft_group_create(weft_group **out, weft_loop *loop);
/* As weft_spawn, into the group. WEFT_ECANCELED after the group began
 * cancelling (a child failed, or destroy). */
int weft_group_spawn(weft_group *g, weft_fn fn, const void *in, size_t in_size,
                     const weft_task_opts *opts, weft_future **fut);
/* Waits for every child (in a task: suspends it; else runs the loop).
 * Returns 0 if all succeeded, else the first failing child's error code,
 * WEFT_ETIMEDOUT, or WEFT_ECANCELED if the waiting task was cancelled (the
 * children are then cancelled too). */
int weft_group_wait(weft_group *g, int64_t deadline);
/* Cancels the children still running, waits for them (in a task: with its
 * own cancellation held off, so it cannot return early; outside the loop:
 * by running it), frees the group. Called from a plain loop callback, where
 * it cannot wait, it returns at once and the last child frees the group.
 * NULL ignored. */
void weft_group_destroy(weft_group *g);

/* ---- sockets. In a task they suspend the task; elsewhere they block with
 * poll. fds are made non-blocking and close-on-exec. Errors are negated
 * errnos (WEFT_ECONNREFUSED, WEFT_ECONNRESET, ...), WEFT_EDNS for a name that
 * does not resolve, WEFT_ETIMEDOUT, WEFT_ECANCELED. */

/* Connects over TCP to host:port. Name resolution (getaddrinfo) runs off the
 * loop, on the weft_to_thread pool; every address is tried in turn. */
int weft_tcp_connect(const char *host, int port, int64_t deadline, int *fd);
/* Listens on host:port (host NULL = "127.0.0.1"; port 0 = any free port;
 * SO_REUSEADDR). *port_out (may be NULL) gets the bound port. */
int weft_tcp_listen(const char *host, int port, int backlog, int *fd, int *port_out);
int weft_accept(int lfd, int64_t deadline, int *fd);
/* Reads what is there (at most n, at least 1 byte); *got = 0 at end of file. */
int weft_read(int fd, void *buf, size_t n, int64_t deadline, size_t *got);
/* Reads exactly n bytes: WEFT_EIO (end of file first; *got, if not NULL,
 * says how many came). */
int weft_read_exactly(int fd, void *buf, size_t n, int64_t deadline, size_t *got);
int weft_write_all(int fd, const void *buf, size_t n, int64_t deadline);
/* Stops watching fd on this thread's loop and closes it. */
int weft_close(int fd);

/* ---- HTTP client (libcurl). */
typedef struct weft_http_response {
  int status;            /* HTTP status, e.g. 200 (0 if no response) */
  size_t body_size;
  unsigned char *body;   /* weft-allocated; free with weft_http_response_free */
  char error[128];       /* what went wrong, "" on success */
} weft_http_response;

/*
 * GET url. *resp is always zeroed first, so weft_http_response_free is
 * always safe. In a task: asynchronous, through curl's multi socket
 * interface driven by the task's loop (its fds and timers; no busy
 * polling), so many fetches wait at once. Elsewhere: blocking, on one easy
 * handle per thread, so connections stay alive between calls. Redirects are
 * not followed. Returns 0 for a 2xx-3xx response; WEFT_EHTTP for 4xx/5xx
 * (status and body filled in, error "HTTP 404"). Otherwise the body is NULL
 * and resp->error says why: WEFT_ECONNREFUSED, WEFT_EDNS, WEFT_ETIMEDOUT (a
 * deadline already passed sends nothing), WEFT_ECANCELED, WEFT_EIO
 * (connection lost or reset, bad reply), WEFT_EINVAL (bad URL, a scheme
 * other than http/https, url or resp NULL), WEFT_ENOMEM.
 */
int weft_http_get(const char *url, int64_t deadline, weft_http_response *resp);
/* Always the blocking easy interface, even in a task: it blocks the whole
 * loop (the study's "IO that blocks"; the blocking detector will say so). */
int weft_http_get_blocking(const char *url, int64_t deadline, weft_http_response *resp);
/* Frees the body and resets it to NULL/0; calling it twice is fine; NULL
 * ignored. */
void weft_http_response_free(weft_http_response *resp);

/* ---- a small HTTP/1.1 server on a loop. */
typedef struct weft_http_request {
  const char *method;  /* NUL-terminated */
  const char *target;  /* the request target, e.g. "/site/3?x=1" */
  const unsigned char *body;
  size_t body_size;
  int keep_alive;      /* the connection stays open after the reply */
} weft_http_request;

typedef struct weft_http_reply weft_http_reply;
/* Sets the reply (status, a Content-Type or NULL, the body, copied). */
int weft_http_reply_set(weft_http_reply *rep, int status, const char *content_type,
                        const void *body, size_t size);
/* Runs in its connection's task: it may await (weft_sleep, ...). Returning
 * non-zero without a reply set sends 500. */
typedef int (*weft_http_handler)(const weft_http_request *req, weft_http_reply *rep, void *arg);

typedef struct weft_http_server_opts {
  const char *host;        /* NULL = "127.0.0.1" */
  int port;                /* 0 = a free port */
  size_t max_header_bytes; /* 0 = 8 KiB: larger headers get 431 */
  size_t max_body_bytes;   /* 0 = 1 MiB: larger bodies get 413 */
  int64_t idle_timeout_ms; /* keep-alive idle limit; 0 = 10 s */
} weft_http_server_opts;

typedef struct weft_http_server weft_http_server;
/* Starts serving on the loop (which must run for requests to be served).
 * Loop thread. 0, WEFT_EINVAL, WEFT_ENOMEM, or a negated errno
 * (-EADDRINUSE). */
int weft_http_server_start(weft_http_server **out, weft_loop *loop,
                           const weft_http_server_opts *opts, weft_http_handler h, void *arg);
int weft_http_server_port(const weft_http_server *srv);
/* Stops accepting, closes every connection (cancelling their tasks) and
 * frees the server: it waits for those tasks when called in a task or
 * outside the running loop (the port is free when it returns); from a plain
 * loop callback (or from a task that is itself cancelled) it does not
 * wait, and the last task frees the server. Loop thread. NULL ignored. */
void weft_http_server_stop(weft_http_server *srv);

/* The study's ten sites (shared/spec/study-workload.md): GET /site/<0-9>
 * waits that site's latency x scale on the loop, then sends its body of
 * deterministic bytes; anything else is 404. `arg` is a pointer to a double
 * (the scale, > 0), read at each request. */
int weft_sites_handler(const weft_http_request *req, weft_http_reply *rep, void *arg);
/* The ten sites' latency (ms at scale 1) and body size; the byte at offset i
 * of site s's body. */
#define WEFT_SITES 10
int weft_site_latency_ms(int site);
size_t weft_site_size(int site);
unsigned char weft_site_byte(int site, size_t i);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_H */
