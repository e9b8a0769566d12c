"""The one place that creates Powertools' Logger, Tracer and Metrics. The service name and the
metrics namespace come from the template's Globals (POWERTOOLS_SERVICE_NAME,
POWERTOOLS_METRICS_NAMESPACE)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
