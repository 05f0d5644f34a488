/* alloc.c — every allocation weft makes goes through here, so that a user
 * (or a test injecting failures) can replace the allocator. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static void *(*g_malloc)(size_t) = malloc;
static void *(*g_realloc)(void *, size_t) = realloc;
static void (*g_free)(void *) = free;

int weft_set_allocator(void *(*malloc_fn)(size_t), void *(*realloc_fn)(void *, size_t),
                       void (*free_fn)(void *)) {
  /* Recycled blocks go back to the allocator they came from first. */
  weft__future_cache_flush();
  if (!malloc_fn || !realloc_fn || !free_fn) {
    g_malloc = malloc;
    g_realloc = realloc;
    g_free = free;
  } else {
    g_malloc = malloc_fn;
    g_realloc = realloc_fn;
    g_free = free_fn;
  }
  return 0;
}

void *weft__malloc(size_t n) { return g_malloc(n ? n : 1); }

void *weft__calloc(size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) return NULL;
  size_t total = n * size;
  void *p = g_malloc(total ? total : 1);
  if (p) memset(p, 0, total);
  return p;
}

void *weft__realloc(void *p, size_t n) { return g_realloc(p, n ? n : 1); }

weft__free_fn weft__current_free(void) { return g_free; }

void weft__free(void *p) {
  if (p) g_free(p);
}

char *weft__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = weft__malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}
