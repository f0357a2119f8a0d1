"""Outputs, the delivery queue and the spool against real collectors and real
faults: a collector stopped and restarted mid-stream, nobody listening, a
full spool, a full disk, a collector that stops reading."""
import os
import signal
import socket
import struct
import subprocess
import time

import msgpack
import pytest

from sensor.sinks import open_outputs
from sensor.sinks.spool import Spool
from loopback import free_port
from test_collect import SAMPLE, Collect, record


def write(out, first, n, per_call=500):
    """Hands records first..first+n-1 to the writer in calls of per_call, as the engine does."""
    for i in range(first, first + n, per_call):
        k = min(per_call, first + n - i)
        out.write_encoded(b"".join(record(j) for j in range(i, i + k)), k)


def big_capture(path, copies):
    """The sample capture `copies` times over (12 records each), every copy on
    its own client ports and 40 ms after the previous one."""
    raw = open(SAMPLE, "rb").read()
    assert raw[:4] == b"\xd4\xc3\xb2\xa1"        # little-endian, microseconds
    pkts, off = [], 24
    while off < len(raw):
        sec, usec, incl, orig = struct.unpack_from("<IIII", raw, off)
        pkts.append((sec * 1_000_000 + usec, raw[off + 16:off + 16 + incl], orig))
        off += 16 + incl
    tcp = lambda b: 14 + (b[14] & 15) * 4                                   # noqa: E731
    clients = sorted({p for _, b, _ in pkts for p in struct.unpack_from(">HH", b, tcp(b))} - {18080})
    with open(path, "wb") as f:
        f.write(raw[:24])
        for k in range(copies):
            for ts, b, orig in pkts:
                b = bytearray(b)
                for pos in (tcp(b), tcp(b) + 2):
                    port = int.from_bytes(b[pos:pos + 2], "big")
                    if port != 18080:
                        b[pos:pos + 2] = (10000 + 2 * k + clients.index(port)).to_bytes(2, "big")
                ts += k * 40_000
                f.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(b), orig) + b)
    return str(path)


def read_all(path):
    with open(path, "rb") as f:
        return list(msgpack.Unpacker(f, raw=False))


def test_file_rotation_by_size(tmp_path):
    path = tmp_path / "records.msgpack"
    out = open_outputs([str(path)], rotate_bytes=20_000)
    write(out, 0, 3000, per_call=100)
    out.close()
    files = sorted(os.listdir(tmp_path))
    assert not [f for f in files if f.endswith(".part")] and str(path.name) not in files
    assert len(files) > 5 and all(f.startswith("records-") and f.endswith("Z.msgpack") for f in files)
    seqs = [r["seq"] for f in files for r in read_all(tmp_path / f)]
    assert sorted(seqs) == list(range(3000))        # every record in exactly one file


def test_file_rotation_by_time_and_sighup(tmp_path):
    path = tmp_path / "r.msgpack"
    out = open_outputs([str(path)], rotate_seconds=0.05)
    write(out, 0, 10)
    time.sleep(0.1)
    write(out, 10, 10)                  # past the age: this batch closes the part it went into
    write(out, 20, 10)
    out.reopen()                        # SIGHUP: the part being written is finished now
    out.reopen()                        # an empty part leaves no file
    out.close()
    files = sorted(os.listdir(tmp_path))
    assert [[r["seq"] for r in read_all(tmp_path / f)] for f in files] == [
        list(range(20)), list(range(20, 30))]


def test_jsonl_and_msgpack_outputs_at_once(tmp_path):
    out = open_outputs(["jsonl:" + str(tmp_path / "a.jsonl"), "file:" + str(tmp_path / "b.msgpack")])
    write(out, 0, 10)
    out.close()
    assert out.count == 10
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 10
    assert [r["seq"] for r in read_all(tmp_path / "b.msgpack")] == list(range(10))


@pytest.mark.parametrize("scheme", ["tcp", "unix"])
def test_collector_restarted_mid_stream_loses_nothing(tmp_path, scheme):
    listen = "tcp://127.0.0.1:%d" % free_port() if scheme == "tcp" else "unix://%s" % (tmp_path / "c.sock")
    first = Collect(listen, tmp_path / "first.msgpack")
    out = open_outputs([first.addr], spool_dir=str(tmp_path / "spool"))
    q = out.sinks[0]
    write(out, 0, 20_000)
    time.sleep(0.3)
    first.stop()                        # the collector goes away mid-stream ...
    write(out, 20_000, 20_000)
    time.sleep(0.5)
    write(out, 40_000, 10_000)
    second = Collect(listen, tmp_path / "second.msgpack")      # ... and comes back
    write(out, 50_000, 10_000)
    out.close()
    second.stop()
    seqs = [r["seq"] for r in first.records() + second.records()]
    assert len(seqs) == 60_000 and sorted(seqs) == list(range(60_000))     # all there, none twice
    c = q.counters
    assert c["enqueued"] == c["sent"] == 60_000 and c["spooled"] > 0 and c["dropped"] == 0
    assert q.spool.records == 0 and not [f for f in os.listdir(q.spool.dir) if f.endswith(".seg")]


