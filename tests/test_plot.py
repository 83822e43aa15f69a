"""actstats.plot: each figure draws the store's numbers (checked against numpy or the query
computed independently), into axes given or new ones, and refuses a bad argument in one line;
the README's notebook example runs."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import actstats  # noqa: E402
from actstats import plot  # noqa: E402
from actstats.errors import ActstatsError, ActstatsValueError  # noqa: E402
from conftest import ROOT  # noqa: E402
from tolerances import STATISTIC, float_rtol, sum_condition  # noqa: E402

# The small store (tests/conftest.py): runs 0-3 have depth 1, runs 4-7 depth 3; even runs
# sigmoid, odd tanh; 40 training and 24 held-out probes; epochs 0, 0.25, 1, 2.
DEEP_SIGMOID, DEEP_TANH, SHALLOW = 4, 5, 0


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def store(stores):
    return stores["dask"]


@pytest.fixture(scope="module")
def values(stores):
    """The store's arrays as numpy, for independent checks."""
    ds = stores["numpy"]
    return {
        "activation": np.asarray(ds["activation"].transpose("run", "epoch", "layer", "sample", "unit").values,
                                 dtype=np.float64),
        "train": np.asarray(ds["split"].values).astype(str) == "train",
        "epoch": np.asarray(ds["epoch"].values, dtype=float),
        "complete": np.asarray(ds["complete"].transpose("run", "epoch").values, dtype=bool),
    }


def _lines(panel):
    """The data lines of a panel (not the reference lines of axhline, which span the axes)."""
    return [line for line in panel.get_lines() if line.get_transform() is panel.transData]


def _references(panel):
    return [line for line in panel.get_lines() if line.get_transform() is not panel.transData]


# ------------------------------------------------------------------ each figure's content


def test_mean_std_draws_one_line_per_layer_at_the_numpy_mean(store, values):
    axes = plot.mean_std(store, runs=[DEEP_SIGMOID, SHALLOW])
    assert axes.shape == (1, 2)
    for panel, run in zip(axes[0], (DEEP_SIGMOID, SHALLOW)):
        lines = _lines(panel)
        depth = 3 if run == DEEP_SIGMOID else 1
        assert [line.get_label() for line in lines] == [f"layer {k}" for k in range(1, depth + 1)]
        assert panel.get_title().startswith(f"run {run}: ")
        ok = values["complete"][run]
        h = values["activation"][run][:, :depth][:, :, values["train"]]  # (epoch, layer, train sample, unit)
        rtol = float_rtol(h[0, 0].size, condition=STATISTIC)  # sigmoid: terms of one sign; two orders of a sum
        for layer, line in enumerate(lines):
            np.testing.assert_array_equal(line.get_xdata(), values["epoch"][ok])
            np.testing.assert_allclose(line.get_ydata(), np.nanmean(h[:, layer], axis=(1, 2))[ok], rtol=rtol)
        # the bands reach mean ± std (ddof 0) and no further
        top = np.nanmean(h, axis=(2, 3)) + np.nanstd(h, axis=(2, 3))
        reached = max(c.get_paths()[0].vertices[:, 1].max() for c in panel.collections)
        np.testing.assert_allclose(reached, top[ok].max(), rtol=rtol)


def test_mean_std_on_held_out_probes_of_a_selection(store, values):
    narrowed = actstats.select_runs(store, where={"activation_fn": "tanh", "depth": 3})
    axes = plot.mean_std(narrowed, split="test", layers=[2])
    assert axes.shape == (1, 2)  # runs 5 and 7
    line, = _lines(axes[0, 0])
    test = ~values["train"]
    h = values["activation"][DEEP_TANH, :, 1][:, test]
    condition = max(sum_condition(h[e][np.isfinite(h[e])]) for e in range(h.shape[0]))  # tanh: both signs
    assert line.get_label() == "layer 2"
    np.testing.assert_allclose(line.get_ydata(), np.nanmean(h, axis=(1, 2)),
                               rtol=float_rtol(h[0].size, condition=STATISTIC * condition))
    assert "held-out" in axes[0, 0].get_ylabel()


