"""The repair summary says what was written, what changed under the repair and what is left."""

from __future__ import annotations

import json

from tablesync.models import RepairFailure, RepairResult
from tablesync.output import render_repair, repair_line


def test_a_clean_repair_says_the_target_matches() -> None:
    (line,) = render_repair(RepairResult(url="t", inserted=3, updated=2, in_sync=1))
    assert line == "repair t: 3 inserted, 2 updated, 0 deleted, 1 already in sync when re-read; the target now matches"


def test_rows_changed_under_the_repair_do_not_look_clean() -> None:
    result = RepairResult(
        url="t",
        updated=5,
        changed=1,
        source_changed=1,
        changed_keys=[[4], ["a", 2]],
        not_enabled={"extra": 2},
        failed=[RepairFailure(key=[9], action="insert", reason="Duplicate entry")],
    )
    lines = render_repair(result)
    assert lines[0].endswith("; 5 differences left")
    assert "1 changed on the target under the repair (left alone)" in lines[0]
    assert "1 written while their source row changed (to be checked again)" in lines[0]
    assert "2 extra not written (no --delete-extra)" in lines[0]
    assert lines[1] == '  changed    [4] ["a", 2] (run again to repair them)'
    assert lines[2] == "  failed insert [9]: Duplicate entry"
    assert result.remaining == 5


def test_the_json_of_a_repair_says_what_is_left() -> None:
    repair = RepairResult(url="mysql://db/x", updated=3, changed=1, changed_keys=[[7]])
    dumped = json.loads(repair_line(repair))["repair"]
    assert (dumped["remaining"], dumped["verdict"], dumped["changed_keys"]) == (1, "1 difference left", [[7]])
    clean = RepairResult(url="mysql://db/x", inserted=2).model_dump(mode="json")
    assert (clean["remaining"], clean["verdict"]) == (0, "the target now matches")


def test_the_cli_and_the_app_render_one_report_model() -> None:
    """A finished diff (the CLI) and the app's running tally become the same TableReport, and one
    renderer writes both: counts, the first keys of each kind, how many more."""
    from tablesync.models import DiffResult, SourceResult, TargetResult, TargetTally
    from tablesync.output import RENDERERS, render_text
    from tablesync.report import TableReport, table_report, tally_summary

    missing = [[i] for i in range(25)]
    result = DiffResult(
        table="orders",
        source=SourceResult(url="src", rows=100),
        targets=[TargetResult(url="dst", rows_compared=100, missing=missing, extra=[], differing=[[99]])],
        duration_s=1.0,
        complete=True,
    )
    cli_text = RENDERERS["text"](result)
    assert cli_text == render_text(table_report(result, sample_keys=20))
    assert "  missing    [0] [1]" in cli_text and "... and 5 more (--format json lists all)" in cli_text
    assert table_report(result).status == "different"

    tally = TargetTally(rows_compared=100, missing=missing, differing=[[99]])
    app = TableReport(table="orders", status="different", source="src", source_rows=100, duration_s=1.0)
    app.targets = [tally_summary("dst", tally)]
    app_text = render_text(app)
    assert app_text.splitlines()[:2] == cli_text.splitlines()[:2]  # the same counts, one renderer
    assert "... and 15 more" in app_text  # the app carries the first 10 keys of each kind
    assert json.loads(RENDERERS["json"](result))["targets"][0]["missing"] == missing
