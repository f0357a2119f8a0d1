"""--keep-examples: redacted examples of values, only on request."""
import json
import re
import subprocess
from pathlib import Path

from sensor.enrich.examples import redact

SAMPLE = str(Path(__file__).resolve().parent.parent / "pcaps" / "sample-api.pcap")


def test_redaction_keeps_form_not_value():
    assert redact("ORD-2024-00017") == "XXX-9999-99999"
    assert redact("jane.doe@example.org", ("email",)) == "xxxx.xxx@xxxxxxx.xxx"
    assert redact("4111 1111 1111 1111", ("payment_card",)) == "4111 1199 9999 1111"   # first 6, last 4
    assert len(redact("a" * 500)) == 64
    assert redact("Zoë Šimková 12") == "Xxx Xxxxxxx 99"


def records(*args):
    out = subprocess.run(["sensor", "replay", SAMPLE, "--format", "jsonl", "-q", *args],
                         capture_output=True, check=True, timeout=60).stdout
    return [json.loads(line) for line in out.splitlines()]


def examples_of(rec):
    out = dict(rec.get("sensor.examples.query", {}))
    out.update(rec.get("sensor.examples.path", {}))
    for side in ("request", "response"):
        out.update(rec.get("sensor.shape." + side, {}).get("examples", {}))
    return out


def test_examples_only_with_the_opt_in():
    assert not any(examples_of(r) for r in records())
    kept = [examples_of(r) for r in records("--keep-examples")]
    cards = [ex.pop("card") for ex in kept if "card" in ex]
    assert cards and all(re.fullmatch(r"\d{6}9{6}\d{4}", c) for c in cards), cards     # PCI: first 6, last 4
    values = [v for ex in kept for v in ex.values()]
    assert {"{userId}", "q", "email"} <= {k for ex in kept for k in ex}
    # letters and digits are masked whatever they were: no value of the capture survives
    assert values and all(re.fullmatch(r"[xX9\W_]*", v) for v in values), values