@pytest.mark.parametrize("run", [DEEP_SIGMOID, DEEP_TANH])
def test_histogram_counts_sum_to_the_number_of_finite_values(store, values, run):
    axes = plot.histograms(store, runs=[run], density=False, n_epochs=2)
    assert axes.shape == (1, 3)
    for layer, panel in enumerate(axes[0]):
        steps = panel.patches
        assert [s.get_label() for s in steps] == ["epoch 0", "epoch 2"]  # first and last complete records
        for step, epoch in zip(steps, (0, 3)):
            counts, edges, _ = step.get_data()
            h = values["activation"][run, epoch, layer][values["train"]]
            assert counts.sum() == np.isfinite(h).sum() > 0  # every value in a bin, the extremes too
            assert np.all(np.diff(edges) > 0)
    density = plot.histograms(store, runs=[run], epochs=[1.0])[0, 0].patches[0].get_data()
    np.testing.assert_allclose((density.values * np.diff(density.edges)).sum(), 1.0)


def test_histograms_put_values_on_a_bound_in_the_outermost_bins():
    from actstats.synthetic import synthetic_store

    ds = synthetic_store(runs=1, depth=1, width=4, samples=(5, 0), activation=lambda rng, shape: np.ones(shape))
    counts = plot.histograms(ds, density=False, n_epochs=1)[0, 0].patches[0].get_data().values
    assert counts[-1] == counts.sum() == 20  # 5 probes x 4 units, all exactly 1.0


def test_saturation_heatmap_shows_the_query_from_the_store_or_from_a_result(store):
    result = actstats.saturation(store, eps=0.1, by=("run", "epoch", "layer", "split")).compute()
    from_store = plot.saturation_heatmap(store, runs=[DEEP_SIGMOID, SHALLOW], eps=0.1, split="test")
    from_result = plot.saturation_heatmap(result, runs=[DEEP_SIGMOID, SHALLOW], split="test")
    for axes in (from_store, from_result):
        assert axes.shape == (2, 1)
        deep = axes[0, 0].get_images()[0].get_array()
        expected = result["fraction"].sel(run=DEEP_SIGMOID, split="test").transpose("layer", "epoch").values
        np.testing.assert_array_equal(np.ma.filled(deep, np.nan), expected)
        assert axes[1, 0].get_images()[0].get_array().shape == (1, 4)  # the shallow run's one layer
    with pytest.raises(ActstatsValueError, match=r"^saturation_heatmap: eps: the saturation result given was "
                                                 r"computed at eps 0\.1"):
        plot.saturation_heatmap(result, eps=0.05)


def test_trajectories_follow_each_probes_share_in_the_band(store, values):
    axes = plot.trajectories(store, runs=[DEEP_SIGMOID], eps=0.2, n_tracked=3)
    assert axes.shape == (1, 2)
    lines = _lines(axes[0, 0])
    assert [line.get_label() for line in lines] == ["training #0", "training #1", "training #2",
                                                    "held-out #40", "held-out #41", "held-out #42"]
    h = values["activation"][DEEP_SIGMOID, :, 2]  # the top layer, (epoch, sample, unit)
    for line, sample in zip(lines, (0, 1, 2, 40, 41, 42)):
        finite = np.isfinite(h[:, sample])
        near = ((h[:, sample] <= 0.2) | (h[:, sample] >= 0.8)) & finite
        np.testing.assert_array_equal(line.get_ydata(), near.sum(axis=1) / finite.sum(axis=1))
    assert lines[3].get_linestyle() == "--" and lines[0].get_linestyle() == "-"
    mean = _lines(axes[0, 1])[0].get_ydata()  # the store's float32 averaged in float32: its sum's rounding
    np.testing.assert_allclose(mean, np.nanmean(h[:, 0], axis=1), rtol=float_rtol(h.shape[-1], dtype=np.float32))


def test_weight_qq_points_are_sorted_standardised_weights(store, stores):
    axes = plot.weight_qq(store, runs=[DEEP_TANH], max_points=50)
    assert axes.shape == (1, 3)
    for layer, panel in enumerate(axes[0]):
        points = panel.get_lines()[0]
        x, y = np.asarray(points.get_xdata()), np.asarray(points.get_ydata())
        assert 40 <= len(x) <= 50 and np.all(np.diff(x) > 0) and np.all(np.diff(y) >= 0)
        w = stores["numpy"]["weight"].sel(run=DEEP_TANH, epoch=2.0).isel(layer=layer).values.astype(np.float64)
        w = np.sort(w[np.isfinite(w)])
        # the same float64 operations on the same sorted weights
        np.testing.assert_array_equal([y[0], y[-1]], [(w[0] - w.mean()) / w.std(), (w[-1] - w.mean()) / w.std()])
        assert x[0] < 0 < x[-1] and abs(x[0] + x[-1]) < 1e-9  # symmetric plotting positions
    at_init = plot.weight_qq(store, runs=[DEEP_TANH], epoch=0)
    assert not np.array_equal(at_init[0, 0].get_lines()[0].get_ydata()[:5], axes[0, 0].get_lines()[0].get_ydata()[:5])


