"""One exception hierarchy; each class carries its CLI exit code (docs/guarantees.md D10)."""

from __future__ import annotations


class GigQError(Exception):
    """GigQ failed."""

    #: The process exit code the CLI uses for this error.
    exit_code: int = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or "GigQ failed.").strip())

    def __str__(self) -> str:
        # KeyError's __str__ would quote the message; users should see a sentence.
        return str(self.args[0]) if self.args else ""


# -- user errors (exit 1) -----------------------------------------------------------------


class UserError(GigQError):
    """The request cannot be carried out as given."""

    exit_code = 1


class InvalidJobError(UserError, ValueError):
    """The job definition is invalid."""


class JobNotFoundError(UserError, KeyError):
    """No job has that id."""


class DatabaseNotFoundError(UserError):
    """The database does not exist."""


class AmbiguousIdError(UserError):
    """That id prefix matches more than one job."""


class DependencyError(UserError):
    """The job's dependencies are invalid."""


class UnknownDependencyError(DependencyError):
    """A dependency names a job that does not exist."""


class DependencyCycleError(DependencyError):
    """The dependencies form a cycle."""


class SerializationError(UserError, ValueError):
    """The value cannot be serialized."""


# -- policy and configuration (exit 78) ----------------------------------------------------


class ConfigError(GigQError):
    """The configuration is invalid."""

    exit_code = 78


class DisallowedFunctionError(ConfigError):
    """That function may not be run by a worker."""


class PluginError(ConfigError):
    """A plugin failed."""


# -- storage -------------------------------------------------------------------------------


class StorageError(GigQError):
    """The storage failed."""

    exit_code = 74


class NotADatabaseError(StorageError):
    """The file is not a GigQ database."""

    exit_code = 65


class CorruptDatabaseError(StorageError):
    """The database is corrupt."""

    exit_code = 65


class UnreadableJobError(CorruptDatabaseError):
    """A stored job cannot be read."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"job '{job_id}' cannot be read: {reason}; fix or delete its row")
        #: The id of the job whose row is bad.
        self.job_id = job_id
        #: What is wrong with it, e.g. "created_at is 1e+300, not a time".
        self.reason = reason


class SchemaVersionError(StorageError):
    """The database was written by a newer GigQ; upgrade GigQ to use it."""

    exit_code = 65


class StorageUnavailableError(StorageError):
    """The storage cannot be reached."""

    exit_code = 69


class StorageIOError(StorageError):
    """The storage reported an I/O error."""

    exit_code = 74


class DiskFullError(StorageIOError):
    """The disk is full."""


class BusyError(StorageError):
    """The database stayed locked past the deadline."""

    exit_code = 75


class WorkersLiveError(StorageError):
    """Workers are using the database; stop them first."""

    # EX_TEMPFAIL, like BusyError: the database is in use; retry once the workers stopped.
    exit_code = 75


class ReadOnlyError(StorageError):
    """The database is read-only."""

    exit_code = 77


class PermissionDeniedError(StorageError):
    """Permission denied."""

    exit_code = 77


# -- job outcomes ----------------------------------------------------------------------------


class Abort(Exception):
    """Raised by job code to fail the job at once, without retry."""


__all__ = [
    "Abort",
    "AmbiguousIdError",
    "BusyError",
    "ConfigError",
    "CorruptDatabaseError",
    "DatabaseNotFoundError",
    "DependencyCycleError",
    "DependencyError",
    "DisallowedFunctionError",
    "DiskFullError",
    "GigQError",
    "InvalidJobError",
    "JobNotFoundError",
    "NotADatabaseError",
    "PermissionDeniedError",
    "PluginError",
    "ReadOnlyError",
    "SchemaVersionError",
    "SerializationError",
    "StorageError",
    "StorageIOError",
    "StorageUnavailableError",
    "UnknownDependencyError",
    "UnreadableJobError",
    "UserError",
    "WorkersLiveError",
]
