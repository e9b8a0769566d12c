"""Checkpoints of table runs: the engine's DiffState between Lambda invocations.

One item per (run, table item) in DynamoDB. Two guards keep a table run single and its counts
exact:
- a lease: the execution that works on an item holds it until a deadline; another execution
  cannot take the item before the lease runs out (LeaseHeldError), so two executions never work on
  the same table run at once;
- a version: every save is conditional on the version that was read, so a duplicated or retried
  invocation that read an older state cannot overwrite a newer one (CheckpointConflictError): it is
  retried and resumes from the state that was saved, and no row is counted twice.

States are stored gzip-compressed in the item; a state too big for an item (it carries the keys
found so far) goes to S3 under a versioned key and the item points to it."""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import CheckpointConflictError, LeaseHeldError, StateError
from ..models import DiffState

INLINE_STATE_BYTES = 300_000  # DynamoDB items hold 400 KB; leave room for the other attributes


@dataclass
class Checkpoint:
    run_id: str
    item_id: str
    owner: str
    version: int = 0
    state: DiffState | None = None
    done: bool = False
    invocations: int = 0


class CheckpointStore(Protocol):
    def acquire(self, run_id: str, item_id: str, owner: str, lease_seconds: float) -> Checkpoint: ...

    def save(self, checkpoint: Checkpoint, state: DiffState, lease_seconds: float) -> Checkpoint: ...

    def load(self, run_id: str, item_id: str) -> Checkpoint | None: ...


