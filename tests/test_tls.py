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

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("tcpdump") or not shutil.which("openssl"),
                                reason="needs root, tcpdump and openssl (.ci/run installs them)")


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("cert")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=api.example.test",
                    "-keyout", str(d / "k.pem"), "-out", str(d / "c.pem"), "-days", "1"],
                   check=True, capture_output=True)
    return str(d / "c.pem"), str(d / "k.pem")


def handshake(cert, port, max_version, server_alpn, client_alpn, sni):
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(*cert)
    sctx.set_alpn_protocols(server_alpn)
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
    with cctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=sni) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: secret-host\r\n\r\n")
        c.recv(100)
    th.join(10)
    srv.close()


def records(path):
    r = subprocess.run(["sensor", "replay", str(path), "--format", "jsonl"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()]


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_record_from_hellos(tmp_path, cert, version):
    port = free_port()
    cap = Capture(tmp_path / "tls.pcap", port)
    tv = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
    handshake(cert, port, tv, ["h2"], ["h2", "http/1.1"], "api.example.test")
    cap.stop()
    (rec,) = records(cap.path)       # one record per connection, no HTTP record from ciphertext
    assert rec["type"] == "tls"
    assert rec["tls.client.server_name"] == "api.example.test"
    assert rec["sensor.tls.alpn_offered"] == ["h2", "http/1.1"]
    assert rec["tls.protocol.version"] == version
    assert rec["sensor.tls.cipher_suite"].startswith("0x")
    assert rec["server.port"] == port and rec["client.address"] == "127.0.0.1"
    # TLS 1.3 encrypts the chosen ALPN (EncryptedExtensions): absent, not guessed
    assert rec.get("tls.next_protocol") == ("h2" if version == "1.2" else None)
    assert b"secret-host" not in json.dumps(rec).encode()
