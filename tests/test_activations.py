"""The activation registry (actstats.activations): each entry checked against independent
implementations (finite differences, torch autograd, torch.nn modules, torch's Kaiming gains),
and an incomplete entry refused when the module that declares it is imported.

Parametrised over the registry: a new entry is tested by these tests without adding any.
"""

from __future__ import annotations

import doctest
import importlib.util
import math

import numpy as np
import pytest

import actstats.activations
from actstats.activations import ACTIVATIONS, KAIMING_GAINS, Activation, describe_saturation, get_activation

EPS64 = np.finfo(np.float64).eps
NAMES = list(ACTIVATIONS)
#: z from -8 to 8, off the grid point 0 (ReLU's kink) by construction: 1601 points, step 0.01 + 1e-4
GRID = np.linspace(-8.0, 8.0, 1601) + 1e-4


def test_registry_names_match_entries_and_module_doctests_pass():
    assert all(name == entry.name for name, entry in ACTIVATIONS.items())
    result = doctest.testmod(actstats.activations, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_central_finite_differences(name):
    """Central differences with step h = 1e-6: truncation error h²/6 |f‴| (<= 1e-12:
    |f‴| <= 6 for these functions, away from ReLU's kink) plus rounding ε|f|/h (<= 2e-9
    with |f| <= 8 on the grid); 1e-8 covers both with a margin of 5."""
    f = get_activation(name)
    h = 1e-6
    numeric = (f.function(GRID + h) - f.function(GRID - h)) / (2 * h)
    np.testing.assert_allclose(f.derivative(GRID), numeric, rtol=0, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_torch_autograd(name):
    """Against autograd of the torch.nn module in float64: two implementations of the same
    closed form, so they agree to a few ulps of the derivative (<= 1 here); 1e-14 is ~45 ulps."""
    torch = pytest.importorskip("torch")
    f = get_activation(name)
    z = torch.tensor(GRID, dtype=torch.float64, requires_grad=True)
    getattr(torch.nn, f.torch_module)()(z).sum().backward()
    np.testing.assert_allclose(f.derivative(GRID), z.grad.numpy(), rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", [n for n in NAMES if ACTIVATIONS[n].inverse is not None])
def test_inverse_undoes_the_function(name):
    """inverse(function(z)) = z up to the problem's conditioning: f(z) is rounded to within
    ε|f(z)|, which moves the inverse by ε|f(z)| / f'(z) (large near a bound, e.g. tanh at
    |z| = 8: ~1e-9); allow 16 such units (rounding in both functions) plus 16 ε|z|."""
    f = get_activation(name)
    value = f.function(GRID)
    tolerance = 16 * EPS64 * (np.abs(value) / f.derivative(GRID) + np.abs(GRID) + 1)
    error = np.abs(f.inverse(value) - GRID)
    assert np.all(error <= tolerance), float(np.max(error / tolerance))


@pytest.mark.parametrize("name", NAMES)
def test_derivative_max_is_the_maximum_of_the_derivative(name):
    """The declared maximum against f' on a fine grid (step 1e-4 on [-8, 8], plus the points
    just either side of 0, where sigmoid, tanh and softsign peak and relu's kink is): no grid
    value exceeds it beyond rounding, and the grid reaches it to the grid's resolution (f' is
    flat at a smooth maximum: within (step/2)^2 |f‴| / 2 < 1e-8 of it; relu reaches it)."""
    f = get_activation(name)
    grid = np.concatenate([np.linspace(-8.0, 8.0, 160_001), [-1e-12, 1e-12, -50.0, 50.0]])  # ±50: softplus' sup
    values = f.derivative(grid)
    assert values.max() <= f.derivative_max * (1 + 4 * EPS64)
    np.testing.assert_allclose(values.max(), f.derivative_max, rtol=1e-8)


def test_only_functions_that_are_not_bijections_are_declared_not_invertible():
    """Every z <= 0 gives ReLU's 0, hardtanh is flat beyond ±1, SiLU and GELU go down to their
    minimum and back up: no inverse (synthetic stores then store NaN pre-activations); the others
    are bijections onto their range."""
    assert [n for n in NAMES if ACTIVATIONS[n].inverse is None] == ["relu", "silu", "gelu", "hardtanh"]
    for name in ("silu", "gelu"):  # not monotonic: f decreases left of its minimum
        f = ACTIVATIONS[name].function
        assert f(np.array(-3.0)) > f(np.array(-2.0)) > ACTIVATIONS[name].lower


@pytest.mark.parametrize("name", NAMES)
def test_torch_module_exists_and_matches_the_numpy_function(name):
    """float64 on a grid from -20 to 20 and at the special points: torch's kernels and
    numpy/scipy's are different implementations of the same function and agree to a few ulps;
    rtol 1e-14 (~45 ulps) with atol 1e-300 (only exact zeros, e.g. ReLU's, need it)."""
    torch = pytest.importorskip("torch")
    f = get_activation(name)
    module = getattr(torch.nn, f.torch_module)
    assert isinstance(module, type) and issubclass(module, torch.nn.Module)
    z = np.concatenate([np.linspace(-20.0, 20.0, 4001), [0.0, -0.0, 1e-300, -1e-300, 50.0, -50.0]])
    expected = f.function(z)
    got = module()(torch.tensor(z, dtype=torch.float64)).numpy()
    # torch's GELU is 0.5 z (1 + erf(z/√2)): 1 + erf cancels for z < -1, so torch is exact to
    # a few ε|z| only there (numpy's uses Φ without cancellation)
    atol = 4 * EPS64 * np.abs(z) if name == "gelu" else 1e-300
    assert np.all(np.abs(got - expected) <= atol + 1e-14 * np.abs(expected)), name
    assert np.all((got >= f.lower) & (got <= f.upper))


@pytest.mark.parametrize("nonlinearity", list(KAIMING_GAINS))
def test_kaiming_gains_equal_torch_calculate_gain(nonlinearity):
    torch = pytest.importorskip("torch")
    assert KAIMING_GAINS[nonlinearity] == pytest.approx(torch.nn.init.calculate_gain(nonlinearity), rel=1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_capture_builds_each_entry_with_its_module_and_kaiming_gain(name):
    """capture.model derives from the registry: the network is built (no KeyError for a name the
    config accepts) and kaiming_normal draws N(0, (gain / sqrt(fan_in))²), bit for bit the
    same draws as torch's own normal_ with that std."""
    torch = pytest.importorskip("torch")
    from actstats.capture.config import parse_config
    from actstats.capture.model import TORCH_ACTIVATIONS, FeedForward, initialise

    assert list(TORCH_ACTIVATIONS) == NAMES
    parse_config(f'[model]\nactivation = "{name}"')  # accepted by the config
    f = get_activation(name)
    model = FeedForward(16, [8, 8], 3, name)
    assert isinstance(model.activation, getattr(torch.nn, f.torch_module))
    assert model.state_dict().keys() == FeedForward(16, [8, 8], 3, "sigmoid").state_dict().keys()
    torch.manual_seed(0)
    initialise(model, "kaiming_normal", 1.0, torch.zeros(4, 16))
    torch.manual_seed(0)
    expected = torch.empty(8, 16).normal_(0, f.kaiming_gain / math.sqrt(16))
    assert torch.equal(model.hidden[0].weight, expected)


def test_kaiming_gains_are_those_capture_always_used():
    """relu sqrt(2), tanh 5/3, and 1 (sigmoid's) for sigmoid and softsign, as before the registry;
    leaky ReLU torch's gain for slope 0.01; 1 for those torch names no gain for."""
    gains = {n: ACTIVATIONS[n].kaiming_gain for n in NAMES}
    assert gains == {"sigmoid": 1.0, "tanh": 5 / 3, "relu": math.sqrt(2), "softsign": 1.0, "elu": 1.0,
                     "softplus": 1.0, "silu": 1.0, "gelu": 1.0, "hardtanh": 1.0,
                     "leaky_relu": math.sqrt(2 / (1 + 0.01 ** 2))}


def test_saturation_semantics_and_their_description():
    assert {n: ACTIVATIONS[n].saturation for n in NAMES} == {
        "sigmoid": "bounds", "tanh": "bounds", "relu": "dead_at_zero", "softsign": "bounds",
        "elu": "lower_bound", "softplus": "lower_bound", "silu": "lower_bound", "gelu": "lower_bound",
        "hardtanh": "bounds", "leaky_relu": "none"}
    # the sentence the saturation query has written into its attrs by hand so far
    assert describe_saturation(["sigmoid", "tanh", "relu", "softsign"]) == (
        "sigmoid [0, 1]; tanh, softsign [-1, 1]; relu: exact zeros count as low, eps unused")
    assert describe_saturation(["hardtanh", "elu", "leaky_relu"]) == (
        "elu: one-sided: near the lower bound -1, eps a share of its distance to f(0) (1); hardtanh [-1, 1]; "
        "leaky_relu: saturation has no meaning (no bound, no dead value): not counted")
    assert describe_saturation(["relu", "tanh"]) == "tanh [-1, 1]; relu: exact zeros count as low, eps unused"
    with pytest.raises(ValueError, match="unknown activation function 'swish'"):
        describe_saturation(["swish"])


def _elu(z):
    return np.where(z > 0, z, np.expm1(z))


#: A complete entry (ELU: one-sided range), changed one field at a time.
COMPLETE = dict(
    name="elu", function=_elu, derivative=lambda z: np.where(z > 0, 1.0, np.exp(z)),
    inverse=lambda h: np.where(h > 0, h, np.log1p(h)), lower=-1.0, upper=np.inf, saturation="lower_bound",
    torch_module="ELU", kaiming_nonlinearity="linear", derivative_max=1.0,
)


def test_a_complete_entry_is_accepted_and_described():
    entry = Activation(**COMPLETE)
    assert not entry.bounded and entry.saturation_description == (
        "one-sided: near the lower bound -1, eps a share of its distance to f(0) (1)")
    assert Activation(**COMPLETE | {"saturation": "none"}).saturation_description == (
        "saturation has no meaning (no bound, no dead value): not counted")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"saturation": "bounded"}, "saturation 'bounded' must be one of bounds, lower_bound, dead_at_zero, none"),
        ({"saturation": "lower_bound", "lower": -np.inf}, "saturation 'lower_bound' needs a finite lower bound"),
        ({"saturation": "lower_bound", "lower": 0.5}, r"saturation 'lower_bound' needs f\(0\) above the lower bound"),
        ({"saturation": "bounds"}, "saturation 'bounds' needs finite lower and upper bounds"),
        ({"saturation": "dead_at_zero"}, r"saturation 'dead_at_zero' needs the range \[0, inf\)"),
        ({"kaiming_nonlinearity": "elu"}, "kaiming_nonlinearity 'elu' must be one of linear, sigmoid"),
        ({"torch_module": ""}, "torch_module must name a module in torch.nn"),
        ({"torch_module": None}, "torch_module must name a module in torch.nn"),
        ({"derivative": None}, "derivative must be callable"),
        ({"inverse": "log1p"}, "inverse must be callable or None"),
        ({"lower": 1.0, "upper": 1.0}, "lower, upper must be floats with lower < upper"),
        ({"name": ""}, "activation name '': must be a non-empty identifier"),
        ({"derivative_max": 0.0}, "derivative_max must be a positive finite float"),
        ({"derivative_max": 1}, "derivative_max must be a positive finite float"),
    ],
)
def test_a_wrong_field_is_refused(change, message):
    with pytest.raises(ValueError, match=message):
        Activation(**{**COMPLETE, **change})


