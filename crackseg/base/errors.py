"""Exceptions that reach the user as one line on stderr and exit status 2."""

from __future__ import annotations


class CracksegError(Exception):
    """A problem the user can fix (bad input, unknown name, missing file).

    The CLI prints ``crackseg: error: <message>`` and exits with status 2;
    no traceback. Messages name the culprit and say what to do.
    """

    exit_code = 2


class ConfigError(CracksegError):
    """Invalid configuration: unknown key, wrong type, bad ``--set`` value."""


class UnknownComponentError(CracksegError):
    """A component name (a backbone, labeler, dataset, ...) that no installed plugin registers."""


#: the 0.1 name of :class:`UnknownComponentError` (the same class)
UnknownPluginError = UnknownComponentError


class DataError(CracksegError):
    """Missing, unreadable, corrupt or inconsistent data."""


class StorageError(CracksegError):
    """A file crackseg cannot write: the disk is full, the quota is used up, the file system is read-only,
    or permission is denied. The message names the file (or folder) and says what to do.

    ``path`` is that file or folder (None when unknown), ``errno`` the operating system's error number.
    """

    def __init__(self, message: str, path: str | None = None, errno: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.errno = errno


class PluginError(CracksegError):
    """A plugin failed at run time: its code raised, or it returned what its contract forbids.

    The message names the plugin and its distribution; ``--traceback`` (or
    ``CRACKSEG_TRACEBACK=1``) also prints the plugin's traceback.
    """
