"""Writer: applies one batch of repair writes to this function's database, from inside the
database's VPC, with the writer user's credentials from Secrets Manager. Only the repair function
may invoke it, and it writes only the (table, action) pairs of the deployment's allow-list
(DatabaseNWritableTables), whatever the request says."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from tablesync.app import environment, runtime, serving
from tablesync.app.events import ConnectorRequest
from tablesync.app.observability import logger, tracer
from tablesync.errors import InputError, TablesyncError, TransientDatabaseError


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # answers name keys
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    request = environment.parse_event(ConnectorRequest, event)
    try:
        # Its settings, validated on the cold start (and after a reconnect): answered, as any error,
        # so the repair parks the message with the line instead of retrying a crashed invocation.
        database = runtime.writer.settings().database_name
        allowed = runtime.writable_tables()
        refusal = serving.writer_refusal(request, database, allowed)
        if refusal is not None:
            logger.warning("write refused", extra={"database": database, "reason": refusal})
            return {"error": {"type": InputError.__name__, "message": refusal}}
        connector = runtime.writer.get()
    except TablesyncError as exc:
        return {"error": {"type": type(exc).__name__, "message": str(exc)}}
    answer = serving.serve_writer(request, connector, database, allowed)
    if answer.get("error", {}).get("type") == TransientDatabaseError.__name__:
        runtime.writer.reset()  # reconnect on the next invocation
    return answer
