"""Every free-text field a user gives (purpose, case, reason, names, provenance, notes) is normalised
and checked before it is used or ledgered: NFKC, no control or invisible characters, a length cap.

A zero-width space or a NUL must not satisfy "a purpose is required", and a 1 MiB "case reference"
must not be kept forever in the ledger. Refused text is ledgered only as a short, escaped summary.
"""

from __future__ import annotations

import unicodedata

from .errors import InvalidText, MissingField

LIMITS = {"--purpose": 500, "--case": 200, "--reason": 1000, "--source": 500, "--legal-basis": 500,
          "--authorisation": 200, "--note": 2000, "--subject": 200, "NAME": 200, "--purposes": 500}
"""Characters allowed per field (by the CLI flag that names it); anything else: DEFAULT_LIMIT."""

DEFAULT_LIMIT = 500
MULTILINE = {"--note", "--reason"}
"""Fields where a line break or tab is allowed."""

_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def _bad_characters(text: str, multiline: bool) -> list[str]:
    bad = []
    for ch in text:
        if multiline and ch in "\n\t":
            continue
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            bad.append(f"U+{ord(ch):04X}")
    return bad


WHY_REQUIRED = {
    "--purpose": "; every search and verification must state it",
    "--case": "; every search and verification must state it",
    "--source": "; every enrolled image records where it came from",
    "--legal-basis": "; every enrolled image records the legal basis for holding it",
    "--reason": "; every erasure records why it was made",
}
"""Why a field may not be left blank, by flag; said after "X is required"."""


def clean_text(value: str | None, what: str, flag: str, *, required: bool = True) -> str | None:
    """The text NFKC-normalised and stripped; InvalidText for invisible/control characters or over-long
    text, MissingField when required and blank. Optional blank text gives None."""
    if value is None or not str(value).strip():
        if required:
            raise MissingField(f"{what} is required ({flag}){WHY_REQUIRED.get(flag, '')}")
        return None
    text = unicodedata.normalize("NFKC", str(value)).strip()
    limit = LIMITS.get(flag, DEFAULT_LIMIT)
    if len(text) > limit:
        raise InvalidText(f"{what} ({flag}) is {len(text):,} characters long; the limit is {limit}")
    bad = _bad_characters(text, flag in MULTILINE)
    if bad:
        shown = ", ".join(sorted(set(bad))[:5])
        raise InvalidText(f"{what} ({flag}) contains control or invisible characters ({shown}); "
                          "retype it in plain text")
    if not text:
        raise MissingField(f"{what} is required ({flag})")
    return text


def ledger_safe(value, *, limit: int = 200):
    """A value fit to ledger as part of a refused request: long strings cut, invisible characters escaped."""
    if isinstance(value, str):
        escaped = "".join(f"\\u{ord(ch):04x}" if unicodedata.category(ch) in _REFUSED_CATEGORIES else ch
                          for ch in value[:limit])
        return escaped if len(value) <= limit else f"{escaped}… ({len(value):,} characters)"
    if isinstance(value, dict):
        return {str(k)[:limit]: ledger_safe(v, limit=limit) for k, v in list(value.items())[:50]}
    if isinstance(value, (list, tuple)):
        return [ledger_safe(v, limit=limit) for v in list(value)[:50]]
    return value
