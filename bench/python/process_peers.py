#!/usr/bin/python3
"""process_peers.py — the Python peers of bench/process.c.

Runs the same work as weft's process-pool measurements with Python's own
process pools, multiprocessing.Pool and concurrent.futures.ProcessPoolExecutor
(default start method of this Python; pool size = --workers), and prints one
`key=value ...` line per measurement on stdout for bench/process to parse:

    peer=info python=3.11.2 start_method=fork workers=2
    peer=python.mp_pool.apply work=small size=8 ops=2000 total_s=0.31 ok=1

The work (what weft's tasks do too):
  small   a task gets an 8-byte little-endian integer and returns it plus one;
  echo    a task gets a payload of --size bytes and returns it unchanged.
Every result is checked (outside the timed region); ok=0 means a wrong result.

Measurements (total_s is the timed region only; pools are created and warmed
before the clock starts):
  python.mp_pool.apply          small: ops x Pool.apply, one at a time
  python.mp_pool.map_chunk1     small: one Pool.map over ops items, chunksize=1
  python.mp_pool.apply          echo:  ops x Pool.apply of the payload
  python.mp_pool.map_chunk1     echo:  one Pool.map over ops payloads, chunksize=1
  python.futures.submit         small/echo: ops x submit(...).result(), in turn
  python.futures.map_chunk1     small/echo: list(ex.map(..., chunksize=1))

Only the standard library; run it with Debian's /usr/bin/python3.
"""

import argparse
import concurrent.futures
import multiprocessing
import os
import platform
import sys
import time


def small(b):
    return (int.from_bytes(b, "little") + 1).to_bytes(8, "little")


def echo(b):
    return b


def small_inputs(n):
    return [i.to_bytes(8, "little") for i in range(n)]


def small_ok(inputs, results):
    return len(results) == len(inputs) and all(
        int.from_bytes(r, "little") == int.from_bytes(x, "little") + 1
        for x, r in zip(inputs, results))


def payloads(size, n):
    """n distinct payloads of `size` bytes (the first 8 bytes hold the index),
    so no result could come from a cache."""
    base = bytes((i * 131 + 7) & 0xFF for i in range(256)) * (size // 256 + 1)
    out = []
    for i in range(n):
        head = i.to_bytes(8, "little")
        out.append((head + base[8:size]) if size >= 8 else base[:size])
    return out


def timed_seq(call, fn, inputs):
    """Calls call(fn, x) for every input in turn; returns (seconds, results).
    Only the calls are timed."""
    results = []
    total = 0.0
    for x in inputs:
        t0 = time.perf_counter()
        r = call(fn, x)
        total += time.perf_counter() - t0
        results.append(r)
    return total, results


def timed_map(mapper, fn, inputs):
    t0 = time.perf_counter()
    results = mapper(fn, inputs)
    return time.perf_counter() - t0, results


def line(impl, work, size, ops, total, ok):
    print("peer=%s work=%s size=%d ops=%d total_s=%.9f ok=%d"
          % (impl, work, size, ops, total, 1 if ok else 0), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--small-ops", type=int, default=2000)
    ap.add_argument("--map-ops", type=int, default=20000)
    ap.add_argument("--echo-ops", type=int, default=100)
    ap.add_argument("--echo-map-ops", type=int, default=64)
    ap.add_argument("--size", type=int, default=1 << 20)
    ap.add_argument("--only", default="",
                    help="comma-separated substrings of impl.work names to run")
    a = ap.parse_args()
    for k in ("workers", "small_ops", "map_ops", "echo_ops", "echo_map_ops", "size"):
        if getattr(a, k) <= 0:
            ap.error("--%s must be positive" % k.replace("_", "-"))
    only = [s for s in a.only.split(",") if s]

    def want(impl, work):
        return not only or any(s in impl + "." + work for s in only)

    print("peer=info python=%s start_method=%s workers=%d executable=%s"
          % (platform.python_version(), multiprocessing.get_start_method(),
             a.workers, sys.executable), flush=True)

    small_in = small_inputs(a.small_ops)
    map_in = small_inputs(a.map_ops)
    echo_in = payloads(a.size, a.echo_ops)
    echo_map_in = payloads(a.size, a.echo_map_ops)

    def apply_call(pool):
        return lambda fn, x: pool.apply(fn, (x,))

    def submit_call(ex):
        return lambda fn, x: ex.submit(fn, x).result()

    with multiprocessing.Pool(a.workers) as pool:
        # Warm-up: every worker started and has run both functions.
        pool.map(small, small_inputs(4 * a.workers), chunksize=1)
        pool.map(echo, payloads(a.size, 2 * a.workers), chunksize=1)
        call = apply_call(pool)
        if want("python.mp_pool.apply", "small"):
            t, r = timed_seq(call, small, small_in)
            line("python.mp_pool.apply", "small", 8, len(small_in), t, small_ok(small_in, r))
        if want("python.mp_pool.map_chunk1", "small"):
            t, r = timed_map(lambda fn, xs: pool.map(fn, xs, chunksize=1), small, map_in)
            line("python.mp_pool.map_chunk1", "small", 8, len(map_in), t, small_ok(map_in, r))
        if want("python.mp_pool.apply", "echo"):
            t, r = timed_seq(call, echo, echo_in)
            line("python.mp_pool.apply", "echo", a.size, len(echo_in), t, r == echo_in)
        if want("python.mp_pool.map_chunk1", "echo"):
            t, r = timed_map(lambda fn, xs: pool.map(fn, xs, chunksize=1), echo, echo_map_in)
            line("python.mp_pool.map_chunk1", "echo", a.size, len(echo_map_in), t,
                 r == echo_map_in)

    with concurrent.futures.ProcessPoolExecutor(a.workers) as ex:
        list(ex.map(small, small_inputs(4 * a.workers), chunksize=1))
        list(ex.map(echo, payloads(a.size, 2 * a.workers), chunksize=1))
        call = submit_call(ex)
        if want("python.futures.submit", "small"):
            t, r = timed_seq(call, small, small_in)
            line("python.futures.submit", "small", 8, len(small_in), t, small_ok(small_in, r))
        if want("python.futures.map_chunk1", "small"):
            t, r = timed_map(lambda fn, xs: list(ex.map(fn, xs, chunksize=1)), small, map_in)
            line("python.futures.map_chunk1", "small", 8, len(map_in), t, small_ok(map_in, r))
        if want("python.futures.submit", "echo"):
            t, r = timed_seq(call, echo, echo_in)
            line("python.futures.submit", "echo", a.size, len(echo_in), t, r == echo_in)
        if want("python.futures.map_chunk1", "echo"):
            t, r = timed_map(lambda fn, xs: list(ex.map(fn, xs, chunksize=1)), echo,
                             echo_map_in)
            line("python.futures.map_chunk1", "echo", a.size, len(echo_map_in), t,
                 r == echo_map_in)
    return 0


if __name__ == "__main__":
    sys.exit(main())
