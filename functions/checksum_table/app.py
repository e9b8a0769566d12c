"""ChecksumTable: one table item, stepped until this invocation's time is nearly up, checkpointed;
returns status "continue" (the state machine calls again) or "done"."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from tablesync.app import checking, environment, runtime
from tablesync.app.events import TableItem
from tablesync.app.observability import logger, tracer
from tablesync.app.settings import ChecksumTableSettings


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # results carry keys
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = runtime.settings(ChecksumTableSettings)  # validated on the cold start
    item = environment.parse_event(TableItem, event)
    remaining = context.get_remaining_time_in_millis() / 1000
    result = checking.checksum_table(
        item, remaining, settings, runtime.store(), runtime.connectors(), runtime.execution_status()
    )
    logger.info(
        "table step",
        extra={"item": item.item_id, "status": result.status, "rows": result.source_rows, "progress": result.progress},
    )
    return result.model_dump(mode="json")
