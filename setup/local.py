"""Runs the whole application offline, with no AWS account: starts the ministack emulator on
127.0.0.1, builds and deploys the SAM stack to it, stores connector secrets for the local
PostgreSQL and MariaDB, starts an execution, waits for it and prints the report.

    python setup/local.py                      # make local: demo tables, one run, the report
    python setup/local.py --keep-running       # leave the emulator up (AWS_ENDPOINT_URL printed)

The same class drives the end-to-end tests (tests/e2e)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REGION = "us-east-1"
STACK = "tablesync-local"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalStack:
    """ministack on 127.0.0.1 and the tablesync stack deployed to it."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.outputs: dict[str, str] = {}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            AWS_ENDPOINT_URL=self.endpoint,
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_DEFAULT_REGION=REGION,
            AWS_REGION=REGION,
            SAM_CLI_TELEMETRY="0",
            SAM_CLI_CONTEXTS="",
        )
        env.pop("AWS_PROFILE", None)
        return env

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    # --- the emulator ----------------------------------------------------------------------
    def start(self, timeout: float = 60) -> None:
        env = self.env()
        env.update(BIND_HOST="127.0.0.1", GATEWAY_PORT=str(self.port), TMPDIR=str(self.workdir))
        log = open(self.workdir / "ministack.log", "wb")  # noqa: SIM115 - the process keeps it
        self.process = subprocess.Popen([str(BIN / "ministack")], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ministack exited: see {self.workdir / 'ministack.log'}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/_localstack/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"ministack did not answer on {self.endpoint} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    # --- the stack -------------------------------------------------------------------------
    def sam(self, *args: str) -> str:
        run = subprocess.run(
            [str(BIN / "sam"), *args], cwd=ROOT, env=self.env(), capture_output=True, text=True, check=False
        )
        if run.returncode != 0:
            raise RuntimeError(f"sam {args[0]} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        return run.stdout

    def build(self) -> None:
        self.sam("build", "--build-dir", str(self.workdir / "build"), "--cache-dir", str(self.workdir / "cache"))

    def put_secret(self, name: str, value: dict[str, Any]) -> str:
        secrets = self.client("secretsmanager")
        try:
            arn: str = secrets.create_secret(Name=name, SecretString=json.dumps(value))["ARN"]
        except secrets.exceptions.ResourceExistsException:
            secrets.put_secret_value(SecretId=name, SecretString=json.dumps(value))
            arn = secrets.describe_secret(SecretId=name)["ARN"]
        return arn

    def deploy(
        self,
        databases: dict[str, dict[str, Any]],
        writers: dict[str, dict[str, Any]] | None = None,
        **parameters: str,
    ) -> dict[str, str]:
        """Deploys with one connector per database (name -> secret contents); `writers` gives the
        databases that repairs may write, with their writer secrets."""
        # The local servers speak no TLS (a deployment to AWS verifies it: DatabaseTls=verify-full).
        parameters = {"Environment": "local", "DatabaseTls": "disable", **parameters}
        overrides: list[str] = []
        for slot, (name, secret) in enumerate(databases.items(), start=1):
            arn = self.put_secret(f"tablesync/local/{name}", secret)
            overrides += [f"Database{slot}Name={name}", f"Database{slot}SecretArn={arn}"]
            if writers and name in writers:
                writer_arn = self.put_secret(f"tablesync/local/{name}-writer", writers[name])
                overrides.append(f"Database{slot}WriterSecretArn={writer_arn}")
        overrides += [f"{k}={v}" for k, v in parameters.items()]
        self.sam(
            "deploy",
            "--template-file", str(self.workdir / "build" / "template.yaml"),
            "--stack-name", STACK,
            "--resolve-s3",
            "--capabilities", "CAPABILITY_IAM",
            "--no-confirm-changeset",
            "--no-fail-on-empty-changeset",
            "--region", REGION,
            "--parameter-overrides", *overrides,
        )  # fmt: skip
        stack = self.client("cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        return self.outputs

    def start_execution(self, execution_input: dict[str, Any]) -> str:
        """Starts an execution; returns its ARN."""
        started = self.client("stepfunctions").start_execution(
            stateMachineArn=self.outputs["StateMachineArn"], input=json.dumps(execution_input)
        )
        arn: str = started["executionArn"]
        return arn

    def wait(self, execution_arn: str, timeout: float = 300) -> dict[str, Any]:
        """Waits for an execution to end; returns describe_execution's answer."""
        stepfunctions = self.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described: dict[str, Any] = stepfunctions.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                return described
            time.sleep(0.5)
        raise RuntimeError(f"the execution did not finish within {timeout:.0f} s")

    def execute(self, execution_input: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
        """Starts an execution and waits for it; returns describe_execution's answer."""
        return self.wait(self.start_execution(execution_input), timeout)

    def invoke(self, function_id: str, event: dict[str, Any]) -> Any:
        """Invokes one of the stack's functions (its logical id) and returns its answer."""
        resource = self.client("cloudformation").describe_stack_resource(StackName=STACK, LogicalResourceId=function_id)
        name = resource["StackResourceDetail"]["PhysicalResourceId"]
        answer = self.client("lambda").invoke(FunctionName=name, Payload=json.dumps(event).encode())
        return json.loads(answer["Payload"].read() or b"null")

    def report(self, run_id: str) -> dict[str, Any]:
        s3 = self.client("s3")
        listed = s3.list_objects_v2(Bucket=self.outputs["ResultsBucketName"], Prefix=f"reports/{run_id}/")
        latest = max(obj["Key"] for obj in listed.get("Contents", []))  # one object per execution of the run
        body = s3.get_object(Bucket=self.outputs["ResultsBucketName"], Key=latest)
        data: dict[str, Any] = json.loads(body["Body"].read())
        return data


# --- make local --------------------------------------------------------------------------------
LOCAL_DATABASES = {
    "pg": {
        "engine": "postgres",
        "host": "127.0.0.1",
        "port": 5432,
        "username": "postgres",
        "password": "",
        "dbname": "test",
    },
    "mysql": {
        "engine": "mariadb",
        "host": "127.0.0.1",
        "port": 3306,
        "username": "root",
        "password": "",
        "dbname": "test",
    },
}


def demo_tables() -> None:
    """tablesync_demo_orders in PostgreSQL and a drifted copy in MariaDB."""
    import psycopg
    import pymysql

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as pg:
        pg.execute("DROP TABLE IF EXISTS tablesync_demo_orders")
        pg.execute(
            "CREATE TABLE tablesync_demo_orders (id bigint PRIMARY KEY, qty int, amount numeric(12,2), note text)"
        )
        pg.execute(
            "INSERT INTO tablesync_demo_orders SELECT g, g % 10, (g % 1000) / 10.0, 'order ' || g "
            "FROM generate_series(1, 100000) g"
        )
    my = pymysql.connect(host="127.0.0.1", user="root", password="", database="test", autocommit=True)
    with my.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS tablesync_demo_orders")
        cur.execute(
            "CREATE TABLE tablesync_demo_orders (id bigint PRIMARY KEY, qty int, amount decimal(12,2), note text)"
        )
        cur.execute(
            "INSERT INTO tablesync_demo_orders SELECT seq, seq % 10, (seq % 1000) / 10.0, CONCAT('order ', seq) "
            "FROM seq_1_to_100000"
        )
        cur.execute("DELETE FROM tablesync_demo_orders WHERE id IN (17, 50000)")
        cur.execute("UPDATE tablesync_demo_orders SET amount = amount + 0.01 WHERE id = 777")
        cur.execute("INSERT INTO tablesync_demo_orders VALUES (100001, 1, 1.00, 'not in the source')")
    my.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep-running", action="store_true", help="leave the emulator running")
    parser.add_argument("--port", type=int, default=4566)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="tablesync-local-"))
    stack = LocalStack(workdir, args.port)
    print(f"starting ministack on {stack.endpoint}", file=sys.stderr)
    stack.start()
    try:
        print("sam build", file=sys.stderr)
        stack.build()
        print("sam deploy (connectors for the local PostgreSQL and MariaDB)", file=sys.stderr)
        stack.deploy(LOCAL_DATABASES)
        demo_tables()
        check = {"source": "pg", "targets": ["mysql"], "tables": ["tablesync_demo_orders"]}
        print(f"start execution: {json.dumps({'check': check})}", file=sys.stderr)
        execution = stack.execute({"check": check, "run_id": f"local-{int(time.time())}"})
        print(f"execution {execution['status']}", file=sys.stderr)
        output = json.loads(execution.get("output") or "{}")
        run_id = output.get("run_id") or json.loads(execution["input"]).get("run_id")
        print(json.dumps(stack.report(run_id), indent=2))
        if args.keep_running:
            print(
                f"\nministack keeps running: export AWS_ENDPOINT_URL={stack.endpoint} (Ctrl-C stops it)",
                file=sys.stderr,
            )
            stack.process.wait()  # type: ignore[union-attr]
        return 0 if execution["status"] == "SUCCEEDED" else 1
    except KeyboardInterrupt:
        return 130
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
