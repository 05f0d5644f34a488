/*
 * coro.c — stackful coroutines: create, resume, yield, destroy.
 *
 * Design note. The switch is the assembly routine weft__coro_switch
 * (switch_<arch>.S): it pushes the callee-saved registers on the current
 * stack and swaps stack pointers, so one switch is ~20 instructions, with no
 * syscall (swapcontext saves the signal mask with one) and no lock. The
 * running coroutine is a thread-local pointer. A new coroutine's stack is
 * given a fake switch frame whose return address is weft__coro_boot, which
 * calls entry(co).
 *
 * The ucontext fallback (makecontext/swapcontext) is used on other
 * architectures, with -DWEFT_CORO_UCONTEXT, or per coroutine when a test
 * asks for it (weft__coro_use_ucontext); the kind is a per-coroutine flag,
 * one predictable branch per switch.
 *
 * Sanitizers are told about every switch: ASan (start/finish_switch_fiber,
 * so it knows which stack is live), TSan (one fiber per coroutine, and the
 * switches order memory like a lock hand-off would). Valgrind learns the
 * stacks in stack.c.
 *
 * A coroutine may be resumed by different threads over its life (one at a
 * time). So after a switch returns, code here never reuses a thread-local
 * address computed before it: it only touches `co`.
 */
#include "async/coro.h"
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#if !defined(WEFT_CORO_UCONTEXT) && (defined(__x86_64__) || defined(__aarch64__))
#define HAVE_ASM_SWITCH 1
void weft__coro_switch(void **save_sp, void *to_sp);
void weft__coro_boot(void);
#endif

#if defined(__SANITIZE_ADDRESS__)
#define WEFT__ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define WEFT__TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(WEFT__ASAN)
#define WEFT__ASAN 1
#endif
#if __has_feature(thread_sanitizer) && !defined(WEFT__TSAN)
#define WEFT__TSAN 1
#endif
#endif

#if defined(WEFT__ASAN)
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old, size_t *size_old);
#endif
#if defined(WEFT__TSAN)
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

enum { NEW, SUSPENDED, RUNNING, DONE };

typedef struct uc_pair {
  ucontext_t ctx, back;
} uc_pair;

struct weft__coro {
  void *sp;      /* the coroutine's saved stack pointer (asm switch) */
  void *back_sp; /* its resumer's */
  weft__stack *stack;
  uc_pair *uc;   /* ucontext kind only */
  weft__coro_fn fn;
  void *arg;
  const char *name;
  unsigned char state;
#if defined(WEFT__ASAN)
  void *fake;               /* the coroutine's ASan fake stack while switched out */
  const void *back_bottom;  /* the resumer's stack, learned at each switch in */
  size_t back_size;
#endif
#if defined(WEFT__TSAN)
  void *fiber, *back_fiber;
#endif
};

static _Thread_local weft__coro *current;
static _Thread_local bool thread_ready;
#if defined(HAVE_ASM_SWITCH)
static atomic_bool force_ucontext;
#endif

bool weft__coro_use_ucontext(bool on) {
#if defined(HAVE_ASM_SWITCH)
  return atomic_exchange(&force_ucontext, on);
#else
  (void)on;
  return true;
#endif
}

/* ---- the overflow message (async-signal-safe: write(2) only) ---- */

static size_t put(char *buf, size_t at, size_t cap, const char *s) {
  while (*s && at < cap) buf[at++] = *s++;
  return at;
}

void weft__coro_overflow_message(const weft__coro *co) {
  char buf[512], num[24];
  const size_t cap = sizeof buf;
  size_t n = put(buf, 0, cap, "weft: task '");
  n = put(buf, n, cap - 80, co && co->name ? co->name : "?"); /* room for the rest */
  n = put(buf, n, cap, "' overflowed its stack (");
  size_t v = co && co->stack ? co->stack->size : 0, k = sizeof num;
  num[--k] = 0;
  do {
    num[--k] = (char)('0' + v % 10);
    v /= 10;
  } while (v && k);
  n = put(buf, n, cap, num + k);
  n = put(buf, n, cap, " bytes; raise weft_task_opts.stack_size)\n");
  ssize_t w = write(STDERR_FILENO, buf, n);
  (void)w;
}

/* ---- switching ---- */

static inline void check_canary(const weft__coro *co) {
  if (WEFT__UNLIKELY(co->stack->canary)) weft__stack_check(co->stack);
}

/* Leaves a coroutine for good: back to the resumer, never returns. */
static _Noreturn void finish(weft__coro *co) {
  check_canary(co);
  co->state = DONE;
#if defined(WEFT__ASAN)
  __sanitizer_start_switch_fiber(NULL, co->back_bottom, co->back_size); /* NULL: this stack dies */
#endif
#if defined(WEFT__TSAN)
  __tsan_switch_to_fiber(co->back_fiber, 0);
#endif
  if (co->uc) {
    setcontext(&co->uc->back);
  } else {
#if defined(HAVE_ASM_SWITCH)
    weft__coro_switch(&co->sp, co->back_sp);
#endif
  }
  abort(); /* unreachable: nobody resumes a finished coroutine */
}

static void started(weft__coro *co) {
#if defined(WEFT__ASAN)
  __sanitizer_finish_switch_fiber(NULL, &co->back_bottom, &co->back_size);
#else
  (void)co;
#endif
}

#if defined(HAVE_ASM_SWITCH)
/* Called by weft__coro_boot on the new stack. */
static void asm_entry(void *p) {
  weft__coro *co = p;
  started(co);
  co->fn(co->arg);
  finish(co);
}
#endif

