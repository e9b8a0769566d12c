"""The application's data access: each AWS resource a step reads or writes behind a small Protocol,
with one boto3 implementation each, all of them created here from a function's settings and its
boto3 clients (the checkpoint store's Protocol is in checkpoints.py, the connectors' in
connectors.py). The step modules take the Protocols, the default built from the environment, and
never call boto3 themselves; tests hand them in-memory fakes or moto.

- ObjectStore: a bucket whole objects go to (the results bucket's reports, the audit trail);
- AlertTopic: the SNS topic of alerts;
- KeysQueue / DeadLetterQueue: the repair queue of differing keys, and its dead-letter queue;
- DefinitionSource: stored check definitions (S3 objects, SSM parameters);
- SecretSource: a database function's secret (Secrets Manager, through Powertools' cache);
- OwnerRunning (checkpoints.py): whether the execution holding a lease still runs (Step Functions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from .checkpoints import DynamoDbCheckpointStore, OwnerRunning
from .settings import CheckpointSettings, RepairSettings, ReportSettings

SECRET_MAX_AGE_SECONDS = 300  # a rotated secret is read again after this long


class Clients:
    """boto3 clients, created on first use (a function only pays for the ones it calls)."""

    def __init__(self, session: Any = None, **overrides: Any) -> None:
        self._session = session
        self.__dict__.update(overrides)

    def _client(self, name: str) -> Any:
        if self._session is None:
            import boto3

            self._session = boto3.session.Session()
        return self._session.client(name)

    @cached_property
    def dynamodb(self) -> Any:
        return self._client("dynamodb")

    @cached_property
    def s3(self) -> Any:
        return self._client("s3")

    @cached_property
    def sns(self) -> Any:
        return self._client("sns")

    @cached_property
    def sqs(self) -> Any:
        return self._client("sqs")

    @cached_property
    def ssm(self) -> Any:
        return self._client("ssm")

    @cached_property
    def lambda_(self) -> Any:
        return self._client("lambda")

    @cached_property
    def stepfunctions(self) -> Any:
        return self._client("stepfunctions")


def aws_error(exc: Exception) -> str:
    """A botocore error's message, in one line (any other error: its class)."""
    error = getattr(exc, "response", {}).get("Error", {})
    return str(error.get("Message") or error.get("Code") or type(exc).__name__)


# --- the Protocols -------------------------------------------------------------------------------
class ObjectStore(Protocol):
    """A bucket that whole objects are written to."""

    def uri(self, key: str) -> str:
        """Where an object is (s3://bucket/key), known before it is written."""
        ...

    def put(self, key: str, body: bytes, content_type: str) -> None: ...


class AlertTopic(Protocol):
    def publish(self, subject: str, message: str) -> None: ...


class KeysQueue(Protocol):
    """The repair queue: messages of differing keys."""

    def send(self, body: str, delay_seconds: int) -> None: ...

    def send_batch(self, bodies: Sequence[str]) -> int:
        """Sends up to ten messages at once; answers how many the queue refused."""
        ...


class DeadLetterQueue(Protocol):
    def park(self, body: str, reason: str) -> None:
        """Parks a message that cannot be applied, its reason alongside."""
        ...


class DefinitionSource(Protocol):
    """Where the check definitions an execution input names are stored."""

    def s3_object(self, bucket: str, key: str) -> bytes: ...

    def ssm_parameter(self, name: str) -> str: ...


class SecretSource(Protocol):
    def secret(self, name: str) -> Any:
        """A secret's JSON (a database secret: engine, host, username, ...)."""
        ...


# --- the boto3 implementations -------------------------------------------------------------------
# Each holds the Clients rather than one client: a client is created when first used.
class S3Bucket:
    def __init__(self, clients: Clients, name: str) -> None:
        self.clients, self.name = clients, name

    def uri(self, key: str) -> str:
        return f"s3://{self.name}/{key}"

    def put(self, key: str, body: bytes, content_type: str) -> None:
        self.clients.s3.put_object(Bucket=self.name, Key=key, Body=body, ContentType=content_type)


class SnsTopic:
    def __init__(self, clients: Clients, arn: str) -> None:
        self.clients, self.arn = clients, arn

    def publish(self, subject: str, message: str) -> None:
        # SNS takes subjects of up to 100 characters.
        self.clients.sns.publish(TopicArn=self.arn, Subject=subject[:100], Message=message)


