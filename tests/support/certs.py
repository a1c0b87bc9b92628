"""Throwaway TLS certificates for tests: a CA made on the spot and the
server certificates it signs, written as PEM files.

Made with the ``cryptography`` package (the test extra); every key is
ECDSA P-256, so making one takes a millisecond.  Nothing here is trusted
anywhere but in the test that made it: a Python client trusts ``ca.pem``
(``client_context``), Chromium trusts one certificate's key by its SPKI
hash (``--ignore-certificate-errors-spki-list``).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALIDITY = datetime.timedelta(days=2)


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as files (the chain: the certificate, then the CA's)."""

    cert: Path
    key: Path
    certificate: x509.Certificate

    @property
    def spki_hash(self) -> str:
        """base64(SHA-256(SubjectPublicKeyInfo)): what Chromium's
        ``--ignore-certificate-errors-spki-list`` names."""
        spki = self.certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class Authority:
    """A CA that lives in ``directory``: ``ca.pem``, and what it issues."""

    def __init__(self, directory: Path, name: str = "nginxws test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM)
        self.path = directory / "ca.pem"
        self.path.write_bytes(self.pem)

    def issue(self, name: str, *, file: str | None = None, names: tuple[str, ...] = (),
              password: bytes | None = None) -> Issued:
        """A server certificate for ``name`` (and ``names``, and 127.0.0.1), written as
        ``FILE.pem`` (with the CA after it, as a chain) and ``FILE.key`` (encrypted
        with ``password`` if given); ``file`` defaults to ``name``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        alternatives = [x509.DNSName(n) for n in (name, *names)] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        stem = file or name
        cert_path, key_path = self.directory / f"{stem}.pem", self.directory / f"{stem}.key"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM) + self.pem)
        encryption = (serialization.BestAvailableEncryption(password) if password
                      else serialization.NoEncryption())
        key_path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
        return Issued(cert_path, key_path, certificate)

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA only (and checks host names)."""
        return ssl.create_default_context(cafile=str(self.path))


def subject_name(der: bytes) -> str:
    """The common name of a certificate given as DER (``getpeercert(binary_form=True)``)."""
    certificate = x509.load_der_x509_certificate(der)
    return certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
