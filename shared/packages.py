"""Agent packages a fleet server offers: file names, the manifest, and what the signature covers.

The server serves ``GET /agent/packages.json`` (:class:`Manifest` as JSON) and the files under
``/agent/files/<name>``. Each package is signed with the server's Ed25519 key (its public half
travels in the enrollment token); the signature covers :func:`signed_message` — the file name,
the version and the SHA-256 of the bytes — so a package can be neither altered nor passed off as
another version. Dependency-free: the agent and the install scripts' server side both use it.

File names (:func:`package_name`): ``clawfleet-agent_<version>_<arch>.deb`` (Debian's own pattern,
arch ``amd64``/``arm64``), ``clawfleet-agent-<version>-1.<arch>.rpm`` (``x86_64``/``aarch64``),
``clawfleet-agent-<version>-<os>-<arch>.tar.gz`` (``linux``/``macos``; the one-folder build for
installs without a package manager and for users without root), ``clawfleet-agent-<version>-macos-<arch>.pkg``
(``x86_64``/``arm64``) and ``clawfleet-agent-<version>-setup-win64.exe`` (Windows).
"""

from __future__ import annotations

import base64
import re
from dataclasses import asdict, dataclass, field

FORMATS = ("deb", "rpm", "tar.gz", "pkg", "exe")
"""Package formats, as :attr:`Package.format` spells them."""
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:[.+~-][0-9A-Za-z.+~-]{1,40})?$")
"""Versions the fleet handles: ``MAJOR.MINOR.PATCH`` with an optional suffix (``0.2.0``, ``0.2.0.dev1``)."""
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
SIGNATURE_PREFIX = b"clawfleet-agent-package/v1\n"
"""First line of every signed message (so a signature over anything else can never match)."""
_PATTERNS = (
    (re.compile(r"^clawfleet-agent_(?P<v>[^_]+)_(?P<arch>amd64|arm64)\.deb$"), "deb", "linux"),
    (re.compile(r"^clawfleet-agent-(?P<v>.+)-1\.(?P<arch>x86_64|aarch64)\.rpm$"), "rpm", "linux"),
    (re.compile(r"^clawfleet-agent-(?P<v>.+)-(?P<os>linux|macos)-(?P<arch>x86_64|aarch64|arm64|universal2)"
                r"\.tar\.gz$"), "tar.gz", None),
    (re.compile(r"^clawfleet-agent-(?P<v>.+)-macos-(?P<arch>x86_64|arm64|universal2)\.pkg$"), "pkg", "macos"),
    (re.compile(r"^clawfleet-agent-(?P<v>[^-]+)-setup-win64\.exe$"), "exe", "windows"),
)
ARCH_ALIASES = {"amd64": "x86_64", "x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64",
                "universal2": "universal2", "x64": "x86_64", "amd64p32": "x86_64"}
"""Every architecture spelling normalised to ``x86_64`` / ``arm64`` / ``universal2``."""


def normal_arch(arch: str) -> str:
    """``arch`` as :data:`ARCH_ALIASES` spells it (``AMD64`` -> ``x86_64``); unknown ones lower-cased."""
    return ARCH_ALIASES.get(arch.lower(), arch.lower())


def parse_package_name(name: str) -> tuple[str, str, str, str] | None:
    """``(format, os, arch, version)`` of a package file name (arch normalised), None when the name
    is not one of the patterns in the module docstring or the version is not a :data:`VERSION_RE`."""
    for pattern, fmt, os_name in _PATTERNS:
        m = pattern.fullmatch(name)
        if m and VERSION_RE.fullmatch(m["v"]):
            arch = normal_arch(m.groupdict().get("arch") or "x86_64")  # win64: the one without an arch
            return fmt, os_name or m["os"], arch, m["v"]
    return None


