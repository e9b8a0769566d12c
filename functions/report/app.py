"""Report: the run's result to S3, an SNS message on differences or failures, CloudWatch metrics
per table, and the differing keys, batched, on the repair queue."""

from typing import Any

from aws_lambda_powertools import single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from tablesync.app import environment, reporting, runtime
from tablesync.app.events import ReportInput
from tablesync.app.observability import logger, tracer
from tablesync.app.settings import ReportSettings


def emit_metric(table: str, name: str, value: float) -> None:
    # One metric per table and name: each carries its own Table dimension.
    with single_metric(name=name, unit=MetricUnit.Count, value=value) as metric:
        metric.add_dimension(name="Table", value=table)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # results carry keys
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = runtime.settings(ReportSettings)  # validated on the cold start
    run = environment.parse_event(ReportInput, event)
    result = reporting.report(run, settings, runtime.clients(), runtime.store(), emit_metric)
    logger.info("run reported", extra={"run_id": run.run_id, "status": result.status, "report": result.report_uri})
    return result.model_dump(mode="json")
