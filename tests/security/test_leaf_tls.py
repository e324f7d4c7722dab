"""The leaf connections between the regions and central are mutual TLS, verified."""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path

import pytest

from cordon_dev import certs
from cordon_dev.stack import DevStack


def _leaf_info(stack: DevStack) -> tuple[socket.socket, dict[str, object]]:
    """A fresh TCP connection to central's leaf port, and the INFO it opens with."""
    assert stack.topology is not None
    sock = socket.create_connection((stack.topology.host, stack.topology.leaf_port), timeout=5)
    line = b""
    while not line.endswith(b"\r\n"):
        line += sock.recv(1)
    assert line.startswith(b"INFO ")
    info: dict[str, object] = json.loads(line[5:])
    return sock, info


def _handshake(stack: DevStack, client: certs.CertPair | None, ca_file: str) -> None:
    sock, _ = _leaf_info(stack)
    context = ssl.create_default_context(cafile=ca_file)
    if client is not None:
        context.load_cert_chain(client.cert_file, client.key_file)
    with context.wrap_socket(sock, server_hostname="localhost") as tls:
        tls.sendall(b"PING\r\n")
        assert tls.recv(64)  # the server talks to us only after verifying our certificate


def test_central_requires_tls_and_a_client_certificate(stack: DevStack) -> None:
    sock, info = _leaf_info(stack)
    sock.close()
    assert info["tls_required"] is True and info["tls_verify"] is True


def test_only_a_certificate_from_the_leaf_ca_gets_through(stack: DevStack, tmp_path: Path) -> None:
    pki = Path(stack.root / "run" / "pki")
    ca_file = str(pki / "ca.crt")
    region = certs.CertPair(str(pki / "leaf-eu-west.crt"), str(pki / "leaf-eu-west.key"))
    _handshake(stack, region, ca_file)  # a region's own certificate: accepted
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _handshake(stack, None, ca_file)  # no certificate
    stranger = certs.leaf_pki(tmp_path, "127.0.0.1", ("eu-west",)).regions["eu-west"]
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _handshake(stack, stranger, ca_file)  # one from another CA
