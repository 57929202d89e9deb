"""The ec2ops stack: composes the constructs and tags everything; each construct holds its own details."""

from __future__ import annotations

from aws_cdk import Environment, Stack, Tags
from constructs import Construct

from stacks import constants as c
from stacks.config import Ec2OpsConfig
from stacks.monitoring import Monitoring
from stacks.network import Network
from stacks.orchestration import Orchestration
from stacks.storage import Storage
from stacks.workflows.resize import ResizeWorkflow
from stacks.workflows.snapshot import SnapshotWorkflow
from stacks.workflows.spot_failover import SpotFailoverWorkflow
from stacks.workflows.training_run import TrainingRunWorkflow


class Ec2OpsStack(Stack):
    """One stack per environment, `ec2ops-<environment>`, with a region and no account: synth needs no credentials."""

    def __init__(self, scope: Construct, config: Ec2OpsConfig) -> None:
        super().__init__(
            scope,
            config.stack_name,
            stack_name=config.stack_name,
            env=Environment(region=config.region),
            description=f"ec2ops ({config.environment}): EC2 lifecycle workflows",
        )
        self.config = config
        self.storage = Storage(self, "Storage", config=config)
        self.network = Network(self, "Network", config=config, log_bucket=self.storage.log_bucket)
        self.orchestration = Orchestration(
            self, "Orchestration", config=config, ledger=self.storage.ledger, key=self.storage.key
        )
        self.snapshot = SnapshotWorkflow(
            self, "Snapshot", config=config, orchestration=self.orchestration, ledger=self.storage.ledger
        )
        self.resize = ResizeWorkflow(
            self,
            "Resize",
            config=config,
            orchestration=self.orchestration,
            ledger=self.storage.ledger,
            snapshot_state_machine=self.snapshot.state_machine,
        )
        self.spot_failover = SpotFailoverWorkflow(
            self, "SpotFailover", config=config, orchestration=self.orchestration, ledger=self.storage.ledger
        )
        self.training_run = TrainingRunWorkflow(
            self,
            "TrainingRun",
            config=config,
            orchestration=self.orchestration,
            ledger=self.storage.ledger,
            bucket=self.storage.bucket,
            vpc=self.network.vpc,
            security_group=self.network.security_group,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            state_machines={
                c.SNAPSHOT_STATE_MACHINE: self.snapshot.state_machine,
                c.RESIZE_STATE_MACHINE: self.resize.state_machine,
                c.SPOT_STATE_MACHINE: self.spot_failover.state_machine,
                c.TRAINING_STATE_MACHINE: self.training_run.state_machine,
            },
            functions={
                **{c.snapshot_function_name(short): fn for short, fn in self.snapshot.functions.items()},
                **{c.resize_function_name(short): fn for short, fn in self.resize.functions.items()},
                **{c.spot_function_name(short): fn for short, fn in self.spot_failover.functions.items()},
                **{c.training_function_name(short): fn for short, fn in self.training_run.functions.items()},
            },
            topic=self.orchestration.topic,
        )
        Tags.of(self).add(c.TAG_APP, c.APP_NAME)
        Tags.of(self).add(c.TAG_ENVIRONMENT, config.environment)
