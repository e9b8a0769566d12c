from tablesync.cli import main


def test_demo_runs_and_finds_the_drift(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "2 missing, 1 extra, 3 differing" in out
    assert "missing    [17] [2500]" in out
