#!/usr/bin/env python3
"""Live-capture benchmark: tcpreplay onto a veth at rising rates, `sensor capture` on the other end.

A network namespace holds one end of a veth pair; `tcpreplay` sends the
make-traffic capture on the root-namespace end while `sensor capture -i <ns end>
--workers N` listens inside the namespace. Per point (worker count x rate), best
of --runs: the rate tcpreplay achieved, the kernel's packets/drops from the
sensor's summary (PACKET_STATISTICS), drops before the socket (veth, backlog),
records written vs the ground truth, and CPU per sensor process. Writes its
section of docs/performance.md (between <!-- bench:live --> markers) and prints it.
Needs root, iproute2, tcpreplay (Debian: apt-get install tcpreplay).

  python3 bench/live.py --sensor /tmp/livevenv/bin/sensor
  python3 bench/live.py --rates 100,200,top --workers 1 --runs 1
"""
import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import msgpack

from run import DEFAULT_CAPTURE, REPO, first_line, ground_truth, host, log

TICK = os.sysconf("SC_CLK_TCK")
IDLE_POLL = 0.1      # s between CPU samples while waiting for the sensor to empty its ring
DRAIN_LIMIT = 60     # s: a sensor still busy by then is stopped anyway (its drain column says so)
NS_TAG = f"lv{os.getpid() % 100000}"     # unique namespace / veth names for this run


def sh(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


class Veth:
    """A namespace holding one end of a veth pair; removed on exit, also after an error."""

    def __init__(self):
        self.ns, self.host, self.peer = f"{NS_TAG}ns", f"{NS_TAG}h", f"{NS_TAG}n"

    def __enter__(self):
        sh("ip", "netns", "add", self.ns)
        try:
            sh("ip", "link", "add", self.host, "type", "veth", "peer", "name", self.peer, "netns", self.ns)
            # no IPv6 autoconf chatter: the sensor then sees exactly the replayed frames
            sh("sysctl", "-qw", f"net.ipv6.conf.{self.host}.disable_ipv6=1")
            sh("ip", "netns", "exec", self.ns, "sysctl", "-qw", f"net.ipv6.conf.{self.peer}.disable_ipv6=1")
            sh("ip", "link", "set", self.host, "up")
            sh("ip", "-n", self.ns, "link", "set", self.peer, "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_):
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)      # takes the peer along
        subprocess.run(["ip", "link", "del", self.host], capture_output=True)

    def rx_dropped(self):
        link = json.loads(sh("ip", "-j", "-s", "-n", self.ns, "link", "show", "dev", self.peer))[0]
        return link["stats64"]["rx"]["dropped"]


def softnet_drops():
    """Frames dropped by full per-CPU backlogs (machine-wide), where veth hands frames over."""
    return sum(int(line.split()[1], 16) for line in open("/proc/net/softnet_stat"))


def cpu_ticks(pids):
    """utime + stime of each pid (all its threads), in clock ticks."""
    out = {}
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out[pid] = int(fields[11]) + int(fields[12])
    return out


def children(pid):
    kids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(d.name))
        except OSError:
            pass        # exited while we looked
    return sorted(kids)


def read_records(path):
    """HTTP records per connection and protocol version: Counter{(client, cport, server, sport, version): n}."""
    conns = Counter()
    with open(path, "rb") as f:
        for r in msgpack.Unpacker(f, raw=False, strict_map_key=False):
            if r.get("type") == "http":
                v = "2" if str(r.get("network.protocol.version")).startswith("2") else "1.x"
                conns[r.get("client.address"), r.get("client.port"), r.get("server.address"),
                      r.get("server.port"), v] += 1
    return conns


def by_version(conns):
    v = Counter()
    for key, n in conns.items():
        v[key[-1]] += n
    return v


def tcpreplay(args, iface, rate):
    speed = ["--topspeed"] if rate == "top" else ["--mbps", rate]
    # pinned to one core; preloaded so disk reads never pace the replay
    p = subprocess.run(["taskset", "-c", str(args.replay_cpu), "tcpreplay", "-q", "-K", "-i", iface,
                        *speed, args.capture], capture_output=True, text=True)
    out = p.stdout + p.stderr
    if p.returncode:
        sys.exit(f"live.py: tcpreplay exited {p.returncode}:\n{out[-2000:]}")
    sent = re.search(r"Actual: (\d+) packets \((\d+) bytes\) sent in ([\d.]+) seconds", out)
    failed = re.search(r"Failed packets:\s+(\d+)", out)
    return {"packets": int(sent.group(1)), "bytes": int(sent.group(2)), "seconds": float(sent.group(3)),
            "failed": int(failed.group(1)) if failed else 0}


