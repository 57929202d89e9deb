"""Deploys a synthesized CDK cloud assembly (cdk.out) into moto, resource by resource.

moto's CloudFormation puts state machines where they cannot run, skips several types and cannot resolve the
CDK bootstrap parameters, so ec2ops.local deploys the template itself: it resolves the intrinsic functions,
creates each resource it knows through the moto API in dependency order, and records what it passed over.
What runs is what was synthesized: the state machine definitions, function settings, rule patterns and targets
come from the template, never from a copy.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT_ID = "123456789012"
_NO_VALUE = object()


class AssemblyError(Exception):
    """The cloud assembly is missing, stale or uses something the emulator cannot deploy."""


@dataclass
class Deployment:
    """What a stack became in the emulator: physical ids by logical id, and handy lookups."""

    stack_name: str
    template: dict[str, Any]
    physical: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # logical id -> resource type
    state_machines: dict[str, str] = field(default_factory=dict)  # name -> arn
    functions: dict[str, str] = field(default_factory=dict)  # name -> arn
    function_environments: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> resolved variables
    function_roles: dict[str, str] = field(default_factory=dict)  # function name -> role logical id
    buckets: dict[str, str] = field(default_factory=dict)  # logical id -> name
    tables: dict[str, str] = field(default_factory=dict)
    topics: dict[str, str] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)
    subnets: dict[str, str] = field(default_factory=dict)  # subnet id -> AZ
    vpc_id: str | None = None
    security_groups: list[str] = field(default_factory=list)

    def function_environment(self, name: str) -> dict[str, str]:
        """A deployed function's environment variables, resolved (what its handler reads)."""
        if name not in self.function_environments:
            raise LookupError(f"no function {name!r}; deployed: {sorted(self.function_environments)}")
        return dict(self.function_environments[name])

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical: resource
            for logical, resource in self.template.get("Resources", {}).items()
            if resource.get("Type") == resource_type
        }


def read_assembly(cdk_out: Path) -> list[tuple[str, dict[str, Any], Path]]:
    """The stacks of a cloud assembly: (stack name, template, template path)."""
    manifest_path = cdk_out / "manifest.json"
    if not manifest_path.exists():
        raise AssemblyError(f"no cloud assembly at {cdk_out}: run `make synth` first")
    manifest = json.loads(manifest_path.read_text())
    stacks = []
    for artifact in manifest.get("artifacts", {}).values():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        template_path = cdk_out / artifact["properties"]["templateFile"]
        name = artifact.get("properties", {}).get("stackName") or artifact.get("displayName")
        stacks.append((name, json.loads(template_path.read_text()), template_path))
    if not stacks:
        raise AssemblyError(f"the cloud assembly at {cdk_out} has no stack")
    return stacks


def check_lambda_asset_is_current(cdk_out: Path, template: dict[str, Any], source: Path) -> None:
    """The handlers run from `source`; refuse when the synthesized asset holds other code (stale cdk.out)."""
    checked: set[Path] = set()
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        s3_key = resource.get("Properties", {}).get("Code", {}).get("S3Key")
        asset_path = resource.get("Metadata", {}).get("aws:asset:path") or (
            f"asset.{s3_key.removesuffix('.zip')}" if isinstance(s3_key, str) else None
        )
        asset = cdk_out / asset_path if asset_path else None
        if asset is None or asset in checked or not asset.is_dir():
            continue
        checked.add(asset)
        if _tree_digest(asset) != _tree_digest(source):
            raise AssemblyError(
                f"cdk.out is stale: its Lambda asset {asset_path} differs from {source}; run `make synth`"
            )


