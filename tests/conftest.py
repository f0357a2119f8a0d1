import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from pcapgen import Conv, write

JSONL = ("--format", "jsonl", "-o", "-")


@pytest.fixture
def replay(tmp_path):
    """replay(*captures, args=(), out=JSONL, ok=True) -> run with .rc .out .err .records.

    Each capture is a Conv, a list of Segs, or a path. ok=True asserts exit 0.
    Records (JSON lines from stdout) are sorted by start_ns, since output order
    across transactions is not part of the spec."""
    def run(*captures, args=(), out=JSONL, ok=True):
        files = []
        for i, cap in enumerate(captures):
            if isinstance(cap, (str, Path)):
                files.append(str(cap))
                continue
            f = tmp_path / f"cap{i}.pcap"
            write(f, cap.segs if isinstance(cap, Conv) else cap)
            files.append(f.name)
        p = subprocess.run(["sensor", "replay", *files, *out, *args],
                           cwd=tmp_path, capture_output=True, timeout=60)
        r = SimpleNamespace(rc=p.returncode, out=p.stdout, err=p.stderr.decode(errors="replace"))
        assert "Traceback" not in r.err, r.err
        if ok:
            assert r.rc == 0, r.err
        r.records = sorted((json.loads(line) for line in p.stdout.splitlines() if line.strip()),
                           key=lambda rec: rec["start_ns"]) if tuple(out) == JSONL else None
        return r
    return run
