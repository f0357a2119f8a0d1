"""Replay pipeline: capture files -> engine (Cython) -> records -> writer."""
import gc
import time

from ._core import CaptureError, CaptureReader, Engine


class ReplayResult:
    def __init__(self):
        self.errors = []        # one-line messages: files that could not be read
        self.warnings = []      # files read only in part
        self.stats = {}
        self.elapsed = 0.0


def replay(paths, writer, stage, progress=None, bpf=None, **engine_opts):
    """Runs every capture in `paths` through one engine (flows continue across
    files, as for a rotated capture set); `stage` (records.RecordStage) turns
    transactions into records, `writer` (a sink) takes them."""
    res = ReplayResult()
    engine = Engine(**engine_opts)
    if bpf:
        engine.set_filter(bpf)
    t0 = time.perf_counter()
    # records and transactions hold no reference cycles: spare the cyclic GC
    # its scans over the millions of short-lived objects a capture makes
    gc_was = gc.isenabled()
    gc.disable()
    for path in paths:
        try:
            reader = CaptureReader(path)
        except CaptureError as e:
            res.errors.append(str(e))
            continue
        try:
            engine.run(reader, lambda txns: writer.write_encoded(*stage.encode(txns)), progress)
        finally:
            reader.close()
        if reader.truncated:
            res.warnings.append(reader.warning or "%s: capture ends inside a record" % path)
    writer.write_encoded(*stage.finish(engine.finish()))
    if gc_was:
        gc.enable()
    res.elapsed = time.perf_counter() - t0
    res.stats = stage.stats(engine)
    return res
