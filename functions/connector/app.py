"""Connector: serves one read operation against this function's database, from inside the
database's VPC, with the read-only user's credentials from Secrets Manager. It holds no writer
credentials and refuses writes: those go through the database's writer function."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from tablesync.app import environment, runtime, serving
from tablesync.app.events import ConnectorRequest
from tablesync.app.observability import logger, tracer
from tablesync.errors import InputError, TablesyncError, TransientDatabaseError


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # answers hold row keys and values
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    request = environment.parse_event(ConnectorRequest, event)
    refusal = serving.connector_refusal(request)
    if refusal is not None:
        return {"error": {"type": InputError.__name__, "message": refusal}}
    try:
        connector = runtime.database.get()  # its settings validated here on the cold start: answered if bad
    except TablesyncError as exc:
        return {"error": {"type": type(exc).__name__, "message": str(exc)}}
    answer = serving.serve_connector(request, connector)
    if answer.get("error", {}).get("type") == TransientDatabaseError.__name__:
        runtime.database.reset()  # reconnect on the next invocation
    return answer
