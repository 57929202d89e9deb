"""Named failures: the state machines retry or catch them by class name (the Lambda errorType)."""

from __future__ import annotations


class Ec2OpsError(Exception):
    """Base of the errors a workflow reports to its user; the message says what is wrong and what to do."""


class InvalidInput(Ec2OpsError):
    """The execution input is malformed: nothing was touched."""


class InstanceNotFound(Ec2OpsError):
    """The instance does not exist (or is terminated): nothing was touched."""


class NotManaged(Ec2OpsError):
    """The instance lacks ec2ops:managed=true: ec2ops only acts on instances that opted in."""


class NoVolumes(Ec2OpsError):
    """There is no EBS volume to snapshot (none attached, or exclude_boot left none)."""


class SnapshotFailed(Ec2OpsError):
    """A snapshot of the set ended in error or vanished: the set is incomplete."""


class SnapshotTimeout(Ec2OpsError):
    """The set did not complete before the plan's deadline."""


class LedgerConflict(Ec2OpsError):
    """A ledger item with the same key, written by another execution, already exists."""


class ConfigurationError(Ec2OpsError):
    """The function's environment is wrong: a deployment problem, not a user one."""
