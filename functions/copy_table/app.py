"""CopyTable: one table's copy (mode copy, for the targets that lack it) or replication (mode
replicate), stepped until this invocation's time is nearly up, checkpointed; returns status
"continue" (the state machine calls again), "waiting" (a database is away) or "done"."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from tablesync.app import copying, environment, runtime
from tablesync.app.events import TableItem
from tablesync.app.observability import logger, tracer
from tablesync.app.settings import CopyTableSettings


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # results name tables and targets only
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = runtime.settings(CopyTableSettings)  # validated on the cold start
    item = environment.parse_event(TableItem, event)
    remaining = context.get_remaining_time_in_millis() / 1000
    result = copying.copy_table(
        item, remaining, settings, runtime.store(), runtime.connectors(), runtime.writers(), runtime.execution_status()
    )
    logger.info(
        "copy step",
        extra={
            "item": item.item_id,
            "mode": item.mode,
            "status": result.status,
            "copied": [c.rows_copied for c in result.copied],
        },
    )
    return result.model_dump(mode="json")
