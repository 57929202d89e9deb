"""Monitoring: one CloudWatch dashboard (free within the first three), alarms only when `enable_alarms` opts in."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.config import Ec2OpsConfig

PERIOD = Duration.minutes(5)


class Monitoring(Construct):
    """What a platform engineer looks at first: executions per workflow and Lambda errors."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Ec2OpsConfig,
        state_machines: Mapping[str, sfn.StateMachine],
        functions: Mapping[str, lambda_.Function],
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dashboard = self._build_dashboard(config, state_machines, functions)
        self.alarms = self._build_alarms(state_machines, topic) if config.enable_alarms else []

    def _build_dashboard(
        self,
        config: Ec2OpsConfig,
        state_machines: Mapping[str, sfn.StateMachine],
        functions: Mapping[str, lambda_.Function],
    ) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=config.stack_name)
        for name, state_machine in state_machines.items():
            dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title=f"{name} executions",
                    left=[
                        state_machine.metric_started(period=PERIOD, label="started"),
                        state_machine.metric_succeeded(period=PERIOD, label="succeeded"),
                        state_machine.metric_failed(period=PERIOD, label="failed"),
                    ],
                    width=12,
                )
            )
        if functions:
            dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title="Lambda errors",
                    left=[
                        function.metric_errors(period=PERIOD, label=name, statistic="Sum")
                        for name, function in functions.items()
                    ],
                    width=12,
                )
            )
        return dashboard

    def _build_alarms(
        self, state_machines: Mapping[str, sfn.StateMachine], topic: sns.ITopic
    ) -> list[cloudwatch.Alarm]:
        """Each alarm bills monthly: one per workflow, on any failed execution, to the notification topic."""
        alarms = []
        for name, state_machine in state_machines.items():
            alarm = state_machine.metric_failed(period=PERIOD, statistic="Sum").create_alarm(
                self,
                f"{name}-failed",
                alarm_description=f"An execution of {name} failed: see its execution history in the console.",
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(cw_actions.SnsAction(topic))
            alarms.append(alarm)
        return alarms
