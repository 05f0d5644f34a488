/*
 * http_parse.c — incremental HTTP/1.1 request parser (see http_parse.h for
 * the grammar accepted and the error statuses).
 *
 * Design: one byte-at-a-time state machine whose whole state lives in the
 * parser struct as offsets from the start of the request, never as pointers,
 * so the caller may move its buffer between calls. Each byte of the header
 * section is looked at once by the machine; a header line is interpreted
 * (Content-Length, Connection, Transfer-Encoding) once, when its LF arrives,
 * by looking back at it in the buffer. Once the header section is complete,
 * waiting for the body is O(1) per call. Errors are found at the first bad
 * byte, so garbage is refused without waiting for a full header section.
 */
#include "async/http_parse.h"

#include <stdint.h>
#include <string.h>

enum {
  S_START,     /* before the request line: empty lines are skipped */
  S_START_LF,  /* CR seen in an empty line */
  S_METHOD,
  S_TARGET,
  S_VERSION,
  S_RL_LF,     /* CR seen at the end of the request line */
  S_FIELD,     /* at the start of a header line, or of the final empty line */
  S_NAME,
  S_VALUE,
  S_VALUE_LF,  /* CR seen at the end of a header line */
  S_END_LF,    /* CR seen at the start of the final empty line */
  S_BODY,      /* header section complete: waiting for Content-Length bytes */
};

enum {
  F_CL = 1u << 0,      /* Content-Length seen */
  F_CL_HUGE = 1u << 1, /* its value does not fit a size_t */
  F_CLOSE = 1u << 2,   /* Connection: close */
  F_KEEP = 1u << 3,    /* Connection: keep-alive */
  F_TE = 1u << 4,      /* Transfer-Encoding seen */
};

/* tchar (RFC 9110 5.6.2): the bytes a method or a header name may hold. */
static int is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
  switch (c) {
  case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
  case '-': case '.': case '^': case '_': case '`': case '|': case '~':
    return 1;
  default:
    return 0;
  }
}

static unsigned char lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* ASCII case-insensitive equality of s[0, n) with the NUL-terminated lit;
 * locale-free on purpose (strncasecmp follows the locale). */
static int ieq(const char *s, size_t n, const char *lit) {
  size_t i = 0;
  for (; i < n; i++) {
    if (lit[i] == '\0' || lower((unsigned char)s[i]) != lower((unsigned char)lit[i])) return 0;
  }
  return lit[i] == '\0';
}

static int is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

/* Clears the per-request state, keeping the limits. */
static void reset(weft__http_parser *p) {
  size_t mh = p->max_header_bytes, mb = p->max_body_bytes;
  memset(p, 0, sizeof *p);
  p->max_header_bytes = mh;
  p->max_body_bytes = mb;
  p->state = S_START;
}

void weft__http_parser_init(weft__http_parser *p, size_t max_header_bytes, size_t max_body_bytes) {
  p->max_header_bytes = max_header_bytes ? max_header_bytes : WEFT__HTTP_DEFAULT_MAX_HEADER;
  p->max_body_bytes = max_body_bytes ? max_body_bytes : WEFT__HTTP_DEFAULT_MAX_BODY;
  reset(p);
}

static int fail(weft__http_parser *p, int status) {
  p->error = status;
  return -status;
}

/* Connection: a comma-separated list of tokens. */
static void read_connection(weft__http_parser *p, const char *v, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t a = i;
    while (i < n && v[i] != ',') i++;
    size_t b = i;
    while (a < b && is_ows((unsigned char)v[a])) a++;
    while (b > a && is_ows((unsigned char)v[b - 1])) b--;
    if (ieq(v + a, b - a, "close")) p->flags |= F_CLOSE;
    else if (ieq(v + a, b - a, "keep-alive")) p->flags |= F_KEEP;
    i++; /* past the comma */
  }
}

