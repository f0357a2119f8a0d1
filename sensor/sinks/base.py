"""What every transport implements; the delivery queue (sinks/queue.py) does
batching, retries, backoff and spooling around it."""


class TransportError(Exception):
    """A transient failure: the batch was not (or not surely) delivered. The
    queue retries it with backoff and spools it while the collector is away."""


class Transport:
    """One collector connection. `url` is a urllib.parse.SplitResult of the
    -o/--output value, `options` a dict of the CLI's sink options."""

    scheme = ""
    acks = False        # send() returns only once the collector acknowledged the batch

    def __init__(self, url, options):
        self.url = url
        self.options = options

    def open(self):
        """Connects; raises TransportError when the collector is unreachable."""

    def send(self, batch):
        """Delivers `batch`, a list of msgpack-encoded records (bytes, one per
        record). Returns only once delivered (acknowledged, where the protocol
        acknowledges); raises TransportError otherwise."""
        raise NotImplementedError

    def close(self):
        """Releases the connection; never raises."""
