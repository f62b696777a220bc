"""Helpers for dashboard tests that need a login (the fixtures are in ``tests/server/conftest.py``)."""

from __future__ import annotations

from nicegui import ui
from nicegui.testing import User as SimUser

PASSWORD = "correct horse battery"
"""Password of the accounts the ``log_in`` fixture creates."""


async def submit_login(user: SimUser, username: str, password: str, *, path: str = "/login") -> None:
    """Open ``path`` (the login page), type the credentials and press Enter in the password field.

    Does not wait for the outcome: follow with ``await user.should_see(...)``.
    """
    await user.open(path)
    user.find(kind=ui.input, content="Username").type(username)
    user.find(kind=ui.input, content="Password").type(password).trigger("keydown.enter")
