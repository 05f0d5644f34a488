/*
 * stack.c — coroutine stacks: slabs, the pool, guard pages, the overflow
 * message.
 *
 * Design note.
 * - A slab is one mmap (MAP_NORESERVE: address space only, pages come on
 *   first touch) cut into equal slots of [guard page][usable stack]. Stacks
 *   of one usable size form a class; each class carves slots from its
 *   current slab and keeps freed stacks on two LIFO lists: up to WARM_MAX
 *   "warm" stacks keep their pages (the next coroutine starts on hot
 *   memory), the rest are "cold": their pages went back to the kernel with
 *   MADV_DONTNEED, so memory after a burst of 100k coroutines goes back down
 *   while the address space stays for reuse. Slabs are never unmapped.
 * - One mmap per slab, not per stack, is what lets 100,000+ stacks fit under
 *   vm.max_map_count. Guard pages must not undo that: mprotect on a page
 *   inside a slab splits its mapping (2 extra VMAs per stack), while
 *   madvise(MADV_GUARD_INSTALL) (Linux 6.13+) marks the page without
 *   splitting. We try MADV_GUARD_INSTALL once; if the kernel refuses it we
 *   use mprotect while weft's mappings stay under half of vm.max_map_count,
 *   and beyond that a canary word at the bottom of the stack, checked by
 *   coro.c at every switch out.
 * - The SIGSEGV handler must find the coroutine from the fault address
 *   without locks: slabs are published in an append-only table (pointer
 *   stored, then the count incremented with release order), and each slot
 *   holds an atomic owner pointer. The handler runs on an alternate signal
 *   stack (the faulting stack is full), set up per thread the first time the
 *   thread resumes a coroutine, and freed by a pthread key destructor.
 *
 * Lock: `lock` guards the classes and their lists (never taken on the
 * switch path, nor in the signal handler).
 */
#include "async/coro.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define WEFT__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT__ASAN 1
#endif
#endif
#if defined(WEFT__ASAN)
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#endif

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define WEFT__VALGRIND 1
#endif
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define SLAB_TARGET ((size_t)32 << 20) /* address space per slab */
#define WARM_MAX 16                    /* free stacks per class that keep their pages */
#define MAX_SLABS 65536                /* 65536 * 32 MiB = 2 TiB of stacks */
#define ALTSTACK_SIZE ((size_t)64 << 10)
#define CANARY_SALT ((uintptr_t)0x5eedc0dedeadbeefULL)

typedef struct slab {
  char *base;
  size_t len, stride, count;
  weft__stack stacks[]; /* count slots; slot i's guard page is at base + i * stride */
} slab;

struct weft__stack_class {
  struct weft__stack_class *next;
  size_t size, stride;
  slab *cur;       /* carving from here */
  size_t carved;   /* slots of cur handed out so far */
  weft__stack *warm, *cold;
  size_t nwarm;
};

enum { GUARD_UNKNOWN, GUARD_MADVISE, GUARD_MPROTECT };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct weft__stack_class *classes;
static int guard_mode = GUARD_UNKNOWN;
static size_t mprotect_guards;         /* stacks guarded with mprotect */
static size_t vma_budget;              /* half of vm.max_map_count */
static size_t stacks_mapped, stacks_in_use, nslabs_plain;

/* Read by the signal handler without the lock. */
static slab *_Atomic slab_table[MAX_SLABS];
static atomic_size_t nslabs;
static size_t page_size;
static struct sigaction old_segv;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_key_t alt_key;

static uintptr_t canary_of(const weft__stack *st) { return (uintptr_t)st->lo ^ CANARY_SALT; }

/* ---- the SIGSEGV handler ---- */

static void restore_default(void) {
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGSEGV, &dfl, NULL);
}

/* The stack whose guard page holds addr, or NULL. Lock-free: see the note. */
static const weft__stack *guard_owner(uintptr_t addr, bool *hit) {
  size_t n = atomic_load_explicit(&nslabs, memory_order_acquire);
  *hit = false;
  for (size_t i = 0; i < n; i++) {
    slab *s = atomic_load_explicit(&slab_table[i], memory_order_relaxed);
    if (!s || addr < (uintptr_t)s->base || addr >= (uintptr_t)s->base + s->len) continue;
    size_t off = addr - (uintptr_t)s->base;
    size_t idx = off / s->stride;
    if (off % s->stride >= page_size || idx >= s->count) return NULL;
    *hit = true;
    return &s->stacks[idx];
  }
  return NULL;
}

