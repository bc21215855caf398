"""Transforms of numeric columns in formulas (``np.log(x)``, ``scale(x)``, ``I(x ** 2)``): a small, safe
evaluator that the training data and every later frame (prediction, cross-validation) share.

A formula's transform is stored in the fit as its text and, for the stateful transforms, the means and
standard deviations of the training data; :func:`evaluate` recomputes it on any frame from those alone, so
a new frame is coded exactly like the training data. Nothing is passed to Python's ``eval``: the text is
read with :mod:`ast` and only the constructs below are accepted, so a formula in a model-spec file cannot
run code.

Accepted:

- column names (numeric columns), numbers, ``+ - * / **`` and unary minus;
- ``log``, ``log2``, ``log10``, ``log1p``, ``exp``, ``expm1``, ``sqrt``, ``abs``, each also as ``np.NAME``
  or ``numpy.NAME``;
- ``I(expr)`` (identity, as in R and formulae: ``I(x ** 2)``, or formulae's ``{x ** 2}``);
- the stateful ``center(expr)`` (minus the training mean) and ``scale(expr)`` / ``standardize(expr)`` (minus
  the training mean, divided by the training standard deviation, ``ddof=0`` as in formulae).
"""

from __future__ import annotations

import ast
from collections.abc import Callable

import numpy as np

__all__ = ["FUNCTIONS", "STATEFUL", "expression_columns", "evaluate"]

#: Stateless functions by name (``np.`` and ``numpy.`` prefixes are accepted too).
FUNCTIONS: dict[str, Callable] = {
    "log": np.log, "log2": np.log2, "log10": np.log10, "log1p": np.log1p, "exp": np.exp, "expm1": np.expm1,
    "sqrt": np.sqrt, "abs": np.abs, "I": lambda v: v,
}
#: Stateful transforms: their state (training mean, and sd for scaling) is stored with the term.
STATEFUL = ("center", "scale", "standardize")
_BINOPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide, ast.Pow: np.power}
_SUPPORTED = (f"column names, numbers, + - * / ** and the functions {', '.join(sorted(FUNCTIONS))} (also as "
              f"np.NAME), {', '.join(STATEFUL)}")


def _unsupported(expr: str, what: str) -> ValueError:
    return ValueError(f"formula: the term {expr!r} uses {what}, which hierpool's formulas do not accept; "
                      f"transforms may use {_SUPPORTED}. Or compute the column in the DataFrame first.")


def _function_name(func: ast.expr, expr: str) -> str:
    if isinstance(func, ast.Name):
        name = func.id
    elif (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
          and func.value.id in ("np", "numpy")):
        name = func.attr
        if name in STATEFUL or name == "I":
            raise _unsupported(expr, f"the function {func.value.id}.{name}")
    else:
        raise _unsupported(expr, f"the function {ast.unparse(func)!r}")
    if name not in FUNCTIONS and name not in STATEFUL:
        raise _unsupported(expr, f"the function {ast.unparse(func)!r}")
    return name


def _parse(expr: str) -> ast.expr:
    try:
        return ast.parse(expr.strip(), mode="eval").body
    except SyntaxError:
        raise ValueError(
            f"formula: cannot read the term {expr!r} as a transform of columns (a column whose name is not a "
            "Python identifier can be used alone, in backticks, but not inside a function: rename it)."
        ) from None


def _walk(node: ast.expr, expr: str, columns: list[str]) -> None:
    """Check ``node`` and collect the column names it reads (in first-seen order)."""
    if isinstance(node, ast.Name):
        if node.id not in columns:
            columns.append(node.id)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise _unsupported(expr, f"the constant {node.value!r}")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise _unsupported(expr, f"the operator {type(node.op).__name__}")
        _walk(node.left, expr, columns)
        _walk(node.right, expr, columns)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise _unsupported(expr, f"the operator {type(node.op).__name__}")
        _walk(node.operand, expr, columns)
    elif isinstance(node, ast.Call):
        name = _function_name(node.func, expr)
        if node.keywords or len(node.args) != 1:
            raise _unsupported(expr, f"{name}() with other than one argument")
        _walk(node.args[0], expr, columns)
    else:
        raise _unsupported(expr, f"the construct {ast.unparse(node)!r}")


def expression_columns(expr: str) -> list[str]:
    """The columns a transform reads, after checking that it uses only the accepted constructs.

    Raises
    ------
    ValueError
        Naming the term and what it may use.
    """
    columns: list[str] = []
    _walk(_parse(expr), expr, columns)
    if not columns:
        raise ValueError(f"formula: the term {expr!r} reads no column; a constant is confounded with the "
                         "intercept.")
    return columns


def evaluate(expr: str, column: Callable[[str], np.ndarray], state: list | None = None) -> tuple[np.ndarray, list]:
    """Evaluate a transform on a frame's columns.

    Parameters
    ----------
    expr : str
        The transform, checked by :func:`expression_columns`.
    column : callable
        ``column(name)`` returns the float values of a numeric column.
    state : list, optional
        The stateful transforms' ``[mean, sd]`` pairs in the order they are met (depth first), as returned
        when fitting; ``None`` computes them from these values (training data).

    Returns
    -------
    (numpy.ndarray, list)
        The values and the state (the given one, or the one just computed).
    """
    fitting = state is None
    state = [] if fitting else [list(s) for s in state]
    pos = [0]

    def ev(node):
        if isinstance(node, ast.Name):
            return column(node.id)
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        name = _function_name(node.func, expr)
        v = np.asarray(ev(node.args[0]), dtype=float)
        if name not in STATEFUL:
            return FUNCTIONS[name](v)
        if fitting:
            mean = float(np.mean(v))
            sd = float(np.std(v)) if name != "center" else 1.0
            state.append([mean, sd])
        if pos[0] >= len(state):
            raise ValueError(f"formula: the stored state of {expr!r} does not match the term (a damaged fit?).")
        mean, sd = state[pos[0]]
        pos[0] += 1
        return (v - mean) / sd if name != "center" else v - mean

    with np.errstate(all="ignore"):  # log(0), sqrt(-1): non-finite values are refused by the caller, by row
        values = ev(_parse(expr))
    return np.asarray(values, dtype=float), state
