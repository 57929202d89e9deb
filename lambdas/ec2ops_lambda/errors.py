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


# --- resize ------------------------------------------------------------------------------------------------
class UnsupportedInstance(Ec2OpsError):
    """The instance cannot be resized in place (Auto Scaling member, instance-store root, spot): nothing touched."""


class StopProtected(Ec2OpsError):
    """The instance has stop protection (disableApiStop): nothing was touched."""


class InvalidInstanceState(Ec2OpsError):
    """The instance is in a transitional or final state (pending, stopping, shutting-down, terminated)."""


class UnknownInstanceType(Ec2OpsError):
    """EC2 does not know the target or a fallback type."""


class TypeNotOffered(Ec2OpsError):
    """The target or a fallback type is not offered in the instance's Availability Zone."""


class IncompatibleType(Ec2OpsError):
    """The target or a fallback type differs in architecture, virtualization, boot mode, ENA or ENI count."""


class InstanceLocked(Ec2OpsError):
    """Another ec2ops execution holds the instance's lock: named in the message."""


class CapacityUnavailable(Ec2OpsError):
    """No candidate type could be reserved or started for lack of capacity."""


# --- spot failover -----------------------------------------------------------------------------------------
class NoStandby(Ec2OpsError):
    """A manual `promote` found no prepared standby for the instance: nothing was changed."""


class ReplacementFailed(Ec2OpsError):
    """No pool, spot or on-demand, gave a running replacement before the deadline; every attempt is listed."""


class PromotionFailed(Ec2OpsError):
    """The replacement runs but the Elastic IP or role tags could not be moved to it; the message says what is where."""


# --- training runs -----------------------------------------------------------------------------------------
class RunActive(Ec2OpsError):
    """A run is already active in the env (its state file exists): named in the message; nothing was launched."""


class TrainingLaunchFailed(Ec2OpsError):
    """No subnet could launch the training instance; every attempt is listed. The run was cleaned up."""
