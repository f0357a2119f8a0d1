#!/usr/bin/env python3
"""The sensor's engine and record encoder alone, no enrichment: decode,
reassembly, HTTP/1 and HTTP/2, one core record per transaction written to a
file. A benchmark reference (what the architecture costs before payload
intelligence), not a user command: without enrichment `url.path` is not
masked.

  python3 bench/engine_only.py CAPTURE -o OUT.msgpack
"""
import argparse
import gc

from sensor._core import CaptureReader, Engine, RecordEncoder


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("capture")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    engine, encoder = Engine(), RecordEncoder(False)
    gc.disable()        # as sensor replay: transactions hold no cycles
    with open(args.output, "wb") as out:
        reader = CaptureReader(args.capture)
        try:
            engine.run(reader, lambda txns: out.write(encoder.encode(txns)), None)
        finally:
            reader.close()
        out.write(encoder.encode(engine.finish()))


if __name__ == "__main__":
    main()
