/* out.c — where a running task puts its result.
 *
 * A result lands in one of three places, cheapest first: a map's result slot
 * (the task writes straight into the batch's memory), the future's inline
 * buffer (results up to 16 bytes: no allocation), or a buffer of its own. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void weft__out_reset(weft_out *out) {
  if (out->data && out->data != out->slot && out->data != out->inl) weft__free(out->data);
  out->data = NULL;
  out->size = 0;
  weft__free(out->msg);
  out->msg = NULL;
}

int weft__out_code(const weft_out *out, int rc) {
  /* A failed set/alloc is the precise reason when the task succeeded anyway
   * (its result was lost) or gave up with the generic WEFT_ENOMEM. */
  if (out->set_error && (rc >= 0 || rc == WEFT_ENOMEM)) return out->set_error;
  return rc < 0 ? rc : 0;
}

void *weft_out_alloc(weft_out *out, size_t size) {
  if (!out) return NULL;
  if (out->data && out->data != out->slot && out->data != out->inl) weft__free(out->data);
  out->data = NULL;
  out->size = 0;
  if (out->slot) {
    if (size > out->slot_size) {
      out->set_error = WEFT_ETOOBIG;
      return NULL;
    }
    out->data = out->slot;
  } else if (out->inl && size <= out->inl_size) {
    out->data = out->inl;
  } else {
    out->data = weft__malloc(size);
    if (!out->data) {
      out->set_error = WEFT_ENOMEM;
      return NULL;
    }
  }
  out->size = size;
  out->set_error = 0;
  return out->data;
}

int weft_out_set(weft_out *out, const void *data, size_t size) {
  if (!out || (!data && size)) return WEFT_EINVAL;
  void *p = weft_out_alloc(out, size);
  if (!p) return out->set_error;
  if (size) memcpy(p, data, size);
  return 0;
}

int weft_out_fail(weft_out *out, int code, const char *fmt, ...) {
  if (code >= 0) code = WEFT_ETASK;
  if (!out || !fmt) return code;
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  weft__free(out->msg);
  out->msg = weft__strdup(buf); /* without memory the code still travels */
  return code;
}

int weft_out_cancelled(const weft_out *out) {
  if (!out) return 0;
  if (out->cancel && atomic_load_explicit(out->cancel, memory_order_relaxed)) return 1;
  if (out->ex_cancel && atomic_load_explicit(out->ex_cancel, memory_order_relaxed)) return 1;
  return out->fut && weft__future_cancel_requested(out->fut);
}