def _tree_digest(root: Path) -> str:
    """Python files and shell scripts of a tree, symlinks followed as the asset copy follows them."""
    digest = hashlib.sha256()
    found = [
        Path(directory) / name
        for directory, _dirs, names in os.walk(root, followlinks=True)
        for name in names
        if name.endswith((".py", ".sh"))
    ]
    for path in sorted(found):
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class Resolver:
    """Resolves CloudFormation intrinsic functions against what has been deployed so far."""

    def __init__(self, deployment: Deployment, region: str, azs: list[str]) -> None:
        self.deployment = deployment
        self.region = region
        self.azs = azs
        self.parameters = {
            name: spec.get("Default") for name, spec in deployment.template.get("Parameters", {}).items()
        }
        self.conditions: dict[str, bool] = {}

    def pseudo(self, name: str) -> Any:
        return {
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Region": self.region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.deployment.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT_ID}:stack/"
            f"{self.deployment.stack_name}/local",
            "AWS::NoValue": _NO_VALUE,
        }[name]

    def ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            return self.parameters[name]
        if name in self.deployment.physical:
            return self.deployment.physical[name]
        raise AssemblyError(f"Ref to {name}, which is not deployed (yet)")

    def get_att(self, logical: str, attribute: str) -> Any:
        attributes = self.deployment.attributes.get(logical, {})
        if attribute in attributes:
            return attributes[attribute]
        raise AssemblyError(f"Fn::GetAtt {logical}.{attribute} is not known to the emulator")

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.deployment.template["Conditions"][name]))
        return self.conditions[name]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical, attribute)
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(part) for part in self.resolve(parts))
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = arg
                return str(self.resolve(text)).split(separator)
            if key == "Fn::GetAZs":
                return list(self.azs)
            if key == "Fn::Base64":
                return base64.b64encode(str(self.resolve(arg)).encode()).decode()
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self.resolve(when_true if self.condition(name) else when_false)
            if key == "Fn::Equals":
                left, right = self.resolve(arg)
                return left == right
            if key == "Fn::Not":
                return not self.resolve(arg)[0]
            if key == "Fn::And":
                return all(self.resolve(arg))
            if key == "Fn::Or":
                return any(self.resolve(arg))
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::FindInMap":
                mapping, first, second = self.resolve(arg)
                return self.deployment.template["Mappings"][mapping][first][second]
            if key.startswith("Fn::"):
                raise AssemblyError(f"the emulator does not resolve {key}")
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name:
                logical, attribute = name.split(".", 1)
                return str(self.get_att(logical, attribute))
            return str(self.ref(name))

        return re.sub(r"\$\{([^!}][^}]*)\}", replace, text)


def dependency_order(resources: dict[str, Any]) -> list[str]:
    """Logical ids sorted so that every resource comes after what it references."""

    def references(value: Any) -> set[str]:
        found: set[str] = set()
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "Ref" and isinstance(item, str):
                    found.add(item)
                elif key == "Fn::GetAtt":
                    found.add(item[0] if isinstance(item, list) else item.split(".")[0])
                elif key == "Fn::Sub":
                    text = item if isinstance(item, str) else item[0]
                    found.update(name.split(".")[0] for name in re.findall(r"\$\{([^!}][^}]*)\}", text))
                    if not isinstance(item, str):
                        found |= references(item[1])
                else:
                    found |= references(item)
        elif isinstance(value, list):
            for item in value:
                found |= references(item)
        return found

    graph: dict[str, set[str]] = {}
    for logical, resource in resources.items():
        depends = resource.get("DependsOn", [])
        depends = [depends] if isinstance(depends, str) else depends
        refs = references(resource.get("Properties", {})) | set(depends)
        graph[logical] = {ref for ref in refs if ref in resources and ref != logical}
    ordered: list[str] = []
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        if node in done:
            return
        if node in path:
            raise AssemblyError(f"circular reference: {' -> '.join((*path, node))}")
        for dependency in sorted(graph[node]):
            visit(dependency, (*path, node))
        done.add(node)
        ordered.append(node)

    for node in sorted(graph):
        visit(node, ())
    return ordered


def physical_name(stack: str, logical: str, *, max_length: int = 64, lower: bool = False) -> str:
    """A CloudFormation-style generated name: <stack>-<logical>-<SUFFIX>."""
    suffix = hashlib.sha1(f"{stack}/{logical}".encode()).hexdigest()[:12].upper()
    name = f"{stack}-{logical}"[: max_length - len(suffix) - 1] + f"-{suffix}"
    return name.lower() if lower else name


