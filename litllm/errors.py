"""The exception types a user of litllm may catch. Standard library only: every module may import it."""

from __future__ import annotations


class UnknownModelError(KeyError):
    """A model name that is in no registry."""

    def __str__(self) -> str:  # KeyError quotes its message; show it as written
        return str(self.args[0])


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: missing, corrupt, or not matching its config."""


class HubError(RuntimeError):
    """The Hub could not be reached, or the repository is missing or gated."""


class RunDirectoryError(ValueError):
    """A run directory that would be overwritten, or a resume target that does not exist."""


class MissingDependencyError(ImportError):
    """An optional package a feature needs is not installed; the message says how to install it."""
