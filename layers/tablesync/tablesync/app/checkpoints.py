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
found so far) goes to S3 under a versioned key and the item points to it. Each save stores the
SHA-256 of the state it wrote; a load verifies it, and that the item's `done` flag agrees with the
state's: a checkpoint that fails either, or cannot be decoded, is damaged (CheckpointDamagedError,
one line), never resumed from.

A lease held by an execution that is no longer running (failed, aborted) does not block a resume
of the same run id: `acquire` takes it over when `owner_running` says its owner has ended."""

from __future__ import annotations

import gzip
import hashlib
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import CheckpointConflictError, CheckpointDamagedError, LeaseHeldError, StateError
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


OwnerRunning = Callable[[str], bool]  # whether the execution that holds a lease still runs


class CheckpointStore(Protocol):
    def acquire(
        self, run_id: str, item_id: str, owner: str, lease_seconds: float, owner_running: OwnerRunning | None = None
    ) -> Checkpoint: ...

    def save(self, checkpoint: Checkpoint, state: DiffState, lease_seconds: float, count: bool = True) -> Checkpoint:
        """Saves the state if the item is still at the checkpoint's version and owner; `count`
        adds one to its invocations (the first save of each invocation)."""
        ...

    def load(self, run_id: str, item_id: str) -> Checkpoint | None: ...

    def mark_once(self, run_id: str, item_id: str, flag: str) -> bool:
        """Sets a flag on an item (made if missing); False when it was set already: effects of
        a run (keys queued, an alert) happen once, however many executions report it."""
        ...

    def unmark(self, run_id: str, item_id: str, flag: str) -> None:
        """Clears a flag whose effect failed (a send refused): the next execution does it again,
        so an effect is never lost (at least once; repairs and alerts bear a repeat)."""
        ...


class MemoryCheckpointStore:
    """The same rules in memory (the CLI and tests)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.clock = clock

    def acquire(
        self, run_id: str, item_id: str, owner: str, lease_seconds: float, owner_running: OwnerRunning | None = None
    ) -> Checkpoint:
        now = self.clock()
        item = self.items.get((run_id, item_id))
        if item is not None and item["owner"] != owner and item["lease_until"] > now:
            holder = str(item["owner"])
            if owner_running is None or owner_running(holder):
                raise LeaseHeldError(
                    _held_message(run_id, item_id, holder, item["lease_until"] - now), holder, item["lease_until"] - now
                )
        if item is None:
            item = {"version": 0, "state": None, "done": False, "invocations": 0}
            self.items[(run_id, item_id)] = item
        item.update(owner=owner, lease_until=now + lease_seconds)
        return _checkpoint(run_id, item_id, item)

    def save(self, checkpoint: Checkpoint, state: DiffState, lease_seconds: float, count: bool = True) -> Checkpoint:
        item = self.items.get((checkpoint.run_id, checkpoint.item_id))
        if item is None:
            raise CheckpointDamagedError(_gone_message(checkpoint.run_id, checkpoint.item_id))
        if item["version"] != checkpoint.version or item["owner"] != checkpoint.owner:
            raise CheckpointConflictError(_conflict_message(checkpoint))
        item.update(
            version=checkpoint.version + 1,
            state=state.model_dump_json(),
            done=state.done,
            invocations=item["invocations"] + int(count),
            lease_until=0 if state.done else self.clock() + lease_seconds,
        )
        return _checkpoint(checkpoint.run_id, checkpoint.item_id, item)

    def load(self, run_id: str, item_id: str) -> Checkpoint | None:
        item = self.items.get((run_id, item_id))
        return None if item is None else _checkpoint(run_id, item_id, item)

    def mark_once(self, run_id: str, item_id: str, flag: str) -> bool:
        flags: set[str] = self.items.setdefault(("#flags", run_id), {}).setdefault(item_id, set())
        if flag in flags:
            return False
        flags.add(flag)
        return True

    def unmark(self, run_id: str, item_id: str, flag: str) -> None:
        self.items.get(("#flags", run_id), {}).get(item_id, set()).discard(flag)


def _checkpoint(run_id: str, item_id: str, item: dict[str, Any]) -> Checkpoint:
    state = _state(run_id, item_id, item["state"].encode() if item["state"] else None, None, item["done"])
    return Checkpoint(run_id, item_id, item["owner"], item["version"], state, item["done"], item["invocations"])