def test_weight_kurtosis_and_gradient_flow_draw_the_query_results(store):
    runs = [DEEP_SIGMOID, DEEP_TANH]
    normality = actstats.weight_normality(store, by=("run", "epoch", "layer")).compute()
    for axes in (plot.weight_kurtosis(store, runs=runs), plot.weight_kurtosis(normality, runs=runs)):
        for panel, run in zip(axes[0], runs):
            lines = _lines(panel)
            assert len(lines) == 3
            for layer, line in enumerate(lines, start=1):
                np.testing.assert_array_equal(line.get_ydata(),  # the same query, the same computation
                                              normality["excess_kurtosis"].sel(run=run, layer=layer).values)
    gradients = actstats.gradient_flow(store).compute()
    axes = plot.gradient_flow(gradients, runs=runs, layers=[1, 3])
    assert axes.shape == (2, 2) and axes[0, 0].get_yscale() == "log"
    for column, run in enumerate(runs):
        for row, variable in enumerate(("weight_grad_norm", "mean_derivative")):
            lines = _lines(axes[row, column])
            assert len(lines) == 2
            np.testing.assert_array_equal(lines[1].get_ydata(), gradients[variable].sel(run=run, layer=3).values)
    # sigmoid's largest derivative, 1/4, drawn for the sigmoid run only
    assert [line.get_ydata()[0] for line in _references(axes[1, 0])] == [0.25]
    assert not _references(axes[1, 1])


def test_sweep_comparison_draws_each_runs_value_by_factor(store):
    values = np.arange(8) / 10.0
    axes = plot.sweep_comparison(store, values=values)  # of init, depth, optimizer, lr, batch_size only depth varies
    assert axes.shape == (1, 1) and axes[0, 0].get_title() == "depth"
    points = [line for line in axes[0, 0].get_lines() if line.get_marker() == "o"]
    assert [sorted(p.get_ydata()) for p in points] == [[0.0, 0.1, 0.2, 0.3], [0.4, 0.5, 0.6, 0.7]]
    bars = [line for line in axes[0, 0].get_lines() if line.get_marker() != "o"]
    np.testing.assert_allclose([bar.get_ydata()[0] for bar in bars], [0.15, 0.55])
    # by default: each run's saturated fraction at its last complete record, the mean over its layers
    axes = plot.sweep_comparison(store, factors=["activation_fn"], eps=0.1)
    result = actstats.saturation(store, eps=0.1, by=("run", "epoch", "layer", "split"))
    expected = result["fraction"].sel(split="train", epoch=2.0).mean("layer").values
    drawn = np.concatenate([line.get_ydata() for line in axes[0, 0].get_lines() if line.get_marker() == "o"])
    np.testing.assert_allclose(np.sort(drawn), np.sort(expected))


def test_training_curves_draw_each_runs_accuracy(store, stores):
    axes = plot.training_curves(store, runs=[1, 6])
    assert axes.shape == (2, 2) and axes[0, 0].get_title() == "training accuracy"
    lines = _lines(axes[0, 0])
    assert [line.get_label().split(":")[0] for line in lines] == ["run 1", "run 6"]
    assert [(line.get_label(), line.get_ydata()[0]) for line in _references(axes[0, 0])] == [("chance (1/10)", 0.1)]
    np.testing.assert_array_equal(lines[1].get_ydata(), stores["numpy"]["train_accuracy"].sel(run=6).values)


def test_labels_from_the_store_are_drawn_as_they_are(store):
    odd = store.assign_coords(init=("run", ["$\\x$ <b>"] * store.sizes["run"]))
    axes = plot.mean_std(odd, runs=[0])
    axes[0, 0].figure.savefig(io.BytesIO(), format="png")  # no mathtext parse of the store's text
    assert "$\\x$ <b>" in axes[0, 0].get_title().replace("\\$", "$")


# ------------------------------------------------------------------ ax=, errors, imports