def test_collector_restarted_during_a_replay(tmp_path):
    cap = big_capture(tmp_path / "big.pcap", 4000)
    port = free_port()
    first = Collect("tcp://127.0.0.1:%d" % port, tmp_path / "first.msgpack")
    replay = subprocess.Popen(["sensor", "replay", cap, "-o", first.addr, "--spool-dir", str(tmp_path / "spool"),
                               "--queue-size", "500", "--drain-timeout", "30"], stderr=subprocess.PIPE, text=True)
    while not os.path.exists(first.out) or os.path.getsize(first.out) < 100_000:
        time.sleep(0.005)
    first.stop()
    time.sleep(0.3)
    second = Collect("tcp://127.0.0.1:%d" % port, tmp_path / "second.msgpack")
    _, err = replay.communicate(timeout=60)
    second.stop()
    assert replay.returncode == 0 and "48000 records" in err
    assert "48000 enqueued, 48000 sent" in err and " 0 spooled" not in err and "0 dropped" in err
    assert len(first.records()) + len(second.records()) == 48000


def test_sigterm_leaves_the_queue_in_the_spool(tmp_path):
    cap = big_capture(tmp_path / "big.pcap", 1000)
    stalled = socket.create_server(("127.0.0.1", 0))             # accepts, never reads
    spool = tmp_path / "spool"
    replay = subprocess.Popen(["sensor", "replay", cap, "-o", "tcp://127.0.0.1:%d" % stalled.getsockname()[1],
                               "--spool-dir", str(spool), "--queue-size", "1000", "--drain-timeout", "0.5"],
                              stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    t0 = time.monotonic()
    replay.send_signal(signal.SIGTERM)
    _, err = replay.communicate(timeout=30)
    assert time.monotonic() - t0 < 5 and "Traceback" not in err
    stalled.close()
    (sub,) = os.listdir(spool)
    left = Spool(str(spool / sub), 1 << 30).records
    assert 1000 <= left < 12_000                # the queue and the batch in flight


def test_spool_is_sent_first_on_next_start(tmp_path):
    port = free_port()
    spool = str(tmp_path / "spool")
    t0 = time.monotonic()
    r = subprocess.run(["sensor", "replay", SAMPLE, "-o", "tcp://127.0.0.1:%d" % port, "--spool-dir", spool,
                        "--drain-timeout", "0.5"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert time.monotonic() - t0 < 10
    assert "12 enqueued, 0 sent, 0 acked, 0 retried, 12 spooled, 0 dropped; 12 records left in the spool" in r.stderr
    assert "Connection refused" in r.stderr
    c = Collect("tcp://127.0.0.1:%d" % port, tmp_path / "out.msgpack")
    r = subprocess.run(["sensor", "replay", SAMPLE, "--raw-targets", "-o", c.addr, "--spool-dir", spool],
                       capture_output=True, text=True, timeout=60)
    assert "12 enqueued, 24 sent" in r.stderr
    c.stop()
    recs = c.records()
    assert len(recs) == 24
    assert not any("url.target" in x for x in recs[:12]) and all("url.target" in x for x in recs[12:])


def test_spool_cap_counts_drops(tmp_path):
    out = open_outputs(["tcp://127.0.0.1:%d" % free_port()], spool_dir=str(tmp_path), spool_max=1 << 20,
                       drain_timeout=0.2)
    big = b"x" * 2000
    t0 = time.monotonic()
    write_big = [msgpack.packb({"seq": i, "pad": big}) for i in range(2000)]       # ~4 MB
    for i in range(0, 2000, 100):
        out.write_encoded(b"".join(write_big[i:i + 100]), 100)
    out.close()
    c = out.sinks[0].counters
    assert time.monotonic() - t0 < 10
    assert c["spooled"] + c["dropped"] == c["enqueued"] == 2000
    assert 0 < c["spooled"] < 600 and c["dropped"] > 1400
    assert "spool full (1 MiB cap)" in out.summaries()[0]


def test_spool_on_a_full_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        r = subprocess.run(["sensor", "replay", SAMPLE, "-o", "tcp://127.0.0.1:%d" % free_port(), "--spool-dir", str(disk),
                            "--drain-timeout", "0.2"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "Traceback" not in r.stderr
        assert "12 spooled" in r.stderr
        out = open_outputs(["tcp://127.0.0.1:%d" % free_port()], spool_dir=str(disk), drain_timeout=0.2)
        out.write_encoded(b"".join(msgpack.packb({"seq": i, "pad": b"x" * 1000}) for i in range(400)), 400)
        out.close()
        c = out.sinks[0].counters
        assert c["dropped"] > 0 and c["spooled"] + c["dropped"] == 400
        assert "spool write failed: No space left on device" in out.summaries()[0]
    finally:
        subprocess.run(["umount", str(disk)])


def test_drop_policy_never_blocks(tmp_path):
    stuck = socket.socket()             # accepts connections, never reads
    stuck.bind(("127.0.0.1", 0))
    stuck.listen()
    out = open_outputs(["tcp://127.0.0.1:%d" % stuck.getsockname()[1]], policy="drop", queue_size=2000,
                       spool_dir=str(tmp_path), drain_timeout=0.5)
    t0 = time.monotonic()
    write(out, 0, 100_000)
    took = time.monotonic() - t0
    out.close()
    stuck.close()
    c = out.sinks[0].counters
    assert took < 5
    refused = 100_000 - c["enqueued"]           # dropped at the full queue
    assert refused > 50_000
    assert c["sent"] + c["spooled"] + c["dropped"] - refused == c["enqueued"]   # every accepted record accounted for


def test_spool_survives_a_torn_tail(tmp_path):
    sp = Spool(str(tmp_path), 1 << 20)
    for k in range(3):
        assert sp.append([record(10 * k + j) for j in range(5)])
    sp.close()
    seg = [f for f in os.listdir(tmp_path) if f.endswith(".seg")][0]
    with open(tmp_path / seg, "ab") as f:
        f.write(b"SPL1\x05\x00\x00\x00\xff\xff")    # a crash in the middle of the next entry
    sp = Spool(str(tmp_path), 1 << 20)
    assert sp.records == 15
    assert sp.append([record(99)])              # a new process appends to a new segment
    got = []
    while sp.pending:
        got.append([msgpack.unpackb(r)["seq"] for r in sp.peek()])
        sp.pop()
    assert got == [[0, 1, 2, 3, 4], [10, 11, 12, 13, 14], [20, 21, 22, 23, 24], [99]]
    assert sp.corrupt == 1
    sp.close()


def test_spool_resumes_after_the_last_delivered_batch(tmp_path):
    sp = Spool(str(tmp_path), 1 << 20)
    for k in range(3):
        sp.append([record(k)])
    sp.peek()
    sp.pop()
    sp.close()
    sp = Spool(str(tmp_path), 1 << 20)
    assert [msgpack.unpackb(sp.peek()[0])["seq"]] == [1] and sp.records == 2
    with pytest.raises(Exception, match="in use by another sensor"):
        Spool(str(tmp_path), 1 << 20)
    sp.close()


@pytest.mark.parametrize("value, message", [
    ("foo://x", "unknown output scheme 'foo'"),
    ("tcp://127.0.0.1", "host and port needed"),
    ("tcp://127.0.0.1:99999", "Port out of range"),
    ("unix://", "no socket path"),
    ("jsonl:", "no path"),
    ("fluent://127.0.0.1:1?ack_timeout=x", "could not convert"),
    ("fluent://127.0.0.1:1?tls=1&ca=/nonexistent.pem", "No such file"),
])
def test_bad_output_is_a_one_line_error(value, message):
    r = subprocess.run(["sensor", "replay", SAMPLE, "-o", value], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("Error: Invalid value for '-o' / '--output'")


def test_a_failing_transport_never_hangs_the_producer(tmp_path):
    from sensor.sinks.base import Transport
    from sensor.sinks.queue import DeliveryQueue

    class Broken(Transport):
        def send(self, batch):
            raise RuntimeError("bug")

    q = DeliveryQueue("broken", Broken(None, {}), Spool(str(tmp_path), 1 << 20), max_records=100)
    t0 = time.monotonic()
    for _ in range(100):
        q.put([record(1)] * 50)
    q.close(time.monotonic() + 1)
    assert time.monotonic() - t0 < 5
    c = q.counters
    # how much got in before the sender died depends on timing; nothing is unaccounted for
    assert c["spooled"] == c["enqueued"] >= 100 and c["enqueued"] + c["dropped"] == 5000
    assert "sender stopped: RuntimeError('bug')" in q.summary()
