"""The example configs shipped in the package (actstats/configs/*.toml): each parses, `actstats
init` copies one to a file (refusing to overwrite, one line and exit 2), `--list` names them,
and `actstats capture --example NAME` captures one. Without torch where none is needed."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from actstats import configs
from actstats.capture.config import load_config, parse_config
from actstats.errors import ActstatsError

from conftest import ROOT, run_main

NAMES = configs.names()
PACKAGED = Path(ROOT, "actstats", "configs")


def cli(capsys, *argv):
    """run_main, also when argparse itself refuses the command line (it exits)."""
    try:
        return run_main(capsys, *argv)
    except SystemExit as exited:
        captured = capsys.readouterr()
        return exited.code, captured.out, captured.err


def test_the_examples_are_the_packaged_files():
    assert NAMES == sorted(p.stem for p in PACKAGED.glob("*.toml"))
    assert "default" in NAMES


def test_the_makefile_and_the_findings_generator_name_examples_that_exist():
    makefile = Path(ROOT, "Makefile").read_text()
    findings = re.search(r"(?m)^FINDINGS := (.*)$", makefile).group(1).split()
    assert findings and set(findings) <= set(NAMES)
    assert "CONFIG ?= actstats/configs/default.toml" in makefile
    assert os.path.isfile(os.path.join(ROOT, "actstats", "configs", "default.toml"))
    source = ast.parse(Path(ROOT, "tools", "findings.py").read_text())
    experiments = next(ast.literal_eval(node.value) for node in source.body
                       if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "EXPERIMENTS")
    assert {name for name, _ in experiments} == set(findings)


@pytest.mark.parametrize("name", NAMES)
def test_every_example_parses(name):
    text = configs.text(name)
    assert text == (PACKAGED / f"{name}.toml").read_text(encoding="utf-8")
    config = parse_config(text, source=f"{name}.toml")
    assert config.runs
    with configs.path(name) as path:
        assert load_config(path).sweep == config.sweep
    summary = configs.summary(name)  # what --list shows: one line that says something
    assert 20 <= len(summary) <= 100 and text.startswith(f"# {summary}\n")


def test_an_unknown_example_names_the_known_ones():
    with pytest.raises(ActstatsError, match=r"unknown example 'defualt' \(did you mean 'default'\?\); "
                                                    r"the examples: answer, default, "):
        configs.text("defualt")


# ----------------------------------------------------------------------------- actstats init


def test_init_writes_the_packaged_file(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capsys, "init")
    assert (code, err) == (0, "")
    assert (tmp_path / "default.toml").read_bytes() == (PACKAGED / "default.toml").read_bytes()
    assert out == "default.toml: the example 'default'; edit it, then: actstats capture default.toml -o STORE\n"
    code, out, err = run_main(capsys, "init", "glorot2010", "-o", tmp_path / "sub dir.toml")
    assert (code, err) == (0, "")
    assert (tmp_path / "sub dir.toml").read_bytes() == (PACKAGED / "glorot2010.toml").read_bytes()
    assert out.endswith(f"actstats capture '{tmp_path / 'sub dir.toml'}' -o STORE\n")


def test_init_to_standard_output(capsys):
    code, out, err = run_main(capsys, "init", "terminal", "-o", "-")
    assert (code, out, err) == (0, (PACKAGED / "terminal.toml").read_text(encoding="utf-8"), "")


def test_init_list_names_each_example_with_its_first_comment_line(capsys):
    code, out, err = run_main(capsys, "init", "--list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == NAMES
    for name, line in zip(NAMES, lines):
        assert line.endswith("  " + configs.summary(name))


@pytest.mark.parametrize("argv, message", [
    (["init", "-o", "{existing}"], "{existing}: exists; --overwrite replaces it"),
    (["init", "nonsense", "-o", "{fresh}"], "unknown example 'nonsense'; the examples: " + ", ".join(NAMES)),
    (["init", "-o", "{directory}"], "-o {directory}: is a directory; give a file name"),
    (["init", "-o", ""], "-o: an empty file name"),
    (["init", "default", "--list"], "--list takes no NAME, -o or --overwrite"),
    (["init", "a", "b"], "error: unrecognized arguments: b"),
])
def test_init_refusals_are_one_line_and_exit_2(capsys, tmp_path, argv, message):
    existing = tmp_path / "mine.toml"
    existing.write_text("# my edits\n")
    names = {"existing": existing, "fresh": tmp_path / "fresh.toml", "directory": tmp_path}
    code, out, err = cli(capsys, *(a.format(**names) for a in argv))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(("actstats init: ", "actstats: ")), err
    assert message.format(**names) in err, err
    assert existing.read_text() == "# my edits\n" and not names["fresh"].exists()


def test_init_overwrite_replaces_an_existing_file(capsys, tmp_path):
    existing = tmp_path / "mine.toml"
    existing.write_text("# my edits\n")
    code, _, err = run_main(capsys, "init", "answer", "-o", existing, "--overwrite")
    assert (code, err) == (0, "")
    assert existing.read_bytes() == (PACKAGED / "answer.toml").read_bytes()


def test_init_and_an_unknown_example_import_no_torch(tmp_path):
    """init reads package data; capture refuses an unknown example before importing torch."""
    program = textwrap.dedent("""
        import json, sys
        from actstats.cli import main
        codes = [main(["init", "-o", "x.toml"]), main(["init", "--list"]),
                 main(["capture", "--example", "nonsense", "-o", "s.zarr"])]
        print(json.dumps([codes, sorted(m for m in ("torch", "actstats.capture") if m in sys.modules)]))
    """)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [[0, 0, 2], []]
    assert result.stderr.startswith("actstats capture: unknown example 'nonsense'")
    assert (tmp_path / "x.toml").is_file() and not (tmp_path / "s.zarr").exists()


# ------------------------------------------------------------------ actstats capture --example


def test_capture_example_passes_the_packaged_file(capsys, tmp_path, monkeypatch):
    """--example default hands capture a file holding the packaged text (the 32-run capture
    itself is make report's)."""
    import actstats.capture

    seen = {}

    def fake_capture(config, store, **options):
        seen.update(text=Path(config).read_text(encoding="utf-8"), store=store, **options)
        return {"runs": 32, "written": 0, "already_complete": 0}

    monkeypatch.setattr(actstats.capture, "capture", fake_capture)
    code, out, err = run_main(capsys, "capture", "--example", "default", "-o", tmp_path / "d.zarr", "--resume")
    assert (code, err) == (0, "")
    assert seen == {"text": configs.text("default"), "store": str(tmp_path / "d.zarr"), "resume": True,
                    "overwrite": False, "workers": 1}
    assert out == f"{tmp_path / 'd.zarr'}: 32 runs; 0 records written, 0 were already complete\n"


TINY = """\
# A tiny example: one run of a few units, two records.
[dataset]
name = "digits"
probe_train = 12
probe_test = 6

[model]
depth = 1
width = 4

[train]
epochs = 1

[record]
epochs = [0, 1]
"""


def test_capture_example_captures_it(capsys, tmp_path, monkeypatch):
    """An example captured by name: the store holds its text (the examples' directory pointed
    at one holding a tiny example, for speed)."""
    import actstats
    import actstats.capture.recorder

    monkeypatch.setattr(actstats.capture.recorder, "FSYNC", False)  # the same bytes, written sooner
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "tiny.toml").write_text(TINY)
    monkeypatch.setattr(configs, "_directory", lambda: examples)
    code, out, err = run_main(capsys, "capture", "--example", "tiny", "-o", tmp_path / "t.zarr")
    assert (code, err) == (0, "")
    assert out.endswith("t.zarr: 1 runs; 2 records written, 0 were already complete\n")
    ds = actstats.open_store(tmp_path / "t.zarr")
    assert ds.attrs["config_text"] == TINY and bool(ds["complete"].values.all())


@pytest.mark.parametrize("argv, message", [
    (["capture", "-o", "x.zarr"], "error: one of the arguments CONFIG --example is required"),
    (["capture", "c.toml", "--example", "default", "-o", "x.zarr"], "error: argument --example: not allowed with argument CONFIG"),
])
def test_capture_takes_a_config_or_an_example(capsys, argv, message):
    assert cli(capsys, *argv) == (2, "", f"actstats capture: {message}\n")
