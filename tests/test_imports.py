"""What ``import actstats`` and the command line's start load, and that ``ds.actstats`` is
registered whichever way xarray arrives (before actstats, after it, or through open_store).

Each check runs in a fresh interpreter: this test process has imported everything already.
Timing goals (``actstats --help`` under 0.5 s) are measured by tests/benchmarks/bench_startup.py,
not asserted here; what is asserted is the cause: no heavy module at start.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("xarray", "pandas", "zarr", "dask", "scipy", "statsmodels", "matplotlib", "torch", "numcodecs", "numba")


def _loaded_after(code: str) -> dict:
    script = (
        "import json, sys\n" + code + "\n"
        f"print(json.dumps({{name: name in sys.modules for name in {list(HEAVY)!r}}}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_actstats_loads_nothing_heavy():
    loaded = _loaded_after("import actstats")
    assert not any(loaded.values()), loaded


def test_the_command_line_parses_its_arguments_without_loading_anything_heavy():
    loaded = _loaded_after(
        "from actstats.cli import build_parser\n"
        "parser = build_parser()\n"
        "parser.parse_args(['saturation', 'x.zarr', '--runs', '0,1', '--epochs', 'last', '--layers', '1'])\n"
    )
    assert not any(loaded.values()), loaded


def _has_accessor(code: str) -> bool:
    script = code + "\nimport xarray\nprint(hasattr(xarray.Dataset(), 'actstats'))\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1] == "True"


def test_the_accessor_is_registered_whichever_is_imported_first():
    assert _has_accessor("import actstats\nimport xarray")  # xarray after actstats
    assert _has_accessor("import xarray\nimport actstats")  # xarray before actstats
    assert _has_accessor("import actstats\nimport xarray.core.dataset")  # a submodule first
    assert not _has_accessor("pass")  # the check itself can fail: no actstats, no accessor


def test_the_accessor_works_on_a_store_opened_after_a_bare_import(tmp_path):
    path = str(tmp_path / "s.zarr")
    script = (
        "import actstats\n"
        "from actstats.synthetic import write_synthetic_store\n"
        f"write_synthetic_store({path!r}, runs=1, epochs=2, layers=1, samples=8, units=4)\n"
        f"ds = actstats.open_store({path!r})\n"
        "print(float(ds.actstats.saturation(by='run').fraction.values[0]) >= 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "True"


def test_info_on_a_local_store_loads_nothing_heavy(tmp_path):
    """``actstats info`` reads the store's metadata and small arrays itself
    (actstats.store.summary): none of xarray, zarr, dask, scipy (nor the queries package)."""
    import numpy as np

    from actstats.synthetic import write_synthetic_store

    path = write_synthetic_store(str(tmp_path / "s.zarr"), runs=2, epochs=2, layers=1, samples=8, units=3,
                                 training={"train_accuracy": np.array([[0.1, 0.95], [0.2, 0.5]])})
    loaded = _loaded_after(
        "import contextlib, io\n"
        "from actstats.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        f"    assert main(['info', {path!r}]) == 0\n"
        "    assert main(['info', '--format', 'json', " + repr(path) + "]) == 0\n"
        "assert 'train_acc' in out.getvalue(), out.getvalue()\n"
        "assert 'actstats.queries' not in sys.modules\n"
    )
    assert not any(loaded.values()), loaded
