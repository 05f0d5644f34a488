#!/usr/bin/env python3
"""Sets a `weft bench --python --json` result beside the original study.

usage: scripts/study_table.py RESULT.json [STUDY_ORIGINAL.md]

Prints Markdown tables for docs/STUDY.md: per case, the original study's
wall time and max RSS (Python, on 10, 2 and 1 cores; from
../shared/spec/study-original.md by default), then this machine's Python and C
rows from the JSON (on every core count measured), and the C/Python ratios.
Only measured values are printed; a case that failed shows FAILED.
"""
import json
import os
import re
import sys


def original(path):
    """{cores: {case_number: (wall_s, maxrss_kib)}} from the study's tables."""
    out, cores = {}, None
    with open(path) as f:
        for line in f:
            m = re.match(r"## (\d+) cores?", line)
            if m:
                cores = int(m.group(1))
                out[cores] = {}
                continue
            m = re.match(r"\| (\d\d)-[^|]*\|([^|]*)\|([^|]*)\|([^|]*)\|([^|]*)\|([^|]*)\|", line)
            if m and cores:
                out[cores][m.group(1)] = (float(m.group(4)), int(m.group(6)))
    return out


def fmt(v, nd=2):
    return "—" if v is None else f"{v:.{nd}f}"


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    here = os.path.dirname(os.path.abspath(__file__))
    orig_path = sys.argv[2] if len(sys.argv) == 3 else os.path.join(
        here, "..", "..", "shared", "spec", "study-original.md")
    d = json.load(open(sys.argv[1]))
    orig = original(orig_path)
    runs = {}
    names = {}
    for r in d["runs"]:
        runs[(r["case"], r["impl"], r["cores"])] = r
        names[r["case"]] = r["name"]
    cores = sorted(d.get("cores") or {r["cores"] for r in d["runs"]}, reverse=True)
    ocores = sorted(orig, reverse=True)

    def cell(case, impl, c, key):
        r = runs.get((case, impl, c))
        if not r:
            return None, "—"
        if not r.get("ok"):
            return None, "FAILED"
        return r[key], None

    head = (["case"] + [f"study {c}-core wall s" for c in ocores] +
            [f"weft Python {c}-core wall s" for c in cores] +
            [f"weft C {c}-core wall s" for c in cores] + [f"C/Python wall ({cores[0]} cores)"])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for case in sorted(names):
        row = [f"{case}-{names[case]}"]
        for c in ocores:
            v = orig[c].get(case)
            row.append(fmt(v[0]) if v else "—")
        vals = {}
        for impl in ("python", "c"):
            for c in cores:
                v, alt = cell(case, impl, c, "wall_s")
                vals[(impl, c)] = v
                row.append(alt if alt else fmt(v, 3 if v < 1 else 2))
        p, cc = vals.get(("python", cores[0])), vals.get(("c", cores[0]))
        row.append(f"{cc / p:.3f}" if p and cc else "—")
        print("| " + " | ".join(row) + " |")
    print()
    head = (["case"] + [f"study {c}-core max RSS KiB" for c in ocores] +
            [f"weft Python {cores[0]}-core max RSS KiB", f"weft C {cores[0]}-core max RSS KiB"])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for case in sorted(names):
        row = [f"{case}-{names[case]}"]
        for c in ocores:
            v = orig[c].get(case)
            row.append(str(v[1]) if v else "—")
        for impl in ("python", "c"):
            v, alt = cell(case, impl, cores[0], "maxrss_kib")
            row.append(alt if alt else str(v))
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
