"""Moodscape's domain errors: one hierarchy, mapped to HTTP once (``serving/errors.py``) and to
exit codes once (the command line). Raise these, never bare ``ValueError``/``LookupError``, for
anything a caller can get wrong or a deployment can lack.
"""


class MoodscapeError(Exception):
    """Base of every domain error."""


class InvalidInputError(MoodscapeError, ValueError):
    """Caller input that cannot be served; ``field`` names it (``top_k``, ``requests[3].seed_track_ids``)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class UnknownTrackError(MoodscapeError, LookupError):
    """A track id (a seed or the ``similar`` subject) that the served version does not hold."""

    def __init__(self, track_id: str, *, field: str) -> None:
        super().__init__(f"unknown track id {track_id!r} in {field}")
        self.track_id = track_id
        self.field = field


class ConflictError(MoodscapeError):
    """The request is valid but the service's state forbids it (e.g. reloading a fixed bundle)."""


class UnavailableError(MoodscapeError):
    """Nothing usable to serve right now (no published version, a failed reload)."""


class IngestError(MoodscapeError):
    """The crawl file cannot be read at all (missing, unknown format, corrupt, no crawl columns)."""


class EvaluationInputError(MoodscapeError, ValueError):
    """A CORPUS, LABELS or QUERIES file is malformed (the message names the file, row and column)."""