static void on_segv(int sig, siginfo_t *si, void *uc) {
  bool hit;
  const weft__stack *st = guard_owner((uintptr_t)si->si_addr, &hit);
  if (hit) {
    weft__coro *co = st ? atomic_load_explicit(&((weft__stack *)st)->owner, memory_order_relaxed) : NULL;
    weft__coro_overflow_message(co);
    /* Returning re-executes the faulting access, which now kills the
     * process with SIGSEGV as if we had never been there. */
    restore_default();
    return;
  }
  /* Not ours: hand the fault to whoever was there before. */
  if (old_segv.sa_flags & SA_SIGINFO) {
    old_segv.sa_sigaction(sig, si, uc);
  } else if (old_segv.sa_handler == SIG_DFL || old_segv.sa_handler == SIG_IGN) {
    /* A fault re-executes and dies; a sent signal (kill, raise) needs raising
     * again (it is delivered when we return). */
    restore_default();
    raise(sig);
  } else {
    old_segv.sa_handler(sig);
  }
}

/* ---- per-thread alternate signal stack ---- */

static void alt_free(void *mem) {
  stack_t cur;
  if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == mem && !(cur.ss_flags & SS_ONSTACK)) {
    stack_t off;
    memset(&off, 0, sizeof off);
    off.ss_flags = SS_DISABLE;
    sigaltstack(&off, NULL);
  }
  munmap(mem, ALTSTACK_SIZE);
}

void weft__stack_thread_init(void) {
  stack_t cur;
  if (sigaltstack(NULL, &cur) != 0 || !(cur.ss_flags & SS_DISABLE)) return; /* has one (e.g. ASan's) */
  void *mem = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return; /* no message on overflow, but no harm either */
  stack_t ss;
  memset(&ss, 0, sizeof ss);
  ss.ss_sp = mem;
  ss.ss_size = ALTSTACK_SIZE;
  if (sigaltstack(&ss, NULL) != 0) {
    munmap(mem, ALTSTACK_SIZE);
    return;
  }
  /* The destructor runs at pthread exit (not for the main thread, whose
   * exit ends the process anyway). */
  pthread_setspecific(alt_key, mem);
}

/* ---- setup ---- */

static void init(void) {
  page_size = (size_t)sysconf(_SC_PAGESIZE);
  size_t max_maps = 65530;
  int fd = open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[32];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n > 0) {
      buf[n] = 0;
      long v = strtol(buf, NULL, 10);
      if (v > 0) max_maps = (size_t)v;
    }
    close(fd);
  }
  vma_budget = max_maps / 2;
  pthread_key_create(&alt_key, alt_free);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &old_segv);
}

/* ---- carving ---- */

static size_t vmas_used(void) { return nslabs_plain + 2 * mprotect_guards; }

/* Guards slot st (guard page at g). Under lock. */
static void guard_slot(weft__stack *st, char *g) {
  if (guard_mode != GUARD_MPROTECT) {
    if (madvise(g, page_size, MADV_GUARD_INSTALL) == 0) {
      guard_mode = GUARD_MADVISE;
      return;
    }
    if (guard_mode == GUARD_UNKNOWN) guard_mode = GUARD_MPROTECT; /* kernel < 6.13 */
    else {
      st->canary = true; /* worked before, fails now: do not split mappings */
      return;
    }
  }
  if (vmas_used() + 2 <= vma_budget && mprotect(g, page_size, PROT_NONE) == 0) {
    mprotect_guards++;
    return;
  }
  st->canary = true;
}

static slab *new_slab(struct weft__stack_class *c) {
  size_t n = atomic_load_explicit(&nslabs, memory_order_relaxed);
  if (n == MAX_SLABS) return NULL;
  size_t count = SLAB_TARGET / c->stride;
  if (count == 0) count = 1;
  slab *s = weft__calloc(1, sizeof *s + count * sizeof(weft__stack));
  if (!s) return NULL;
  size_t len = count * c->stride;
  void *base = mmap(NULL, len, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) {
    weft__free(s);
    return NULL;
  }
  s->base = base;
  s->len = len;
  s->stride = c->stride;
  s->count = count;
  for (size_t i = 0; i < count; i++) {
    s->stacks[i].lo = s->base + i * c->stride + page_size;
    s->stacks[i].size = c->size;
    s->stacks[i].cls = c;
  }
  atomic_store_explicit(&slab_table[n], s, memory_order_relaxed);
  atomic_store_explicit(&nslabs, n + 1, memory_order_release);
  nslabs_plain++;
  return s;
}

