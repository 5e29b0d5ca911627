"""A throwaway certificate authority for tests and trials: a CA, a server certificate and per-camera certificates."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEVICE_URI_PREFIX = "urn:petstream:device:"  # a SAN of this form names a device (the CN may then be anything)
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True, repr=False)
class Issued:
    """A certificate and its private key, PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes


class TestCA:
    """An ECDSA P-256 CA that signs server and device certificates; nothing here is fit for production keys."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str = "petstream test CA", *, days: int = 30) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self._days = days
        now = _now()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )  # key_cert_sign, crl_sign
            .sign(self._key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def server(self, names: tuple[str, ...] = _LOOPBACK_NAMES) -> Issued:
        """A server certificate valid for `names` (DNS names or IP addresses; loopback by default)."""
        return self._issue(names[0], names, ExtendedKeyUsageOID.SERVER_AUTH)

    def device(self, device_id: str, *, in_san: bool = False, days: int | None = None) -> Issued:
        """A camera's client certificate: the device id as subject CN, or (in_san) as a URI SAN."""
        if in_san:
            return self._issue(
                f"camera {device_id}", (f"{DEVICE_URI_PREFIX}{device_id}",), ExtendedKeyUsageOID.CLIENT_AUTH, days
            )
        return self._issue(device_id, (), ExtendedKeyUsageOID.CLIENT_AUTH, days)

    def _issue(self, cn: str, names: tuple[str, ...], usage: x509.ObjectIdentifier, days: int | None = None) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=self._days if days is None else days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), False)
        cert = builder.sign(self._key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def _general_name(name: str) -> x509.GeneralName:
    if name.startswith(DEVICE_URI_PREFIX):
        return x509.UniformResourceIdentifier(name)
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def write_test_pki(
    folder: str, devices: list[str], *, server_names: tuple[str, ...] = _LOOPBACK_NAMES
) -> dict[str, str]:
    """Write ca.pem, server.pem/server.key and DEVICE.pem/DEVICE.key into `folder`; returns name -> path."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    ca = TestCA()
    paths = {"ca": _write(out / "ca.pem", ca.cert_pem)}
    server = ca.server(server_names)
    paths["server_cert"] = _write(out / "server.pem", server.cert_pem)
    paths["server_key"] = _write(out / "server.key", server.key_pem, private=True)
    for device in devices:
        issued = ca.device(device)
        paths[f"{device}_cert"] = _write(out / f"{device}.pem", issued.cert_pem)
        paths[f"{device}_key"] = _write(out / f"{device}.key", issued.key_pem, private=True)
    return paths


def _write(path: Path, data: bytes, *, private: bool = False) -> str:
    if private:
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
    path.write_bytes(data)
    return str(path)
