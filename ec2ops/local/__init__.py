"""ec2ops.local: the embedded AWS (moto, in-process) that runs the synthesized app for the demo and the tests."""

from ec2ops.local.cloud import ExecutionResult, ExecutionStillRunning, LocalCloud

__all__ = ["ExecutionResult", "ExecutionStillRunning", "LocalCloud"]
