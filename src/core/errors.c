/* errors.c — names and messages for every WEFT_E* code, from the one table. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *weft_version(void) { return WEFT_VERSION_STRING; }

const char *weft_strerror(int code) {
  if (code == 0) return "success";
  switch (code) {
#define WEFT__ERR_MSG(name, value, msg) \
  case WEFT_E##name:                    \
    return msg;
    WEFT_ERRNO_MAP(WEFT__ERR_MSG)
#undef WEFT__ERR_MSG
  default:
    break;
  }
  /* strerror() of glibc returns a static table entry for known errnos; for
   * unknown ones it formats into a static buffer, so answer those ourselves. */
  if (code < 0 && code > -4000) {
    const char *s = strerrordesc_np(-code);
    if (s) return s;
  }
  return "unknown error";
}

const char *weft_err_name(int code) {
  if (code == 0) return "WEFT_OK";
  switch (code) {
#define WEFT__ERR_NAME(name, value, msg) \
  case WEFT_E##name:                     \
    return "WEFT_E" #name;
    WEFT_ERRNO_MAP(WEFT__ERR_NAME)
#undef WEFT__ERR_NAME
  default:
    return "WEFT_UNKNOWN";
  }
}

_Noreturn void weft__panic(const char *file, int line, const char *what) {
  fprintf(stderr, "weft: internal invariant broken at %s:%d: %s\n", file, line, what);
  abort();
}