/* Interprets the header line just ended; 0 or an HTTP status. */
static int read_field(weft__http_parser *p, const char *buf) {
  const char *name = buf + p->field_off;
  const char *v = buf + p->value_off;
  size_t n = p->value_end - p->value_off;
  if (ieq(name, p->name_len, "content-length")) {
    if (n == 0) return 400;
    size_t cl = 0;
    int huge = 0;
    for (size_t i = 0; i < n; i++) {
      unsigned char c = (unsigned char)v[i];
      if (c < '0' || c > '9') return 400;
      unsigned d = c - '0';
      if (cl > (SIZE_MAX - d) / 10) huge = 1;
      else cl = cl * 10 + d;
    }
    if (huge) cl = SIZE_MAX; /* beyond any body limit: 413 later */
    if (p->flags & F_CL) {
      if (cl != p->content_length || huge != !!(p->flags & F_CL_HUGE)) return 400;
    }
    p->flags |= F_CL | (huge ? F_CL_HUGE : 0u);
    p->content_length = cl;
  } else if (ieq(name, p->name_len, "connection")) {
    read_connection(p, v, n);
  } else if (ieq(name, p->name_len, "transfer-encoding")) {
    p->flags |= F_TE;
  }
  return 0;
}

/* The header section just ended: refuse what the server will not take. */
static int head_done(weft__http_parser *p) {
  if (p->flags & F_TE) return 501;
  if (p->flags & F_CL_HUGE) return 413;
  if (p->content_length > p->max_body_bytes) return 413;
  return 0;
}

static void finish(weft__http_parser *p, const char *buf, weft__http_request *out) {
  out->method = buf + p->line_off;
  out->method_len = p->method_len;
  out->target = buf + p->target_off;
  out->target_len = p->target_len;
  out->version_minor = p->version_minor;
  if (p->flags & F_CLOSE) out->keep_alive = 0;
  else out->keep_alive = p->version_minor == 1 ? 1 : !!(p->flags & F_KEEP);
  out->header_count = p->nheaders;
  out->headers = buf + p->headers_off;
  out->headers_len = p->head_size - 2 - p->headers_off;
  out->head_size = p->head_size;
  out->has_content_length = !!(p->flags & F_CL);
  out->content_length = p->content_length;
  out->body = (const unsigned char *)buf + p->head_size;
  out->size = p->head_size + p->content_length;
}

