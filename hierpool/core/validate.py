"""Argument checks shared across hierpool, with messages that name the argument, the value and the
valid choices (in the manner of arviz-stats' ``validate`` module)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real


def one_of(name: str, value, choices: Iterable) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name}={value!r} is not valid; valid choices: {valid}.")


def positive_finite(name: str, value) -> float:
    """Return ``value`` as float; raise unless it is a real number, finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a positive finite number; got {value!r} ({type(value).__name__}).")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number; got {value!r}.")
    return value


def positive_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as int; raise unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def probability(name: str, value) -> float:
    """Return ``value`` as float in the open interval (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number in (0, 1); got {value!r} ({type(value).__name__}).")
    value = float(value)
    if not (0.0 < value < 1.0):
        hint = f" (use {value / 100:g}, not {value:g})" if 50.0 <= value < 100.0 else ""  # a percentage
        raise ValueError(f"{name} must be in the open interval (0, 1); got {value!r}{hint}.")
    return value


def generator(name: str, value):
    """``numpy.random.default_rng(value)`` for a seed argument: None, a non-negative integer (or a sequence
    of them), a ``SeedSequence`` or a ``Generator``; anything else is refused naming ``name`` (numpy's own
    message does not say which argument)."""
    import numpy as np

    if isinstance(value, (bool, float, str)):  # numpy refuses these, in words that name no argument
        raise TypeError(f"{name} must be None, a non-negative integer or a numpy Generator; got {value!r}.")
    try:
        return np.random.default_rng(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be None, a non-negative integer or a numpy Generator; got {value!r} "
                        f"({err}).") from None
