"""Every docstring example in actstats.kernels runs and prints what it says."""

import doctest
import importlib

import pytest

MODULES = ["_rows", "moments", "normality", "saturation", "beta", "mixture", "fits", "intervals", "comparison", "multiple", "histogram", "logit_histogram"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"actstats.kernels.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0


def test_every_public_function_has_an_example_and_a_verification_note():
    import actstats.kernels as kernels

    for name in kernels.__all__:
        item = getattr(kernels, name)
        if callable(item) and not isinstance(item, type):
            doc = item.__doc__ or ""
            assert ">>>" in doc, f"{name} has no example"
            if name not in {"deterministic_subsample", "normalize_axis", "rescale_to_unit", "histogram_edges",
                            "logit_histogram_edges", "logit_histogram_middles",
                            "saturated_fractions", "beta_sufficient_statistics"}:
                assert "Verification" in doc, f"{name} has no Verification note"
