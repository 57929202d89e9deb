"""Network: a public-subnet VPC with free gateway endpoints, flow logs, and an HTTPS-egress-only security group."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks import constants as c
from stacks.config import Ec2OpsConfig


class Network(Construct):
    """Public subnets only: no NAT gateway or interface endpoint, so the network costs nothing while idle."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Ec2OpsConfig, log_bucket: s3.IBucket) -> None:
        super().__init__(scope, construct_id)
        self.vpc = self._build_vpc(config)
        self._build_flow_log(log_bucket)
        self.security_group = self._build_security_group()

    def _build_vpc(self, config: Ec2OpsConfig) -> ec2.Vpc:
        """Explicit AZs from config, so synth needs no account lookup and subnets land where capacity is."""
        return ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(c.VPC_CIDR),
            availability_zones=list(config.availability_zones),
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public",
                    subnet_type=ec2.SubnetType.PUBLIC,
                    cidr_mask=c.PUBLIC_SUBNET_MASK,
                    map_public_ip_on_launch=True,
                )
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDB": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.DYNAMODB),
            },
            # The restricting custom resource is a Lambda of its own; no instance uses the default group.
            restrict_default_security_group=False,
        )

    def _build_flow_log(self, log_bucket: s3.IBucket) -> None:
        """Flow logs go to S3 (no CloudWatch ingestion charge), expiring with the log bucket's lifecycle."""
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_s3(log_bucket, c.FLOW_LOG_PREFIX),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )

    def _build_security_group(self) -> ec2.SecurityGroup:
        """Instances only call AWS APIs and package mirrors over HTTPS; nothing may connect in."""
        group = ec2.SecurityGroup(
            self,
            "InstanceSecurityGroup",
            vpc=self.vpc,
            description="ec2ops instances: HTTPS egress only, no ingress",
            allow_all_outbound=False,
        )
        group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(c.HTTPS_PORT), "HTTPS to AWS APIs and mirrors")
        return group
