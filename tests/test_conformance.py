"""Public conformance corpus: tshark ground truth on captures from Zeek,
Suricata, Arkime and others, scored by ../shared/conformance/run.py."""
import os
import shutil
import subprocess
import sys

import pytest

SPLIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "conformance")
pytestmark = pytest.mark.skipif(not os.path.isfile(os.path.join(SPLIT, "run.py")),
                                reason="../shared/conformance not present (it ships beside the repo, not in it)")


@pytest.mark.parametrize("group", ["http1", "http2", "encap", "all"])
def test_conformance_group(group):
    sensor = shutil.which("sensor")
    assert sensor, "the sensor console script must be installed"
    r = subprocess.run([sys.executable, os.path.join(SPLIT, "run.py"), "--sensor", sensor,
                        "--select", group, "--min-p", "0.99", "--min-r", "0.98"],
                       capture_output=True, text=True, timeout=600)
    print(r.stdout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "sensor failures 0" in r.stdout


def _records(name, *args):
    out = subprocess.run(["sensor", "replay", os.path.join(SPLIT, "pcaps", name), "--format", "jsonl",
                          "-q", "--raw-targets", *args], capture_output=True, text=True, check=True).stdout
    import json
    return [json.loads(line) for line in out.splitlines()]


EXT_TYPES = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".css": "text/css",
             ".js": "application/javascript", ".ico": "image/vnd.microsoft.icon",
             ".html": "text/html", ".txt": "text/plain", ".asc": "text/plain"}


def test_messages_after_gap_are_kept_and_paired():
    """Hand-checked: on the bro.org page load one connection (client port 55081)
    loses a segment inside a script body. tshark loses every later response on
    that connection; the sensor skips the hole inside the known-length body,
    flags that one response, and pairs the later ones correctly (each
    response's media type matches its request's file type)."""
    recs = _records("zeek-http-bro-org.pcap")
    assert len(recs) == 31
    for r in recs:
        assert r["status"] == 200
        path = r["path"]
        ext = os.path.splitext(path)[1] or ".html"
        assert r["http.response.content_type"].split(";")[0] == EXT_TYPES[ext], path
    conn = [r for r in recs if r["client.port"] == 55081]
    assert len(conn) == 6
    gapped = [r for r in conn if "response_gap" in r["sensor.completeness"]]
    assert [r["path"] for r in gapped] == ["/js/jquery.cycle.all.min.js"]
    assert all(r["sensor.completeness"] == [] for r in recs if r not in gapped)
