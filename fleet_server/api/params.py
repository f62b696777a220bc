"""Query parameters of the REST API that the database can hold, and bad ones answered with 400.

SQLite and PostgreSQL store 64-bit integers: a time stamp of 2^63 or more used to reach the driver
and come back as HTTP 500 with a traceback. Every epoch-ms parameter is declared with
:data:`EpochMsQuery` (0 ≤ value < 2^63), and :func:`install_validation_errors` turns FastAPI's
validation errors on ``/api/…`` into ``400 {"error": "<where>: <what>"}`` (other routes keep
FastAPI's own answer).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

MAX_INT64 = 2**63 - 1
"""Largest integer the database stores."""

EpochMsQuery = Annotated[int | None, Query(ge=0, le=MAX_INT64, description="epoch ms UTC")]
"""An optional epoch-ms query parameter within what the database stores."""


def describe(exc: RequestValidationError) -> str:
    """``"query since: Input should be less than or equal to 9223372036854775807"``; several joined by ``; ``."""
    parts = []
    for err in exc.errors()[:5]:
        where = " ".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_validation_errors(app: FastAPI) -> None:
    """Answer invalid parameters of ``/api/…`` routes with 400 and a one-line error (idempotent)."""

    async def handler(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": describe(exc)}, status_code=400)
        return await request_validation_exception_handler(request, exc)

    app.add_exception_handler(RequestValidationError, handler)
