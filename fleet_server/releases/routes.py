"""HTTP routes that hand out the agent: install scripts, the package manifest, checksums and files.

- ``GET /install.sh``      the Linux/macOS installer (:mod:`fleet_server.releases.scripts`), filled in
                           with this server's address and the offered packages' names and SHA-256 sums.
- ``GET /install.ps1``     the same for Windows PowerShell.
- ``GET /agent/packages.json``  :class:`shared.packages.Manifest` (signed entries).
- ``GET /agent/SHA256SUMS``     ``sha256sum -c`` format.
- ``GET /agent/files/{name}``   a package (only names the manifest lists).

All public: packages hold no secret (the enrollment token is the secret, and it never passes
through here); the login gate (:mod:`fleet_server.auth.gate`) lets them through.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse

from fleet_server.releases.catalog import Catalog
from shared.packages import Manifest

_SAFE_URL = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(?::\d+)?(?:/[A-Za-z0-9._~\-/]*)?$")


def safe_fleet_url(url: str) -> str:
    """``url`` without a trailing slash, when it is a plain ``http(s)://host[:port][/path]`` (it is pasted
    into shell and PowerShell scripts). Raises ValueError for anything else."""
    url = url.rstrip("/")
    if not _SAFE_URL.fullmatch(url):  # fullmatch: "$" alone would let a trailing line break through
        raise ValueError(f"not a plain http(s) URL: {url[:100]!r}")
    return url


def _script(name: str) -> str:
    return resources.files("fleet_server.releases").joinpath("scripts", name).read_text(encoding="utf-8")


def package_lines(manifest: Manifest) -> str:
    """``format arch name sha256`` per package of the offered version (what install.sh picks from)."""
    return "\n".join(f"{p.format} {p.arch} {p.name} {p.sha256}" for p in manifest.packages
                     if p.version == manifest.offered_version)


def render_install_sh(fleet_url: str, manifest: Manifest) -> str:
    """install.sh for this fleet. Raises ValueError for an unsafe ``fleet_url``."""
    return (_script("install.sh").replace("@FLEET_URL@", safe_fleet_url(fleet_url))
            .replace("@OFFERED_VERSION@", manifest.offered_version or "")
            .replace("@PACKAGES@", package_lines(manifest)))


def render_install_ps1(fleet_url: str, manifest: Manifest) -> str:
    """install.ps1 for this fleet. Raises ValueError for an unsafe ``fleet_url``."""
    exe = next((p for p in manifest.packages if p.version == manifest.offered_version and p.format == "exe"), None)
    return (_script("install.ps1").replace("@FLEET_URL@", safe_fleet_url(fleet_url))
            .replace("@OFFERED_VERSION@", manifest.offered_version or "")
            .replace("@EXE_NAME@", exe.name if exe else "").replace("@EXE_SHA256@", exe.sha256 if exe else ""))


def one_liners(fleet_url: str) -> dict[str, str]:
    """The one-line installs per OS family: ``{"linux": …, "macos": …, "windows": …}``; each asks for
    the token (it never goes on the command line)."""
    url = safe_fleet_url(fleet_url)
    return {"linux": f"curl -fsSL {url}/install.sh | sudo sh",
            "macos": f"curl -fsSL {url}/install.sh | sh",
            "windows": f"powershell -ExecutionPolicy Bypass -c \"irm {url}/install.ps1 | iex\""}


def install_release_routes(app: FastAPI, catalog: Catalog, public_url: Callable[[], str | None]) -> None:
    """Add the routes above to ``app``. ``public_url`` gives the configured address devices use (None:
    the address the request came in on)."""

    def base(request: Request) -> str:
        try:
            return safe_fleet_url(public_url() or str(request.base_url))
        except ValueError:
            raise HTTPException(400, "this server's address cannot go into a script; set run --public-url") from None

    async def install_sh(request: Request) -> PlainTextResponse:
        return PlainTextResponse(render_install_sh(base(request), catalog.manifest()), media_type="text/x-shellscript")

    async def install_ps1(request: Request) -> PlainTextResponse:
        return PlainTextResponse(render_install_ps1(base(request), catalog.manifest()))

    async def manifest() -> JSONResponse:
        return JSONResponse(catalog.manifest().to_dict())

    async def sums() -> PlainTextResponse:
        return PlainTextResponse(catalog.sha256sums())

    async def file(name: str) -> FileResponse:
        path = catalog.path_of(name)
        if path is None:
            raise HTTPException(404, "no such agent package")
        return FileResponse(path, filename=name, media_type="application/octet-stream")

    app.add_api_route("/install.sh", install_sh, methods=["GET"], include_in_schema=False)
    app.add_api_route("/install.ps1", install_ps1, methods=["GET"], include_in_schema=False)
    app.add_api_route("/agent/packages.json", manifest, methods=["GET"], include_in_schema=False)
    app.add_api_route("/agent/SHA256SUMS", sums, methods=["GET"], include_in_schema=False)
    app.add_api_route("/agent/files/{name}", file, methods=["GET"], include_in_schema=False)
