"""`pip install actstats` as a user gets it: the wheel built from this tree, installed into a
fresh virtual environment, used from a directory outside the repository.

The wheel is installed with ``--no-deps``; its dependencies are those of the environment
running the tests, made visible by a ``.pth`` file that lists that environment's
site-packages. A path line in a ``.pth`` file does not process that directory's own ``.pth``
files, so the repository's editable install (a finder loaded by a ``.pth``) stays out: the
test checks that ``actstats`` is imported from the new environment.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.long

#: What a developer's tree may hold that is not source: never copied to the build.
NOT_SOURCE = (".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "*.zarr", "report",
              ".pytest_cache", ".hypothesis")


def _run(argv, *, cwd, env=None, timeout=600):
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd, env=env,
                            timeout=timeout)
    assert result.returncode == 0, (argv, result.stdout[-2000:], result.stderr[-4000:])
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built without isolation from a copy of the tree (the build's build/ and
    egg-info go into the copy, not the repository)."""
    pytest.importorskip("build")
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp / "dist", source], cwd=tmp)
    (built,) = (tmp / "dist").glob("actstats-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict:
    """A fresh venv holding only the wheel; the test environment's site-packages on its path."""
    tmp = tmp_path_factory.mktemp("venv")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index",
          "--disable-pip-version-check", wheel], cwd=tmp)
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=tmp).stdout.strip())
    assert purelib.is_relative_to(venv)
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    (purelib / "_actstats_test_dependencies.pth").write_text(
        "".join(f"{path}\n" for path in sorted(ours) if os.path.isdir(path)))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    work = tmp / "work"  # outside the repository: nothing found through the current directory
    work.mkdir()
    assert not work.resolve().is_relative_to(Path(ROOT).resolve())
    return {"venv": venv, "python": python, "actstats": venv / "bin" / "actstats", "env": env, "work": work}


def test_the_wheel_holds_the_package_and_its_configs_only(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        configs = sorted(Path(n).name for n in names if n.startswith("actstats/configs/") and n.endswith(".toml"))
        packaged = sorted(p.name for p in Path(ROOT, "actstats", "configs").glob("*.toml"))
        assert configs == packaged and "default.toml" in configs
        for name in configs:
            assert archive.read(f"actstats/configs/{name}") == Path(ROOT, "actstats", "configs", name).read_bytes()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    top = {n.split("/")[0] for n in names}
    assert top == {"actstats", wheel.name.split("-py3")[0] + ".dist-info"}, top  # no capture/, tests/, data/, tools/
    packages = {os.path.dirname(n) for n in names if n.endswith("/__init__.py")}
    assert {"actstats", "actstats/capture", "actstats/configs"} <= packages
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".zarr"))]
    assert "actstats = actstats.cli:main" in entry_points

    from packaging.requirements import Requirement

    requirements = [Requirement(line.split(":", 1)[1].strip())
                    for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    (torch,) = [r for r in requirements if r.name == "torch"]
    assert str(torch.marker) == 'extra == "capture"'
    assert torch.specifier and all(s.operator in (">=", ">") for s in torch.specifier), torch  # no upper bound
    assert any(r.name == "s3fs" and str(r.marker) == 'extra == "s3"' for r in requirements)
    assert not any(r.name == "torch" and r.marker is None for r in requirements)  # analysis needs no torch


def test_the_installed_package_is_the_wheels(installed):
    program = ("import importlib.util, actstats, actstats.capture, actstats.configs; "
               "print(actstats.__file__); print(actstats.configs.__file__); "
               "print(importlib.util.find_spec('capture'))")
    out = _run([installed["python"], "-c", program], cwd=installed["work"], env=installed["env"]).stdout.split("\n")
    assert Path(out[0]).is_relative_to(installed["venv"]) and Path(out[1]).is_relative_to(installed["venv"]), out
    assert out[2] == "None"  # no top-level capture package


def test_help_init_and_a_query_from_outside_the_repository(installed):
    cli, work, env = installed["actstats"], installed["work"], installed["env"]
    assert Path(cli.read_text().splitlines()[0][2:]).parent == installed["python"].parent  # the venv's console script
    result = _run([cli, "--help"], cwd=work, env=env)
    assert "init" in result.stdout and "capture" in result.stdout and "saturation" in result.stdout

    result = _run([cli, "init", "default", "-o", "x.toml"], cwd=work, env=env)
    assert result.stdout.startswith("x.toml: the example 'default'")
    assert (work / "x.toml").read_bytes() == Path(ROOT, "actstats", "configs", "default.toml").read_bytes()
    listed = _run([cli, "init", "--list"], cwd=work, env=env).stdout.splitlines()
    assert [line.split()[0] for line in listed] == sorted(p.stem for p in Path(ROOT, "actstats", "configs").glob("*.toml"))
    refused = subprocess.run([cli, "init", "default", "-o", "x.toml"], capture_output=True, text=True, cwd=work, env=env)
    assert refused.returncode == 2 and refused.stderr == "actstats init: x.toml: exists; --overwrite replaces it\n"

    # a small store written by the installed package, then a query on it from the command line
    _run([installed["python"], "-c", "import actstats; from actstats.synthetic import synthetic_store; "
          "actstats.write_store('s.zarr', synthetic_store(runs=2, weight_scale=8.0, seed=1))"], cwd=work, env=env)
    result = _run([cli, "saturation", "s.zarr", "--format", "json", "--no-progress"], cwd=work, env=env)
    records = json.loads(result.stdout)

    import actstats

    expected = actstats.to_records(actstats.saturation(actstats.open_store(work / "s.zarr")))
    assert len(records) == len(expected) == 2 * 2 * 2 * 2  # run × epoch × layer × split
    assert [r["fraction"] for r in records] == pytest.approx([r["fraction"] for r in expected])
    assert any(r["fraction"] > 0.1 for r in records)  # the large weights saturate: the numbers are not all 0
