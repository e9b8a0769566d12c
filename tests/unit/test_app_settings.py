"""Each Lambda function's settings model against template.yaml, read here as data so that the two
cannot drift: a function's model declares exactly the variables the template gives it, accepts
the environment the template gives it, and refuses a missing or bad variable with one line that
names it and shows no value. The settings are validated once per container."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from app_support import ROOT, Context, fake_aws_env, handler, template
from tablesync.app import runtime
from tablesync.app.settings import (
    FUNCTIONS,
    ChecksumTableSettings,
    ConnectorSettings,
    FunctionSettings,
    ListTablesSettings,
    RepairSettings,
    Settings,
    WriterSettings,
)
from tablesync.errors import InputError

# Variables a model reads that the template does not give: knobs for local runs and tests.
UNTEMPLATED = {"LEASE_GRACE_SECONDS", "CONNECT_TIMEOUT_SECONDS"}

# What a function cannot run without: the resources it reaches (the tunables have the defaults
# of their template parameters).
REQUIRED = {
    "list_tables": {"CONNECTOR_FUNCTIONS"},
    "checksum_table": {"CHECKPOINT_TABLE", "RESULTS_BUCKET", "CONNECTOR_FUNCTIONS"},
    "recheck_table": {"CHECKPOINT_TABLE", "RESULTS_BUCKET", "CONNECTOR_FUNCTIONS"},
    "copy_table": {"CHECKPOINT_TABLE", "RESULTS_BUCKET", "CONNECTOR_FUNCTIONS", "WRITER_FUNCTIONS"},
    "report": {"CHECKPOINT_TABLE", "RESULTS_BUCKET", "ALERT_TOPIC_ARN", "KEYS_QUEUE_URL"},
    "repair": {
        "AUDIT_BUCKET",
        "ALERT_TOPIC_ARN",
        "KEYS_QUEUE_URL",
        "KEYS_DEAD_LETTER_URL",
        "CONNECTOR_FUNCTIONS",
        "WRITER_FUNCTIONS",
    },
    "connector": {"DATABASE_NAME", "DATABASE_SECRET_ARN"},
    "writer": {"DATABASE_NAME", "WRITER_SECRET_ARN"},
}

TEMPLATE = template()
NO_VALUE = object()


def _parameter_value(name: str) -> str:
    """A template parameter as a deployment gives it: its default, or (a database slot's
    parameters, empty by default) a value of the slot in use."""
    default = TEMPLATE["Parameters"][name].get("Default", "")
    if str(default):
        return str(default)
    slot = re.fullmatch(r"Database(\d)(\w+)", name)
    if slot is None:
        return ""
    number, part = slot.groups()
    samples = {
        "Name": f"db{number}",
        "SecretArn": f"arn:aws:secretsmanager:us-east-1:123456789012:secret:tablesync/db{number}-AbCdEf",
        "WriterSecretArn": f"arn:aws:secretsmanager:us-east-1:123456789012:secret:tablesync/db{number}-w-AbCdEf",
        "WritableTables": "orders:insert+update, sales.lines:delete",
    }
    return samples.get(part, "")


def _reference(name: str) -> str:
    if name in TEMPLATE["Parameters"]:
        return _parameter_value(name)
    if name.startswith("AWS::"):
        return {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}.get(name, name)
    resource, _, attribute = name.partition(".")
    if attribute:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{resource}"
    return f"ref-{resource}"  # a resource's Ref: its name, ARN or URL


def _render(value: Any, names: dict[str, Any] | None = None) -> Any:
    """A CloudFormation value as the deployed function sees it, every condition taken as true
    (all four database slots in use, each with a writer)."""
    if not isinstance(value, dict):
        return str(value)
    ((function, argument),) = value.items()
    if function == "Ref":
        return NO_VALUE if argument == "AWS::NoValue" else _reference(argument)
    if function == "Fn::GetAtt":
        return _reference(".".join(argument))
    if function == "Fn::If":
        return _render(argument[1], names)
    if function == "Fn::Join":
        separator, items = argument
        return separator.join(v for v in (_render(i, names) for i in items) if v is not NO_VALUE)
    if function == "Fn::Sub":
        text, given = (argument, {}) if isinstance(argument, str) else argument
        values = {k: _render(v, names) for k, v in given.items()}
        return re.sub(r"\$\{([^}]+)\}", lambda m: values.get(m.group(1)) or _reference(m.group(1)), text)
    raise AssertionError(f"an intrinsic function this test does not know: {function}")


def _functions() -> dict[str, tuple[str, dict[str, str]]]:
    """Every function of the template: logical id -> (its directory in functions/, its environment)."""
    shared = TEMPLATE["Globals"]["Function"].get("Environment", {}).get("Variables", {})
    found = {}
    for name, resource in TEMPLATE["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        env = {k: _render(v) for k, v in {**shared, **variables}.items()}
        found[name] = (Path(resource["Properties"]["CodeUri"]).name, env)
    return found


FUNCTION_RESOURCES = _functions()


def _own_variables(resource: str) -> set[str]:
    shared = TEMPLATE["Globals"]["Function"].get("Environment", {}).get("Variables", {})
    return set(FUNCTION_RESOURCES[resource][1]) - set(shared)


def test_every_function_has_its_model() -> None:
    directories = {p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").is_file()}
    assert directories == set(FUNCTIONS) == {code for code, _ in FUNCTION_RESOURCES.values()}
    assert set(REQUIRED) == set(FUNCTIONS)


@pytest.mark.parametrize("resource", sorted(FUNCTION_RESOURCES))
def test_a_model_declares_exactly_the_variables_the_template_gives(resource: str) -> None:
    code, _ = FUNCTION_RESOURCES[resource]
    model = FUNCTIONS[code]
    declared = set(model.variables())
    assert declared - UNTEMPLATED == _own_variables(resource)
    required = {f.alias for f in model.model_fields.values() if f.alias and f.is_required()}
    assert required == REQUIRED[code]
    assert not required & UNTEMPLATED  # a knob the template does not give has a default


@pytest.mark.parametrize("resource", sorted(FUNCTION_RESOURCES))
def test_a_model_accepts_the_environment_the_template_gives(resource: str) -> None:
    code, env = FUNCTION_RESOURCES[resource]
    settings = FUNCTIONS[code].from_env(env)
    given = {f.alias: getattr(settings, name) for name, f in type(settings).model_fields.items() if f.alias in env}
    assert set(given) == _own_variables(resource)
    assert all(value is not None for value in given.values()), given
    if "CONNECTOR_FUNCTIONS" in env:
        assert sorted(given["CONNECTOR_FUNCTIONS"]) == ["db1", "db2", "db3", "db4"]
    if "WRITABLE_TABLES" in env:
        assert given["WRITABLE_TABLES"] == {"orders": {"insert", "update"}, "sales.lines": {"delete"}}


def test_the_template_values_arrive_typed() -> None:
    _, env = FUNCTION_RESOURCES["ChecksumTableFunction"]
    settings = ChecksumTableSettings.from_env(env)
    assert (settings.safety_margin_seconds, settings.max_invocations, settings.outage_wait_seconds) == (30.0, 5000, 30)
    assert settings.connectors["db2"].endswith(":function:Connector2Function")
    assert settings.lease_grace_seconds == 60.0  # not in the template: its default
    _, env = FUNCTION_RESOURCES["Connector1Function"]
    connector = ConnectorSettings.from_env(env)
    assert (connector.database_tls, connector.statement_timeout_seconds) == ("verify-full", 100.0)
    assert connector.database_ca_bundle == "/opt/python/tablesync/certs/rds-global-bundle.pem"
    assert ListTablesSettings.from_env(FUNCTION_RESOURCES["ListTablesFunction"][1]).max_concurrency == 10


def _cases() -> list[tuple[str, str]]:
    return [(resource, name) for resource, (code, _) in sorted(FUNCTION_RESOURCES.items()) for name in REQUIRED[code]]


@pytest.mark.parametrize(("resource", "variable"), _cases())
def test_a_missing_variable_is_named_in_one_line(resource: str, variable: str) -> None:
    code, env = FUNCTION_RESOURCES[resource]
    for broken in ({k: v for k, v in env.items() if k != variable}, {**env, variable: ""}):
        with pytest.raises(InputError) as raised:
            FUNCTIONS[code].from_env(broken)
        message = str(raised.value)
        assert message == f"the {code} function's environment: {variable} is not set"
        assert "\n" not in message


@pytest.mark.parametrize(
    ("model", "variable", "value"),
    [
        (ListTablesSettings, "MAX_CONCURRENCY", "many-s3cr3t"),
        (ChecksumTableSettings, "SAFETY_MARGIN_SECONDS", "-5"),
        (ChecksumTableSettings, "CONNECTOR_FUNCTIONS", "db1=fn-s3cr3t"),
        (RepairSettings, "WRITER_FUNCTIONS", '["fn-s3cr3t"]'),
        (ConnectorSettings, "DATABASE_TLS", "s3cr3t"),
        (ConnectorSettings, "STATEMENT_TIMEOUT_SECONDS", "s3cr3t"),
        (WriterSettings, "WRITABLE_TABLES", "orders:drop"),
    ],
)
def test_a_bad_variable_is_named_without_its_value(model: type[FunctionSettings], variable: str, value: str) -> None:
    resource = next(r for r, (code, _) in FUNCTION_RESOURCES.items() if FUNCTIONS[code] is model)
    env = {**FUNCTION_RESOURCES[resource][1], variable: value}
    with pytest.raises(InputError, match=rf"^the {model.FUNCTION} function's environment: {variable} is not valid \("):
        model.from_env(env)
    with pytest.raises(InputError) as raised:
        model.from_env(env)
    assert "s3cr3t" not in str(raised.value) and "\n" not in str(raised.value)


def test_every_problem_is_in_the_line() -> None:
    with pytest.raises(InputError) as raised:
        RepairSettings.from_env({"CONNECTOR_FUNCTIONS": "{}", "WRITER_FUNCTIONS": "{}", "AUDIT_BUCKET": "audit"})
    assert str(raised.value) == (
        "the repair function's environment: ALERT_TOPIC_ARN is not set; KEYS_QUEUE_URL is not set; "
        "KEYS_DEAD_LETTER_URL is not set"
    )


def test_settings_are_validated_once_per_container(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime.settings.cache_clear()
    monkeypatch.delenv("CONNECTOR_FUNCTIONS", raising=False)
    for _ in range(2):  # a failure is not kept: each invocation says it again
        with pytest.raises(InputError, match="CONNECTOR_FUNCTIONS is not set"):
            runtime.settings(ListTablesSettings)
    monkeypatch.setenv("CONNECTOR_FUNCTIONS", json.dumps({"src": "fn-src"}))
    first = runtime.settings(ListTablesSettings)
    monkeypatch.setenv("CONNECTOR_FUNCTIONS", json.dumps({"other": "fn-other"}))
    assert runtime.settings(ListTablesSettings) is first and first.connectors == {"src": "fn-src"}
    runtime.settings.cache_clear()
    assert runtime.settings(ListTablesSettings).connectors == {"other": "fn-other"}
    runtime.settings.cache_clear()


def test_a_function_without_its_environment_fails_with_the_line(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_aws_env(monkeypatch, POWERTOOLS_TRACE_DISABLED="true", CHECKPOINT_TABLE="checkpoints")
    for name in ("RESULTS_BUCKET", "ALERT_TOPIC_ARN", "KEYS_QUEUE_URL"):
        monkeypatch.delenv(name, raising=False)
    runtime.settings.cache_clear()
    event = json.loads((ROOT / "tests" / "events" / "report.json").read_text())
    with pytest.raises(InputError, match=r"^the report function's environment: RESULTS_BUCKET is not set; ALERT"):
        handler("report").lambda_handler(event, Context())
    runtime.settings.cache_clear()


def test_a_database_function_answers_a_bad_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connector's or writer's error is its answer (the caller fails the table or parks the
    message with it) rather than a crashed invocation, which the caller would retry as an outage."""
    fake_aws_env(monkeypatch, POWERTOOLS_TRACE_DISABLED="true", DATABASE_NAME="db1")
    monkeypatch.delenv("DATABASE_SECRET_ARN", raising=False)
    runtime.database.reset()
    answer = handler("connector").lambda_handler({"op": "describe", "args": {"table": "orders"}}, Context())
    assert answer == {
        "error": {
            "type": "InputError",
            "message": "the connector function's environment: DATABASE_SECRET_ARN is not set",
        }
    }
    monkeypatch.setenv("WRITER_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:w")
    monkeypatch.setenv("WRITABLE_TABLES", "orders:upsert")
    runtime.writer.reset()
    runtime.writable_tables.cache_clear()
    writes = {"plan": {"table": "orders", "key": [], "columns": []}, "writes": [{"action": "delete", "key": [1]}]}
    answer = handler("writer").lambda_handler({"op": "write_rows", "args": writes}, Context())
    assert answer["error"]["type"] == "InputError"
    assert answer["error"]["message"].startswith("the writer function's environment: WRITABLE_TABLES is not valid")
    runtime.writer.reset()
    runtime.writable_tables.cache_clear()


def test_code_that_calls_the_steps_directly_builds_all_settings_by_name() -> None:
    settings = Settings(dead_letter_url="https://sqs/dlq", audit_bucket="audit", safety_margin_seconds=0)
    for model in FUNCTIONS.values():
        if model not in (ConnectorSettings, WriterSettings):
            assert isinstance(settings, model), model
    assert (settings.queue_url, settings.connectors, settings.max_concurrency) == ("", {}, 10)
    assert Settings.from_env({}) == Settings()  # nothing is required of it