def test_ax_draws_into_the_axes_given_and_returns_them(store):
    figure, given = plt.subplots(1, 2)
    returned = plot.mean_std(store, runs=[DEEP_SIGMOID, DEEP_TANH], ax=given)
    assert returned.shape == (2,) and all(a is b for a, b in zip(returned, given))
    assert len(given[0].get_lines()) == 3 and len(figure.axes) == 2
    figure, one = plt.subplots()
    assert plot.weight_kurtosis(store, runs=[SHALLOW], ax=one) is one
    assert len(_lines(one)) == 1
    with pytest.raises(ActstatsValueError) as error:
        plot.mean_std(store, runs=[DEEP_SIGMOID, DEEP_TANH], ax=one)
    assert str(error.value) == "mean_std: ax: 1 axes given; this figure draws 2 (one per run)"


@pytest.mark.parametrize("function, kwargs, message", [
    ("mean_std", {"split": "validation"}, "mean_std: split must be 'train', 'test' or 'all', got 'validation'"),
    ("mean_std", {"runs": [99]}, "mean_std: runs: no run 99 in the store"),
    ("histograms", {"n_epochs": 0}, "histograms: n_epochs: must be a positive integer, got 0"),
    ("histograms", {"layers": [7]}, "histograms: layers: no layer 7 in the store (layers: 1, 2, 3)"),
    ("trajectories", {"eps": 2}, "trajectories: eps must be between 0 and 0.5"),
    ("trajectories", {"layer": [1, 2]}, "trajectories: layer: one layer label"),
    ("weight_qq", {"epoch": 7}, "weight_qq: epoch: no epoch 7 in the store (epochs: 0, 0.25, 1, 2)"),
    ("saturation_heatmap", {"split": "all"}, "saturation_heatmap: split must be 'train' or 'test'"),
    ("sweep_comparison", {"factors": ["colour"]}, "sweep_comparison: factors: unknown run coordinate 'colour'"),
    ("sweep_comparison", {"factors": ["init"]}, "sweep_comparison: factors: none of init takes more than one value"),
    ("sweep_comparison", {"values": [1, 2]}, "sweep_comparison: values: one number per run (8) expected"),
])
def test_a_bad_argument_is_one_clear_line(store, function, kwargs, message):
    with pytest.raises(ActstatsValueError) as error:
        getattr(plot, function)(store, **kwargs)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_dataset_without_what_the_figure_needs_is_refused(store):
    with pytest.raises(ActstatsError, match="^gradient_flow: needs a store with 'weight_grad'"):
        plot.gradient_flow(store.drop_vars(["weight_grad"]))
    with pytest.raises(ActstatsError, match="^training_curves: this store has none of train_accuracy"):
        plot.training_curves(store.drop_vars(["train_accuracy", "test_accuracy", "train_loss", "test_loss"]))
    with pytest.raises(ActstatsValueError, match="^mean_std: expected a store"):
        plot.mean_std(np.zeros(3))


def test_actstats_plot_is_there_after_import_actstats_and_imports_matplotlib_only_to_draw():
    script = (
        "import sys, actstats\n"
        "from actstats.synthetic import synthetic_store\n"
        "module = actstats.plot\n"
        "before = 'matplotlib' in sys.modules\n"
        "actstats.plot.mean_std(synthetic_store())\n"
        "print(before, 'matplotlib' in sys.modules, 'plot' in dir(actstats))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "MPLBACKEND": "Agg"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True"]


# ------------------------------------------------------------------ the README's example

MARKER = "<!-- notebook example (tests/test_plot.py runs it) -->"


def test_the_readme_notebook_example_runs(small_store, tmp_path):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert MARKER in readme, "README.md lost the notebook example's marker"
    block = re.match(r"\s*```python\n(.*?)\n```", readme.split(MARKER, 1)[1], re.DOTALL)
    assert block, "no ```python block right after the notebook example's marker"
    code, replaced = re.subn(r"open_store\((['\"]).*?\1\)", lambda m: f"open_store({small_store!r})", block.group(1))
    assert replaced == 1, "the example opens one store with actstats.open_store(\"…\")"
    assert "actstats.plot." in code
    # as a notebook cell would: the figures are drawn (and saved here, to be sure they render)
    code += "\nimport matplotlib.pyplot as plt\nfor n in plt.get_fignums(): plt.figure(n).savefig(f'figure{n}.png')\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "MPLBACKEND": "Agg"}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(list(tmp_path.glob("figure*.png"))) >= 2


@pytest.mark.parametrize("module", ["actstats.plot", "actstats.plot._common", "actstats.plot._activations",
                                    "actstats.plot._saturation", "actstats.plot._weights", "actstats.plot._training"])
def test_module_doctests_pass(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 1 and result.failed == 0