def run_point(args, net, workers, rate, out):
    """One replay at one rate with the sensor listening; the sensor is stopped (SIGINT) once idle."""
    pin = ["taskset", "-c", args.sensor_cpus] if args.sensor_cpus else []
    cmd = ["ip", "netns", "exec", net.ns, *pin, args.sensor, "capture", "-i", net.peer, "--workers", str(workers),
           "-o", out]
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
        if "capturing on" not in line:
            sys.exit(f"live.py: {shlex.join(cmd)}:\n{line}{p.stderr.read()}")
        # `ip netns exec` (and taskset) exec the sensor: same pid; with several workers they are its children
        pids = [p.pid] + (children(p.pid) if workers > 1 else [])
        load = os.getloadavg()[0]
        cpu0, soft0, veth0 = cpu_ticks(pids), softnet_drops(), net.rx_dropped()
        rep = tcpreplay(args, net.host, rate)
        t_end = time.monotonic()
        # the ring may still hold packets: wait until two samples in a row see (almost) no CPU used
        prev, quiet = sum(cpu_ticks(pids).values()), 0
        while quiet < 2 and time.monotonic() < t_end + DRAIN_LIMIT:
            time.sleep(IDLE_POLL)
            now = sum(cpu_ticks(pids).values())
            quiet = quiet + 1 if now - prev <= 1 else 0
            prev = now
        drain = max(0.0, time.monotonic() - t_end - 2 * IDLE_POLL)
        cpu1 = cpu_ticks(pids)
        p.send_signal(signal.SIGINT)
        err = p.communicate(timeout=120)[1]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if p.returncode:
        sys.exit(f"live.py: {shlex.join(cmd)} exited {p.returncode}:\n{err[-2000:]}")
    kern = re.search(r"kernel: (\d+) packets, (\d+) dropped", err)
    cpu = [(cpu1[pid] - cpu0[pid]) / TICK for pid in pids]
    return {"rate": rate, "workers": workers, "replay": rep, "load": load, "drain": drain,
            "kernel_packets": int(kern.group(1)), "kernel_drops": int(kern.group(2)),
            "other_drops": softnet_drops() - soft0 + net.rx_dropped() - veth0 + rep["failed"],
            # one worker: the sensor process itself; several: the parent (writes the output), then each worker
            "cpu_parent": cpu[0] if workers > 1 else None, "cpu_workers": cpu[1:] if workers > 1 else cpu,
            "conns": read_records(out)}


def better(a, b):
    """The better of two runs of a point: fewer drops, then more records, then the sensor kept pace (less
    drain: other work took its core less), then a faster replay."""
    def key(r):
        return (r["kernel_drops"] + r["other_drops"], -sum(r["conns"].values()), round(r["drain"], 1),
                r["replay"]["seconds"])
    return a if b is None or key(a) <= key(b) else b


def machine(args):
    return (f"{host()}; {first_line(['tcpreplay', '--version'])}; "
            f"sensor `{args.sensor}` ({first_line([args.sensor, '--version'])})"
            + (f", {args.sensor_label}" if args.sensor_label else ""))


def asked(rate):
    return "topspeed" if rate == "top" else f"{rate} Mbit/s"


def pct(cpu_s, seconds):
    return f"{100 * cpu_s / seconds:.0f} %"


