"""Repair: consumes the queue of differing keys (SQS, in batches) and repairs each message's keys
on its target, reporting the messages that failed for a transient reason as partial batch
failures (SQS retries them; the others are done or parked in the dead-letter queue)."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from tablesync.app import repairing, runtime
from tablesync.app.observability import logger, tracer
from tablesync.app.settings import RepairSettings

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> dict[str, Any]:
    result = repairing.repair_message(
        record.body, runtime.settings(RepairSettings), runtime.clients(), runtime.connectors(), runtime.writers()
    )
    # Counts only: keys, rows and the databases' reasons stay in the audit trail and the dead-letter queue.
    counts = result.model_dump(exclude={"statements", "changed_keys", "failed", "url"})
    logger.info("keys repaired", extra={"message_id": record.message_id, "failed": len(result.failed), **counts})
    return result.model_dump(mode="json")


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # results carry keys
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Validated on the cold start, before any message: a bad environment fails the invocation
    # (the whole batch goes back to the queue), not each message as if it were the message's fault.
    runtime.settings(RepairSettings)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
