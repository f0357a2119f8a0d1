"""Floods of flows and out-of-order data: memory stays bounded, evictions are
counted, records are still written (flagged), nothing is silently dropped."""
import json
import re
import struct
import subprocess


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, b in enumerate(frames):
            f.write(struct.pack("<IIII", 1700000000 + i // 100000, i % 100000 * 10, len(b), len(b)) + b)


def tcp_frame(src, sport, seq, flags, payload=b""):
    """Ethernet/IPv4/TCP to 10.9.0.1:80 (checksums are not checked by the sensor)."""
    tcp = struct.pack("!HHIIBBHHH", sport, 80, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, src, bytes([10, 9, 0, 1])) + tcp
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip


def replay(path, *args):
    r = subprocess.run(["/usr/bin/time", "-f", "maxrss=%M", "sensor", "replay", str(path), "--format", "jsonl",
                        *args], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    err = r.stderr.decode()
    rss_kb = int(re.search(r"maxrss=(\d+)", err).group(1))
    return [json.loads(x) for x in r.stdout.splitlines()], err, rss_kb


def test_flow_flood_is_bounded_and_counted(tmp_path):
    # 25,000 connections that each send a request with a large out-of-order
    # tail (held for reassembly) and never close
    frames = []
    req = b"GET /flood HTTP/1.1\r\nHost: x\r\n\r\n"
    for i in range(25000):
        src = bytes([10, 1 + i // 65536, (i // 256) % 256, i % 256])
        frames.append(tcp_frame(src, 1024 + i % 60000, 1000, 0x02))
        frames.append(tcp_frame(src, 1024 + i % 60000, 1001, 0x18, req))
        frames.append(tcp_frame(src, 1024 + i % 60000, 1001 + len(req) + 100, 0x18, b"z" * 1400))
    path = tmp_path / "flood.pcap"
    write_pcap(path, frames)
    recs, err, rss_small = replay(path, "--memory-budget", "16")
    evicted = re.search(r"flows_evicted (\d+)", err)
    assert evicted and int(evicted.group(1)) > 5000, err
    # every request still comes out, flagged: eviction is never silent
    assert len(recs) == 25000
    assert sum("evicted" in r["sensor.completeness"] for r in recs) == int(evicted.group(1))
    assert all("no_response" in r["sensor.completeness"] for r in recs)
    # a 16 MiB budget keeps the process far below what 25,000 held flows need
    _, _, rss_big = replay(path, "--memory-budget", "1024")
    assert rss_small < rss_big
    assert rss_small < 120 * 1024
