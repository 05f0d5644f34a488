/*
 * coro.h — stackful coroutines (async/coro.c, async/stack.c, async/switch_*.S).
 *
 * Asymmetric: a coroutine is resumed from a thread's own stack (never from
 * inside another coroutine) and runs until it yields or its function
 * returns; control then goes back to the resumer. The task layer
 * (async/task.c) is the only user.
 *
 * Stacks: mmap'ed, reserved not committed (MAP_NORESERVE), with a guard page
 * below each one. A stack overflow that hits the guard prints
 *   weft: task 'NAME' overflowed its stack (N bytes; raise weft_task_opts.stack_size)
 * from a SIGSEGV handler running on an alternate signal stack, then dies of
 * SIGSEGV as before. Stacks are carved from slabs holding many stacks and
 * reused through a free list, so 100,000+ coroutines fit under the kernel's
 * vm.max_map_count.
 *
 * Under AddressSanitizer every switch is announced with
 * __sanitizer_start_switch_fiber / __sanitizer_finish_switch_fiber.
 */
#ifndef WEFT_ASYNC_CORO_H
#define WEFT_ASYNC_CORO_H
#include <stdbool.h>
#include <stddef.h>

typedef struct weft__coro weft__coro;
typedef void (*weft__coro_fn)(void *arg);

#define WEFT__CORO_DEFAULT_STACK (256u * 1024u)

/* A suspended coroutine that will run fn(arg) on a stack of at least
 * stack_size usable bytes (0 = WEFT__CORO_DEFAULT_STACK; rounded up to
 * pages). `name` is borrowed: it must outlive the coroutine (messages print
 * it). Returns 0, WEFT_ENOMEM, WEFT_EAGAIN (no stack could be mapped). */
int weft__coro_create(weft__coro **out, weft__coro_fn fn, void *arg, size_t stack_size,
                      const char *name);

/* Switches into co until it yields or returns. Thread context only (not
 * from inside a coroutine). Returns true if co is suspended (yielded),
 * false if its function has returned (co is finished). */
bool weft__coro_resume(weft__coro *co);

/* Inside a coroutine: switches back to its resumer. */
void weft__coro_yield(void);

/* The coroutine running on this thread, or NULL. */
weft__coro *weft__coro_self(void);

/* Frees a coroutine that is finished, never started, or suspended (its
 * stack is discarded without unwinding: nothing on it may still be needed).
 * Its stack goes back to the pool. Not the running one. NULL ignored. */
void weft__coro_destroy(weft__coro *co);

const char *weft__coro_name(const weft__coro *co);
void weft__coro_set_name(weft__coro *co, const char *name); /* borrowed */
size_t weft__coro_stack_size(const weft__coro *co);

/* For tests and benchmarks: stacks mapped in total, stacks in use, and
 * memory mappings (VMAs) weft's stacks account for. */
typedef struct weft__coro_stats {
  size_t stacks_mapped, stacks_in_use, slabs, mappings;
} weft__coro_stats;
void weft__coro_stats_get(weft__coro_stats *st);

/* ---- additions (coroutine layer internals, tests and benchmarks) ---- */

/* Which switch new coroutines use: false = the hand-written assembly switch
 * (x86-64, AArch64), true = the ucontext fallback (makecontext/swapcontext).
 * Builds for other architectures, or with -DWEFT_CORO_UCONTEXT, have only
 * the fallback and ignore false. Existing coroutines keep their kind. Meant
 * for tests and benchmarks; call it before creating coroutines. Returns the
 * previous setting. */
bool weft__coro_use_ucontext(bool on);

/* How stack overflows are caught, decided when the first stack is mapped:
 * "madvise-guard" (MADV_GUARD_INSTALL guard pages that do not split
 * mappings), "mprotect-guard" (PROT_NONE guard pages, two mappings per
 * stack, used while under half of vm.max_map_count), "canary" (a word at
 * the bottom checked at every switch out, beyond that budget), or "none"
 * before any stack exists. For the next stack to be handed out. */
const char *weft__coro_guard_kind(void);

/* For tests: makes stacks carved from now on use `kind` ("mprotect-guard"
 * or "canary") as if MADV_GUARD_INSTALL were missing (and, for "canary", the
 * mapping budget spent). Stacks already carved keep theirs. */
void weft__coro_force_guard(const char *kind);

/* ---- between coro.c and stack.c ---- */

/* One coroutine stack: usable bytes [lo, lo + size), a guard page (or a
 * canary word) just below lo. Owned by the pool; lent to one coroutine. */
typedef struct weft__stack {
  char *lo;
  size_t size;
  struct weft__stack *next;         /* pool free list */
  weft__coro *_Atomic owner;        /* read by the SIGSEGV handler */
  unsigned vg_id;                   /* valgrind stack id, 0 = none */
  bool canary;                      /* no guard page: check the canary */
  bool warm;                        /* its pages were not given back */
  struct weft__stack_class *cls;
} weft__stack;

/* A stack of at least `size` usable bytes (a page multiple) lent to owner,
 * or NULL (WEFT_EAGAIN: nothing could be mapped). Installs the SIGSEGV
 * handler the first time. Any thread. */
weft__stack *weft__stack_acquire(size_t size, weft__coro *owner);
/* Gives a stack back to the pool (its pages may be returned to the kernel). */
void weft__stack_release(weft__stack *st);
/* Sets up this thread's alternate signal stack (once per thread). */
void weft__stack_thread_init(void);
/* Called at switch-out of a canary stack: aborts with the overflow message
 * if the canary was overwritten. */
void weft__stack_check(const weft__stack *st);
/* Writes the overflow message for co to stderr (async-signal-safe). */
void weft__coro_overflow_message(const weft__coro *co);

#endif