def package_name(fmt: str, version: str, arch: str, os_name: str = "linux") -> str:
    """The file name of a package (the inverse of :func:`parse_package_name`).

    Raises:
        ValueError: an unknown format.
    """
    arch = normal_arch(arch)
    if fmt == "deb":
        return f"clawfleet-agent_{version}_{'amd64' if arch == 'x86_64' else 'arm64'}.deb"
    if fmt == "rpm":
        return f"clawfleet-agent-{version}-1.{'x86_64' if arch == 'x86_64' else 'aarch64'}.rpm"
    if fmt == "tar.gz":
        return f"clawfleet-agent-{version}-{os_name}-{arch}.tar.gz"
    if fmt == "pkg":
        return f"clawfleet-agent-{version}-macos-{arch}.pkg"
    if fmt == "exe":
        return f"clawfleet-agent-{version}-setup-win64.exe"
    raise ValueError(f"unknown package format {fmt!r}; known: {', '.join(FORMATS)}")


def signed_message(name: str, version: str, sha256: str) -> bytes:
    """The bytes a package signature covers: prefix, file name, version and SHA-256 (hex), one per line."""
    return SIGNATURE_PREFIX + f"{name}\n{version}\n{sha256}\n".encode()


def version_key(version: str) -> tuple:
    """Sort key for :data:`VERSION_RE` versions: numeric parts first; a suffix sorts before the bare
    version (``0.2.0.dev1`` < ``0.2.0``), as PEP 440 pre-releases do."""
    m = re.match(r"^(\d+)\.(\d+)\.(\d+)(.*)$", version)
    if not m:
        return (-1, -1, -1, version)
    suffix = m[4]
    return (int(m[1]), int(m[2]), int(m[3]), 0 if suffix else 1, suffix)


def b64url(raw: bytes) -> str:
    """Base64url without padding (keys and signatures in tokens and manifests)."""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    """Inverse of :func:`b64url`. Raises ValueError on bad input."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not base64url: {exc}") from None


@dataclass(frozen=True)
class Package:
    """One file the server offers: ``size`` in bytes, ``sha256`` hex, ``signature`` base64url Ed25519
    over :func:`signed_message`, ``url`` relative to the server (``/agent/files/<name>``)."""

    name: str
    format: str
    os: str
    arch: str
    version: str
    size: int
    sha256: str
    signature: str
    url: str


@dataclass(frozen=True)
class Manifest:
    """``/agent/packages.json``: the agent version the server offers (the newest it holds), its
    packages (all versions, newest first) and the signing key (base64url Ed25519 public key)."""

    offered_version: str | None
    update_key: str
    packages: list[Package] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"v": 1, "offered_version": self.offered_version, "update_key": self.update_key,
                "packages": [asdict(p) for p in self.packages]}

    @classmethod
    def from_dict(cls, data: object) -> Manifest:
        """Parse a manifest received from a server (untrusted: every field checked).

        Raises:
            ValueError: not a manifest; the message names the field.
        """
        if not isinstance(data, dict) or data.get("v") != 1:
            raise ValueError("not a ClawFleet package manifest (v 1)")
        packages = []
        for i, p in enumerate(data.get("packages") or []):
            if not isinstance(p, dict):
                raise ValueError(f"packages[{i}]: not an object")
            try:
                pkg = Package(**{k: p[k] for k in Package.__dataclass_fields__})
            except (KeyError, TypeError) as exc:
                raise ValueError(f"packages[{i}]: missing field {exc}") from None
            parsed = parse_package_name(str(pkg.name))
            if parsed is None or parsed != (pkg.format, pkg.os, pkg.arch, pkg.version):
                raise ValueError(f"packages[{i}]: name {str(pkg.name)[:80]!r} does not match format/os/arch/version")
            if not SHA256_RE.fullmatch(str(pkg.sha256)) or not isinstance(pkg.size, int) or pkg.size < 0:
                raise ValueError(f"packages[{i}]: bad sha256 or size")
            packages.append(pkg)
        offered = data.get("offered_version")
        if offered is not None and not VERSION_RE.fullmatch(str(offered)):
            raise ValueError("offered_version: not a version")
        return cls(offered, str(data.get("update_key") or ""), packages)

    def pick(self, fmt: str, os_name: str, arch: str, version: str | None = None) -> Package | None:
        """The package of ``version`` (default the offered one) for this format, OS and architecture
        (a ``universal2`` build fits either macOS architecture); None when the server has none."""
        version = version or self.offered_version
        arch = normal_arch(arch)
        for p in self.packages:
            if p.format == fmt and p.os == os_name and p.version == version and p.arch in (arch, "universal2"):
                return p
        return None
