"""TLS for rekap's HTTP services and clients, and a local CA for demos and expos.

Ingest and the worker's web port serve HTTPS when ``REKAP_TLS_CERT`` and
``REKAP_TLS_KEY`` are set (:func:`server_context`); rekap's own clients (booth
sync, ``import --via ingest``, the simulator, readiness checks) trust
``REKAP_TLS_CA`` when it is set, the system's CAs otherwise
(:func:`client_context`).

A venue has no public DNS name for the laptop that runs ingest, so no public CA
will sign for it. ``rekap tls init`` (:func:`init_local`) makes a small CA of
its own and a server certificate for the laptop's addresses; the CA certificate
is installed once on each booth tablet. Both are reused while valid, so a tablet
keeps trusting the laptop across restarts; a certificate within
:data:`RENEW_WITHIN` of its end is replaced.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rekap.errors import ConfigError
from rekap.settings import Settings

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

#: The addresses every local server certificate covers.
DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")
#: A CA or server certificate that ends sooner than this is made anew rather than reused.
RENEW_WITHIN = dt.timedelta(days=30)
#: The CA lasts long so tablets install it once; it signs nothing but this machine's certs.
CA_DAYS = 3650
#: iOS and macOS refuse TLS server certificates valid for more than 825 days, and browsers
#: those of public CAs past 398; 397 fits both.
SERVER_DAYS = 397
#: Backdated so a tablet whose clock runs a little behind still accepts a fresh certificate.
BACKDATE = dt.timedelta(hours=1)

CA_CERT, CA_KEY = "ca.pem", "ca-key.pem"
SERVER_CERT, SERVER_KEY = "server.pem", "server-key.pem"


# -- contexts --------------------------------------------------------------------------------

def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of rekap's HTTP servers, or None for plain HTTP (neither variable set).

    TLS 1.2 at least. Raises ConfigError when only one of ``REKAP_TLS_CERT`` and
    ``REKAP_TLS_KEY`` is set, a file cannot be read, or the key does not belong to the
    certificate: a server that silently fell back to plain HTTP would send booth tokens
    in clear.
    """
    cert, key = settings.tls_cert, settings.tls_key
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("REKAP_TLS_CERT and REKAP_TLS_KEY go together: set both for HTTPS, "
                          "or neither for plain HTTP")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for name, path in (("REKAP_TLS_CERT", cert), ("REKAP_TLS_KEY", key)):
        _readable(name, path)
    try:
        ctx.load_cert_chain(certfile=cert, keyfile=key)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"REKAP_TLS_CERT={cert} and REKAP_TLS_KEY={key} are not a PEM certificate and its "
            f"key ({exc.reason or exc}); `rekap tls init` makes a matching pair") from exc
    return ctx


