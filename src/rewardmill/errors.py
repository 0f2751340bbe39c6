"""rewardmill's own exceptions. Front ends (the CLI, later the server) report these as one clear line and let
anything else propagate, so a library bug is never disguised as a user error."""

from __future__ import annotations


class RewardmillError(Exception):
    """Base of every error rewardmill raises on purpose, with a message meant for the user."""


class OptionsError(RewardmillError, ValueError):
    """An option has a value rewardmill cannot use, or does not apply to the chosen scorer."""


class RowError(RewardmillError, ValueError):
    """A row (or one item of it) cannot be scored; `reason` says why, without the row number."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class InputError(RewardmillError, ValueError):
    """An input or output file cannot be used: missing, unreadable, of an unknown or mismatched format."""


class InputDamaged(InputError):
    """A compressed input that cannot be read past some point. `lines` lines were read before it, whose bytes
    (decompressed) have the SHA-256 `sha256`: a repaired file must start with the same ones to resume.
    `sound_before`: whether those lines can be trusted (a file that breaks off: yes; a corrupt one, found by a
    checksum or an invalid code: no, since what was decompressed before the check may already be wrong)."""

    def __init__(self, message: str, lines: int, sha256: str, sound_before: bool = True):
        super().__init__(message)
        self.lines = lines
        self.sha256 = sha256
        self.sound_before = sound_before
