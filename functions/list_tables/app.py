"""ListTables: the run's check definition -> the Map's items (tables or key-range shards)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from tablesync.app import runtime, service
from tablesync.app.events import ListTablesEvent, RunInput
from tablesync.app.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # results carry keys
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run = service.parse_event(RunInput, service.parse_event(ListTablesEvent, event).run_input())
    settings = runtime.settings()
    result = service.list_tables(run, runtime.clients(), runtime.connectors(), settings.max_concurrency)
    logger.info("tables listed", extra={"run_id": run.run_id, "items": len(result.items)})
    return result.model_dump(mode="json")
