"""tcp://host:port and unix:///path: a plain msgpack stream, records end to end.

The stream has no acknowledgements, so "delivered" means written to the
socket. Before each batch the sender checks whether the collector closed its
side: a collector that stops cleanly (`sensor collect` on SIGTERM) first
half-closes, then reads until the sensor closes, so nothing in flight is
lost; the next batches are spooled until it is back. A collector that dies
without closing (SIGKILL, crash, power) loses what its socket buffers held:
use fluent:// (acknowledged chunks) where that matters.
"""
import select
import socket
import ssl

from .base import Transport, TransportError

CONNECT_TIMEOUT = 3.0
IO_TIMEOUT = 30.0


def connect(url, tls=None):
    """A connected socket to the url's host:port (or unix path), wrapped in
    TLS when `tls` (an ssl.SSLContext) is given; raises TransportError."""
    target = url.path if url.scheme == "unix" else "%s:%s" % (url.hostname, url.port)
    try:
        if url.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                sock.connect(url.path)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((url.hostname, url.port), timeout=CONNECT_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=url.hostname)     # handshake within CONNECT_TIMEOUT
        sock.settimeout(IO_TIMEOUT)
        return sock
    except ssl.SSLError as e:
        raise TransportError("%s: TLS: %s" % (target, e.reason or e))
    except OSError as e:
        raise TransportError("%s: %s" % (target, e.strerror or e))


def peer_closed(sock):
    """True when the collector closed (or reset) its side of a plain socket."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def shut(sock):
    """Closes a socket, unblocking any thread stuck on it; never raises."""
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class StreamTransport(Transport):
    scheme = "tcp"

    def __init__(self, url, options):
        super().__init__(url, options)
        self._sock = None

    def open(self):
        self.close()
        self._sock = connect(self.url)

    def send(self, batch):
        sock = self._sock
        if sock is None:
            raise TransportError("not connected")
        if peer_closed(sock):
            raise TransportError("the collector closed the connection")
        try:
            sock.sendall(b"".join(batch))
        except OSError as e:
            raise TransportError("send: %s" % (e.strerror or e))

    def close(self):
        sock, self._sock = self._sock, None
        shut(sock)
