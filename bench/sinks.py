"""Sink throughput on loopback (a benchmark, not a test).

    python3 bench/sinks.py /tmp/http-bench-full.pcap [--rounds 3]

1. Records per second through each output, fed the records of CAPTURE as
   the engine hands them over (write_encoded of ~256 records), timed from
   the first write to close() returning (everything delivered, acked where
   the protocol acks). The receiver is a discarding peer in its own process
   (reads plain streams; parses Forward messages and acks them), so the
   figure is the sink's; nats:// goes to a real nats-server with JetStream,
   kafka:// to librdkafka's mock cluster.
2. End-to-end `sensor replay CAPTURE -q -o OUTPUT` wall time per output
   (best of --rounds), the receiver being `sensor collect` (fluent, tcp),
   nats-server or the mock cluster.
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import msgpack

from sensor.sinks import open_outputs
from sensor.sinks.queue import split_records

DISCARD = r'''
import socket, sys, threading, msgpack
kind, addr = sys.argv[1], sys.argv[2]
if kind == "unix":
    srv = socket.socket(socket.AF_UNIX); srv.bind(addr)
else:
    srv = socket.create_server(("127.0.0.1", int(addr)))
srv.listen()
print("ready", flush=True)
def serve(c):
    u = msgpack.Unpacker(raw=False, max_buffer_size=64 << 20)
    while True:
        data = c.recv(1 << 18)
        if not data:
            return
        if kind == "fluent":
            u.feed(data)
            acks = [m[2]["chunk"] for m in u]
            if acks:
                c.sendall(b"".join(msgpack.packb({"ack": a}) for a in acks))
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''


# the mock brokers run inside the producer's own librdkafka (C threads of
# the sending process), acks=all, idempotent
KAFKA_MOCK = "kafka://mock:9092/sensor.http?test.mock.num.brokers=3"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nothing listens on %d" % port)


def start_nats(tmp):
    if not shutil.which("nats-server"):
        return None, None
    port = free_port()
    p = subprocess.Popen(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", os.path.join(tmp, "js")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p, port


def feed(url, chunks, n, tmp):
    spool = tempfile.mkdtemp(dir=tmp)
    t0 = time.perf_counter()
    out = open_outputs([url], spool_dir=spool, drain_timeout=120)
    for data, k in chunks:
        out.write_encoded(data, k)
    out.close()
    took = time.perf_counter() - t0
    if out.sinks[0].takes_records:
        c = out.sinks[0].counters
        assert c["sent"] == n and not c["spooled"] and not c["dropped"], out.summaries()
    return took


def replay_time(capture, output, rounds, spool):
    """Best wall time ("{round}" in output: as in main())."""
    best = None
    for r in range(rounds):
        t0 = time.perf_counter()
        subprocess.run(["sensor", "replay", capture, "-q", "-o", output.replace("{round}", str(r)),
                        "--spool-dir", spool], check=True)
        took = time.perf_counter() - t0
        best = took if best is None else min(best, took)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("capture")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-sinks-")
    procs = []
    try:
        recfile = os.path.join(tmp, "records.msgpack")
        subprocess.run(["sensor", "replay", a.capture, "-q", "-o", recfile], check=True)
        with open(recfile, "rb") as f:
            data = f.read()
        u = msgpack.Unpacker()
        u.feed(data)
        n = sum(1 for _ in u)
        records = split_records(data, n)
        chunks = [(b"".join(records[i:i + 256]), len(records[i:i + 256])) for i in range(0, n, 256)]
        print("%d records, %.1f MB of msgpack (%d B/record)" % (n, len(data) / 1e6, len(data) // n))

        def discard(kind):
            addr = os.path.join(tmp, "d.sock") if kind == "unix" else str(free_port())
            p = subprocess.Popen([sys.executable, "-c", DISCARD, kind, addr], stdout=subprocess.PIPE, text=True)
            p.stdout.readline()
            procs.append(p)
            return addr
        nats, nport = start_nats(tmp)
        procs.append(nats)
        sinks = [
            ("file", os.path.join(tmp, "out.msgpack")),
            ("jsonl file", "jsonl:" + os.path.join(tmp, "out.jsonl")),
            ("tcp://", "tcp://127.0.0.1:%s" % discard("tcp")),
            ("unix://", "unix://%s" % discard("unix")),
            ("fluent://", "fluent://127.0.0.1:%s" % discard("fluent")),
            ("fluent:// gzip", "fluent://127.0.0.1:%s?compress=gzip" % discard("fluent")),
        ]
        if nats:
            sinks.append(("nats://", "nats://127.0.0.1:%d/sensor.http?stream=SENSOR&create=1&id=b{round}" % nport))
        sinks.append(("kafka:// (librdkafka mock cluster, 3 brokers)", KAFKA_MOCK))
        # "{round}" in a URL becomes the round's number: fresh NATS message
        # ids, since a round sending the same ids again would be deduped
        print("\n| output | records/s (sink alone, best of %d) |\n|---|---|" % a.rounds)
        for name, url in sinks:
            best = min(feed(url.replace("{round}", str(r)), chunks, n, tmp) for r in range(a.rounds))
            print("| %s | %s |" % (name, format(int(n / best), ",")))

        col = subprocess.Popen(["sensor", "collect", "--listen", "fluent://127.0.0.1:0",
                                "--listen", "tcp://127.0.0.1:0", "-o", "/dev/null", "-q"],
                               stderr=subprocess.PIPE, text=True)
        procs.append(col)
        fl = col.stderr.readline().split("listening on ")[1].strip()
        tc = col.stderr.readline().split("listening on ")[1].strip()
        outputs = [("file", os.path.join(tmp, "e2e.msgpack")), ("tcp:// to sensor collect", tc),
                   ("fluent:// to sensor collect", fl)]
        if nats:
            outputs.append(("nats:// (JetStream)", "nats://127.0.0.1:%d/sensor.http?stream=SENSOR&id=e2e{round}" % nport))
        outputs.append(("kafka:// (librdkafka mock cluster)", KAFKA_MOCK))
        print("\n| `sensor replay -o` | wall time (best of %d) | records/s |\n|---|---|---|" % a.rounds)
        for name, output in outputs:
            took = replay_time(a.capture, output, a.rounds, tempfile.mkdtemp(dir=tmp))
            print("| %s | %.2f s | %s |" % (name, took, format(int(n / took), ",")))
    finally:
        for p in procs:
            if p is not None:
                p.terminate()
                p.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
