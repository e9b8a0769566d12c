"""Connector: serves one connector operation against this function's database (its credentials
from Secrets Manager), from inside the database's VPC."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from tablesync.app import runtime, service
from tablesync.app.events import ConnectorRequest
from tablesync.app.observability import logger, tracer
from tablesync.errors import TablesyncError, TransientDatabaseError


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    request = service.parse_event(ConnectorRequest, event)
    # Writes (repair) go through the writer user's connection; everything else reads.
    connection = runtime.writer if request.op in runtime.WRITE_OPERATIONS else runtime.database
    try:
        connector = connection.get()
    except TablesyncError as exc:
        return {"error": {"type": type(exc).__name__, "message": str(exc)}}
    answer = service.serve_connector(request, connector)
    if answer.get("error", {}).get("type") == TransientDatabaseError.__name__:
        connection.reset()  # reconnect on the next invocation
    return answer
