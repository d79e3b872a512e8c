"""Named exceptions shared across tunespace, so callers can catch what went wrong by kind."""

from __future__ import annotations


class TunespaceError(Exception):
    """Base class of every error tunespace raises on purpose."""


class DataValidationError(TunespaceError, ValueError):
    """A data file breaks the data model; the message names the file, row and column."""

    def __init__(self, source: str, message: str, row: int | None = None, column: str | None = None):
        self.source = source
        self.row = row
        self.column = column
        self.reason = message
        where = [source]
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f'column "{column}"')
        super().__init__(f"{', '.join(where)}: {message}")


class UnknownIdError(TunespaceError, KeyError):
    """An id is not in the id <-> index map it was looked up in."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class SplitError(TunespaceError, ValueError):
    """The temporal protocol cannot be applied as asked (empty window, bad dates, bad ratio)."""


class NotFittedError(TunespaceError, RuntimeError):
    """A recommender was asked to score before `fit` or `load`."""


class DatasetNotFoundError(TunespaceError, FileNotFoundError):
    """A dataset's files are not where the loader was told to look."""


class ModelConfigError(TunespaceError, ValueError):
    """A recommender was given options or inputs it cannot train with (a content model without embeddings)."""


class MissingExtraError(TunespaceError, ImportError):
    """A command needs an optional dependency group (a pip extra) that is not installed; the message names it."""


class IncompleteExtractionError(DataValidationError):
    """An embedding folder from `tunespace embed` lacks shards its manifest promises: the run did not finish."""


class EvaluationFolderError(TunespaceError, FileNotFoundError):
    """A folder passed as an evaluation's output was not written by the command that writes such folders."""
