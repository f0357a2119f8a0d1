"""Live capture: interfaces -> TPACKET_V3 rings -> engine -> records.

With several workers, each process opens its own ring on every interface and
joins one PACKET_FANOUT_HASH group per interface, so both directions of a
flow reach the same worker; workers send encoded records to the parent,
which writes them to the one output and sums the counters.
"""
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import struct
import sys
import time

import msgpack

from ._core import CaptureSetupError, Engine, PacketRing, capture_loop  # noqa: F401


class CaptureResult:
    def __init__(self):
        self.stats = {}
        self.kernel = {"packets": 0, "drops": 0}
        self.elapsed = 0.0
        self.workers = []           # per-worker counters when there are several
        self.errors = []            # why capture stopped early (an interface went down), one line each


class _Stop:
    """Asked once per round of the capture loop: stop? (SIGINT/SIGTERM, the
    duration, the packet count). Also writes the periodic stats records and
    reopens the output after SIGHUP."""

    def __init__(self, duration, engine=None, count=None, stats=None, rings=(), worker=None, stage=None):
        self.flag = self.hup = False
        self.deadline = time.monotonic() + duration if duration else None
        self.engine, self.count, self.rings, self.worker, self.stage = engine, count, rings, worker, stage
        self.emit_stats, self.interval = stats or (None, None)
        self.next_stats = time.monotonic() + self.interval if self.interval else None

    def __call__(self):
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            self.flag = True
        if self.count and self.engine.stats()["packets"] >= self.count:
            self.flag = True
        if self.next_stats is not None and now >= self.next_stats:
            self.next_stats = now + self.interval
            self.emit_stats(stats_record(self.stage, self.engine, self.rings, self.worker))
        return self.flag

    def set(self, *_):
        self.flag = True


def stats_record(stage, engine, rings, worker=None):
    """A `stats` record: the engine's and enrichment's counters and the kernel's, now."""
    s = stage.stats(engine)
    rec = {"type": "stats", "v": 1, "time_ns": time.time_ns(), "kernel": _kernel(rings)}
    rec.update(s)
    if worker is not None:
        rec["sensor.worker"] = worker
    return rec


def _open_rings(ifaces, opts, fanout_base=-1):
    rings = []
    try:
        for i, name in enumerate(ifaces):
            rings.append(PacketRing(name, ring_mb=opts["ring_mb"], snaplen=opts["snaplen"],
                                    promisc=opts["promisc"], bpf=(opts["bpf"] or {}).get(name),
                                    fanout_group=-1 if fanout_base < 0 else fanout_base + i))
    except Exception:
        for r in rings:
            r.close()
        raise
    return rings


def _drop_privileges(user):
    import pwd
    pw = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)


def _kernel(rings):
    pk = dr = 0
    for r in rings:
        p, d = r.stats()
        pk += p
        dr += d
    return {"packets": pk, "drops": dr}


def capture(ifaces, writer, stage, opts, engine_opts, duration=None, count=None, user=None, ready=None):
    """Captures until a signal, the duration or the packet count; returns a
    CaptureResult. ready() is called once every socket is capturing.
    `stage` (records.RecordStage) turns transactions into records (in each
    worker), `writer` (a sink) takes them. opts: workers, snaplen, ring_mb,
    promisc, bpf ({iface: program}), stats_interval (seconds between stats records, or None)."""
    if opts["workers"] > 1:
        return _capture_workers(ifaces, writer, stage, opts, engine_opts, duration, user, ready)
    res = CaptureResult()
    rings = _open_rings(ifaces, opts)
    if user:
        _drop_privileges(user)
    if ready:
        ready()
    engine = Engine(**engine_opts)
    stop = _Stop(duration, engine, count, (writer.write_record, opts.get("stats_interval")), rings, stage=stage)
    old = {s: signal.signal(s, stop.set) for s in (signal.SIGINT, signal.SIGTERM)}
    old[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: writer.reopen())
    t0 = time.perf_counter()
    try:
        why = capture_loop(engine, rings, lambda txns: writer.write_encoded(*stage.encode(txns)), stop)
        if why:
            res.errors.append(why)
        writer.write_encoded(*stage.finish(engine.finish()))     # open transactions go out flagged
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        res.kernel = _kernel(rings)
        for r in rings:
            r.close()
    res.elapsed = time.perf_counter() - t0
    res.stats = stage.stats(engine)
    return res


