"""Engine messages in the web app's words: the engine names the CLI's flags and commands (`--purpose`,
`faceledger gallery update ...`), which mean nothing to someone filling in a form. `plain_words` turns
those into the names of the form fields, and drops advice that only applies to the command line.
The JSON API keeps the engine's own message (docs/api.md)."""

from __future__ import annotations

import re

FIELDS = {
    "purpose": "Purpose", "case": "Case reference", "authorisation": "Authorisation", "reason": "Reason",
    "source": "Source", "legal-basis": "Legal basis", "subject": "Subject", "note": "Note",
    "top-k": "number of candidates", "gallery": "Gallery", "retain-until": "Keep until",
    "target-fpir": "Target FPIR", "purposes": "Purposes", "retain-days": "Records kept (days)",
    "probe-retain-days": "Probes kept (days)", "investigative": "Investigative", "face": "Photo",
    "largest-face": "face", "allow-multiple": "face", "role": "Role", "token": "Token",
}

_COMMAND = re.compile(r"\s*\(?`faceledger [^`]*`\)?")
_CLI_CLAUSE = re.compile(r"[;,]\s*(?:create|use|run|see|set|choose)\b[^;.]*?`faceledger [^`]*`")
_MULTIPLE = re.compile(r"faces of similar size found; use one face per image, or choose .*$")
_PAREN_FLAG = re.compile(r"\s*\((--[a-z][a-z-]*)\)")
_FLAG = re.compile(r"--([a-z][a-z-]*)(?:\s+[A-Z]+)?")


def _field(match: re.Match) -> str:
    name = FIELDS.get(match.group(1).lstrip("-"))
    return f"the {name} field" if name and name != "face" else "the form"


def plain_words(message: str) -> str:
    """The message with CLI flags and commands replaced by what a web user sees."""
    text = _MULTIPLE.sub("faces of similar size found; use a photo that shows one person (a search lets you "
                          "choose the face)", message)
    text = _CLI_CLAUSE.sub("", text)
    text = _COMMAND.sub("", text)
    text = _PAREN_FLAG.sub(lambda m: f" ({_field(re.match(r'--([a-z-]+)', m.group(1)))})", text)
    text = _FLAG.sub(_field, text)
    text = text.replace("an admin must change", "an administrator must change")
    return re.sub(r"\s+([;,.])", r"\1", text).strip()