def placeholder_zip() -> bytes:
    """A tiny zip for moto's create_function; the handler itself runs from the Lambda asset in-process."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "ec2ops.local runs this function's handler in-process\n")
    return buffer.getvalue()


Creator = Callable[["AssemblyDeployer", str, dict[str, Any]], None]


class AssemblyDeployer:
    """Creates the resources of one template in moto through boto3 clients bound to the emulator."""

    def __init__(self, clients: Callable[[str], Any], region: str, azs: list[str]) -> None:
        self.client = clients
        self.region = region
        self.azs = azs

    def deploy(self, stack_name: str, template: dict[str, Any]) -> Deployment:
        deployment = Deployment(stack_name, template)
        resolver = Resolver(deployment, self.region, self.azs)
        resources = template.get("Resources", {})
        for logical in dependency_order(resources):
            resource = resources[logical]
            if "Condition" in resource and not resolver.condition(resource["Condition"]):
                continue
            creator = _CREATORS.get(resource["Type"])
            if creator is None:
                deployment.skipped[logical] = resource["Type"]
                deployment.physical[logical] = logical
                continue
            properties = resolver.resolve(resource.get("Properties", {}))
            self._deployment, self._resolver = deployment, resolver
            creator(self, logical, properties)
        return deployment

    # Each creator records the physical id (what Ref returns) and the attributes GetAtt may ask for.
    def _record(self, logical: str, physical: str, **attributes: Any) -> None:
        self._deployment.physical[logical] = physical
        self._deployment.attributes[logical] = attributes

    @property
    def stack(self) -> str:
        return self._deployment.stack_name

    def _arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if region else ''}:{ACCOUNT_ID if account else ''}:{resource}"

    # --- network ------------------------------------------------------------------------------------------
    def vpc(self, logical: str, props: dict[str, Any]) -> None:
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock=props["CidrBlock"])["Vpc"]
        vpc_id = vpc["VpcId"]
        for attribute in ("EnableDnsHostnames", "EnableDnsSupport"):
            if attribute in props:
                ec2.modify_vpc_attribute(VpcId=vpc_id, **{attribute: {"Value": bool(props[attribute])}})
        self._tag(vpc_id, props)
        self._deployment.vpc_id = self._deployment.vpc_id or vpc_id
        groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"]
        self._record(
            logical,
            vpc_id,
            CidrBlock=props["CidrBlock"],
            VpcId=vpc_id,
            DefaultSecurityGroup=groups[0]["GroupId"] if groups else None,
        )

    def subnet(self, logical: str, props: dict[str, Any]) -> None:
        subnet = self.client("ec2").create_subnet(
            VpcId=props["VpcId"],
            CidrBlock=props["CidrBlock"],
            AvailabilityZone=props["AvailabilityZone"],
        )["Subnet"]
        if props.get("MapPublicIpOnLaunch"):
            self.client("ec2").modify_subnet_attribute(SubnetId=subnet["SubnetId"], MapPublicIpOnLaunch={"Value": True})
        self._tag(subnet["SubnetId"], props)
        self._deployment.subnets[subnet["SubnetId"]] = props["AvailabilityZone"]
        self._record(
            logical,
            subnet["SubnetId"],
            SubnetId=subnet["SubnetId"],
            AvailabilityZone=props["AvailabilityZone"],
        )

    def internet_gateway(self, logical: str, props: dict[str, Any]) -> None:
        gateway = self.client("ec2").create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        self._record(logical, gateway, InternetGatewayId=gateway)

    def gateway_attachment(self, logical: str, props: dict[str, Any]) -> None:
        self.client("ec2").attach_internet_gateway(InternetGatewayId=props["InternetGatewayId"], VpcId=props["VpcId"])
        self._record(logical, f"{props['InternetGatewayId']}|{props['VpcId']}")

    def route_table(self, logical: str, props: dict[str, Any]) -> None:
        table = self.client("ec2").create_route_table(VpcId=props["VpcId"])["RouteTable"]["RouteTableId"]
        self._record(logical, table, RouteTableId=table)

    def route_table_association(self, logical: str, props: dict[str, Any]) -> None:
        association = self.client("ec2").associate_route_table(
            RouteTableId=props["RouteTableId"], SubnetId=props["SubnetId"]
        )["AssociationId"]
        self._record(logical, association)

    def route(self, logical: str, props: dict[str, Any]) -> None:
        kwargs = {k: v for k, v in props.items() if k in ("DestinationCidrBlock", "GatewayId", "RouteTableId")}
        self.client("ec2").create_route(**kwargs)
        self._record(logical, f"{props['RouteTableId']}|{props.get('DestinationCidrBlock')}")

    def vpc_endpoint(self, logical: str, props: dict[str, Any]) -> None:
        endpoint = self.client("ec2").create_vpc_endpoint(
            VpcId=props["VpcId"],
            ServiceName=props["ServiceName"],
            VpcEndpointType=props.get("VpcEndpointType", "Gateway"),
            RouteTableIds=props.get("RouteTableIds", []),
        )["VpcEndpoint"]["VpcEndpointId"]
        self._record(logical, endpoint, Id=endpoint)

    def security_group(self, logical: str, props: dict[str, Any]) -> None:
        ec2 = self.client("ec2")
        name = props.get("GroupName") or physical_name(self.stack, logical, max_length=255)
        group = ec2.create_security_group(
            GroupName=name,
            Description=props.get("GroupDescription", name),
            VpcId=props.get("VpcId"),
        )["GroupId"]
        if "SecurityGroupEgress" in props:
            # CloudFormation replaces the default allow-all egress with the template's rules.
            ec2.revoke_security_group_egress(
                GroupId=group, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
            )
        for rule in props.get("SecurityGroupEgress", []):
            permission: dict[str, Any] = {"IpProtocol": str(rule["IpProtocol"])}
            if "FromPort" in rule:
                permission |= {"FromPort": int(rule["FromPort"]), "ToPort": int(rule["ToPort"])}
            if "CidrIp" in rule:
                permission["IpRanges"] = [{"CidrIp": rule["CidrIp"], "Description": rule.get("Description", "")}]
            ec2.authorize_security_group_egress(GroupId=group, IpPermissions=[permission])
        self._tag(group, props)
        self._deployment.security_groups.append(group)
        self._record(logical, group, GroupId=group, VpcId=props.get("VpcId"))

    def flow_log(self, logical: str, props: dict[str, Any]) -> None:
        kwargs: dict[str, Any] = {
            "ResourceIds": [props["ResourceId"]],
            "ResourceType": props["ResourceType"],
            "TrafficType": props.get("TrafficType", "ALL"),
            "LogDestinationType": props.get("LogDestinationType", "cloud-watch-logs"),
        }
        if "LogDestination" in props:
            kwargs["LogDestination"] = props["LogDestination"]
        if "LogGroupName" in props:
            kwargs["LogGroupName"] = props["LogGroupName"]
        if "DeliverLogsPermissionArn" in props:
            kwargs["DeliverLogsPermissionArn"] = props["DeliverLogsPermissionArn"]
        ids = self.client("ec2").create_flow_logs(**kwargs).get("FlowLogIds", [])
        self._record(logical, ids[0] if ids else logical)

    def _tag(self, resource_id: str, props: dict[str, Any]) -> None:
        tags = props.get("Tags") or []
        if tags:
            self.client("ec2").create_tags(
                Resources=[resource_id], Tags=[{"Key": t["Key"], "Value": str(t["Value"])} for t in tags]
            )

    # --- storage ------------------------------------------------------------------------------------------
    def bucket(self, logical: str, props: dict[str, Any]) -> None:
        s3 = self.client("s3")
        name = props.get("BucketName") or physical_name(self.stack, logical, max_length=63, lower=True)
        s3.create_bucket(Bucket=name)
        if props.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if props.get("Tags"):
            s3.put_bucket_tagging(
                Bucket=name,
                Tagging={"TagSet": [{"Key": t["Key"], "Value": str(t["Value"])} for t in props["Tags"]]},
            )
        self._deployment.buckets[logical] = name
        self._record(
            logical,
            name,
            Arn=f"arn:aws:s3:::{name}",
            DomainName=f"{name}.s3.amazonaws.com",
            RegionalDomainName=f"{name}.s3.{self.region}.amazonaws.com",
        )

    def table(self, logical: str, props: dict[str, Any]) -> None:
        dynamodb = self.client("dynamodb")
        name = props.get("TableName") or physical_name(self.stack, logical, max_length=255)
        kwargs: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        if kwargs["BillingMode"] == "PROVISIONED":
            kwargs["ProvisionedThroughput"] = props.get(
                "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
            )
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "StreamSpecification"):
            if key in props:
                kwargs[key] = props[key]
        description = dynamodb.create_table(**kwargs)["TableDescription"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={
                    "Enabled": True,
                    "AttributeName": ttl["AttributeName"],
                },
            )
        if props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
            dynamodb.update_continuous_backups(
                TableName=name,
                PointInTimeRecoverySpecification={
                    "PointInTimeRecoveryEnabled": True,
                },
            )
        self._deployment.tables[logical] = name
        self._record(logical, name, Arn=description["TableArn"], StreamArn=description.get("LatestStreamArn"))

    def log_group(self, logical: str, props: dict[str, Any]) -> None:
        name = props.get("LogGroupName") or physical_name(self.stack, logical, max_length=512)
        logs = self.client("logs")
        logs.create_log_group(logGroupName=name)
        if "RetentionInDays" in props:
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
        self._record(logical, name, Arn=self._arn("logs", f"log-group:{name}:*"))

    # --- messaging and identity -----------------------------------------------------------------------------
    def topic(self, logical: str, props: dict[str, Any]) -> None:
        name = props.get("TopicName") or physical_name(self.stack, logical, max_length=256)
        arn = self.client("sns").create_topic(Name=name)["TopicArn"]
        self._deployment.topics[logical] = arn
        self._record(logical, arn, TopicArn=arn, TopicName=name)

    def role(self, logical: str, props: dict[str, Any]) -> None:
        iam = self.client("iam")
        name = props.get("RoleName") or physical_name(self.stack, logical)
        role = iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]),
            Path=props.get("Path", "/"),
        )["Role"]
        for policy in props.get("Policies", []):
            iam.put_role_policy(
                RoleName=name,
                PolicyName=policy["PolicyName"],
                PolicyDocument=json.dumps(policy["PolicyDocument"]),
            )
        self._record(logical, name, Arn=role["Arn"], RoleId=role["RoleId"])

    def policy(self, logical: str, props: dict[str, Any]) -> None:
        iam = self.client("iam")
        for role in props.get("Roles", []):
            iam.put_role_policy(
                RoleName=role,
                PolicyName=props["PolicyName"],
                PolicyDocument=json.dumps(props["PolicyDocument"]),
            )
        self._record(logical, props["PolicyName"])

    def instance_profile(self, logical: str, props: dict[str, Any]) -> None:
        iam = self.client("iam")
        name = props.get("InstanceProfileName") or physical_name(self.stack, logical, max_length=128)
        profile = iam.create_instance_profile(InstanceProfileName=name, Path=props.get("Path", "/"))
        for role in props.get("Roles", []):
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)
        self._record(logical, name, Arn=profile["InstanceProfile"]["Arn"])

    # --- compute and orchestration ----------------------------------------------------------------------------
    def function(self, logical: str, props: dict[str, Any]) -> None:
        name = props.get("FunctionName") or physical_name(self.stack, logical)
        variables = {k: str(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()}
        response = self.client("lambda").create_function(
            FunctionName=name,
            Runtime=props.get("Runtime", "python3.13"),
            Role=props["Role"],
            Handler=props["Handler"],
            Code={"ZipFile": placeholder_zip()},
            Timeout=int(props.get("Timeout", 3)),
            MemorySize=int(props.get("MemorySize", 128)),
            Environment={"Variables": variables},
        )
        self._deployment.function_environments[name] = variables
        self._deployment.functions[name] = response["FunctionArn"]
        role_ref = self._deployment.template["Resources"][logical]["Properties"]["Role"]
        if isinstance(role_ref, dict) and "Fn::GetAtt" in role_ref:
            self._deployment.function_roles[name] = role_ref["Fn::GetAtt"][0]
        self._record(logical, name, Arn=response["FunctionArn"])

    def state_machine(self, logical: str, props: dict[str, Any]) -> None:
        name = props.get("StateMachineName") or physical_name(self.stack, logical, max_length=80)
        definition = props.get("DefinitionString")
        if definition is None and "Definition" in props:
            definition = json.dumps(props["Definition"])
        if definition is None:
            raise AssemblyError(f"state machine {logical} has no definition")
        for key, value in props.get("DefinitionSubstitutions", {}).items():
            definition = definition.replace("${" + key + "}", str(value))
        arn = self.client("stepfunctions").create_state_machine(
            name=name,
            definition=definition,
            roleArn=props["RoleArn"],
            type=props.get("StateMachineType", "STANDARD"),
        )["stateMachineArn"]
        self._deployment.state_machines[name] = arn
        self._record(logical, arn, Arn=arn, Name=name)

    def rule(self, logical: str, props: dict[str, Any]) -> None:
        events = self.client("events")
        name = props.get("Name") or physical_name(self.stack, logical)
        kwargs: dict[str, Any] = {"Name": name, "State": props.get("State", "ENABLED")}
        if "EventPattern" in props:
            pattern = props["EventPattern"]
            kwargs["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
        if "ScheduleExpression" in props:
            kwargs["ScheduleExpression"] = props["ScheduleExpression"]
        if "EventBusName" in props:
            kwargs["EventBusName"] = props["EventBusName"]
        arn = events.put_rule(**kwargs)["RuleArn"]
        targets = []
        for target in props.get("Targets", []):
            entry = {
                k: v
                for k, v in target.items()
                if k in ("Id", "Arn", "RoleArn", "Input", "InputPath", "InputTransformer")
            }
            transformer = entry.get("InputTransformer")
            if transformer and not isinstance(transformer.get("InputTemplate", ""), str):
                transformer["InputTemplate"] = json.dumps(transformer["InputTemplate"])
            targets.append(entry)
        if targets:
            events.put_targets(Rule=name, EventBusName=props.get("EventBusName", "default"), Targets=targets)
        self._deployment.rules[logical] = name
        self._record(logical, name, Arn=arn)

    def dashboard(self, logical: str, props: dict[str, Any]) -> None:
        name = props.get("DashboardName") or physical_name(self.stack, logical, max_length=255)
        self.client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=props["DashboardBody"])
        self._record(logical, name)

    def alarm(self, logical: str, props: dict[str, Any]) -> None:
        name = props.get("AlarmName") or physical_name(self.stack, logical, max_length=255)
        keys = (
            "MetricName",
            "Namespace",
            "Statistic",
            "Period",
            "EvaluationPeriods",
            "Threshold",
            "ComparisonOperator",
            "AlarmActions",
            "Dimensions",
            "TreatMissingData",
            "DatapointsToAlarm",
        )
        kwargs = {key: props[key] for key in keys if key in props}
        for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
            if key in kwargs:
                kwargs[key] = int(kwargs[key])
        if "Threshold" in kwargs:
            kwargs["Threshold"] = float(kwargs["Threshold"])
        self.client("cloudwatch").put_metric_alarm(AlarmName=name, **kwargs)
        self._record(logical, name, Arn=self._arn("cloudwatch", f"alarm:{name}"))

    def kms_key(self, logical: str, props: dict[str, Any]) -> None:
        key = self.client("kms").create_key(Description=props.get("Description", logical))["KeyMetadata"]
        self._record(logical, key["KeyId"], Arn=key["Arn"], KeyId=key["KeyId"])

    def ssm_parameter(self, logical: str, props: dict[str, Any]) -> None:
        name = props.get("Name") or f"/{self.stack}/{logical}"
        self.client("ssm").put_parameter(
            Name=name, Value=str(props["Value"]), Type=props.get("Type", "String"), Overwrite=True
        )
        self._record(logical, name, Type=props.get("Type", "String"), Value=props["Value"])


_CREATORS: dict[str, Creator] = {
    "AWS::EC2::VPC": AssemblyDeployer.vpc,
    "AWS::EC2::Subnet": AssemblyDeployer.subnet,
    "AWS::EC2::InternetGateway": AssemblyDeployer.internet_gateway,
    "AWS::EC2::VPCGatewayAttachment": AssemblyDeployer.gateway_attachment,
    "AWS::EC2::RouteTable": AssemblyDeployer.route_table,
    "AWS::EC2::SubnetRouteTableAssociation": AssemblyDeployer.route_table_association,
    "AWS::EC2::Route": AssemblyDeployer.route,
    "AWS::EC2::VPCEndpoint": AssemblyDeployer.vpc_endpoint,
    "AWS::EC2::SecurityGroup": AssemblyDeployer.security_group,
    "AWS::EC2::FlowLog": AssemblyDeployer.flow_log,
    "AWS::S3::Bucket": AssemblyDeployer.bucket,
    "AWS::DynamoDB::Table": AssemblyDeployer.table,
    "AWS::Logs::LogGroup": AssemblyDeployer.log_group,
    "AWS::SNS::Topic": AssemblyDeployer.topic,
    "AWS::IAM::Role": AssemblyDeployer.role,
    "AWS::IAM::Policy": AssemblyDeployer.policy,
    "AWS::IAM::InstanceProfile": AssemblyDeployer.instance_profile,
    "AWS::Lambda::Function": AssemblyDeployer.function,
    "AWS::StepFunctions::StateMachine": AssemblyDeployer.state_machine,
    "AWS::Events::Rule": AssemblyDeployer.rule,
    "AWS::CloudWatch::Dashboard": AssemblyDeployer.dashboard,
    "AWS::CloudWatch::Alarm": AssemblyDeployer.alarm,
    "AWS::KMS::Key": AssemblyDeployer.kms_key,
    "AWS::SSM::Parameter": AssemblyDeployer.ssm_parameter,
}
