"""The names a file gives (the network, layers, custom activations): what symbp accepts, why a
name is refused, and an accepted name to suggest instead.

A name becomes a Python identifier in the generated module and a file name, so it is ASCII:
Python would take 'σχ', but not every tool that reads the outputs would.
"""

from __future__ import annotations

import keyword
import re

MAX_NAME_LENGTH = 64
RULE = (
    "ASCII letters, digits and '_', not starting with a digit, not a Python keyword, "
    f"at most {MAX_NAME_LENGTH} characters"
)


def problem(name: str) -> str | None:
    """What breaks the rule in ``name`` ("has 'σ', which is not ASCII"), or None if nothing."""
    if not name:
        return "is empty"
    bad = next((ch for ch in name if not (ch.isascii() and (ch.isalnum() or ch == "_"))), None)
    if bad is not None:
        return f"has {bad!r}, which is not ASCII" if not bad.isascii() else f"has {bad!r}"
    if name[0].isdigit():
        return "starts with a digit"
    if keyword.iskeyword(name):
        return "is a Python keyword"
    if len(name) > MAX_NAME_LENGTH:
        return f"has {len(name)} characters"
    return None


def is_name(name: object) -> bool:
    """Whether ``name`` is a string that follows the rule."""
    return isinstance(name, str) and problem(name) is None


def refusal(what: str, name: str) -> str | None:
    """The message refusing ``name`` as ``what`` (e.g. "a layer name"), or None if it is fine."""
    found = problem(name)
    if found is None:
        return None
    shown = repr(name) if len(name) <= 40 else repr(name[:40])[:-1] + "...'"
    return f"{what} must be an identifier: {RULE}; {shown} {found}"


def suggest(text: str, fallback: str) -> str:
    """An accepted name made from ``text`` (other characters become '_'), else ``fallback``."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text)
    if not name.strip("_"):
        return fallback
    if name[0].isdigit():
        name = f"{fallback}_{name}"
    name = name[:MAX_NAME_LENGTH]
    return name + "_" if keyword.iskeyword(name) else name