class MemoryCheckpointStore:
    """The same rules in memory (the CLI and tests)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.clock = clock

    def acquire(self, run_id: str, item_id: str, owner: str, lease_seconds: float) -> Checkpoint:
        now = self.clock()
        item = self.items.get((run_id, item_id))
        if item is not None and item["owner"] != owner and item["lease_until"] > now:
            raise LeaseHeldError(_held_message(run_id, item_id, item["owner"], item["lease_until"] - now))
        if item is None:
            item = {"version": 0, "state": None, "done": False, "invocations": 0}
            self.items[(run_id, item_id)] = item
        item.update(owner=owner, lease_until=now + lease_seconds)
        return _checkpoint(run_id, item_id, item)

    def save(self, checkpoint: Checkpoint, state: DiffState, lease_seconds: float) -> Checkpoint:
        item = self.items.get((checkpoint.run_id, checkpoint.item_id))
        if item is None or item["version"] != checkpoint.version or item["owner"] != checkpoint.owner:
            raise CheckpointConflictError(_conflict_message(checkpoint))
        item.update(
            version=checkpoint.version + 1,
            state=state.model_dump_json(),
            done=state.done,
            invocations=item["invocations"] + 1,
            lease_until=0 if state.done else self.clock() + lease_seconds,
        )
        return _checkpoint(checkpoint.run_id, checkpoint.item_id, item)

    def load(self, run_id: str, item_id: str) -> Checkpoint | None:
        item = self.items.get((run_id, item_id))
        return None if item is None else _checkpoint(run_id, item_id, item)


def _checkpoint(run_id: str, item_id: str, item: dict[str, Any]) -> Checkpoint:
    state = DiffState.model_validate_json(item["state"]) if item["state"] else None
    return Checkpoint(run_id, item_id, item["owner"], item["version"], state, item["done"], item["invocations"])


class DynamoDbCheckpointStore:
    """Checkpoints in the stack's DynamoDB table (key: run_id, item_id), big states in S3."""

    def __init__(
        self,
        table_name: str,
        dynamodb: Any,
        s3: Any = None,
        bucket: str | None = None,
        *,
        retention_days: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table_name = table_name
        self.dynamodb = dynamodb
        self.s3 = s3
        self.bucket = bucket
        self.retention_seconds = retention_days * 86_400
        self.clock = clock

    def _key(self, run_id: str, item_id: str) -> dict[str, Any]:
        return {"run_id": {"S": run_id}, "item_id": {"S": item_id}}

    def acquire(self, run_id: str, item_id: str, owner: str, lease_seconds: float) -> Checkpoint:
        now = self.clock()
        try:
            response = self.dynamodb.update_item(
                TableName=self.table_name,
                Key=self._key(run_id, item_id),
                UpdateExpression=(
                    "SET #owner = :owner, #lease = :until, #expires = :expires, "
                    "#version = if_not_exists(#version, :zero), #invocations = if_not_exists(#invocations, :zero)"
                ),
                ConditionExpression="attribute_not_exists(#owner) OR #owner = :owner OR #lease < :now",
                ExpressionAttributeNames=_names("#owner", "#lease", "#expires", "#version", "#invocations"),
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":until": {"N": _number(now + lease_seconds)},
                    ":expires": {"N": str(int(now + self.retention_seconds))},
                    ":zero": {"N": "0"},
                    ":now": {"N": _number(now)},
                },
                ReturnValues="ALL_NEW",
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            current = self.dynamodb.get_item(
                TableName=self.table_name, Key=self._key(run_id, item_id), ConsistentRead=True
            ).get("Item", {})
            holder = current.get("owner", {}).get("S", "another execution")
            remaining = float(current.get("lease_until", {}).get("N", "0")) - now
            raise LeaseHeldError(_held_message(run_id, item_id, holder, remaining)) from None
        return self._checkpoint(response["Attributes"])

    def save(self, checkpoint: Checkpoint, state: DiffState, lease_seconds: float) -> Checkpoint:
        now = self.clock()
        version = checkpoint.version + 1
        body = gzip.compress(state.model_dump_json().encode(), compresslevel=6)
        values: dict[str, Any] = {
            ":old": {"N": str(checkpoint.version)},
            ":new": {"N": str(version)},
            ":owner": {"S": checkpoint.owner},
            ":done": {"BOOL": state.done},
            ":until": {"N": "0" if state.done else _number(now + lease_seconds)},
            ":one": {"N": "1"},
            ":expires": {"N": str(int(now + self.retention_seconds))},
        }
        if len(body) <= INLINE_STATE_BYTES:
            values[":state"] = {"B": body}
            stored = "#state = :state REMOVE #state_s3"
        else:
            if self.s3 is None or self.bucket is None:
                raise StateError("the state is too large for DynamoDB and no S3 bucket is configured")
            key = f"checkpoints/{checkpoint.run_id}/{checkpoint.item_id}/{version}.json.gz"
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
            values[":s3"] = {"S": key}
            stored = "#state_s3 = :s3 REMOVE #state"
        assignments, removal = stored.split(" REMOVE ")
        try:
            self.dynamodb.update_item(
                TableName=self.table_name,
                Key=self._key(checkpoint.run_id, checkpoint.item_id),
                UpdateExpression=(
                    f"SET #version = :new, #done = :done, #lease = :until, #expires = :expires, "
                    f"#invocations = #invocations + :one, {assignments} REMOVE {removal}"
                ),
                ConditionExpression="#version = :old AND #owner = :owner",
                ExpressionAttributeNames=_names(
                    "#version", "#done", "#lease", "#expires", "#invocations", "#owner", "#state", "#state_s3"
                ),
                ExpressionAttributeValues=values,
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            raise CheckpointConflictError(_conflict_message(checkpoint)) from None
        return Checkpoint(
            checkpoint.run_id,
            checkpoint.item_id,
            checkpoint.owner,
            version,
            state,
            state.done,
            checkpoint.invocations + 1,
        )

    def load(self, run_id: str, item_id: str) -> Checkpoint | None:
        item = self.dynamodb.get_item(
            TableName=self.table_name, Key=self._key(run_id, item_id), ConsistentRead=True
        ).get("Item")
        return None if item is None else self._checkpoint(item)

    def _checkpoint(self, item: dict[str, Any]) -> Checkpoint:
        body: bytes | None = None
        if "state" in item:
            body = item["state"]["B"]
        elif "state_s3" in item and self.s3 is not None:
            body = self.s3.get_object(Bucket=self.bucket, Key=item["state_s3"]["S"])["Body"].read()
        state = DiffState.model_validate_json(gzip.decompress(body)) if body else None
        return Checkpoint(
            run_id=item["run_id"]["S"],
            item_id=item["item_id"]["S"],
            owner=item.get("owner", {}).get("S", ""),
            version=int(item.get("version", {}).get("N", "0")),
            state=state,
            done=bool(item.get("done", {}).get("BOOL", False)),
            invocations=int(item.get("invocations", {}).get("N", "0")),
        )


ATTRIBUTES = {
    "#owner": "owner",
    "#lease": "lease_until",
    "#expires": "expires_at",
    "#version": "version",
    "#invocations": "invocations",
    "#done": "done",
    "#state": "state",
    "#state_s3": "state_s3",
}


def _names(*placeholders: str) -> dict[str, str]:
    """Attribute names through placeholders: `state`, `owner` and others are reserved words."""
    return {p: ATTRIBUTES[p] for p in placeholders}


def _number(value: float) -> str:
    return f"{value:.3f}"


def _held_message(run_id: str, item_id: str, owner: str, seconds: float) -> str:
    return (
        f"table {item_id} of run {run_id} is being checked by {owner} "
        f"(its lease runs out in {max(0, int(seconds))} s); start a new run id to check it again"
    )


def _conflict_message(checkpoint: Checkpoint) -> str:
    return (
        f"the checkpoint of table {checkpoint.item_id} (run {checkpoint.run_id}) moved past version "
        f"{checkpoint.version}: another invocation saved first; resuming from its state"
    )
