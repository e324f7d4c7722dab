"""Development PKIs. For the leaf connections: one CA, central's leaf listener
certificate, and one client certificate per region (mutual TLS, verified both ways).
For the mock provider: a CA a replica is told to trust, a server certificate for the
mock's host, and one for another name (what a replica must refuse).

A deployment brings its own CA; these are made fresh by `make run` and the tests.
Private keys are written 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cordon.files import write_private

VALID_FOR = datetime.timedelta(days=30)


@dataclass(frozen=True)
class CertPair:
    cert_file: str
    key_file: str


@dataclass(frozen=True)
class LeafPki:
    ca_file: str
    central: CertPair  # the leaf listener's server certificate
    regions: dict[str, CertPair]  # each region's client certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cordon dev"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)


def _issue(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    common_name: str,
    usage: x509.ObjectIdentifier | tuple[x509.ObjectIdentifier, ...],
    host: str,
    out: Path,
    names: tuple[str, ...] = ("localhost",),
) -> CertPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    sans = [san, *(x509.DNSName(n) for n in names if n != host)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.SubjectAlternativeName(sans), False)
        .add_extension(
            x509.ExtendedKeyUsage(list(usage) if isinstance(usage, tuple) else [usage]), False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .sign(ca[1], hashes.SHA256())
    )
    pair = CertPair(str(out / f"{common_name}.crt"), str(out / f"{common_name}.key"))
    Path(pair.cert_file).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(Path(pair.key_file), key)
    return pair


def _ca(out: Path, name: str) -> tuple[tuple[x509.Certificate, ec.EllipticCurvePrivateKey], str]:
    """A fresh CA (its key is not kept: nothing else is ever signed with it) and the path
    of its certificate."""
    out.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = out / "ca.crt"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return (ca_cert, ca_key), str(ca_file)


def leaf_pki(out: Path, host: str, regions: tuple[str, ...]) -> LeafPki:
    """A fresh CA under `out`, and the certificates the leaf connections present."""
    ca, ca_file = _ca(out, "cordon-dev-leaf-ca")
    return LeafPki(
        ca_file=ca_file,
        central=_issue(ca, "central-leaf", ExtendedKeyUsageOID.SERVER_AUTH, host, out),
        regions={
            region: _issue(ca, f"leaf-{region}", ExtendedKeyUsageOID.CLIENT_AUTH, host, out)
            for region in regions
        },
    )


@dataclass(frozen=True)
class RoutePki:
    ca_file: str
    nodes: dict[str, CertPair]  # each node's certificate, server and client both


def route_pki(out: Path, host: str, cluster: str, nodes: tuple[str, ...]) -> RoutePki:
    """A CA of `cluster`'s own under `out` and a certificate per node for its routes
    (each node dials the others and is dialled: both usages). A CA per cluster, so a
    certificate of another region's cluster is refused."""
    ca, ca_file = _ca(out, f"cordon-dev-route-ca-{cluster}")
    usages = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
    return RoutePki(
        ca_file=ca_file,
        nodes={node: _issue(ca, f"route-{node}", usages, host, out) for node in nodes},
    )


@dataclass(frozen=True)
class ProviderPki:
    ca_file: str
    server: CertPair  # for the mock provider's host (and localhost)
    wrong_host: CertPair  # for another name only: a replica must refuse it


def provider_pki(out: Path, host: str) -> ProviderPki:
    """A fresh CA under `out` for the mock provider's HTTPS."""
    ca, ca_file = _ca(out, "cordon-dev-provider-ca")
    usage = ExtendedKeyUsageOID.SERVER_AUTH
    return ProviderPki(
        ca_file=ca_file,
        server=_issue(ca, "mock-provider", usage, host, out),
        wrong_host=_issue(ca, "not-the-provider", usage, "wrong.example", out, names=()),
    )