weft__stack *weft__stack_acquire(size_t size, weft__coro *owner) {
  pthread_once(&init_once, init);
  size = (size + page_size - 1) / page_size * page_size;
  pthread_mutex_lock(&lock);
  struct weft__stack_class *c = classes;
  while (c && c->size != size) c = c->next;
  if (!c) {
    c = weft__calloc(1, sizeof *c);
    if (!c) goto fail;
    c->size = size;
    c->stride = size + page_size;
    c->next = classes;
    classes = c;
  }
  weft__stack *st;
  if (c->warm) {
    st = c->warm;
    c->warm = st->next;
    c->nwarm--;
  } else if (c->cold) {
    st = c->cold;
    c->cold = st->next;
  } else {
    if (!c->cur || c->carved == c->cur->count) {
      slab *s = new_slab(c);
      if (!s) goto fail;
      c->cur = s;
      c->carved = 0;
    }
    st = &c->cur->stacks[c->carved++];
    guard_slot(st, st->lo - page_size);
    stacks_mapped++;
  }
  stacks_in_use++;
  pthread_mutex_unlock(&lock);
  st->next = NULL;
  st->warm = false;
  if (st->canary) *(uintptr_t *)(void *)st->lo = canary_of(st);
#if defined(WEFT__VALGRIND)
  st->vg_id = VALGRIND_STACK_REGISTER(st->lo, st->lo + st->size);
#endif
  atomic_store_explicit(&st->owner, owner, memory_order_relaxed);
  return st;
fail:
  pthread_mutex_unlock(&lock);
  return NULL;
}

void weft__stack_release(weft__stack *st) {
  atomic_store_explicit(&st->owner, NULL, memory_order_relaxed);
#if defined(WEFT__VALGRIND)
  VALGRIND_STACK_DEREGISTER(st->vg_id);
  st->vg_id = 0;
#endif
#if defined(WEFT__ASAN)
  /* A coroutine destroyed while suspended leaves its frames' redzones
   * poisoned; the next owner must start clean. */
  __asan_unpoison_memory_region(st->lo, st->size);
#endif
  struct weft__stack_class *c = st->cls;
  pthread_mutex_lock(&lock);
  stacks_in_use--;
  if (c->nwarm < WARM_MAX) {
    st->next = c->warm;
    c->warm = st;
    c->nwarm++;
    pthread_mutex_unlock(&lock);
    return;
  }
  pthread_mutex_unlock(&lock);
  /* Beyond the warm few: keep the address space, give the pages back. */
  madvise(st->lo, st->size, MADV_DONTNEED);
  pthread_mutex_lock(&lock);
  st->next = c->cold;
  c->cold = st;
  pthread_mutex_unlock(&lock);
}

void weft__stack_check(const weft__stack *st) {
  if (*(const uintptr_t *)(const void *)st->lo != canary_of(st)) {
    weft__coro_overflow_message(atomic_load_explicit(&((weft__stack *)st)->owner, memory_order_relaxed));
    abort();
  }
}

const char *weft__coro_guard_kind(void) {
  pthread_mutex_lock(&lock);
  const char *k = "none";
  if (guard_mode != GUARD_UNKNOWN) {
    bool next_is_canary = guard_mode == GUARD_MPROTECT && vmas_used() + 2 > vma_budget;
    k = next_is_canary ? "canary" : guard_mode == GUARD_MADVISE ? "madvise-guard" : "mprotect-guard";
  }
  pthread_mutex_unlock(&lock);
  return k;
}

void weft__coro_force_guard(const char *kind) {
  pthread_once(&init_once, init);
  pthread_mutex_lock(&lock);
  guard_mode = GUARD_MPROTECT;
  if (strcmp(kind, "canary") == 0) vma_budget = 0;
  pthread_mutex_unlock(&lock);
}

void weft__coro_stats_get(weft__coro_stats *st) {
  pthread_mutex_lock(&lock);
  st->stacks_mapped = stacks_mapped;
  st->stacks_in_use = stacks_in_use;
  st->slabs = nslabs_plain;
  st->mappings = vmas_used();
  pthread_mutex_unlock(&lock);
}