def client_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of rekap's own HTTP clients: verifies the server's certificate and name.

    Trusts the CA bundle ``REKAP_TLS_CA`` when set (the local CA of ``rekap tls init``),
    else the system's CAs. Never unverified.
    """
    ca = settings.tls_ca
    if ca is not None:
        _readable("REKAP_TLS_CA", ca)
    try:
        ctx = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    except ssl.SSLError as exc:
        raise ConfigError(f"REKAP_TLS_CA={ca} is not a PEM CA certificate ({exc.reason or exc})") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def scheme(settings: Settings) -> str:
    """``https`` when this process has TLS settings (a certificate or a CA), else ``http``."""
    return "https" if settings.tls_cert is not None or settings.tls_ca is not None else "http"


def local_url(settings: Settings, port: int) -> str:
    """The base URL of a rekap service on ``settings.host`` (ingest, the worker's web port)."""
    return f"{scheme(settings)}://{settings.host}:{port}"


def _readable(name: str, path: Path) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{name}={path} cannot be read: {exc.strerror or exc}") from exc


# -- the local CA ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Issued:
    """A PEM certificate and its key on disk, and whether this call made them."""

    cert: Path
    key: Path
    created: bool
    not_after: dt.datetime


@dataclass(frozen=True)
class LocalTLS:
    """What ``rekap tls init`` leaves: the CA and the server certificate it signed."""

    ca: Issued
    server: Issued
    hosts: tuple[str, ...]

    def env(self) -> dict[str, str]:
        """The ``REKAP_TLS_*`` variables that serve and trust this certificate."""
        return {"REKAP_TLS_CERT": str(self.server.cert), "REKAP_TLS_KEY": str(self.server.key),
                "REKAP_TLS_CA": str(self.ca.cert)}


def make_local_ca(directory: Path, *, days: int = CA_DAYS) -> Issued:
    """The CA in ``directory`` (``ca.pem``, ``ca-key.pem``): reused while valid, else made.

    Made anew when missing, unreadable, not a CA, its key does not match, or it ends
    within :data:`RENEW_WITHIN` (tablets must then install the new one).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = _private_dir(directory)
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    existing = _load_pair(cert_path, key_path)
    if existing is not None:
        cert, _ = existing
        if _is_ca(cert) and _lasts(cert):
            return Issued(cert_path, key_path, False, cert.not_valid_after_utc)

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rekap"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"rekap local CA ({socket.gethostname()[:40]})"),
    ])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - BACKDATE).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    cert = _sign(builder, key)
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, _cert_pem(cert), 0o644)
    return Issued(cert_path, key_path, True, cert.not_valid_after_utc)


def issue_server_cert(ca: Issued, directory: Path, hosts: Sequence[str] = DEFAULT_HOSTS,
                      *, days: int = SERVER_DAYS) -> Issued:
    """A server certificate signed by ``ca`` for ``hosts`` (IPs and DNS names), in ``directory``.

    Reused when it is this CA's, covers every host, matches its key and lasts past
    :data:`RENEW_WITHIN`; otherwise made anew (``server.pem``, ``server-key.pem`` 0600).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    names = _san_names(hosts)
    directory = _private_dir(directory)
    cert_path, key_path = directory / SERVER_CERT, directory / SERVER_KEY
    ca_pair = _load_pair(ca.cert, ca.key)
    if ca_pair is None:
        raise ConfigError(f"{ca.cert} and {ca.key} are not a CA certificate and its key")
    ca_cert, ca_key = ca_pair
    existing = _load_pair(cert_path, key_path)
    if existing is not None and _lasts(existing[0]) and _issued_by(existing[0], ca_cert) \
            and set(names) <= set(_sans(existing[0])):
        return Issued(cert_path, key_path, False, existing[0].not_valid_after_utc)

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rekap"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, str(hosts[0]))]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - BACKDATE).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
    )
    cert = _sign(builder, ca_key)
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, _cert_pem(cert), 0o644)
    return Issued(cert_path, key_path, True, cert.not_valid_after_utc)


def init_local(directory: Path, hosts: Iterable[str] = ()) -> LocalTLS:
    """The local CA and a server certificate for :data:`DEFAULT_HOSTS` plus ``hosts``."""
    wanted = tuple(dict.fromkeys([*DEFAULT_HOSTS, *(h.strip() for h in hosts if h.strip())]))
    directory = Path(directory).resolve()
    ca = make_local_ca(directory)
    server = issue_server_cert(ca, directory, wanted)
    return LocalTLS(ca, server, wanted)


# -- helpers ---------------------------------------------------------------------------------

def _san_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    from cryptography import x509

    if not hosts:
        raise ConfigError("a server certificate needs at least one host name or IP address")
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not host or any(c.isspace() or c in "/:@" for c in host):
                raise ConfigError(f"{host!r} is neither an IP address nor a DNS name") from None
            names.append(x509.DNSName(host.lower()))
    return names


def _sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    from cryptography import x509

    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def _is_ca(cert: x509.Certificate) -> bool:
    from cryptography import x509

    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # ValueError, TypeError or InvalidSignature: not this CA's, either way
        return False
    return True


def _lasts(cert: x509.Certificate) -> bool:
    now = dt.datetime.now(dt.UTC)
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now > RENEW_WITHIN


def _load_pair(cert_path: Path, key_path: Path
               ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The certificate and its EC key, or None when either is missing, unreadable or they differ."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    return cert, key


def _sign(builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    from cryptography.hazmat.primitives import hashes

    return builder.sign(key, hashes.SHA256())


def _serial() -> int:
    # RFC 5280: positive, at most 20 octets; random so two CAs of one name never clash.
    return secrets.randbits(159) | 1


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _private_dir(directory: Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` atomically; the new file has ``mode`` from its first byte (keys: 0600)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits off
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
