"""The server's own certificate authority and the broker's TLS certificate (``cryptography``).

``clawfleet-server tls init --host NAME`` writes ``<data_dir>/tls/`` (directory mode 0700):

- ``ca.pem``      the CA certificate (EC P-256, 10 years, basicConstraints CA, keyUsage
                  keyCertSign + cRLSign). Every enrollment token carries it; agents pin it.
- ``ca.key``      its private key (mode 0600). Needed only to issue a new server certificate.
- ``server.pem``  the broker's certificate (EC P-256, signed by the CA, serverAuth, SANs: the
                  given hosts plus ``localhost`` and ``127.0.0.1``; 825 days by default).
- ``server.key``  its private key (mode 0600), read by the managed Mosquitto.

A new CA invalidates the CA every enrolled agent pinned: they all need a new token. Re-issuing
only the server certificate under the same CA (``keep_ca``) does not. All times are UTC.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.private_files import write_private

CA_DAYS = 3650
"""Validity of a new CA, days (10 years)."""
DEFAULT_SERVER_DAYS = 825
"""Default validity of the server certificate, days (the longest Apple platforms accept)."""
EXPIRY_WARNING_DAYS = 30
"""``run`` warns when the server certificate or the CA expires within this many days."""
DEFAULT_HOSTS = ("localhost", "127.0.0.1")
"""Always in the server certificate's SANs (the server's own loopback checks, local agents)."""

_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_BACKDATE = dt.timedelta(hours=1)  # tolerate clocks a little behind ours


class TlsError(RuntimeError):
    """TLS files are missing, unreadable, or would be overwritten; the message says what to do."""


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the TLS material under ``<data_dir>/tls``."""

    dir: Path

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> TlsFiles:
        """The files of the server whose data dir is ``data_dir``."""
        return cls(Path(data_dir) / "tls")

    @property
    def ca_pem(self) -> Path:
        """CA certificate (PEM): what agents pin."""
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        """CA private key (PEM, mode 0600)."""
        return self.dir / "ca.key"

    @property
    def server_pem(self) -> Path:
        """The broker's certificate (PEM)."""
        return self.dir / "server.pem"

    @property
    def server_key(self) -> Path:
        """The broker's private key (PEM, mode 0600)."""
        return self.dir / "server.key"

    @property
    def enabled(self) -> bool:
        """True when a server certificate and its key exist (``run`` then opens the TLS listener)."""
        return self.server_pem.is_file() and self.server_key.is_file()


@dataclass(frozen=True)
class CertSummary:
    """What ``tls show`` prints and ``run`` checks.

    ``hosts``: the server certificate's SANs in certificate order (DNS names and IP addresses as
    text; the first is the default public host). Times are timezone-aware UTC datetimes.
    ``ca_fingerprint``: SHA-256 of the CA certificate's DER bytes, ``AB:CD:…`` (64 hex digits).
    """

    hosts: tuple[str, ...]
    not_after: dt.datetime
    ca_subject: str
    ca_not_after: dt.datetime
    ca_fingerprint: str

    @property
    def public_host(self) -> str:
        """The first SAN: the host agents are told to connect to unless ``--public-host`` says otherwise."""
        return self.hosts[0]

    def expiry_warnings(self, now: dt.datetime | None = None, within_days: int = EXPIRY_WARNING_DAYS) -> list[str]:
        """One line per certificate (server, CA) that has expired or expires within ``within_days``."""
        now = now or dt.datetime.now(dt.timezone.utc)
        out = []
        for what, end, fix in (
            ("server certificate", self.not_after, "renew it with 'clawfleet-server tls init --keep-ca --host …' "
             "(agents keep working)"),
            ("CA certificate", self.ca_not_after, "make a new CA with 'clawfleet-server tls init --force --host …' "
             "and re-enroll every agent"),
        ):
            days = (end - now).total_seconds() / 86400
            if days <= 0:
                out.append(f"the TLS {what} EXPIRED on {end:%Y-%m-%d}: agents cannot connect; {fix}")
            elif days <= within_days:
                out.append(f"the TLS {what} expires on {end:%Y-%m-%d} (in {days:.0f} days); {fix}")
        return out


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint of ``cert`` as colon-separated upper-case hex (as ``openssl x509 -fingerprint``)."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def parse_host(name: str) -> x509.GeneralName:
    """A SAN entry for ``name``: an IP address (v4 or v6) or a DNS name (lower-cased).

    Raises:
        ValueError: empty, a wildcard/unspecified address (0.0.0.0, ::), or not a valid DNS name.
    """
    name = name.strip().strip("[]")
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        if ip.is_unspecified:
            raise ValueError(f"{name} is a bind address, not a name agents can connect to; give the server's "
                             "public IP address or DNS name")
        return x509.IPAddress(ip)
    dns = name.lower().rstrip(".")
    if len(dns) > 253 or not dns or not all(_DNS_LABEL.match(label) for label in dns.split(".")):
        raise ValueError(f"{name!r} is neither an IP address nor a valid DNS name")
    return x509.DNSName(dns)


def _san_text(entry: x509.GeneralName) -> str:
    return str(entry.value)