int weft__http_parse(weft__http_parser *p, const void *vbuf, size_t len, weft__http_request *out) {
  const char *buf = vbuf;
  if (p->error) return -p->error;
  if (len < p->pos) reset(p); /* the caller broke the contract: rescan */

  if (p->state != S_BODY) {
    size_t i = p->pos;
    for (; i < len; i++) {
      unsigned char c = (unsigned char)buf[i];
      /* Byte i would make the header section at least i + 1 bytes long. */
      if (i >= p->max_header_bytes) return fail(p, 431);
      switch (p->state) {
      case S_START:
        if (c == '\r') p->state = S_START_LF;
        else if (is_tchar(c)) {
          p->line_off = i;
          p->state = S_METHOD;
        } else return fail(p, 400);
        break;
      case S_START_LF:
        if (c != '\n') return fail(p, 400);
        p->state = S_START;
        break;
      case S_METHOD:
        if (c == ' ') {
          p->method_len = i - p->line_off;
          p->target_off = i + 1;
          p->state = S_TARGET;
        } else if (!is_tchar(c)) return fail(p, 400);
        break;
      case S_TARGET:
        if (c == ' ') {
          if (i == p->target_off) return fail(p, 400); /* empty target */
          p->target_len = i - p->target_off;
          p->state = S_VERSION;
        } else if (c < 0x21 || c > 0x7e) return fail(p, 400);
        break;
      case S_VERSION: {
        size_t k = i - (p->target_off + p->target_len + 1);
        if (k < 5) {
          if (c != (unsigned char)"HTTP/"[k]) return fail(p, 400);
        } else if (k == 5 || k == 7) {
          if (c < '0' || c > '9') return fail(p, 400);
        } else if (k == 6) {
          if (c != '.') return fail(p, 400);
        } else { /* k == 8: the line must end here */
          if (c != '\r') return fail(p, 400);
          char major = buf[i - 3], minor = buf[i - 1];
          if (major != '1' || (minor != '0' && minor != '1')) return fail(p, 505);
          p->version_minor = minor - '0';
          p->state = S_RL_LF;
        }
        break;
      }
      case S_RL_LF:
        if (c != '\n') return fail(p, 400);
        p->headers_off = i + 1;
        p->state = S_FIELD;
        break;
      case S_FIELD:
        if (c == '\r') p->state = S_END_LF;
        else if (is_tchar(c)) {
          p->field_off = i;
          p->state = S_NAME;
        } else return fail(p, 400); /* incl. obs-fold and bare LF */
        break;
      case S_NAME:
        if (c == ':') {
          p->name_len = i - p->field_off;
          p->value_off = SIZE_MAX; /* no value byte yet */
          p->value_end = 0;
          p->state = S_VALUE;
        } else if (!is_tchar(c)) return fail(p, 400); /* incl. space before ':' */
        break;
      case S_VALUE:
        if (c == '\r') {
          if (p->value_off == SIZE_MAX) p->value_off = p->value_end = i;
          p->state = S_VALUE_LF;
        } else if (is_ows(c)) {
          /* trimmed unless followed by a value byte */
        } else if (c >= 0x21 && c != 0x7f) {
          if (p->value_off == SIZE_MAX) p->value_off = i;
          p->value_end = i + 1;
        } else return fail(p, 400);
        break;
      case S_VALUE_LF: {
        if (c != '\n') return fail(p, 400);
        p->nheaders++;
        int st = read_field(p, buf);
        if (st) return fail(p, st);
        p->state = S_FIELD;
        break;
      }
      case S_END_LF: {
        if (c != '\n') return fail(p, 400);
        p->head_size = i + 1;
        int st = head_done(p);
        if (st) return fail(p, st);
        p->state = S_BODY;
        break;
      }
      default:
        return fail(p, 400); /* unreachable */
      }
      if (p->state == S_BODY) {
        i++;
        break;
      }
    }
    p->pos = i;
    if (p->state != S_BODY) return 0;
  }

  if (len - p->head_size < p->content_length) return 0;
  finish(p, buf, out);
  reset(p);
  return 1;
}

int weft__http_header_next(const weft__http_request *req, size_t *cursor, weft__http_header *h) {
  const char *s = req->headers;
  size_t n = req->headers_len, i = *cursor;
  if (i >= n) return 0;
  /* The section was validated: every line is name ":" value CRLF. */
  const char *colon = memchr(s + i, ':', n - i);
  const char *cr = colon ? memchr(colon, '\r', (size_t)(s + n - colon)) : NULL;
  if (!colon || !cr) return 0;
  const char *a = colon + 1, *b = cr;
  while (a < b && is_ows((unsigned char)*a)) a++;
  while (b > a && is_ows((unsigned char)b[-1])) b--;
  h->name = s + i;
  h->name_len = (size_t)(colon - (s + i));
  h->value = a;
  h->value_len = (size_t)(b - a);
  *cursor = (size_t)(cr - s) + 2;
  return 1;
}

int weft__http_header_find(const weft__http_request *req, const char *name,
                           const char **value, size_t *value_len) {
  size_t cur = 0;
  weft__http_header h;
  while (weft__http_header_next(req, &cur, &h)) {
    if (ieq(h.name, h.name_len, name)) {
      *value = h.value;
      *value_len = h.value_len;
      return 1;
    }
  }
  return 0;
}

const char *weft__http_reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 413: return "Content Too Large";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  case 505: return "HTTP Version Not Supported";
  default: return "Unknown";
  }
}