def _state(run_id: str, item_id: str, body: bytes | None, digest: str | None, done: bool) -> DiffState | None:
    """The state a checkpoint holds, verified: decodable, its digest and its done flag agreeing."""
    if body is None:
        if done:
            raise CheckpointDamagedError(_damaged_message(run_id, item_id, "it is marked done but holds no state"))
        if digest is not None:  # a state was saved (its checksum is there) and has gone since
            raise CheckpointDamagedError(_damaged_message(run_id, item_id, "its state is gone"))
        return None
    if digest is not None and hashlib.sha256(body).hexdigest() != digest:
        raise CheckpointDamagedError(_damaged_message(run_id, item_id, "its state does not match its checksum"))
    try:
        state = DiffState.model_validate_json(body)
    except ValueError:
        raise CheckpointDamagedError(_damaged_message(run_id, item_id, "its state cannot be read")) from None
    if state.done != done:
        raise CheckpointDamagedError(
            _damaged_message(run_id, item_id, f"its done flag ({done}) disagrees with its state ({state.done})")
        )
    return state


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

    def acquire(
        self, run_id: str, item_id: str, owner: str, lease_seconds: float, owner_running: OwnerRunning | None = None
    ) -> Checkpoint:
        try:
            return self._acquire(run_id, item_id, owner, lease_seconds, None)
        except LeaseHeldError as held:
            holder = held.holder
            if owner_running is None or not holder or owner_running(holder):
                raise
            # The holder has ended (failed, aborted): its lease is taken over, if it still holds it.
            return self._acquire(run_id, item_id, owner, lease_seconds, holder)

    def _acquire(
        self, run_id: str, item_id: str, owner: str, lease_seconds: float, ended_holder: str | None
    ) -> Checkpoint:
        now = self.clock()
        condition = "attribute_not_exists(#owner) OR #owner = :owner OR #lease < :now"
        values: dict[str, Any] = {}
        if ended_holder is not None:
            condition += " OR #owner = :ended"
            values[":ended"] = {"S": ended_holder}
        try:
            response = self.dynamodb.update_item(
                TableName=self.table_name,
                Key=self._key(run_id, item_id),
                UpdateExpression=(
                    "SET #owner = :owner, #lease = :until, #expires = :expires, "
                    "#version = if_not_exists(#version, :zero), #invocations = if_not_exists(#invocations, :zero)"
                ),
                ConditionExpression=condition,
                ExpressionAttributeNames=_names("#owner", "#lease", "#expires", "#version", "#invocations"),
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":until": {"N": _number(now + lease_seconds)},
                    ":expires": {"N": str(int(now + self.retention_seconds))},
                    ":zero": {"N": "0"},
                    ":now": {"N": _number(now)},
                    **values,
                },
                ReturnValues="ALL_NEW",
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            current = self.dynamodb.get_item(
                TableName=self.table_name, Key=self._key(run_id, item_id), ConsistentRead=True
            ).get("Item", {})
            holder = current.get("owner", {}).get("S", "")
            remaining = float(current.get("lease_until", {}).get("N", "0")) - now
            message = _held_message(run_id, item_id, holder or "another execution", remaining)
            raise LeaseHeldError(message, holder, remaining) from None
        return self._checkpoint(response["Attributes"])

    def save(self, checkpoint: Checkpoint, state: DiffState, lease_seconds: float, count: bool = True) -> Checkpoint:
        now = self.clock()
        version = checkpoint.version + 1
        text = state.model_dump_json().encode()
        body = gzip.compress(text, compresslevel=6)
        values: dict[str, Any] = {
            ":digest": {"S": hashlib.sha256(text).hexdigest()},
            ":old": {"N": str(checkpoint.version)},
            ":new": {"N": str(version)},
            ":owner": {"S": checkpoint.owner},
            ":done": {"BOOL": state.done},
            ":until": {"N": "0" if state.done else _number(now + lease_seconds)},
            ":one": {"N": str(int(count))},
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
                    f"#invocations = #invocations + :one, #digest = :digest, {assignments} REMOVE {removal}"
                ),
                ConditionExpression="#version = :old AND #owner = :owner",
                ExpressionAttributeNames=_names(
                    "#version",
                    "#done",
                    "#lease",
                    "#expires",
                    "#invocations",
                    "#owner",
                    "#state",
                    "#state_s3",
                    "#digest",
                ),
                ExpressionAttributeValues=values,
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            if self.load(checkpoint.run_id, checkpoint.item_id) is None:
                raise CheckpointDamagedError(_gone_message(checkpoint.run_id, checkpoint.item_id)) from None
            raise CheckpointConflictError(_conflict_message(checkpoint)) from None
        return Checkpoint(
            checkpoint.run_id,
            checkpoint.item_id,
            checkpoint.owner,
            version,
            state,
            state.done,
            checkpoint.invocations + int(count),
        )

    def load(self, run_id: str, item_id: str) -> Checkpoint | None:
        item = self.dynamodb.get_item(
            TableName=self.table_name, Key=self._key(run_id, item_id), ConsistentRead=True
        ).get("Item")
        return None if item is None else self._checkpoint(item)

    def mark_once(self, run_id: str, item_id: str, flag: str) -> bool:
        """One conditional write: the first caller sets the flag, every later one is told."""
        try:
            self.dynamodb.update_item(
                TableName=self.table_name,
                Key=self._key(run_id, f"#flags/{item_id}"),
                UpdateExpression="SET #flag = :true, #expires = :expires",
                ConditionExpression="attribute_not_exists(#flag)",
                ExpressionAttributeNames={"#flag": f"flag_{flag}", "#expires": "expires_at"},
                ExpressionAttributeValues={
                    ":true": {"BOOL": True},
                    ":expires": {"N": str(int(self.clock() + self.retention_seconds))},
                },
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def unmark(self, run_id: str, item_id: str, flag: str) -> None:
        self.dynamodb.update_item(
            TableName=self.table_name,
            Key=self._key(run_id, f"#flags/{item_id}"),
            UpdateExpression="REMOVE #flag",
            ExpressionAttributeNames={"#flag": f"flag_{flag}"},
        )

    def _checkpoint(self, item: dict[str, Any]) -> Checkpoint:
        run_id, item_id = item["run_id"]["S"], item["item_id"]["S"]
        body: bytes | None = None
        if "state" in item:
            body = item["state"]["B"]
        elif "state_s3" in item and self.s3 is not None:
            try:
                body = self.s3.get_object(Bucket=self.bucket, Key=item["state_s3"]["S"])["Body"].read()
            except Exception:  # noqa: BLE001 - a missing or unreadable object: the checkpoint is damaged
                raise CheckpointDamagedError(_damaged_message(run_id, item_id, "its state in S3 is gone")) from None
        text: bytes | None = None
        if body:
            try:
                text = gzip.decompress(body)
            except (OSError, EOFError, zlib.error):
                raise CheckpointDamagedError(_damaged_message(run_id, item_id, "its state cannot be read")) from None
        done = bool(item.get("done", {}).get("BOOL", False))
        digest = item.get("state_sha256", {}).get("S")
        return Checkpoint(
            run_id=run_id,
            item_id=item_id,
            owner=item.get("owner", {}).get("S", ""),
            version=int(item.get("version", {}).get("N", "0")),
            state=_state(run_id, item_id, text, digest, done),
            done=done,
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
    "#digest": "state_sha256",
}


def _names(*placeholders: str) -> dict[str, str]:
    """Attribute names through placeholders: `state`, `owner` and others are reserved words."""
    return {p: ATTRIBUTES[p] for p in placeholders}


def _number(value: float) -> str:
    return f"{value:.3f}"


def _held_message(run_id: str, item_id: str, owner: str, seconds: float) -> str:
    return (
        f"table {item_id} of run {run_id} is being checked by {owner}, which is still running "
        f"(its lease runs out in {max(0, int(seconds))} s): let it finish, or stop it and start again "
        "with the same run id to resume"
    )


def _damaged_message(run_id: str, item_id: str, why: str) -> str:
    return f"checkpoint for {item_id} (run {run_id}) is damaged: {why}; start a new run id to check it again"


def _gone_message(run_id: str, item_id: str) -> str:
    return (
        f"checkpoint for {item_id} (run {run_id}) disappeared while the table was being checked; "
        "start a new run id to check it again"
    )


def _conflict_message(checkpoint: Checkpoint) -> str:
    return (
        f"the checkpoint of table {checkpoint.item_id} (run {checkpoint.run_id}) moved past version "
        f"{checkpoint.version}: another invocation saved first; resuming from its state"
    )
