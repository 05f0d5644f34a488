/*
 * sites.c — the study's ten simulated sites (shared/spec/study-workload.md):
 * latency, body size and deterministic body bytes.
 *
 * A body is printable ASCII in lines of 64 bytes (63 characters from '!' to
 * '~', then '\n'), so that a fetched body is readable and a wrong offset is
 * visible. Each byte is a cheap integer hash of (site, offset): no table, the
 * same on every machine, different for every site.
 */
#include "async/http_parse.h"

#include <stdint.h>
#include <string.h>

static const size_t site_sizes[WEFT_SITES] = {
    15655, 12630, 98527, 42000, 120000, 8192, 64000, 250000, 30000, 5000,
};

int weft_site_latency_ms(int site) {
  if (site < 0 || site >= WEFT_SITES) return -1;
  return (site + 1) * 100;
}

size_t weft_site_size(int site) {
  if (site < 0 || site >= WEFT_SITES) return 0;
  return site_sizes[site];
}

/* The byte at offset i of a known site's body, i < its size. */
static unsigned char body_byte(int site, size_t i) {
  if (i % 64 == 63) return '\n';
  /* A 64-bit mixer (the finaliser of splitmix64's idea: multiply, xor-shift)
   * over the offset and the site; the top bits are the best mixed. */
  uint64_t x = (uint64_t)i * 0x9e3779b97f4a7c15u + (uint64_t)(site + 1) * 0xc2b2ae3d27d4eb4fu;
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9u;
  x ^= x >> 29;
  return (unsigned char)('!' + (unsigned)((x >> 32) % 94u)); /* '!'..'~' */
}

unsigned char weft_site_byte(int site, size_t i) {
  if (site < 0 || site >= WEFT_SITES || i >= site_sizes[site]) return 0;
  return body_byte(site, i);
}

void weft__site_fill(int site, size_t off, unsigned char *buf, size_t n) {
  size_t size = weft_site_size(site);
  size_t k = 0;
  for (; k < n && off < size && k < size - off; k++) buf[k] = body_byte(site, off + k);
  if (k < n) memset(buf + k, 0, n - k);
}
