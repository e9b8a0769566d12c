"""The benchmark script keeps working: its --quick mode (about 50,000 rows per scenario) runs here
and must find exactly the injected differences in every scenario."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_finds_exactly_the_injected_differences(pg_admin, mysql_admin):
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    scenarios = ("identical", "diff_0_01", "diff_1", "block_missing", "varchar_pk", "composite_pk")
    scenarios += ("uuid_char", "uuid_native", "varchar_both_scan")
    for scenario in scenarios:
        assert f"### {scenario} " in run.stdout
    tablesync_rows = [line for line in run.stdout.splitlines() if line.startswith("| tablesync |")]
    assert len(tablesync_rows) == len(scenarios)
    assert all(line.rstrip().endswith("| yes |") for line in tablesync_rows), run.stdout