def test_an_incomplete_entry_fails_when_its_module_is_imported(tmp_path):
    """The declaration of an entry that leaves out a field (here the inverse, the saturation
    semantics and the torch module) fails at import, not when a network is built."""
    path = tmp_path / "more_activations.py"
    path.write_text(
        "import numpy as np\n"
        "from actstats.activations import Activation\n"
        "ELU = Activation(name='elu', function=np.tanh, derivative=np.tanh, lower=-1.0, upper=np.inf,\n"
        "                 kaiming_nonlinearity='linear')\n"
    )
    spec = importlib.util.spec_from_file_location("more_activations", path)
    with pytest.raises(TypeError, match="missing 4 required .*'inverse', 'saturation', 'torch_module', and 'derivative_max'"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_a_torch_module_missing_from_torch_fails_when_capture_is_imported(monkeypatch):
    pytest.importorskip("torch")
    import actstats.capture.model

    monkeypatch.setitem(ACTIVATIONS, "elu", Activation(**{**COMPLETE, "torch_module": "NoSuchELU"}))
    with pytest.raises(ImportError, match="activation 'elu': torch_module 'NoSuchELU' is not a module in torch.nn"):
        actstats.capture.model._torch_modules()


def test_a_name_declared_twice_is_refused():
    with pytest.raises(ValueError, match="activation 'elu' is declared twice"):
        actstats.activations._registry([Activation(**COMPLETE), Activation(**COMPLETE)])


def test_silu_minimum_is_minus_lambert_w_of_one_over_e():
    """The literal in actstats.activations (kept so that opening a store loads no
    scipy.special) is -W(1/e), computed here by scipy, and SiLU's value at its minimiser."""
    import math

    from scipy.special import expit, lambertw

    from actstats.activations import SILU_MINIMUM

    assert SILU_MINIMUM == float(-lambertw(math.exp(-1.0)).real)
    z = -(1 + float(lambertw(math.exp(-1.0)).real))
    assert abs(z * expit(z) - SILU_MINIMUM) < 1e-15
