"""Encrypted connections: one `tls` record each, from the hellos (real TLS
handshakes between Python's ssl client and server on loopback)."""
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading

import pytest

from loopback import Capture, free_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not all(map(shutil.which, ("tcpdump", "openssl", "tshark"))),
                                reason="needs root, tcpdump, openssl and tshark (the reference for JA3; "
                                       ".ci/run installs them)")
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def make_cert(d, cn):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + cn,
                    "-keyout", str(d / "k.pem"), "-out", str(d / "c.pem"), "-days", "1"],
                   check=True, capture_output=True)
    return str(d / "c.pem"), str(d / "k.pem")


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("cert"), "api.example.test")


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("client-cert"), "billing-service")


def handshake(cert, port, max_version, server_alpn, client_alpn, sni, client_cert=None, ask=False):
    """One TLS connection on loopback; ask: the server requests a client
    certificate (client_cert, a (cert, key) pair, or none sent)."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(*cert)
    sctx.set_alpn_protocols(server_alpn)
    if ask:
        sctx.verify_mode = ssl.CERT_OPTIONAL
        sctx.load_verify_locations(client_cert[0] if client_cert else cert[0])
    srv = socket.create_server(("127.0.0.1", port))

    def serve():
        conn, _ = srv.accept()
        with sctx.wrap_socket(conn, server_side=True) as s:
            s.recv(100)
            s.sendall(b"bye")
    th = threading.Thread(target=serve)
    th.start()
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    cctx.maximum_version = max_version
    cctx.set_alpn_protocols(client_alpn)
    if client_cert:
        cctx.load_cert_chain(*client_cert)
    with cctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=sni) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: secret-host\r\n\r\n")
        c.recv(100)
    th.join(10)
    srv.close()


def records(path):
    r = subprocess.run(["sensor", "replay", str(path), "--format", "jsonl"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()]


def captured(tmp_path, cert, version, alpn, **kw):
    """One TLS connection on loopback, captured: its only record (no HTTP
    record from ciphertext), the capture's path and the server's port."""
    port = free_port()
    cap = Capture(tmp_path / "tls.pcap", port)
    handshake(cert, port, VERSIONS[version], alpn[0], alpn[1], "api.example.test", **kw)
    cap.stop()
    (rec,) = records(cap.path)
    return rec, cap.path, port


def tshark_ja3(path):
    """JA3 (or JA3S) of each hello in the capture as Wireshark computes them."""
    r = subprocess.run(["tshark", "-r", str(path), "-d", "tcp.port==1-65535,tls", "-Y", "tls.handshake.type <= 2",
                        "-T", "fields", "-e", "tls.handshake.ja3", "-e", "tls.handshake.ja3s"],
                       capture_output=True, text=True, timeout=60, check=True)
    return [f for line in r.stdout.splitlines() for f in line.split("\t") if f]


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_record_from_hellos(tmp_path, cert, version):
    rec, path, port = captured(tmp_path, cert, version, (["h2"], ["h2", "http/1.1"]))
    assert rec["type"] == "tls"
    assert rec["tls.client.server_name"] == "api.example.test"
    assert rec["sensor.tls.alpn_offered"] == ["h2", "http/1.1"]
    assert rec["tls.protocol.version"] == version
    assert rec["sensor.tls.cipher_suite"].startswith("0x")
    assert rec["server.port"] == port and rec["client.address"] == "127.0.0.1"
    # TLS 1.3 encrypts the chosen ALPN (EncryptedExtensions): absent, not guessed
    assert rec.get("tls.next_protocol") == ("h2" if version == "1.2" else None)
    assert b"secret-host" not in json.dumps(rec).encode()
    assert [rec["tls.client.ja3"], rec["tls.server.ja3s"]] == tshark_ja3(path)


@pytest.mark.parametrize("version, ask, send, client_auth, scheme", [
    ("1.2", True, True, "certificate", "mtls"),
    ("1.2", True, False, "requested", "unknown"),
    ("1.2", False, False, "none", "unknown"),
    ("1.3", True, True, "unknown", "unknown"),     # TLS 1.3 encrypts the certificates
])
def test_client_certificates_tell_mutual_tls(tmp_path, cert, client_cert, version, ask, send, client_auth, scheme):
    rec, _, _ = captured(tmp_path, cert, version, (["http/1.1"], ["http/1.1"]),
                      client_cert=client_cert if send else None, ask=ask)
    assert rec["type"] == "tls" and rec["tls.protocol.version"] == version
    assert (rec["sensor.tls.client_auth"], rec["sensor.auth"]) == (client_auth, {"scheme": scheme})
    assert b"billing-service" not in json.dumps(rec).encode()      # the certificate's subject stays


def _hs(kind, body):
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def _record(kind, payload):
    return bytes([kind, 3, 3]) + len(payload).to_bytes(2, "big") + payload


@pytest.mark.parametrize("midstream", [False, True], ids=["handshake", "midstream"])
def test_handshake_dribbled_a_byte_a_segment(tmp_path, midstream):
    """A TLS 1.2 handshake with a client certificate, the ClientHello sent a
    byte a segment from its first byte on and the server's flight in records
    of its own: read whole, as it grows; without the TCP handshake too, the
    hello telling which side is the client."""
    from pcapgen import Conv

    name = b"dribble.example.test"
    sni = (len(name) + 3).to_bytes(2, "big") + b"\0" + len(name).to_bytes(2, "big") + name
    ext = b"\0\0" + len(sni).to_bytes(2, "big") + sni
    hello = _hs(1, b"\3\3" + bytes(32) + b"\0" + b"\0\2\0\x2f" + b"\1\0" + len(ext).to_bytes(2, "big") + ext)
    server = b"".join(_record(22, m) for m in (
        _hs(2, b"\3\3" + bytes(32) + b"\0" + b"\0\x2f" + b"\0"),
        _hs(11, b"\0\0\4\0\0\1x"),          # the server's certificate chain (one 1-byte "certificate")
        _hs(13, b"\1\1\0\0\0"),             # CertificateRequest
        _hs(14, b"")))                      # ServerHelloDone
    client = _record(22, _hs(11, b"\0\0\4\0\0\1y") + _hs(16, b"\0\2ab")) + _record(20, b"\1")
    c = Conv(server=("10.0.0.2", 443))
    if not midstream:
        c.handshake()
    c.send_client(_record(22, hello), seg=[1] * 300)           # (6 bytes tell a hello)
    c.send_server(server)
    c.send_client(client)
    c.fin()
    c.write(tmp_path / "dribble.pcap")
    (rec,) = records(tmp_path / "dribble.pcap")
    assert rec["tls.client.server_name"] == "dribble.example.test" and rec["tls.protocol.version"] == "1.2"
    assert rec["client.address"] == "10.0.0.1" and rec["server.port"] == 443
    assert rec["sensor.tls.client_auth"] == "certificate" and rec["sensor.auth"] == {"scheme": "mtls"}


def test_handshake_cut_into_many_records_is_given_up_on(tmp_path):
    """A client cutting its flight into thousands of one-byte records (each
    read would parse them all again) is read no further than a real flight
    goes: the record keeps its hello, and whether a certificate came is
    unknown, not "requested"."""
    from pcapgen import Conv

    hello = _hs(1, b"\3\3" + bytes(32) + b"\0" + b"\0\2\0\x2f" + b"\1\0" + b"\0\0")
    server = b"".join(_record(22, m) for m in (
        _hs(2, b"\3\3" + bytes(32) + b"\0" + b"\0\x2f" + b"\0"), _hs(13, b"\1\1\0\0\0"), _hs(14, b"")))
    cert = _hs(11, b"\0\0\4\0\0\1y")
    c = Conv(server=("10.0.0.2", 443))
    c.handshake()
    c.send_client(_record(22, hello))
    c.send_server(server)
    c.send_client(b"".join(_record(22, cert[i:i + 1]) for i in range(len(cert))) * 300 + _record(20, b"\1"))
    c.fin()
    c.write(tmp_path / "many.pcap")
    (rec,) = records(tmp_path / "many.pcap")
    assert rec["tls.protocol.version"] == "1.2" and rec["sensor.tls.client_auth"] == "unknown"


def test_ja3_leaves_grease_out(tmp_path):
    """GREASE values (RFC 8701), which browsers put among ciphers, extensions
    and groups, are not part of the fingerprint: as Wireshark computes it."""
    from pcapgen import Conv

    groups = b"\x2a\x2a\0\x1d\0\x17"
    exts = (b"\x1a\x1a\0\0" + b"\0\x0a\0\x08\0\x06" + groups + b"\0\x0b\0\2\1\0"
            + b"\0\x2b\0\5\4\x3a\x3a\3\4")
    hello = _hs(1, b"\3\3" + bytes(32) + b"\0" + b"\0\6\x0a\x0a\x13\1\xc0\x2f" + b"\1\0"
                + len(exts).to_bytes(2, "big") + exts)
    c = Conv(server=("10.0.0.2", 443))
    c.handshake()
    c.send_client(_record(22, hello))
    c.fin()
    c.write(tmp_path / "grease.pcap")
    (rec,) = records(tmp_path / "grease.pcap")
    assert [rec["tls.client.ja3"]] == tshark_ja3(tmp_path / "grease.pcap")
    assert "tls.server.ja3s" not in rec
