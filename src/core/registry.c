/*
 * registry.c — functions found by name, so that a task can run in another
 * address space (a forked worker, a fresh exec, another machine).
 *
 * A fixed table of WEFT__REGISTRY_MAX entries, appended to and never shrunk,
 * under one mutex (a leaf lock: nothing is called while it is held). Lookups
 * are linear: the table is small and a lookup costs far less than the trip
 * to a worker it precedes. A process worker sees the table as it was when
 * the fork server was forked (see weft_process_init in weft.h).
 */
#include "internal.h"

#include <string.h>

enum { WEFT__REGISTRY_MAX = 1024 };

struct entry {
  char name[WEFT_REGISTRY_NAME_MAX + 1];
  weft_fn fn;
};

static struct entry table[WEFT__REGISTRY_MAX];
static size_t used;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

int weft_register(const char *name, weft_fn fn) {
  if (!name || !fn) return WEFT_EINVAL;
  size_t len = strnlen(name, WEFT_REGISTRY_NAME_MAX + 1);
  if (len == 0 || len > WEFT_REGISTRY_NAME_MAX) return WEFT_EINVAL;
  int rc = 0;
  pthread_mutex_lock(&mu);
  for (size_t i = 0; i < used; i++) {
    if (strcmp(table[i].name, name) == 0) {
      rc = table[i].fn == fn ? 0 : WEFT_EBUSY;
      goto out;
    }
  }
  if (used == WEFT__REGISTRY_MAX) {
    rc = WEFT_ENOMEM;
    goto out;
  }
  memcpy(table[used].name, name, len + 1);
  table[used].fn = fn;
  used++;
out:
  pthread_mutex_unlock(&mu);
  return rc;
}

weft_fn weft_registry_find(const char *name) {
  if (!name) return NULL;
  weft_fn fn = NULL;
  pthread_mutex_lock(&mu);
  for (size_t i = 0; i < used && !fn; i++)
    if (strcmp(table[i].name, name) == 0) fn = table[i].fn;
  pthread_mutex_unlock(&mu);
  return fn;
}

const char *weft_registry_name(weft_fn fn) {
  if (!fn) return NULL;
  const char *name = NULL;
  pthread_mutex_lock(&mu);
  for (size_t i = 0; i < used && !name; i++)
    if (table[i].fn == fn) name = table[i].name; /* entries never move or change */
  pthread_mutex_unlock(&mu);
  return name;
}

/* Held across the fork of the fork server, so that the server gets a
 * consistent table and an unlocked mutex (exec/proc_zygote.c). */
void weft__registry_lock(void) { pthread_mutex_lock(&mu); }
void weft__registry_unlock(void) { pthread_mutex_unlock(&mu); }
