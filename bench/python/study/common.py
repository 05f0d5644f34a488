"""What the 18 study cases share: the workload, the pool sizes, the checks.

Each case is its own script, named NN-GROUP-MODEL.py; the group (io, cpu,
io+cpu, io+io_blocking) is read from that name and decides the work:
  io              the 30 URLS (sites 0..9, three times)
  cpu             the 21 NUMBERS (28..34, three times)
  io+cpu          the first 10 URLS, each followed by fib(32)
  io+io_blocking  the first 20 URLS, each fetched twice (async, then blocking)
A case runs its work, then hands what it got to finish(), which checks every
byte count and every fib value: a summary line and exit 0, or the errors on
stderr and exit 1.  Bad options exit 2, a missing module 3.
"""
import argparse
import importlib
import math
import os
import sys
import threading
import traceback

NAME = os.path.splitext(os.path.basename(sys.argv[0]))[0]
GROUP = NAME.split("-")[1] if NAME.count("-") >= 2 else "io"

# Body size in bytes of /site/0 .. /site/9 (see the workload spec).
SIZES = [15655, 12630, 98527, 42000, 120000, 8192, 64000, 250000, 30000, 5000]
NUMBERS = [28, 29, 30, 31, 32, 33, 34] * 3
# Seconds per fetch (times the scale, set by setup()): a stuck server fails a
# case instead of hanging it, while case 16's loop, blocked for the sum of its
# blocking fetches (11 s at scale 1), never trips it.
TIMEOUT = 60.0

# Debian's package for each module a case may need.
DEBIAN = {"requests": "python3-requests", "httpx": "python3-httpx"}


def need(module):
    """Import module, or say which Debian package provides it and exit 3."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pkg = DEBIAN.get(module, "python3-" + module)
        print(f"{NAME}: Python module '{module}' is missing ({e}); "
              f"install Debian's {pkg} (apt-get install {pkg})", file=sys.stderr)
        sys.exit(3)


def fib(n):
    """The CPU task: naive recursion on purpose, as the study has it."""
    return 1 if n <= 2 else fib(n - 1) + fib(n - 2)


def fib_expected(n):
    """fib(n) the quick way, to check the slow one against."""
    a, b = 1, 1
    for _ in range(n - 2):
        a, b = b, a + b
    return b


def cores():
    """CPUs this process may run on: the affinity mask, which the runner sets.
    (os.cpu_count() counts the machine and would ignore it.)"""
    return len(os.sched_getaffinity(0))


def thread_pool_size():
    """ThreadPoolExecutor's default, min(32, cores + 4), from the affinity mask."""
    return min(32, cores() + 4)


def process_pool_size():
    """ProcessPoolExecutor's default, cores, from the affinity mask."""
    return cores()


def _fail(kind, value, tb):
    """An exception nobody caught (a refused connection, a 404, ...): one line
    saying what and where, instead of a traceback; the exit status stays 1."""
    if issubclass(kind, KeyboardInterrupt):
        return sys.__excepthook__(kind, value, tb)
    here = os.path.dirname(os.path.abspath(__file__))
    frames = traceback.extract_tb(tb)
    ours = [f for f in frames if os.path.dirname(os.path.abspath(f.filename)) == here]
    where = (ours or frames or [None])[-1]
    at = f" (at {os.path.basename(where.filename)}:{where.lineno})" if where else ""
    what = " ".join(str(value).split())  # httpx's messages span lines
    # One write per line: threads that fail together must not interleave.
    sys.stderr.write(f"{NAME}: FAILED: {kind.__name__}: {what}{at}\n")


def _scale(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number > 0: {text!r}")
    return value


def setup():
    """Parse --url/--scale (or WEFT_STUDY_URL/WEFT_STUDY_SCALE) and return them
    with this case's work: args.urls, args.numbers, and what finish() expects."""
    p = argparse.ArgumentParser(
        prog=NAME, description=f"Study case {NAME} against the ten-sites server.")
    p.add_argument("--url", default=os.environ.get("WEFT_STUDY_URL"),
                   help="server address, e.g. http://127.0.0.1:8000 "
                        "(default: $WEFT_STUDY_URL)")
    p.add_argument("--scale", type=_scale, default=None,
                   help="latency scale the server runs with, only reported "
                        "(default: $WEFT_STUDY_SCALE or 1.0)")
    args = p.parse_args()
    sys.excepthook = _fail
    threading.excepthook = lambda a: _fail(a.exc_type, a.exc_value, a.exc_traceback)
    if args.scale is None:
        try:
            args.scale = _scale(os.environ.get("WEFT_STUDY_SCALE", "1.0"))
        except argparse.ArgumentTypeError as e:
            p.error(f"WEFT_STUDY_SCALE: {e}")
    if not args.url:
        p.error("no server address: give --url BASE or set WEFT_STUDY_URL")
    if not args.url.startswith(("http://", "https://")):
        p.error(f"--url must start with http://: {args.url!r}")
    global TIMEOUT
    TIMEOUT = 60.0 * max(1.0, args.scale)
    base = args.url.rstrip("/")
    all_urls = [f"{base}/site/{i}" for i in range(len(SIZES))] * 3
    args.urls, args.numbers = [], []
    args.want_fetches, args.want_fibs = [], []
    if GROUP == "io":
        args.urls = args.want_fetches = all_urls
    elif GROUP == "cpu":
        args.numbers = args.want_fibs = NUMBERS
    elif GROUP == "io+cpu":
        args.urls = args.want_fetches = all_urls[:10]
        args.want_fibs = [32] * 10
    elif GROUP == "io+io_blocking":
        args.urls = all_urls[:20]
        args.want_fetches = args.urls * 2
    else:
        p.error(f"unknown group {GROUP!r} in the script's name")
    return args


def finish(args, fetches=(), fibs=(), workers=None):
    """Check (url, nbytes) pairs and (n, fib(n)) pairs against this case's
    work; print the summary and exit 0, or print what is wrong and exit 1."""
    fetches, fibs = list(fetches), list(fibs)
    errors = []
    for url, nbytes in fetches:
        want = SIZES[int(url.rsplit("/", 1)[1])]
        if nbytes != want:
            errors.append(f"{url}: {nbytes} bytes, want {want}")
    for n, value in fibs:
        if value != fib_expected(n):
            errors.append(f"fib({n}) = {value}, want {fib_expected(n)}")
    if sorted(u for u, _ in fetches) != sorted(args.want_fetches):
        errors.append(f"{len(fetches)} fetches done, want {len(args.want_fetches)}"
                      " (each URL fetched as often as the case says)")
    if sorted(n for n, _ in fibs) != sorted(args.want_fibs):
        errors.append(f"{len(fibs)} fib values, want {len(args.want_fibs)}")
    if errors:
        for e in errors:
            print(f"{NAME}: {e}", file=sys.stderr)
        print(f"{NAME}: FAILED ({len(errors)} wrong)", file=sys.stderr)
        sys.exit(1)
    parts = []
    if fetches:
        parts.append(f"{len(fetches)} fetches, {sum(b for _, b in fetches)} bytes")
    if fibs:
        parts.append(f"{len(fibs)} fib values")
    extra = f"scale {args.scale:g}"
    if workers:
        extra += f", {workers} worker" + ("s" if workers > 1 else "")
    print(f"{NAME}: {', '.join(parts)}, ok ({extra})")
    sys.exit(0)