def _san_entries(hosts: list[str]) -> list[x509.GeneralName]:
    """The given hosts (in order) then ``localhost`` and ``127.0.0.1``, without duplicates."""
    entries: list[x509.GeneralName] = []
    for host in [*hosts, *DEFAULT_HOSTS]:
        entry = parse_host(host)
        if entry not in entries:
            entries.append(entry)
    return entries


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ClawFleet"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _write_public(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def make_ca(first_host: str, now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new self-signed CA (EC P-256, :data:`CA_DAYS` days) named after ``first_host``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"ClawFleet CA {first_host} {now:%Y-%m-%d} {secrets.token_hex(3)}")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_server_cert(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, hosts: list[str], days: int,
                     now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A server certificate (EC P-256, serverAuth) for ``hosts`` + localhost/127.0.0.1, signed by ``ca``.

    Raises:
        ValueError: a host is not a valid name/address, or ``days`` < 1.
        TlsError: the certificate would outlive the CA.
    """
    if days < 1:
        raise ValueError("the certificate validity must be at least 1 day")
    sans = _san_entries(hosts)
    not_after = now + dt.timedelta(days=days)
    if not_after > ca.not_valid_after_utc:
        raise TlsError(f"a {days}-day certificate would outlive the CA (valid until "
                       f"{ca.not_valid_after_utc:%Y-%m-%d}); use fewer --days or make a new CA with --force")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(_san_text(sans[0]))).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def init_tls(data_dir: Path, hosts: list[str], *, days: int = DEFAULT_SERVER_DAYS, force: bool = False,
             keep_ca: bool = False, now: dt.datetime | None = None) -> CertSummary:
    """Create ``<data_dir>/tls/``: a new CA (or the existing one with ``keep_ca``) and a server
    certificate for ``hosts`` valid ``days`` days.

    Raises:
        ValueError: no host, or a host that is not a valid DNS name / IP address.
        TlsError: files exist and neither ``force`` (new CA) nor ``keep_ca`` (new server
            certificate only) was given; ``keep_ca`` without a readable CA; the certificate
            would outlive the CA.
    """
    if not hosts:
        raise ValueError("give at least one --host: the DNS name or IP address agents use to reach this server")
    if force and keep_ca:
        raise ValueError("--force makes a new CA and --keep-ca keeps the old one: choose one")
    files = TlsFiles.for_data_dir(data_dir)
    now = now or dt.datetime.now(dt.timezone.utc)
    _san_entries(hosts)  # validate before touching anything
    if keep_ca:
        ca, ca_key = _load_ca(files)
    else:
        existing = [p for p in (files.ca_pem, files.ca_key, files.server_pem, files.server_key) if p.exists()]
        if existing and not force:
            raise TlsError(f"TLS files already exist in {files.dir}. Use --keep-ca to issue a new server "
                           "certificate under the same CA (enrolled agents keep working), or --force to make a NEW "
                           "CA, which every enrolled agent has pinned: all of them must then be re-enrolled with "
                           "new tokens")
        ca, ca_key = make_ca(hosts[0], now)
    cert, key = make_server_cert(ca, ca_key, hosts, days, now)
    files.dir.mkdir(parents=True, exist_ok=True)
    os.chmod(files.dir, 0o700)
    if not keep_ca:
        write_private(files.ca_key, _key_pem(ca_key))
        _write_public(files.ca_pem, _cert_pem(ca))
    write_private(files.server_key, _key_pem(key))
    _write_public(files.server_pem, _cert_pem(cert))
    return summarize(ca, cert)


def _load_ca(files: TlsFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        ca = x509.load_pem_x509_certificate(files.ca_pem.read_bytes())
        key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise TlsError(f"no CA to keep: {exc.filename} is missing; run 'clawfleet-server tls init --host …' "
                       "without --keep-ca") from None
    except (OSError, ValueError) as exc:
        raise TlsError(f"cannot read the CA in {files.dir}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != ca.public_key():
        raise TlsError(f"{files.ca_key} does not belong to {files.ca_pem}")
    return ca, key


def summarize(ca: x509.Certificate, cert: x509.Certificate) -> CertSummary:
    """The :class:`CertSummary` of a CA and a server certificate."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        hosts = tuple(_san_text(e) for e in san)
    except x509.ExtensionNotFound:
        hosts = ()
    return CertSummary(hosts=hosts, not_after=cert.not_valid_after_utc, ca_subject=ca.subject.rfc4514_string(),
                       ca_not_after=ca.not_valid_after_utc, ca_fingerprint=fingerprint(ca))


def read_summary(data_dir: Path) -> CertSummary:
    """Read ``<data_dir>/tls/ca.pem`` and ``server.pem``.

    Raises:
        TlsError: missing (the message names ``tls init``) or not a PEM certificate.
    """
    files = TlsFiles.for_data_dir(data_dir)
    try:
        ca = x509.load_pem_x509_certificate(files.ca_pem.read_bytes())
        cert = x509.load_pem_x509_certificate(files.server_pem.read_bytes())
    except FileNotFoundError as exc:
        raise TlsError(f"no TLS certificate ({exc.filename} is missing); create one with "
                       "'clawfleet-server tls init --host NAME'") from None
    except (OSError, ValueError) as exc:
        raise TlsError(f"cannot read the TLS certificates in {files.dir}: {exc}") from exc
    return summarize(ca, cert)


def read_ca_pem(data_dir: Path) -> str:
    """The CA certificate text that goes into enrollment tokens. Raises TlsError when missing."""
    path = TlsFiles.for_data_dir(data_dir).ca_pem
    try:
        return path.read_text(encoding="ascii")
    except (OSError, ValueError) as exc:
        raise TlsError(f"cannot read the CA certificate {path}: {exc}") from exc
