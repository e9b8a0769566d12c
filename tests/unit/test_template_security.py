"""The deployed permissions, checked on the template as SAM expands it (setup/expand_template.py:
every role, event source and permission SAM generates): a small policy simulator evaluates each
role's statements (every branch of an !If counts) against the actions and resources that matter.

- only the repair function's role may invoke a writer, and a writer's resource policy names only it;
- a read connector reads only its read-only secret, a writer only its writer secret;
- no role may erase the audit trail or loosen a bucket's rules, delete checkpoints or scan tables;
- no action or resource wildcard beyond what X-Ray and Lambda's VPC interfaces require;
- every function logs to a group with the retention parameter, connectors have reserved
  concurrency, the scheduler and the state machine trust only this account, alerts use the stack's
  own key (which CloudWatch alarms may use), and secret ARN parameters admit no wildcard."""

from __future__ import annotations

import fnmatch
import importlib.util
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
from app_support import ROOT

STACK = "tablesync-test"
ACCOUNT = "123456789012"
SLOTS = range(1, 5)
# The DynamoDB tables a deployment names (DynamoDbTableArns, DynamoDbWritableTableArns).
DYNAMO_TABLE = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"
DYNAMO_COPY = "arn:aws:dynamodb:us-east-1:123456789012:table/orders"
DYNAMO_ROLE = "arn:aws:iam::210987654321:role/tablesync-reader"


@cache
def expanded() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("expand_template", ROOT / "setup" / "expand_template.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    template: dict[str, Any] = module.expand()
    return template


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in expanded()["Resources"].items() if r["Type"] == kind}


# --- a small policy simulator ------------------------------------------------------------------
def resolve(value: Any) -> Iterator[Any]:
    """Every value an intrinsic may take: parameters and pseudo parameters as deployed,
    resources as symbolic ARNs (arn:sym:<LogicalId>), both branches of an !If."""
    if value == {"Ref": "AWS::NoValue"}:
        return
    if isinstance(value, dict) and len(value) == 1:
        ((name, arg),) = value.items()
        if name == "Ref":
            yield _ref(arg)
            return
        if name == "Fn::GetAtt":
            yield f"arn:sym:{arg[0]}"
            return
        if name == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

            def substitute(match: re.Match[str]) -> str:
                token = match.group(1)
                if token in variables:
                    return str(next(resolve(variables[token])))
                base, _, attribute = token.partition(".")
                return f"arn:sym:{base}" if attribute else _ref(base)

            yield re.sub(r"\$\{([^}]+)\}", substitute, text)
            return
        if name == "Fn::If":
            for branch in arg[1:]:
                yield from resolve(branch)
            return
    yield value


def _ref(name: str) -> str:
    pseudo = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": ACCOUNT, "AWS::StackName": STACK}
    if name in pseudo:
        return pseudo[name]
    parameters = expanded().get("Parameters", {})
    if name in parameters:
        from_slots = {
            **{f"Database{n}SecretArn": f"secret:db{n}" for n in SLOTS},
            **{f"Database{n}WriterSecretArn": f"secret:db{n}-writer" for n in SLOTS},
            "DynamoDbTableArns": DYNAMO_TABLE,
            "DynamoDbWritableTableArns": DYNAMO_COPY,
            "DynamoDbRoleArns": DYNAMO_ROLE,
        }
        return from_slots.get(name, str(parameters[name].get("Default", name)))
    return f"arn:sym:{name}"