def _worker(k, ifaces, stage, opts, engine_opts, fanout_base, conn, duration, user):
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # the parent says when to stop
    # only the parent writes the output: a forked copy of its stdout buffer must never be flushed here
    sys.stdout = open(os.devnull, "w")
    rings = _open_rings(ifaces, opts, fanout_base)
    conn.send_bytes(b"S")                                   # sockets open
    if user:
        _drop_privileges(user)
    engine = Engine(**engine_opts)

    def send_stats(rec):
        conn.send_bytes(b"R" + struct.pack("<I", 1) + msgpack.packb(rec, use_bin_type=True))
    stop = _Stop(duration, engine, None, (send_stats, opts.get("stats_interval")), rings, k, stage)
    signal.signal(signal.SIGTERM, stop.set)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)            # the parent owns the output

    def send(encoded):
        data, n = encoded
        if n:
            conn.send_bytes(b"R" + struct.pack("<I", n) + data)
    why = capture_loop(engine, rings, lambda txns: send(stage.encode(txns)), stop)
    send(stage.finish(engine.finish()))
    conn.send_bytes(b"C" + pickle.dumps(("done", stage.stats(engine), _kernel(rings), why)))
    for r in rings:
        r.close()


def _capture_workers(ifaces, writer, stage, opts, engine_opts, duration, user, ready):
    res = CaptureResult()
    ctx = multiprocessing.get_context("fork")
    writer.flush()
    fanout_base = (os.getpid() * 16) & 0xFFF0
    procs, conns = [], []
    for k in range(opts["workers"]):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_worker, args=(k, ifaces, stage, opts, engine_opts, fanout_base, child, duration, user),
                        daemon=True)
        p.start()
        child.close()
        procs.append(p)
        conns.append(parent)
    stop = _Stop(duration)
    old = {s: signal.signal(s, stop.set) for s in (signal.SIGINT, signal.SIGTERM)}
    old[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: writer.reopen())
    t0 = time.perf_counter()
    live = list(conns)
    started = 0
    stopping = False
    try:
        while live:
            if stop() and not stopping:
                stopping = True
                for p in procs:
                    if p.is_alive():
                        os.kill(p.pid, signal.SIGTERM)
            for c in multiprocessing.connection.wait(live, timeout=0.2):
                try:
                    msg = c.recv_bytes()
                except EOFError:
                    live.remove(c)
                    continue
                if msg[:1] == b"R":                         # records: count, then msgpack
                    writer.write_encoded(msg[5:], struct.unpack("<I", msg[1:5])[0])
                elif msg == b"S":
                    started += 1
                    if started == len(procs) and ready:
                        ready()
                else:                                       # the worker's final counters
                    _, stats, kernel, why = pickle.loads(msg[1:])
                    res.workers.append(stats)
                    if why and why not in res.errors:
                        res.errors.append(why)
                    for key in ("packets", "drops"):
                        res.kernel[key] += kernel[key]
                    live.remove(c)
            if not stopping and any(not p.is_alive() for p in procs) and live:
                stop.set()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for p in procs:
            p.join(10)
    res.elapsed = time.perf_counter() - t0
    res.stats = _sum_stats(res.workers)
    failed = [p.exitcode for p in procs if p.exitcode]
    if failed and not res.workers:
        raise CaptureSetupError("capture workers failed to start (exit codes %s)" % failed)
    return res


def _sum_stats(parts):
    total = {}
    for s in parts:
        for k, v in s.items():
            if isinstance(v, dict):
                d = total.setdefault(k, {})
                for kk, vv in v.items():
                    d[kk] = d.get(kk, 0) + vv
            else:
                total[k] = total.get(k, 0) + v
    return total
