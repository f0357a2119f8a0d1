"""Real traffic on loopback, captured by tcpdump (shared by the live-traffic tests)."""
import os
import re
import signal
import socket
import subprocess
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Capture:
    """tcpdump on loopback; a 64 MiB buffer so 64 KiB loopback segments are
    not dropped in bursts, and a check that none were."""

    def __init__(self, path, port):
        self.path = path
        self.p = subprocess.Popen(["tcpdump", "--immediate-mode", "-B", "65536", "-i", "lo", "-s", "0", "-U",
                                   "-w", str(path), "tcp port %d" % port], stderr=subprocess.PIPE)
        line = self.p.stderr.readline()
        assert b"listening" in line, line

    def stop(self):
        # tcpdump drops what it has not written when interrupted: wait until the file stops growing
        last, stable = -1, 0
        for _ in range(100):
            time.sleep(0.05)
            size = os.path.getsize(self.path)
            stable = stable + 1 if size == last else 0
            last = size
            if stable >= 6:
                break
        self.p.send_signal(signal.SIGINT)
        err = self.p.communicate(timeout=10)[1]
        assert re.search(rb"\b0 packets dropped by kernel", err), err
        return self.path

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.p.poll() is None:       # the test failed before stop()
            self.p.kill()
            self.p.communicate()