class SqsQueue:
    """An SQS queue: the keys queue, or its dead-letter queue."""

    def __init__(self, clients: Clients, url: str) -> None:
        self.clients, self.url = clients, url

    def send(self, body: str, delay_seconds: int) -> None:
        self.clients.sqs.send_message(QueueUrl=self.url, MessageBody=body, DelaySeconds=delay_seconds)

    def send_batch(self, bodies: Sequence[str]) -> int:
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)]
        response = self.clients.sqs.send_message_batch(QueueUrl=self.url, Entries=entries)
        return len(response.get("Failed") or [])

    def park(self, body: str, reason: str) -> None:
        # The reason as a message attribute (at most 1,000 characters here; never empty); the body
        # lists each key's own reason.
        attributes = {"reason": {"DataType": "String", "StringValue": reason[:1000] or "unknown"}}
        self.clients.sqs.send_message(QueueUrl=self.url, MessageBody=body, MessageAttributes=attributes)


class AwsDefinitions:
    """Check definitions in S3 objects and SSM parameters (SecureString ones decrypted)."""

    def __init__(self, clients: Clients) -> None:
        self.clients = clients

    def s3_object(self, bucket: str, key: str) -> bytes:
        body: bytes = self.clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def ssm_parameter(self, name: str) -> str:
        return str(self.clients.ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])


class PowertoolsSecrets:
    """Secrets Manager through Powertools' parameters utility, which caches each secret for a while."""

    def __init__(self, max_age: int = SECRET_MAX_AGE_SECONDS) -> None:
        self.max_age = max_age

    def secret(self, name: str) -> Any:
        from aws_lambda_powertools.utilities import parameters

        return parameters.get_secret(name, transform="json", max_age=self.max_age)


def execution_running(clients: Clients) -> OwnerRunning:
    """Whether the execution that holds a lease still runs (Step Functions' own answer): a failed
    or aborted execution's leases are taken over by the next execution of the run."""

    def running(owner: str) -> bool:
        if ":execution:" not in owner:
            return True  # not an execution we can ask about: its lease stands
        try:
            status = clients.stepfunctions.describe_execution(executionArn=owner)["status"]
        except Exception as exc:  # noqa: BLE001 - botocore's errors
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            return code != "ExecutionDoesNotExist"  # in doubt, the lease stands
        return bool(status == "RUNNING")

    return running


# --- what each step uses, from its settings ------------------------------------------------------
@dataclass(frozen=True)
class ReportStores:
    """What Report writes to; None: not configured (nothing is stored, alerted or queued there)."""

    results: ObjectStore | None = None
    alerts: AlertTopic | None = None
    keys: KeysQueue | None = None


@dataclass(frozen=True)
class RepairStores:
    """What the repair reads and writes; None: not configured (see repairing)."""

    definitions: DefinitionSource
    audit: ObjectStore | None = None
    alerts: AlertTopic | None = None
    keys: KeysQueue | None = None
    dead_letters: DeadLetterQueue | None = None


def definitions(clients: Clients | None = None) -> DefinitionSource:
    return AwsDefinitions(clients or Clients())


def report_stores(settings: ReportSettings, clients: Clients | None = None) -> ReportStores:
    clients = clients or Clients()
    return ReportStores(
        results=S3Bucket(clients, settings.results_bucket) if settings.results_bucket else None,
        alerts=SnsTopic(clients, settings.topic_arn) if settings.topic_arn else None,
        keys=SqsQueue(clients, settings.queue_url) if settings.queue_url else None,
    )


def repair_stores(settings: RepairSettings, clients: Clients | None = None) -> RepairStores:
    clients = clients or Clients()
    return RepairStores(
        definitions=AwsDefinitions(clients),
        audit=S3Bucket(clients, settings.audit_bucket) if settings.audit_bucket else None,
        alerts=SnsTopic(clients, settings.topic_arn) if settings.topic_arn else None,
        keys=SqsQueue(clients, settings.queue_url) if settings.queue_url else None,
        dead_letters=SqsQueue(clients, settings.dead_letter_url) if settings.dead_letter_url else None,
    )


def checkpoint_store(settings: CheckpointSettings, clients: Clients) -> DynamoDbCheckpointStore:
    return DynamoDbCheckpointStore(
        settings.checkpoint_table,
        clients.dynamodb,
        clients.s3,
        settings.results_bucket or None,
        retention_days=settings.retention_days,
    )
