/*
 * http_parse.h — the HTTP/1.1 request parser of weft's small server
 * (async/http_server.c), and the study's ten sites' body bytes.
 *
 * The parser is incremental, zero-copy and allocation-free. Feed it the
 * connection's read buffer from the start of the current request; it returns
 * "need more bytes", "one complete request of N bytes", or an error with the
 * HTTP status to send. Every pointer it returns points into the caller's
 * buffer; it never reads at or past the given length.
 *
 * Bounded work: a small state struct remembers how far the buffer has been
 * scanned, so re-feeding a growing buffer costs O(new bytes), not a rescan.
 * Contract for that: between calls with the same parser, the bytes already
 * given must be passed again unchanged at the start of `buf` (the buffer may
 * be moved or grown; `len` must not shrink — if it does, the parser safely
 * rescans from the start).
 *
 * What is accepted (RFC 9112, strictly; the server closes the connection
 * after any error):
 *   request-line = method SP request-target SP "HTTP/" DIGIT "." DIGIT CRLF
 *   - method: 1*tchar. target: 1*(visible ASCII 0x21-0x7E). Anything else 400.
 *   - Empty lines (CRLF) before the request line are skipped (RFC 9112 2.2);
 *     they count towards the consumed bytes and the header limit.
 *   - Version: "HTTP/1.0" and "HTTP/1.1" are served; any other well-formed
 *     version gets 505; a malformed one 400.
 *   - Lines end in CRLF only: a bare LF or a bare CR is 400 (tolerating bare
 *     LF is allowed by the RFC but invites framing disagreements with
 *     proxies; every real client sends CRLF).
 *   - header-field = 1*tchar ":" OWS value OWS CRLF; the value is trimmed of
 *     SP/HTAB at both ends and may hold HTAB, SP, 0x21-0x7E and 0x80-0xFF.
 *     Whitespace before the colon, an empty name, a control byte in a value,
 *     or obs-fold (a line starting with SP/HTAB) is 400.
 *   - Header names are case-insensitive.
 *   - Content-Length: 1*DIGIT. Anything else (sign, comma list, empty) is
 *     400; repeated with the same value is accepted, with different values
 *     400; larger than max_body_bytes 413 (sent as soon as the header
 *     section is complete, before any body arrives). No Content-Length: no
 *     body.
 *   - Transfer-Encoding of any value is 501: chunked request bodies are not
 *     supported (nobody in the study sends a request body).
 *   - Host is not required (lenient on purpose: tests and netcat users send
 *     bare requests); nor is a duplicate Host rejected.
 *   - Keep-alive: the Connection header's comma-separated tokens are read
 *     case-insensitively (several Connection headers combine). HTTP/1.1
 *     keeps the connection unless "close" is listed; HTTP/1.0 closes it
 *     unless "keep-alive" is listed (and "close" is not).
 *   - The header section (leading empty lines, request line, header lines and
 *     the final empty line) larger than max_header_bytes is 431, sent as soon
 *     as the limit is passed without the section ending. A too-long request
 *     line is therefore 431 too (not 414). A malformed byte met before the
 *     limit is passed is 400.
 */
#ifndef WEFT_ASYNC_HTTP_PARSE_H
#define WEFT_ASYNC_HTTP_PARSE_H
#include "weft.h"
#include <stddef.h>
#include <stdint.h>

#define WEFT__HTTP_DEFAULT_MAX_HEADER ((size_t)8 * 1024)
#define WEFT__HTTP_DEFAULT_MAX_BODY ((size_t)1024 * 1024)

/* One parsed request; every pointer points into the buffer given to
 * weft__http_parse, valid as long as that buffer is. Strings are NOT
 * NUL-terminated. */
typedef struct weft__http_request {
  const char *method;
  size_t method_len;
  const char *target;
  size_t target_len;
  int version_minor;       /* 0 or 1 (HTTP/1.x) */
  int keep_alive;          /* 1: the connection stays open after the reply */
  size_t header_count;     /* header lines */
  const char *headers;     /* the first header line ... */
  size_t headers_len;      /* ... up to, not including, the final empty line */
  size_t head_size;        /* the whole header section, empty line included */
  int has_content_length;
  size_t content_length;   /* 0 without Content-Length */
  const unsigned char *body; /* content_length bytes right after the head */
  size_t size;             /* bytes consumed: head_size + content_length */
} weft__http_request;

/* One header line, trimmed (see weft__http_header_next). */
typedef struct weft__http_header {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} weft__http_header;

/* Parser state: set up with weft__http_parser_init; the fields below the
 * limits are private. One per connection. */
typedef struct weft__http_parser {
  size_t max_header_bytes;
  size_t max_body_bytes;
  /* private */
  size_t pos;        /* bytes of the current request scanned so far */
  int state;
  int error;         /* sticky HTTP status once an error was found */
  size_t method_len, target_off, target_len;
  size_t line_off;   /* start of the request line (after empty lines) */
  size_t headers_off;
  size_t field_off, name_len, value_off, value_end;
  size_t nheaders;
  size_t head_size;
  size_t content_length;
  int version_minor;
  unsigned flags;
} weft__http_parser;

/* Initialises p for a new connection. A limit of 0 means the default (8 KiB
 * of header section, 1 MiB of body), as in weft_http_server_opts. */
void weft__http_parser_init(weft__http_parser *p, size_t max_header_bytes, size_t max_body_bytes);

/*
 * Parses the request at the start of buf[0, len). Returns:
 *   1  a complete request: *out is filled, out->size bytes are consumed, and
 *      the parser is reset for the next request, which starts at
 *      buf + out->size (pipelining: call again with buf + out->size);
 *   0  need more bytes: call again later with the same bytes plus more;
 *   -status (-400, -413, -431, -501, -505): send that status and close the
 *      connection; the error is sticky until weft__http_parser_init.
 * *out is written only when 1 is returned. buf may be NULL when len is 0.
 * Buffer sizing for a caller: max_header_bytes + 1 bytes always suffice to
 * get either a complete header section or 431; the body then needs at most
 * max_body_bytes more (known from out->content_length once complete, or, while
 * 0 is returned, not yet known: grow as bytes arrive).
 * Any thread; p is not shared.
 */
int weft__http_parse(weft__http_parser *p, const void *buf, size_t len, weft__http_request *out);

/*
 * Iterates the header lines of a request returned complete by
 * weft__http_parse: start with *cursor = 0; returns 1 with *h filled (name
 * and trimmed value, pointing into the request's buffer) or 0 after the last.
 */
int weft__http_header_next(const weft__http_request *req, size_t *cursor, weft__http_header *h);

/* Returns 1 if the request has a header named `name` (case-insensitive), with
 * its first occurrence's trimmed value in *value / *value_len; else 0. */
int weft__http_header_find(const weft__http_request *req, const char *name,
                           const char **value, size_t *value_len);

/* The reason phrase of a status ("Bad Request" for 400; "Unknown" for a
 * status it does not know). Static string. */
const char *weft__http_reason(int status);

/*
 * The study's sites (async/sites.c): fills buf with n bytes of site `site`'s
 * body from offset `off`, the same bytes as weft_site_byte(site, off + k).
 * Bytes past the body's end, and every byte of an unknown site, are 0.
 * Any thread.
 */
void weft__site_fill(int site, size_t off, unsigned char *buf, size_t n);

#endif