def report(args, results, expected, ref, loads):
    cap_packets = next(iter(results.values()))["replay"]["packets"]
    sensor_pin = f"taskset -c {args.sensor_cpus} " if args.sensor_cpus else ""
    n_cores = len(args.sensor_cpus.split(",")) if args.sensor_cpus else os.cpu_count()
    lines = [
        f"Measured {datetime.date.today()} with:\n",
        f"```sh\n{shlex.join(['python3', os.path.relpath(__file__, REPO), *sys.argv[1:]])}\n```\n",
        f"- machine: {machine(args)}",
        f"- load: 1-min load average {loads[0]:.2f} before the first run, {loads[1]:.2f} after the last "
        "(other work on the machine); the `load` column is the 1-min load average as the kept run started",
        f"- capture: `{args.capture}`, {os.path.getsize(args.capture):,} bytes, {cap_packets:,} packets, "
        f"replayed once per run; expected records: the manifest's ground truth, "
        f"{expected['1.x']:,} HTTP/1.x + {expected['2']:,} HTTP/2 = {expected['total']:,}",
        f"- setup: veth pair, one end in a fresh network namespace; `taskset -c {args.replay_cpu} tcpreplay -K "
        f"(--mbps R | --topspeed)` sends on the root-namespace end, `ip netns exec NS {sensor_pin}{args.sensor} "
        "capture -i PEER --workers N -o OUT.msgpack` (default 64 MiB ring per worker) listens on the other, "
        "started before each replay and stopped with SIGINT once idle. The kernel copies each frame into the "
        f"sensor's ring inside tcpreplay's `send()`, on core {args.replay_cpu}: that cost is tcpreplay's, not the "
        "sensor's. The sensor is kept off tcpreplay's core because the scheduler otherwise wakes it there "
        "(next to the sender that woke it), which cut tcpreplay's top speed by over a quarter in trials"
        + (f". With {n_cores} core left for the sensor, its workers share it: more workers than that "
           "cannot show scaling here, only what fanout costs" if n_cores < max(args.workers) else ""),
        f"- each point is the better of {args.runs} runs (fewest drops, then most records, then least drain, "
        "then the faster replay), "
        "runs taking turns point by point; `achieved` is tcpreplay's own figure (bytes sent / seconds sending)",
        "- `kernel drops`: PACKET_STATISTICS summed over the workers' sockets, from the sensor's summary; "
        "`other drops`: frames lost before any socket (veth rx_dropped, per-CPU backlog drops in "
        "/proc/net/softnet_stat, machine-wide) plus tcpreplay's failed sends",
        "- CPU: utime + stime from `/proc/PID/stat` of the sensor process (and, with workers, of each worker "
        "child), read before the replay and once the sensor had gone idle afterwards; `% of a core` divides it "
        "by tcpreplay's sending time. `drain s`: how long after tcpreplay exited the sensor kept working "
        f"(CPU sampled every {IDLE_POLL} s), i.e. how far it had fallen behind, the ring holding the difference",
        "",
        "| workers | asked | achieved Mbit/s | kpackets/s | kernel packets | kernel drops | other drops "
        "| HTTP/1.x | HTTP/2 | records / expected | CPU per worker, % of a core | parent CPU | drain s | load |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for (workers, rate), r in results.items():
        rep, v = r["replay"], by_version(r["conns"])
        secs = rep["seconds"]
        parent = "—" if r["cpu_parent"] is None else pct(r["cpu_parent"], secs)
        lines.append(
            f"| {workers} | {asked(rate)} | {rep['bytes'] * 8 / 1e6 / secs:,.0f} "
            f"| {rep['packets'] / 1e3 / secs:,.0f} | {r['kernel_packets']:,} | {r['kernel_drops']:,} "
            f"| {r['other_drops']:,} "
            f"| {v['1.x']:,} | {v['2']:,} | {sum(v.values()):,} / {expected['total']:,} "
            f"| {' / '.join(pct(c, secs) for c in r['cpu_workers'])} | {parent} | {r['drain']:.1f} | {r['load']:.2f} |")
    lines.append("")
    for workers in args.workers:
        clean = []                         # the points below the first one with drops
        for rate in args.rates:
            if results[workers, rate]["kernel_drops"]:
                break
            clean.append(results[workers, rate])
        if not clean:
            lines.append(f"- **{workers} worker{'s' if workers > 1 else ''}**: kernel drops already at "
                         f"{asked(args.rates[0])}")
        else:
            # the highest achieved rate: near its top speed tcpreplay may do less than a lower --mbps asked
            best = max(clean, key=lambda r: r["replay"]["bytes"] / r["replay"]["seconds"])
            rep = best["replay"]
            top = (" (every rate asked: tcpreplay, not the sensor, was the limit)"
                   if len(clean) == len(args.rates) and "top" in args.rates else "")
            lines.append(f"- **{workers} worker{'s' if workers > 1 else ''}**: highest rate with zero kernel drops "
                         f"**{rep['bytes'] * 8 / 1e6 / rep['seconds']:,.0f} Mbit/s** "
                         f"({rep['packets'] / 1e3 / rep['seconds']:,.0f} kpackets/s){top}; the busiest worker "
                         f"used {pct(max(best['cpu_workers']), rep['seconds'])} of a core there")
    differ = [r for r in results.values() if r["conns"] != ref]
    if differ:
        lines += ["", f"Records that differ from `sensor replay` of the same capture (which writes "
                  f"{sum(ref.values()):,}), by connection (client port -> server port: live / replay):", ""]
        for r in differ:
            diff = sorted(set(r["conns"]) | set(ref), key=lambda k: (k[1] or 0, k[3] or 0))
            diff = [k for k in diff if r["conns"][k] != ref[k]]
            shown = ", ".join(f"{k[1]}->{k[3]} ({k[4]}): {r['conns'][k]}/{ref[k]}" for k in diff[:12])
            lines.append(f"- {r['workers']} worker(s), {r['rate']}: {len(diff)} connections; {shown}"
                         + (", ..." if len(diff) > 12 else ""))
    return "\n".join(lines) + "\n"


def write_section(page, text):
    """Replace only this benchmark's section: another run may be rewriting the others meanwhile."""
    old = page.read_text() if page.exists() else "# Performance\n"
    mark = re.compile(r"<!-- bench:live -->\n.*?<!-- /bench:live -->", re.S)
    block = f"<!-- bench:live -->\n{text}<!-- /bench:live -->"
    if mark.search(old):
        new = mark.sub(lambda _: block, old)
    else:
        new = old.rstrip("\n") + "\n\n## Live capture: tcpreplay onto a veth\n\n" \
            "Written by `bench/live.py`: regenerate it rather than edit it.\n\n" + block + "\n"
    page.write_text(new)
    log(f"wrote {page}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--capture", default=DEFAULT_CAPTURE, help=f"default {DEFAULT_CAPTURE}")
    ap.add_argument("--sensor", default="sensor", help="sensor executable (default: sensor on PATH)")
    ap.add_argument("--sensor-label", help="which sensor build this is (e.g. its commit), shown on the page")
    ap.add_argument("--rates", default="200,400,800,1600,top",
                    help="tcpreplay rates in Mbit/s, rising; 'top' for --topspeed (default %(default)s)")
    ap.add_argument("--workers", default="1,2", help="worker counts (default %(default)s)")
    ap.add_argument("--runs", type=int, default=2, help="runs per point, the better one kept (default 2)")
    ap.add_argument("--replay-cpu", type=int, default=0, help="core tcpreplay is pinned to (default 0)")
    ap.add_argument("--sensor-cpus", help="cores for the sensor and its workers, taskset list "
                    "(default: every core but --replay-cpu; '' for no pinning)")
    ap.add_argument("--page", default=str(REPO / "docs" / "performance.md"))
    args = ap.parse_args()
    args.rates = args.rates.split(",")
    args.workers = [int(w) for w in args.workers.split(",")]
    if args.sensor_cpus is None:
        args.sensor_cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)) if c != args.replay_cpu)
    if os.geteuid():
        sys.exit("live.py: needs root (network namespaces, raw sockets)")
    for tool in ("ip", "tcpreplay", "taskset", args.sensor):
        if not shutil.which(tool):
            sys.exit(f"live.py: {tool} not found")
    manifest = Path(args.capture + ".manifest.json")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("live.py: terminated"))     # so the namespace goes too
    with tempfile.TemporaryDirectory(prefix="sensor-live-") as tmp, Veth() as net:
        out = os.path.join(tmp, "out.msgpack")
        # what the sensor finds with no live capture in the way, per connection, to tell losses apart
        subprocess.run([args.sensor, "replay", "-q", args.capture, "-o", out], check=True)
        ref = read_records(out)
        expected = ground_truth(json.loads(manifest.read_text())) if manifest.exists() else \
            {**by_version(ref), "total": sum(ref.values())}
        loads = [os.getloadavg()[0]]
        log(f"load average {loads[0]:.2f}; namespace {net.ns}, veth {net.host} <-> {net.peer}")
        results = {}
        for i in range(args.runs):
            for workers in args.workers:
                for rate in args.rates:
                    r = run_point(args, net, workers, rate, out)
                    log(f"run {i + 1}/{args.runs}, {workers} worker(s), {rate}: "
                        f"{r['replay']['bytes'] * 8 / 1e6 / r['replay']['seconds']:,.0f} Mbit/s, "
                        f"kernel drops {r['kernel_drops']:,}, other drops {r['other_drops']:,}, "
                        f"{sum(r['conns'].values()):,} records, CPU {[round(c, 2) for c in r['cpu_workers']]} s, "
                        f"drain {r['drain']:.1f} s, load {r['load']:.2f}")
                    results[workers, rate] = better(r, results.get((workers, rate)))
        loads.append(os.getloadavg()[0])
    text = report(args, results, expected, ref, loads)
    write_section(Path(args.page), text)
    print(text)


if __name__ == "__main__":
    main()
