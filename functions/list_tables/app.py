"""ListTables: the run's check definition -> the Map's items (tables or key-range shards)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from tablesync.app import environment, listing, runtime
from tablesync.app.events import ListTablesEvent, RunInput
from tablesync.app.observability import logger, tracer
from tablesync.app.settings import ListTablesSettings


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # results carry keys
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = runtime.settings(ListTablesSettings)  # validated on the cold start
    run = environment.parse_event(RunInput, environment.parse_event(ListTablesEvent, event).run_input())
    result = listing.list_tables(run, runtime.clients(), runtime.connectors(), settings.max_concurrency)
    logger.info("tables listed", extra={"run_id": run.run_id, "items": len(result.items)})
    return result.model_dump(mode="json")
