#!/usr/bin/env python3
"""Mutation fuzzing of `sensor replay` (a tool, not a test).

Takes captures (default: the conformance corpus in ../shared plus pcaps/),
flips, copies, inserts and truncates bytes, replays each case and reports
any exit other than 0/1 or any Python traceback, keeping the case.

  python3 bench/fuzz_replay.py [--seconds 300] [--seed 1] [--glob '*http2*'] [--keep DIR] [--extra CAP...]
"""
import argparse
import glob
import os
import random
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mutate(rnd, data):
    d = bytearray(data)
    start = 40 if len(d) > 64 else 0            # leave the file header mostly alone
    for _ in range(rnd.choice([1, 5, 20, 100])):
        i = rnd.randrange(start, len(d))
        op = rnd.random()
        if op < 0.6:
            d[i] = rnd.randrange(256)
        elif op < 0.8:
            j, k = rnd.randrange(len(d)), rnd.randrange(1, 64)
            d[i:i + k] = d[j:j + k]
        else:
            d[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 32)))
    if rnd.random() < 0.2:
        d = d[:rnd.randrange(len(d))]
    return bytes(d)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--glob", default="*", help="which captures of the corpus")
    ap.add_argument("--sensor", default="sensor")
    ap.add_argument("--keep", default="/tmp/sensor-fuzz")
    ap.add_argument("--extra", nargs="*", default=[], help="more seed captures, any size (e.g. a slice of "
                    "make-traffic output: JSON bodies for enrichment)")
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    files = glob.glob(os.path.join(REPO, "..", "shared", "conformance", "pcaps", a.glob))
    files += glob.glob(os.path.join(REPO, "pcaps", "*.pcap"))
    seeds = {f: open(f, "rb").read() for f in files if os.path.getsize(f) < 600_000}
    seeds.update((f, open(f, "rb").read()) for f in a.extra)
    os.makedirs(a.keep, exist_ok=True)
    case = os.path.join(a.keep, "case.pcap")
    end, runs, bad = time.time() + a.seconds, 0, 0
    while time.time() < end:
        src = rnd.choice(sorted(seeds))
        with open(case, "wb") as f:
            f.write(mutate(rnd, seeds[src]))
        try:
            r = subprocess.run([a.sensor, "replay", case, "-o", os.devnull, "-q"], capture_output=True, timeout=60)
            failed = r.returncode not in (0, 1) or b"Traceback" in r.stderr
            why = r.stderr[-300:]
        except subprocess.TimeoutExpired:
            failed, why = True, b"timeout (hang)"
        runs += 1
        if failed:
            bad += 1
            kept = os.path.join(a.keep, "crash-%d.pcap" % bad)
            os.replace(case, kept)
            print("CRASH %s (from %s): %s" % (kept, os.path.basename(src), why.decode(errors="replace")), flush=True)
    print("runs %d, crashes %d" % (runs, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
