"""Certificates for the local test registries: a private CA + TLS server cert, and a JWT signer.

Everything is generated with `cryptography` at test time (no checked-in keys, nothing that can
expire in the repository). Keys are small-but-valid RSA 2048 so generation stays fast.
"""

from __future__ import annotations

import base64
import datetime as _dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = [
    "ServerCert",
    "SigningCert",
    "make_server_cert",
    "make_signing_cert",
]

# Validity straddles "now" generously: a skewed clock must not make the tests flaky.
_BACKDATE = _dt.timedelta(days=1)
_LIFETIME = _dt.timedelta(days=30)


@dataclass(frozen=True)
class ServerCert:
    """PEM files of a private CA and a server certificate it signed (SAN 127.0.0.1, localhost)."""

    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class SigningCert:
    """RSA key + self-signed cert used to sign registry tokens (RS256, `x5c` header)."""

    key_file: Path
    cert_file: Path
    key_pem: bytes
    cert_der: bytes

    @property
    def x5c(self) -> list[str]:
        """The `x5c` JWS header value: standard (not URL-safe) base64 of the DER cert."""
        return [base64.b64encode(self.cert_der).decode("ascii")]


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ocync conformance"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def make_server_cert(directory: Path | str, *, hosts: tuple[str, ...] = ()) -> ServerCert:
    """Write `ca.pem`, `server.pem`, `server-key.pem` into `directory` and return their paths.

    The server cert carries SAN IP 127.0.0.1 and DNS localhost (plus any extra `hosts`), so
    clients verifying against `ca.pem` accept `https://127.0.0.1:PORT` and `https://localhost`.
    A separate CA (instead of a self-signed leaf) mirrors real deployments with a private CA.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    now = _now()

    ca_key = _new_key()
    ca_name = _name("ocync conformance test CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    san: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]
    for h in hosts:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            san.append(x509.DNSName(h))

    srv_key = _new_key()
    srv_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_name)
        .public_key(srv_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _LIFETIME)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_file = d / "ca.pem"
    cert_file = d / "server.pem"
    key_file = d / "server-key.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(srv_cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(_key_pem(srv_key))
    key_file.chmod(0o600)
    return ServerCert(ca_file=ca_file, cert_file=cert_file, key_file=key_file)


def make_signing_cert(directory: Path | str, *, common_name: str = "ocync-token") -> SigningCert:
    """Write `token-signing.pem` / `token-signing-key.pem` into `directory`.

    No ExtendedKeyUsage on purpose: docker-registry verifies the `x5c` chain with Go's
    x509 defaults (ServerAuth), and a cert without EKU satisfies any usage. The cert is
    self-signed and is itself the registry's `rootcertbundle`.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    now = _now()
    key = _new_key()
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = _key_pem(key)
    key_file = d / "token-signing-key.pem"
    cert_file = d / "token-signing.pem"
    key_file.write_bytes(key_pem)
    key_file.chmod(0o600)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return SigningCert(
        key_file=key_file,
        cert_file=cert_file,
        key_pem=key_pem,
        cert_der=cert.public_bytes(serialization.Encoding.DER),
    )