/* makecontext passes only ints; the resumer has just set `current`, and no
 * switch happened yet on this stack, so the thread-local is safe here. */
static void uc_entry(void) {
  weft__coro *co = current;
  started(co);
  co->fn(co->arg);
  finish(co);
}

bool weft__coro_resume(weft__coro *co) {
  WEFT__ASSERT(current == NULL);
  WEFT__ASSERT(co->state == NEW || co->state == SUSPENDED);
  if (WEFT__UNLIKELY(!thread_ready)) {
    weft__stack_thread_init();
    thread_ready = true;
  }
  current = co;
  co->state = RUNNING;
#if defined(WEFT__ASAN)
  void *fake = NULL;
  __sanitizer_start_switch_fiber(&fake, co->stack->lo, co->stack->size);
#endif
#if defined(WEFT__TSAN)
  co->back_fiber = __tsan_get_current_fiber();
  __tsan_switch_to_fiber(co->fiber, 0);
#endif
#if defined(HAVE_ASM_SWITCH)
  if (WEFT__LIKELY(!co->uc)) weft__coro_switch(&co->back_sp, co->sp);
  else
#endif
    swapcontext(&co->uc->back, &co->uc->ctx);
#if defined(WEFT__ASAN)
  __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
  current = NULL;
  return co->state != DONE;
}

void weft__coro_yield(void) {
  weft__coro *co = current;
  WEFT__ASSERT(co != NULL);
  check_canary(co);
  co->state = SUSPENDED;
#if defined(WEFT__ASAN)
  __sanitizer_start_switch_fiber(&co->fake, co->back_bottom, co->back_size);
#endif
#if defined(WEFT__TSAN)
  __tsan_switch_to_fiber(co->back_fiber, 0);
#endif
#if defined(HAVE_ASM_SWITCH)
  if (WEFT__LIKELY(!co->uc)) weft__coro_switch(&co->sp, co->back_sp);
  else
#endif
    swapcontext(&co->uc->ctx, &co->uc->back);
#if defined(WEFT__ASAN)
  __sanitizer_finish_switch_fiber(co->fake, &co->back_bottom, &co->back_size);
#endif
}

weft__coro *weft__coro_self(void) { return current; }

/* ---- lifecycle ---- */

int weft__coro_create(weft__coro **out, weft__coro_fn fn, void *arg, size_t stack_size,
                      const char *name) {
  *out = NULL;
  if (stack_size == 0) stack_size = WEFT__CORO_DEFAULT_STACK;
  weft__coro *co = weft__calloc(1, sizeof *co);
  if (!co) return WEFT_ENOMEM;
  co->fn = fn;
  co->arg = arg;
  co->name = name;
  co->state = NEW;
  bool uc = true;
#if defined(HAVE_ASM_SWITCH)
  uc = atomic_load_explicit(&force_ucontext, memory_order_relaxed);
#endif
  if (uc) {
    co->uc = weft__malloc(sizeof *co->uc);
    if (!co->uc) {
      weft__free(co);
      return WEFT_ENOMEM;
    }
  }
  co->stack = weft__stack_acquire(stack_size, co);
  if (!co->stack) {
    weft__free(co->uc);
    weft__free(co);
    return WEFT_EAGAIN;
  }
  char *top = co->stack->lo + co->stack->size; /* page aligned */
  if (uc) {
    getcontext(&co->uc->ctx);
    co->uc->ctx.uc_stack.ss_sp = co->stack->lo;
    co->uc->ctx.uc_stack.ss_size = co->stack->size;
    co->uc->ctx.uc_link = NULL; /* finish() never returns */
    makecontext(&co->uc->ctx, uc_entry, 0);
  } else {
#if defined(HAVE_ASM_SWITCH) && defined(__x86_64__)
    /* The frame weft__coro_switch pops (see switch_x86_64.S), placed so that
     * rsp is 16-byte aligned when weft__coro_boot calls entry. */
    uint64_t *f = (uint64_t *)(void *)(top - 80);
    memset(f, 0, 80);
    f[0] = 0x1F80u | ((uint64_t)0x037Fu << 32); /* default MXCSR, x87 control word */
    f[3] = (uint64_t)(uintptr_t)asm_entry;       /* r13 */
    f[4] = (uint64_t)(uintptr_t)co;              /* r12 */
    f[7] = (uint64_t)(uintptr_t)weft__coro_boot; /* return address */
    co->sp = f;
#elif defined(HAVE_ASM_SWITCH) && defined(__aarch64__)
    uint64_t *f = (uint64_t *)(void *)(top - 176);
    memset(f, 0, 176);
    f[0] = (uint64_t)(uintptr_t)co;               /* x19 */
    f[1] = (uint64_t)(uintptr_t)asm_entry;        /* x20 */
    f[11] = (uint64_t)(uintptr_t)weft__coro_boot; /* x30; x29 and FPCR stay 0 */
    co->sp = f;
#else
    (void)top;
#endif
  }
#if defined(WEFT__TSAN)
  co->fiber = __tsan_create_fiber(0);
#endif
  *out = co;
  return 0;
}

void weft__coro_destroy(weft__coro *co) {
  if (!co) return;
  WEFT__ASSERT(co->state != RUNNING);
#if defined(WEFT__TSAN)
  __tsan_destroy_fiber(co->fiber);
#endif
  weft__stack_release(co->stack);
  weft__free(co->uc);
  weft__free(co);
}

const char *weft__coro_name(const weft__coro *co) { return co->name; }
void weft__coro_set_name(weft__coro *co, const char *name) { co->name = name; }
size_t weft__coro_stack_size(const weft__coro *co) { return co->stack->size; }
