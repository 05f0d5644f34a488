#!/usr/bin/python3
"""Checks the JSON of `weft bench --quick --json FILE` (CI's lab check).

usage: check_bench.py FILE

Passes (exit 0) when the file has the shape docs/LAB.md describes, every
run is ok, and the orderings that must hold at scale 0.1 hold:
  - io-async (06) well under io-sequential (01): at most half its wall time,
    on every core count where both ran;
  - cpu-process_pool (12) faster than cpu-sequential (08) on 2 cores, when
    2 cores were measured.
The orderings compare each case's best run (walls_s), not the median: on a
shared machine a neighbour can slow one run, never speed one up. C's CPU
cases are short (about 0.035 s at -O2, 0.15 s at -O0), so run with
--repeat 5; when cpu-sequential takes less than 0.1 s (an optimised build),
the cpu ordering is reported as not checked: process start-up, not
parallelism, decides it there.
Prints what is wrong and exits 1 otherwise (2 on a usage error).
"""
import json
import math
import sys

# Below this, cpu-sequential's work is too short for a process pool to win
# by parallelism rather than lose by start-up (C at -O2: about 0.035 s).
MIN_CPU_S = 0.1

RUN_KEYS = {"case": str, "name": str, "impl": str, "cores": int, "user_s": (int, float),
            "sys_s": (int, float), "wall_s": (int, float), "cpu_pct": (int, float),
            "maxrss_kib": int, "floor_s": (int, float), "ok": bool}


def number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check(doc):
    errors = []
    for key in ("weft_version", "machine", "scale", "repeat", "runs", "conclusions"):
        if key not in doc:
            errors.append("missing top-level key %r" % key)
    if errors:
        return errors
    machine = doc["machine"]
    for key in ("cpus", "model", "kernel"):
        if key not in machine:
            errors.append("machine: missing %r" % key)
    if not (number(doc["scale"]) and doc["scale"] > 0):
        errors.append("scale must be a number > 0, not %r" % doc["scale"])
    runs = doc["runs"]
    if not runs:
        errors.append("no runs")
    walls = {}
    for i, run in enumerate(runs):
        where = "run %d (%s-%s %s, %s cores)" % (i, run.get("case"), run.get("name"),
                                                  run.get("impl"), run.get("cores"))
        for key, kind in RUN_KEYS.items():
            if key not in run:
                errors.append("%s: missing %r" % (where, key))
            elif run.get("ok") and not isinstance(run[key], kind):
                errors.append("%s: %r is %r" % (where, key, run[key]))
        if run.get("impl") not in ("c", "python"):
            errors.append("%s: impl must be c or python" % where)
        if not run.get("ok"):
            errors.append("%s: not ok: %s" % (where, run.get("error", "?")))
            continue
        for key in ("user_s", "sys_s", "wall_s", "floor_s"):
            if not (number(run[key]) and run[key] >= 0):
                errors.append("%s: %s = %r" % (where, key, run[key]))
        if run["wall_s"] <= 0:
            errors.append("%s: wall_s must be > 0" % where)
        best = min(run.get("walls_s") or [run["wall_s"]])
        walls[(run["case"], run["impl"], run["cores"])] = best
    if errors:
        return errors
    impls_cores = {(impl, cores) for (_, impl, cores) in walls}
    checked = 0
    for impl, cores in sorted(impls_cores):
        a = walls.get(("06", impl, cores))
        s = walls.get(("01", impl, cores))
        if a is not None and s is not None:
            checked += 1
            if not a <= 0.5 * s:
                errors.append("%s on %d cores: io-async %.3f s is not well under io-sequential "
                              "%.3f s" % (impl, cores, a, s))
        if cores == 2:
            p = walls.get(("12", impl, cores))
            q = walls.get(("08", impl, cores))
            if p is not None and q is not None and q < MIN_CPU_S:
                print("check_bench: %s on 2 cores: cpu ordering not checked: cpu-sequential "
                      "takes %.3f s, less than %.1f s, so process start-up decides it"
                      % (impl, q, MIN_CPU_S))
            elif p is not None and q is not None:
                checked += 1
                if not p < q:
                    errors.append("%s on 2 cores: cpu-process_pool %.3f s is not faster than "
                                  "cpu-sequential %.3f s" % (impl, p, q))
    if checked == 0:
        errors.append("no ordering could be checked: run cases 01, 06 (and 08, 12 on 2 cores)")
    conclusions = doc["conclusions"]
    if not isinstance(conclusions, dict) or "groups" not in conclusions:
        errors.append("conclusions: missing 'groups'")
    return errors


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        with open(argv[1]) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        print("check_bench: cannot read %s: %s" % (argv[1], e), file=sys.stderr)
        return 1
    errors = check(doc)
    for e in errors:
        print("check_bench: " + e, file=sys.stderr)
    if errors:
        return 1
    print("check_bench: %d runs ok, orderings hold (scale %g)" % (len(doc["runs"]), doc["scale"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
