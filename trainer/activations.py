"""Activation functions by name (Keras names); ``None`` means linear."""
from trainer import functions as F
from trainer.core import as_variable

ACTIVATIONS = {
    "linear": F.linear_activation,
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,
    "elu": F.elu,
    "gelu": F.gelu,
    "sigmoid": F.sigmoid,
    "tanh": F.tanh,
    "softmax": F.softmax,
}

NAMES = tuple(ACTIVATIONS)


def canonical(name):
    """The activation's canonical name ("linear" for None); ValueError when unknown."""
    if name is None:
        return "linear"
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation: {name!r}. Expected one of {', '.join(NAMES)} or None.")
    return name


def get(name):
    """The function (Variable -> Variable) for an activation name."""
    return ACTIVATIONS[canonical(name)]


def apply(name, x):
    name = canonical(name)
    if name == "linear":
        return as_variable(x)
    return ACTIVATIONS[name](x)
