"""Record schema v1, the Python face of the record stage.

The schema itself is written once, in the Cython record stage
(ext/record.pxi), which encodes each transaction straight to msgpack; it is
documented in docs/records.md. Keys follow OpenTelemetry semantic conventions
where one exists. No value of a query parameter, a header field (beyond Host,
Content-Type, Content-Encoding and User-Agent) or a body appears; the raw
request-target only with the explicit raw_targets opt-in.
"""
from ._core import FLAG_NAMES, RecordEncoder  # noqa: F401  (FLAG_NAMES: the completeness flags)

SCHEMA_VERSION = 1


class RecordStage:
    """Transactions to records: enrichment (when an enricher is given), then
    the Cython encoder. encode() returns (msgpack bytes, record count)."""

    def __init__(self, raw_targets=False, enricher=None):
        self._enc = RecordEncoder(raw_targets)
        self.enricher = enricher

    def encode(self, txns):
        if self.enricher is not None:
            txns = self.enricher.process(txns)
        return (self._enc.encode(txns), len(txns)) if txns else (b"", 0)

    def stats(self, engine):
        """The engine's counters, with the enricher's under "enrichment"."""
        s = engine.stats()
        if self.enricher is not None:
            s["enrichment"] = dict(self.enricher.counters)
        return s

    def finish(self, txns):
        """The last batch: with the transactions the enricher still holds."""
        if self.enricher is not None:
            txns = self.enricher.process(txns) + self.enricher.flush()
        return (self._enc.encode(txns), len(txns)) if txns else (b"", 0)


def http_record(txn, raw_targets=False):
    """The record of one transaction as a dict (tests)."""
    import msgpack                          # here: a replay never needs it
    return msgpack.unpackb(RecordEncoder(raw_targets).encode([txn]))


def scorer_view(rec):
    """Plain keys that JSON Lines carry for humans, jq and scorers."""
    path = rec.get("url.target")
    if path is None:
        path = rec.get("url.path")
    return {
        "method": rec.get("http.request.method"),
        "path": path,
        "status": rec.get("http.response.status_code"),
        "host": rec.get("http.request.header.host"),
        "h2_stream": rec.get("http2.stream_id"),
    }
