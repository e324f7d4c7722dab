"""A development PKI for the leaf connections: one CA, central's leaf listener
certificate, and one client certificate per region (mutual TLS, verified both ways).

A deployment brings its own CA; these are made fresh by `cordon dev up` and the tests.
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
    usage: x509.ObjectIdentifier,
    host: str,
    out: Path,
) -> CertPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.SubjectAlternativeName([san, x509.DNSName("localhost")]), False)
        .add_extension(x509.ExtendedKeyUsage([usage]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .sign(ca[1], hashes.SHA256())
    )
    pair = CertPair(str(out / f"{common_name}.crt"), str(out / f"{common_name}.key"))
    Path(pair.cert_file).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(Path(pair.key_file), key)
    return pair


def leaf_pki(out: Path, host: str, regions: tuple[str, ...]) -> LeafPki:
    """A fresh CA under `out`, and the certificates the leaf connections present."""
    out.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("cordon-dev-leaf-ca"))
        .issuer_name(_name("cordon-dev-leaf-ca"))
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
    ca = (ca_cert, ca_key)  # the CA key is not kept: nothing else is ever signed with it
    return LeafPki(
        ca_file=str(ca_file),
        central=_issue(ca, "central-leaf", ExtendedKeyUsageOID.SERVER_AUTH, host, out),
        regions={
            region: _issue(ca, f"leaf-{region}", ExtendedKeyUsageOID.CLIENT_AUTH, host, out)
            for region in regions
        },
    )
