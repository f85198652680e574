"""Errors. Each class docstring is the user-facing meaning; the CLI and API translate them at the edge."""

from __future__ import annotations


class FaceledgerError(Exception):
    """Something went wrong that the user can understand and fix."""


class ModelNotAvailable(FaceledgerError):
    """A model file is missing or is not the file faceledger was built for."""


class ImageError(FaceledgerError):
    """The file could not be read as an image."""


class ImageTooLarge(ImageError):
    """The image is larger than the configured byte or pixel limit."""


class NoFaceFound(FaceledgerError):
    """No usable face was found in the image."""


class MultipleFaces(FaceledgerError):
    """More than one face was found where exactly one was expected."""


class FaceNotChosen(FaceledgerError):
    """The face chosen by its number is not in the image (numbers count from 1, the largest face first)."""


class NotFound(FaceledgerError):
    """A named gallery, subject, entry or file does not exist."""


class Gone(NotFound):
    """It existed and was deleted (by retention, after its review, or by an erasure); the message says which."""


class AlreadyExists(FaceledgerError):
    """Something with that name already exists."""


class PolicyViolation(FaceledgerError):
    """The request breaks an accountability rule (missing purpose, case reference, ...)."""


class MissingField(PolicyViolation):
    """A field every such request must state is missing or blank (purpose, case, reason, provenance, ...)."""


class InvalidText(PolicyViolation):
    """A text field holds characters that cannot be shown or read back (control or invisible characters),
    or is longer than its limit. Retype it in plain text."""


class CalibrationError(FaceledgerError):
    """A calibration file is missing, corrupt, or belongs to another model; rebuild it or delete it."""


class IndexMismatch(FaceledgerError):
    """The vector index does not belong to this store (other model or dimension)."""


class LedgerTampered(FaceledgerError):
    """The ledger's hash chain is broken: an entry was edited, removed or reordered."""


class AuthenticationFailed(FaceledgerError):
    """The token is missing, unknown or disabled."""


class PermissionDenied(FaceledgerError):
    """This user's role may not do this (the attempt is ledgered)."""


class Conflict(FaceledgerError):
    """The request conflicts with the current state (e.g. reviewing your own search)."""


class SchemaTooNew(FaceledgerError):
    """The data directory was written by a newer faceledger: its schema revision is unknown to this version.
    Install that version (or newer) to use it; faceledger never downgrades a store."""


class SchemaBehind(FaceledgerError):
    """The store's schema is older than this faceledger and automatic upgrades are off: back it up, then run
    `faceledger db upgrade`."""


class SchemaMismatch(FaceledgerError):
    """The database holds tables that are not a faceledger schema this version knows; nothing was changed."""


class SettingsError(FaceledgerError, ValueError):
    """A setting (a FACELEDGER_* environment variable or a Settings argument) has a value of the wrong type
    or out of its range; the message names each one and what it must be."""
