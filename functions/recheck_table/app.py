"""RecheckTable: after the state machine's Wait, reads the differences a table's check found
again on both sides and keeps only those still there."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from tablesync.app import checking, environment, runtime
from tablesync.app.events import ChecksumResult
from tablesync.app.observability import logger, tracer
from tablesync.app.settings import RecheckTableSettings


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # results carry keys
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = runtime.settings(RecheckTableSettings)  # validated on the cold start
    item = environment.parse_event(ChecksumResult, event)
    remaining = context.get_remaining_time_in_millis() / 1000
    result = checking.recheck_table(
        item, remaining, settings, runtime.store(), runtime.connectors(), runtime.execution_status()
    )
    logger.info(
        "table rechecked", extra={"item": item.item_id, "targets": [t.model_dump() for t in result.targets_summary]}
    )
    return result.model_dump(mode="json")
