"""Feed-forward networks, their initialisations and optimizers (PyTorch)."""

from __future__ import annotations

import math

import torch
from torch import nn

from actstats.activations import ACTIVATIONS


def _torch_modules() -> dict[str, type[nn.Module]]:
    """name -> the torch.nn module class of each entry of actstats' activation registry."""
    modules = {}
    for name, activation in ACTIVATIONS.items():
        module = getattr(nn, activation.torch_module, None)
        if not (isinstance(module, type) and issubclass(module, nn.Module)):
            raise ImportError(
                f"activation {name!r}: torch_module {activation.torch_module!r} is not a module in torch.nn "
                f"(torch {torch.__version__})"
            )
        modules[name] = module
    return modules


#: name -> torch.nn module class, derived from :data:`actstats.activations.ACTIVATIONS`.
TORCH_ACTIVATIONS = _torch_modules()


class FeedForward(nn.Module):
    """`depth` hidden layers z = W h_prev + b, h = f(z), then a linear readout to the classes."""

    def __init__(self, n_features: int, widths: list[int], n_classes: int, activation: str):
        super().__init__()
        sizes = [n_features, *widths]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.readout = nn.Linear(sizes[-1], n_classes)
        self.activation_name = activation
        self.activation = TORCH_ACTIVATIONS[activation]()  # parameter-free: state_dict unchanged

    def forward(self, x: torch.Tensor, keep: bool = False):
        """Return the logits and, with `keep`, the lists of pre-activations and activations."""
        preactivations, activations = [], []
        h = x
        for layer in self.hidden:
            z = layer(h)
            h = self.activation(z)
            if keep:
                preactivations.append(z)
                activations.append(h)
        return self.readout(h), preactivations, activations

    @property
    def layers(self) -> list[nn.Linear]:
        return [*self.hidden, self.readout]


def initialise(
    model: FeedForward,
    init: str,
    scale: float,
    x_batch: torch.Tensor,
    *,
    bias_init: str = "default",
    readout_init: str | None = None,
    readout_scale: float = 1.0,
) -> None:
    """Initialise every linear layer (hidden and readout) in place.

    - ``default``: PyTorch's own nn.Linear initialisation, U(±1/sqrt(fan_in)) for W and b.
    - ``xavier_uniform``, ``xavier_normal``, ``orthogonal``: gain = `scale`, b = 0.
    - ``kaiming_normal``: He et al. 2015 with the gain of the network's activation (its
      ``kaiming_nonlinearity`` in actstats' registry; fan_in mode) times `scale`, b = 0.
    - ``normal``: N(0, scale^2); ``uniform``: U(-scale, scale); b = 0.
    - ``lsuv``: Mishkin & Matas 2016: orthonormal, then each layer in turn rescaled until
      the variance of its output (pre-activation) on `x_batch` is 1 +- 0.1 (at most 10
      passes), b = 0.

    `readout_init` (with `readout_scale`) initialises the readout apart from the hidden
    layers (None: the readout is initialised like them, with `scale`); `bias_init="zero"` sets
    every bias to 0 (with ``default``, whose biases are otherwise U(±1/sqrt(fan_in))).
    """
    readout = init if readout_init is None else readout_init
    readout_gain = scale if readout_init is None else readout_scale
    plan = [(layer, init, scale) for layer in model.hidden] + [(model.readout, readout, readout_gain)]
    with torch.no_grad():
        for layer, name, gain in plan:
            if name != "default":
                _init_layer(model, layer, name, gain)
            if bias_init == "zero":
                nn.init.zeros_(layer.bias)
        lsuv = [index for index, (_, name, _) in enumerate(plan) if name == "lsuv"]
        if lsuv:
            _lsuv(model, x_batch, lsuv)


def _init_layer(model: FeedForward, layer: nn.Linear, init: str, scale: float) -> None:
    weight = layer.weight
    if init == "xavier_uniform":
        nn.init.xavier_uniform_(weight, gain=scale)
    elif init == "xavier_normal":
        nn.init.xavier_normal_(weight, gain=scale)
    elif init == "kaiming_normal":
        nonlinearity = ACTIVATIONS[model.activation_name].kaiming_nonlinearity
        # leaky_relu's gain is for torch's default slope 0.01 (the registry's), which kaiming_normal_ takes as `a`
        nn.init.kaiming_normal_(weight, a=0.01 if nonlinearity == "leaky_relu" else 0.0, nonlinearity=nonlinearity)
        weight.mul_(scale)
    elif init == "normal":
        nn.init.normal_(weight, 0.0, scale)
    elif init == "uniform":
        nn.init.uniform_(weight, -scale, scale)
    elif init in ("orthogonal", "lsuv"):
        nn.init.orthogonal_(weight, gain=scale if init == "orthogonal" else 1.0)
    else:  # validated by the config; kept as a guard for programmatic use
        raise ValueError(f"unknown init {init!r}")
    nn.init.zeros_(layer.bias)


def _lsuv(model: FeedForward, x: torch.Tensor, indices: list[int], tolerance: float = 0.1, max_passes: int = 10) -> None:
    """Rescale the layers at `indices` of ``model.layers`` in turn (LSUV's second step)."""
    for index in indices:
        layer = model.layers[index]
        for _ in range(max_passes):
            h = x
            for previous in model.hidden[:index]:
                h = model.activation(previous(h))
            variance = float(layer(h).var())
            if not math.isfinite(variance) or variance == 0 or abs(variance - 1) < tolerance:
                break
            layer.weight.div_(math.sqrt(variance))


def make_optimizer(model: FeedForward, train: dict) -> torch.optim.Optimizer:
    """SGD (momentum, weight decay) or Adam, with per-hidden-layer learning-rate multipliers."""
    lr = train["lr"]
    multipliers = train.get("layer_lr") or [1.0] * len(model.hidden)
    groups = [{"params": list(layer.parameters()), "lr": lr * m} for layer, m in zip(model.hidden, multipliers)]
    groups.append({"params": list(model.readout.parameters()), "lr": lr})
    if train["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=train["momentum"], weight_decay=train["weight_decay"])
    return torch.optim.Adam(groups, lr=lr, betas=tuple(train["betas"]), weight_decay=train["weight_decay"])
