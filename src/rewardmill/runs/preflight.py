"""Checks made before any work: an input that cannot be read, an output or cache folder that cannot be written,
a cache file that is not a database, an extra that is not installed. Each fails in one line naming the path and
the problem, before a model loads, rather than after the scoring.

Writability is checked by creating (and removing) a file where the run will write, never with `os.access`,
which says yes to root even on a read-only file system.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path

from ..errors import InputError, OptionsError, RewardmillError
from ..rows.readers import DEFAULT_ENCODING, RowSource, read_rows


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_writable_folder(folder: str | Path, what: str) -> None:
    """`folder` takes new files, or can be created (the run creates it): else an InputError naming `what`."""
    folder = Path(folder).absolute()
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise InputError(f"{what}: cannot write in {folder}, since {existing} is a file, not a folder")
    try:
        handle, name = tempfile.mkstemp(prefix=".rewardmill-check-", dir=existing)
    except OSError as error:
        raise InputError(f"{what}: cannot write in {existing} ({error.strerror or error})") from None
    os.close(handle)
    os.unlink(name)


def check_output_file(output: str | Path) -> None:
    """The folder an output file (and its `OUTPUT.partial/`) goes in can be written."""
    output = Path(output)
    check_writable_folder(output.absolute().parent, f"output {output}")


def open_input(path: str | Path, split: str | None = None, encoding: str = DEFAULT_ENCODING) -> RowSource:
    """`readers.read_rows`, with a file that cannot be read (permissions, I/O errors, a damaged Parquet footer)
    as one line instead of a traceback."""
    try:
        return read_rows(path, split=split, encoding=encoding)
    except RewardmillError:
        raise
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error).splitlines()[0]
        raise InputError(f"input {path}: cannot be read ({reason})") from None


def check_score_cache(folder: str | Path) -> None:
    """`--cache` of a reward model: the folder writable, the cache and its weight digests readable."""
    from ..cache import score_cache
    from ..reward_models.weights import MEMO_NAME, DigestMemo

    check_writable_folder(folder, f"--cache {folder}")
    score_cache(folder).close()
    DigestMemo(Path(folder) / MEMO_NAME, required=True).close()


def check_answer_cache(folder: str | Path) -> None:
    """`--cache` of a judge: the folder writable, the cache readable."""
    from ..cache import answer_cache

    check_writable_folder(folder, f"--cache {folder}")
    answer_cache(folder).close()


def has_module(name: str) -> bool:
    """Whether `name` imports (an import, not a lookup, so a module that is present but broken counts as missing)."""
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def require_extra(module: str, extra: str, command: str) -> None:
    """An OptionsError saying how to install `extra` when `module` is missing."""
    if not has_module(module):
        raise OptionsError(f"{command} needs {module}, which is not installed: pip install 'rewardmill[{extra}]'")
