"""Console progress in logs (not a terminal): rate-limited plain lines, forced lines, silence."""

from __future__ import annotations

from meow.runners.progress import Progress


def test_plain_lines_are_rate_limited_unless_forced(capsys):
    progress = Progress(total=1000, initial=100, desc="meow Hopper-v5", min_interval=3600)
    assert progress.bar is None  # pytest's stderr is not a terminal
    progress.update(50)
    progress.show({"return": "12.0"})
    progress.show({"return": "13.0"})  # within min_interval: skipped
    progress.show({"eval": "20.0"}, force=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[meow] meow Hopper-v5 step 150/1,000 | return 12.0 |")
    assert "eval 20.0" in lines[1]


def test_disabled_progress_prints_nothing(capsys):
    progress = Progress(total=10, initial=0, desc="x", enabled=False)
    progress.update(5)
    progress.show({"return": "1.0"}, force=True)
    progress.close()
    assert capsys.readouterr().out == ""
