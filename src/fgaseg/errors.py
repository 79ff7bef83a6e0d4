"""Exception types users can catch. Every error a user can cause is one of these.

The CLI prints ``error: <message>`` (one line) for any ``FGASegError`` and exits non-zero,
so messages must be a single, self-explanatory line.
"""


class FGASegError(Exception):
    """Base class for all errors raised on bad user input."""


class ImageError(FGASegError):
    """An image could not be read or has an unusable size or mode."""


class ClassNamesError(FGASegError):
    """The class-name list is empty, blank, or otherwise unusable."""


class WeightsError(FGASegError):
    """A weights file is missing, corrupt, of an unknown format, or does not fit the model."""


class ConfigError(FGASegError):
    """A configuration file or option is invalid."""


class DatasetError(FGASegError):
    """A dataset folder is missing or malformed."""


def reason(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line (its type when the message is empty), for the
    ``... (reason)`` part of a one-line error: ``OSError`` alone does not say what went wrong."""
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.strerror and not text:
        text = exc.strerror
    return (text or type(exc).__name__)[:limit]
