"""Bad input to tools/multigoal_picture.py: one ``error:`` line, exit status 2, nothing written,
before any training starts."""

from __future__ import annotations

import pytest
from script_loader import load_script


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--steps", "0"], "argument --steps: 0 is invalid; valid: an integer >= 1"),
        (["--steps", "4k"], "argument --steps: '4k' is not an integer"),
        (["--trajectories", "0"], "argument --trajectories: 0 is invalid"),
        (["--horizon", "-3"], "argument --horizon: -3 is invalid"),
        (["--seed", "-1"], "argument --seed: -1 is invalid"),
        (
            ["--out", "{file}/multigoal.png"],
            "is not a directory); valid: a file path in a writable directory",
        ),
        (["--out", "/proc/multigoal.png"], "argument --out: /proc/multigoal.png is not writable"),
        (["--out", "{dir}/multigoal.jpg"], "does not end in .png; valid: a .png file path"),
        (["--json", "{dir}"], "argument --json: {dir} is not writable (it exists and is not a file)"),
    ],
)
def test_bad_input_is_one_line_and_status_2(args, expected, tmp_path, capsys):
    existing = tmp_path / "a_file"
    existing.write_text("")
    fill = {"{file}": str(existing), "{dir}": str(tmp_path)}
    for key, value in fill.items():
        args = [a.replace(key, value) for a in args]
        expected = expected.replace(key, value)
    for flag, name in (("--out", "out.png"), ("--json", "out.json")):
        if flag not in args:  # never the repository's own docs/ paths
            args = [*args, flag, str(tmp_path / name)]
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as stop:
        load_script("multigoal_picture").main(args)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written