def statements(role: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for policy in role["Properties"].get("Policies", []):
        for resolved in resolve(policy):
            for statement in resolved["PolicyDocument"]["Statement"]:
                yield from resolve(statement)


def _as_list(value: Any) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    return [v for item in values for v in resolve(item)]


def allows(role: dict[str, Any], action: str, resource: str) -> bool:
    for statement in statements(role):
        assert statement["Effect"] == "Allow", "roles hold no Deny (they would hide what they allow)"
        actions = _as_list(statement["Action"])
        if not any(fnmatch.fnmatch(action.lower(), a.lower()) for a in actions):
            continue
        if any(fnmatch.fnmatch(resource, str(r)) for r in _as_list(statement["Resource"])):
            return True
    return False


def roles() -> dict[str, dict[str, Any]]:
    return resources("AWS::IAM::Role")


def who(action: str, resource: str) -> set[str]:
    return {name for name, role in roles().items() if allows(role, action, resource)}


# --- the checks -----------------------------------------------------------------------------------
def test_every_role_is_declared_and_holds_no_managed_policy() -> None:
    assert set(roles()) == {
        "ListTablesRole", "ChecksumTableRole", "ReportRole", "RecheckTableRole", "RepairRole", "CopyTableRole",
        "StateMachineRole", "SchedulerRole",
        *(f"Connector{n}Role" for n in SLOTS), *(f"Writer{n}Role" for n in SLOTS),
    }  # fmt: skip
    for name, role in roles().items():
        assert not role["Properties"].get("ManagedPolicyArns"), name


@pytest.mark.parametrize("slot", SLOTS)
def test_only_the_repair_and_copy_roles_may_invoke_a_writer(slot: int) -> None:
    """The repair (its differences) and the copy (create and load a table, replicate): what either
    may write is the writer's allow-list (serving.writer_refusal), checked in the writer."""
    assert who("lambda:InvokeFunction", f"arn:sym:Writer{slot}Function") == {"RepairRole", "CopyTableRole"}
    permissions = [
        p["Properties"]
        for p in resources("AWS::Lambda::Permission").values()
        if f"Writer{slot}Function" in str(p["Properties"]["FunctionName"])
    ]
    assert sorted(permissions, key=str) == sorted(
        [
            {
                "FunctionName": {"Ref": f"Writer{slot}Function"},
                "Action": "lambda:InvokeFunction",
                "Principal": {"Fn::GetAtt": [role, "Arn"]},
            }
            for role in ("RepairRole", "CopyTableRole")
        ],
        key=str,
    )


@pytest.mark.parametrize("slot", SLOTS)
def test_each_secret_is_read_by_its_own_function_only(slot: int) -> None:
    assert who("secretsmanager:GetSecretValue", f"secret:db{slot}") == {f"Connector{slot}Role"}
    assert who("secretsmanager:GetSecretValue", f"secret:db{slot}-writer") == {f"Writer{slot}Role"}
    connector = resources("AWS::Lambda::Function")[f"Connector{slot}Function"]["Properties"]["Environment"]
    assert "WRITER_SECRET_ARN" not in connector["Variables"]


@pytest.mark.parametrize(
    "action",
    [
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:PutObjectRetention",
        "s3:BypassGovernanceRetention",
        "s3:PutLifecycleConfiguration",
        "s3:PutBucketPolicy",
        "s3:PutBucketVersioning",
        "s3:GetObject",
    ],
)
def test_no_role_may_read_or_erase_the_audit_trail(action: str) -> None:
    assert who(action, "arn:sym:AuditBucket/audit/run/table/target/x.jsonl") == set()
    assert who(action, "arn:sym:AuditBucket") == set()
    assert who("s3:PutObject", "arn:sym:AuditBucket/audit/run/table/target/x.jsonl") == {"RepairRole"}


def test_the_audit_bucket_locks_its_objects_and_denies_erasing_to_the_stack() -> None:
    bucket = resources("AWS::S3::Bucket")["AuditBucket"]["Properties"]
    assert bucket["ObjectLockEnabled"] is True and bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["ObjectLockConfiguration"]["Rule"]["DefaultRetention"] == {
        "Mode": "GOVERNANCE",
        "Days": {"Ref": "AuditRetentionDays"},
    }
    policy = resources("AWS::S3::BucketPolicy")["AuditBucketPolicy"]["Properties"]["PolicyDocument"]
    deny = next(s for s in policy["Statement"] if s.get("Sid") == "NoEraseByTheApp")
    assert deny["Effect"] == "Deny" and {"s3:DeleteObject", "s3:BypassGovernanceRetention"} <= set(deny["Action"])


@pytest.mark.parametrize(
    "action",
    [
        "s3:DeleteObject",
        "s3:PutLifecycleConfiguration",
        "s3:PutBucketPolicy",
        "s3:PutObjectAcl",
        "dynamodb:DeleteItem",
        "dynamodb:Scan",
        "dynamodb:BatchWriteItem",
        "dynamodb:DeleteTable",
        "ssm:DescribeParameters",
        "ssm:PutParameter",
        "sqs:DeleteQueue",
        "sqs:PurgeQueue",
        "sns:DeleteTopic",
        "iam:PassRole",
        "kms:ScheduleKeyDeletion",
    ],
)
def test_no_role_holds_what_the_code_never_does(action: str) -> None:
    for resource in ("arn:sym:ResultsBucket/checkpoints/x", "arn:sym:ResultsBucket", "arn:sym:CheckpointTable", "*"):
        assert who(action, resource) == set(), (action, resource)


def test_wildcards_only_where_an_action_takes_no_resource() -> None:
    take_no_resource = re.compile(
        r"^(xray:[A-Za-z]+|ec2:[A-Za-z]+NetworkInterfaces?|ec2:(Assign|Unassign)PrivateIpAddresses)$"
    )
    for name, role in roles().items():
        for statement in statements(role):
            actions = _as_list(statement["Action"])
            assert all("*" not in a for a in actions), (name, actions)
            if "*" in _as_list(statement["Resource"]):
                assert all(take_no_resource.match(a) for a in actions), (name, actions)


def test_queues_and_connectors_are_reached_by_whom_they_serve() -> None:
    assert who("sqs:ReceiveMessage", "arn:sym:KeysQueue") == {"RepairRole"}
    # The report queues a run's keys; the repair sends back keys that changed under it (a message
    # refers to the stored definition and grants nothing).
    assert who("sqs:SendMessage", "arn:sym:KeysQueue") == {"ReportRole", "RepairRole"}
    assert who("lambda:InvokeFunction", "arn:sym:Connector1Function") == {
        "ListTablesRole",
        "ChecksumTableRole",
        "RecheckTableRole",
        "RepairRole",
        "CopyTableRole",
    }
    assert who("states:StartExecution", "arn:sym:TablesyncStateMachine") == {"SchedulerRole"}


def test_dynamodb_tables_are_read_by_the_checks_and_written_by_the_repair_alone() -> None:
    readers = {"ChecksumTableRole", "RecheckTableRole", "RepairRole"}
    for action in ("dynamodb:DescribeTable", "dynamodb:Scan", "dynamodb:BatchGetItem"):
        assert who(action, DYNAMO_TABLE) == readers, action
    for action in ("dynamodb:PutItem", "dynamodb:DeleteItem"):
        assert who(action, DYNAMO_COPY) == {"RepairRole"}, action
        assert who(action, DYNAMO_TABLE) == set(), action  # only the tables named writable
    # Another account's tables, through the roles the deployment names: by the same functions only.
    assert who("sts:AssumeRole", DYNAMO_ROLE) == readers
    assert who("sts:AssumeRole", "arn:aws:iam::210987654321:role/admin") == set()
    # The checkpoint table is no user table: nobody scans it or deletes its items.
    assert who("dynamodb:Scan", "arn:sym:CheckpointTable") == set()


def test_every_function_logs_with_the_retention_parameter_and_connectors_are_bounded() -> None:
    functions = resources("AWS::Lambda::Function")
    groups = {
        str(g["Properties"]["LogGroupName"]): g["Properties"]["RetentionInDays"]
        for g in resources("AWS::Logs::LogGroup").values()
    }
    for name, function in functions.items():
        assert groups.get(str({"Fn::Sub": f"/aws/lambda/${{{name}}}"})) == {"Ref": "LogRetentionDays"}, name
        if name.startswith(("Connector", "Writer")):
            assert function["Properties"]["ReservedConcurrentExecutions"] == {"Ref": "ConnectorConcurrency"}
            env = function["Properties"]["Environment"]["Variables"]
            assert env["DATABASE_TLS"] == {"Ref": "DatabaseTls"}
    assert expanded()["Parameters"]["DatabaseTls"]["Default"] == "verify-full"


def test_the_scheduler_and_the_state_machine_trust_only_this_account() -> None:
    for name in ("SchedulerRole", "StateMachineRole"):
        (trust,) = roles()[name]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_alerts_use_the_stacks_own_key_which_alarms_may_use() -> None:
    topic = resources("AWS::SNS::Topic")["AlertTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "AlertKey"}
    key = resources("AWS::KMS::Key")["AlertKey"]["Properties"]
    alarms = next(s for s in key["KeyPolicy"]["Statement"] if s["Sid"] == "CloudWatchAlarmsPublish")
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert "aws:SourceArn" in alarms["Condition"]["ArnLike"] and key["EnableKeyRotation"] is True
    assert who("kms:GenerateDataKey", "arn:sym:AlertKey") == {"ReportRole", "RepairRole"}


@pytest.mark.parametrize("name", [f"Database{n}{kind}SecretArn" for n in SLOTS for kind in ("", "Writer")])
def test_secret_arn_parameters_admit_no_wildcard(name: str) -> None:
    pattern = re.compile(f"^(?:{expanded()['Parameters'][name]['AllowedPattern']})$")
    assert pattern.match("")
    assert pattern.match(f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:tablesync/prod/orders-AbCdEf")
    for wild in (f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:*", "*", "arn:aws:secretsmanager:*:*:secret:x"):
        assert not pattern.match(wild), wild
