#!/usr/bin/python3
"""Tests of check_bench.py (ctest lab.check_bench_script): it accepts a good
`weft bench --json` document and names each thing wrong in a bad one."""
import copy
import json
import os
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_bench  # noqa: E402


def run(case, name, cores, wall, ok=True, impl="c", walls=None):
    r = {"case": case, "name": name, "impl": impl, "cores": cores, "ok": ok, "user_s": 0.01,
         "sys_s": 0.01, "wall_s": wall, "cpu_pct": 10.0, "maxrss_kib": 9000, "floor_s": 0.1,
         "walls_s": walls or [wall]}
    if not ok:
        r.update(user_s=None, sys_s=None, wall_s=None, cpu_pct=None, maxrss_kib=None,
                 error="exit status 1 (wrong or failed results)")
    return r


GOOD = {"weft_version": "0.1.0", "machine": {"cpus": 2, "model": "x", "kernel": "Linux"},
        "scale": 0.1, "repeat": 3,
        "runs": [run("01", "io-sequential", 1, 1.7), run("06", "io-async", 1, 0.11),
                 run("01", "io-sequential", 2, 1.7), run("06", "io-async", 2, 0.11),
                 run("08", "cpu-sequential", 2, 0.30), run("12", "cpu-process_pool", 2, 0.18)],
        "conclusions": {"groups": [], "cpu_scaling": []}}


def expect(doc, *needles):
    errors = check_bench.check(doc)
    for n in needles:
        assert any(n in e for e in errors), "want %r in %r" % (n, errors)
    if not needles:
        assert errors == [], errors


def main():
    expect(GOOD)
    bad = copy.deepcopy(GOOD)
    bad["runs"][1] = run("06", "io-async", 1, 1.0)
    expect(bad, "io-async 1.000 s is not well under io-sequential")
    bad = copy.deepcopy(GOOD)
    bad["runs"][5] = run("12", "cpu-process_pool", 2, 0.35)
    expect(bad, "cpu-process_pool 0.350 s is not faster than cpu-sequential")
    # The best run decides: one slow run of 12 does not fail the check.
    ok = copy.deepcopy(GOOD)
    ok["runs"][5] = run("12", "cpu-process_pool", 2, 0.35, walls=[0.35, 0.20, 0.40])
    expect(ok)
    # Too little CPU work: the cpu ordering is not checked.
    short = copy.deepcopy(GOOD)
    short["runs"][4] = run("08", "cpu-sequential", 2, 0.03)
    short["runs"][5] = run("12", "cpu-process_pool", 2, 0.04)
    expect(short)
    bad = copy.deepcopy(GOOD)
    bad["runs"][2] = run("01", "io-sequential", 2, None, ok=False)
    expect(bad, "not ok: exit status 1")
    bad = copy.deepcopy(GOOD)
    del bad["machine"]
    expect(bad, "missing top-level key 'machine'")
    bad = copy.deepcopy(GOOD)
    bad["runs"] = [run("08", "cpu-sequential", 1, 0.3)]
    expect(bad, "no ordering could be checked")
    bad = copy.deepcopy(GOOD)
    bad["runs"][0]["impl"] = "rust"
    expect(bad, "impl must be c or python")
    # The command line: exit 0, 1 and 2; unreadable JSON is a failure.
    here = os.path.dirname(os.path.abspath(__file__))
    script = os.path.join(here, "check_bench.py")
    with tempfile.TemporaryDirectory() as d:
        good, broken = os.path.join(d, "good.json"), os.path.join(d, "broken.json")
        with open(good, "w") as f:
            json.dump(GOOD, f)
        with open(broken, "w") as f:
            f.write("{not json")
        assert subprocess.run([sys.executable, script, good]).returncode == 0
        assert subprocess.run([sys.executable, script, broken],
                              stderr=subprocess.DEVNULL).returncode == 1
        assert subprocess.run([sys.executable, script], stderr=subprocess.DEVNULL).returncode == 2
    print("ok check_bench tests")


if __name__ == "__main__":
    main()
