"""Checks of plain JSON values against simple rules, for the agent's config file and local bridge.

The agent's run path does not load pydantic (its import alone costs ~12 MB of memory); these
few rules are all the config and the bridge need. A failed check names what is accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    """What one JSON value accepts: a type (``kind``: bool, int, float or str), ``None`` or not
    (``optional``), numeric bounds (``ge``/``le``), string lengths, a regular expression
    (``pattern``, searched), a set of ``choices``. ``doc`` describes it (unit included)."""

    kind: type
    optional: bool = False
    ge: float | None = None
    le: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    choices: tuple[str, ...] | None = None
    doc: str = ""

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable (one short phrase), or None when it is."""
        if value is None:
            return None if self.optional else "must be set"
        if self.kind is bool:
            ok = isinstance(value, bool)
        elif self.kind is int:
            ok = not isinstance(value, bool) and (isinstance(value, int) or isinstance(value, float)
                                                  and value.is_integer())
        elif self.kind is float:
            ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value == value
        else:
            ok = isinstance(value, str)
        if not ok:
            return f"must be {_KIND_NAMES[self.kind]}{' or null' if self.optional else ''}, not {value!r:.40}"
        if self.ge is not None and value < self.ge:
            return f"must be at least {self.ge:g}"
        if self.le is not None and value > self.le:
            return f"must be at most {self.le:g}"
        if self.min_length is not None and len(value) < self.min_length:
            return f"must be at least {self.min_length} characters long"
        if self.max_length is not None and len(value) > self.max_length:
            return f"must be at most {self.max_length} characters long"
        if self.pattern is not None and not re.search(self.pattern, value):
            return f"must match {self.pattern}"
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}"
        return None


_KIND_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}




def check(rules: dict[str, Rule], data: dict[str, Any], limit: int = 5) -> list[str]:
    """Problems of ``data`` against ``rules`` (keys not in ``rules`` are ignored), as
    ``"'key': why"`` strings, at most ``limit``; missing keys are checked as None."""
    problems = [f"'{k}': {why}" for k, rule in rules.items() if (why := rule.problem(data.get(k)))]
    return problems[:limit]
