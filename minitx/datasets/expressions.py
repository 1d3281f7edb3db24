"""Run a model's Python expression on a table, safely: parse it, allow a handful of things, interpret.

The instruction "write the Python expression for the mean of column price"
is scored by *running* the answer on the data (execution match: any
expression with the right value counts, ``sum(price) / len(price)`` and
``sum(price) / len(qty)`` alike on a table whose columns are equally long).

Running text a model wrote must never mean ``eval``: ``eval`` of
``__import__("os").system(...)`` does exactly what it says. So the
expression is parsed with :mod:`ast` and walked by a tiny interpreter
(:func:`evaluate`) that knows only

* numbers (``int``/``float`` literals) and the table's column names, each
  a list of numbers;
* ``+ - * / //`` and unary ``-`` on numbers;
* calls of :data:`FUNCTIONS` (``sum``, ``len``, ``max``, ``min``, ``abs``,
  ``round``, ``sorted``) with positional arguments only;
* an integer subscript of a list (``sorted(price)[0]``).

Anything else (attributes, keywords, comprehensions, lambdas, names that
are not columns) raises :class:`UnsafeExpression`; nothing is ever
imported or executed. :func:`execution_match` turns every failure
(a syntax error, a forbidden node, a division by zero) into "no match".

    >>> table = {"price": [3, 5, 10], "qty": [1, 2, 3]}
    >>> evaluate("sum(price) / len(price)", table)
    6.0
    >>> execution_match("max(price) - min(price)", "7", table)
    True
    >>> execution_match("__import__('os').getcwd()", "6", table)
    False
"""
from __future__ import annotations

import ast
import math
import operator

#: The only functions an expression may call.
FUNCTIONS = {"sum": sum, "len": len, "max": max, "min": min, "abs": abs, "round": round, "sorted": sorted}
BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.FloorDiv: operator.floordiv}
MAX_LENGTH = 200  # characters: a model that rambles is not parsed


class UnsafeExpression(ValueError):
    """The expression uses something outside the whitelist (or is not an expression at all)."""


def evaluate(expression: str, table: dict):
    """The value of ``expression`` with the columns of ``table`` (``{name: [numbers]}``) as variables.

    Raises :class:`UnsafeExpression` for anything outside the whitelist and
    the ordinary Python errors (``ZeroDivisionError``, ``TypeError``) for
    well-formed nonsense such as ``len(3)``.
    """
    if not isinstance(expression, str) or len(expression) > MAX_LENGTH:
        raise UnsafeExpression(f"expression: got {type(expression).__name__} of length "
                               f"{len(expression) if isinstance(expression, str) else '?'}, expected a str of at "
                               f"most {MAX_LENGTH} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise UnsafeExpression(f"expression {expression!r}: not a Python expression ({exc.msg})") from None
    return _value(tree.body, table)


def _value(node, table):
    """Interpret one node; each branch is one whitelisted construct."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in table:
        return list(table[node.id])  # a copy: nothing the expression does reaches the table
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        left, right = _value(node.left, table), _value(node.right, table)
        if not all(isinstance(v, (int, float)) for v in (left, right)):
            raise TypeError(f"{ast.unparse(node)!r}: arithmetic on a list, expected numbers")
        return BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _value(node.operand, table)
        if not isinstance(value, (int, float)):
            raise TypeError(f"{ast.unparse(node)!r}: minus of a list, expected a number")
        return -value
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
            and not node.keywords and not any(isinstance(a, ast.Starred) for a in node.args)):
        return FUNCTIONS[node.func.id](*[_value(a, table) for a in node.args])
    if isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Slice):
        seq, index = _value(node.value, table), _value(node.slice, table)
        if not isinstance(seq, list) or not isinstance(index, int):
            raise TypeError(f"{ast.unparse(node)!r}: expected a list indexed by an integer")
        return seq[index]
    raise UnsafeExpression(f"{ast.unparse(node)!r}: {type(node).__name__} is not allowed; expected numbers, columns "
                           f"{sorted(table)}, + - * / //, and calls of {sorted(FUNCTIONS)}")


def execution_match(predicted: str, reference: str, table: dict, *, rel_tol: float = 1e-9) -> bool:
    """True when both expressions evaluate, on ``table``, to equal numbers (within ``rel_tol``).

    A prediction that fails in any way (syntax, whitelist, arithmetic) is
    simply wrong; the reference must evaluate.
    """
    want = evaluate(reference, table)
    try:
        got = evaluate(predicted, table)
    except (ArithmeticError, IndexError, TypeError, ValueError):  # UnsafeExpression is a ValueError
        return False
    if not all(isinstance(v, (int, float)) for v in (got, want)):
        return False
    return math.isclose(got, want, rel_tol=rel_tol, abs_tol=1e-12)


__all__ = ["FUNCTIONS", "UnsafeExpression", "evaluate", "execution_match"]
