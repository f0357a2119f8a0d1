"""Replay pipeline: capture files -> engine (Cython) -> records -> writer."""
import gc
import time

from ._core import CaptureError, CaptureReader, Engine
from .records import http_record


class ReplayResult:
    def __init__(self):
        self.errors = []        # one-line messages: files that could not be read
        self.warnings = []      # files read only in part
        self.stats = {}
        self.elapsed = 0.0


def replay(paths, writer, raw_targets=False, progress=None, **engine_opts):
    """Runs every capture in `paths` through one engine (flows continue across
    files, as for a rotated capture set) and writes one record per transaction."""
    res = ReplayResult()
    engine = Engine(**engine_opts)
    t0 = time.perf_counter()
    # records and transactions hold no reference cycles: spare the cyclic GC
    # its scans over the millions of short-lived objects a capture makes
    gc_was = gc.isenabled()
    gc.disable()

    def emit(txns):
        for t in txns:
            writer.write(http_record(t, raw_targets))

    for path in paths:
        try:
            reader = CaptureReader(path)
        except CaptureError as e:
            res.errors.append(str(e))
            continue
        try:
            engine.run(reader, emit, progress)
        finally:
            reader.close()
        if reader.truncated:
            res.warnings.append(reader.warning or "%s: capture ends inside a record" % path)
    emit(engine.finish())
    if gc_was:
        gc.enable()
    res.elapsed = time.perf_counter() - t0
    res.stats = engine.stats()
    return res
