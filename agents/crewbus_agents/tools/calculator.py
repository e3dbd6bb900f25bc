"""`calculator`: arithmetic by walking a parsed expression tree; nothing is ever evaluated.

Only numbers, + - * / // % **, unary signs, parentheses, a few math functions and the
constants pi/e/tau are accepted. Integer sizes are bounded before computing, so an
expression like `9**9**9` is refused instead of eating the CPU.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Annotated

import msgspec

from crewbus_agents.tools.errors import ToolFailed
from crewbus_agents.tools.registry import ToolArgs, tool

Number = int | float

MAX_EXPRESSION_CHARS = 500
MAX_NODES = 200
MAX_INT_BITS = 4096
"""About 1233 decimal digits: far more than arithmetic needs, far below a CPU problem."""


class CalculatorError(ToolFailed):
    """The expression is not plain arithmetic, or its result would be unreasonably large."""


_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}

_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _round(x: Number, ndigits: Number = 0) -> Number:
    if not isinstance(ndigits, int) or abs(ndigits) > 100:
        raise CalculatorError("round() takes a whole number of digits between -100 and 100")
    return round(x, ndigits) if ndigits else round(x)


def _at_least_two(fn: Callable[..., Number]) -> Callable[..., Number]:
    def call(*args: Number) -> Number:
        if len(args) < 2:
            raise CalculatorError(f"{fn.__name__}() needs at least two numbers")
        return fn(*args)

    return call


_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": _round,
    "min": _at_least_two(min),
    "max": _at_least_two(max),
    "floor": math.floor,
    "ceil": math.ceil,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
}


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression, or CalculatorError saying what is not allowed."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise CalculatorError(f"not a valid arithmetic expression: {e}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise CalculatorError(f"expression has more than {MAX_NODES} parts")
    try:
        return _eval(tree.body)
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except OverflowError:
        raise CalculatorError("result too large for a floating-point number") from None
    except (ValueError, TypeError) as e:
        raise CalculatorError(f"math error: {e}") from None


def _eval(node: ast.expr) -> Number:
    match node:
        case ast.Constant(value=bool()):
            raise CalculatorError("booleans are not numbers here")
        case ast.Constant(value=int() | float() as value):
            return _checked(value)
        case ast.Name(id=name) if name in _CONSTANTS:
            return _CONSTANTS[name]
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return -_eval(operand)
        case ast.UnaryOp(op=ast.UAdd(), operand=operand):
            return +_eval(operand)
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
            a, b = _eval(left), _eval(right)
            _check_size(op, a, b)
            return _checked(_BINARY[type(op)](a, b))
        case ast.Call(func=ast.Name(id=fname), args=args, keywords=[]) if fname in _FUNCTIONS:
            return _checked(_FUNCTIONS[fname](*(_eval(a) for a in args)))
    raise CalculatorError(f"not allowed in a calculation: {_describe(node)}")


def _check_size(op: ast.operator, a: Number, b: Number) -> None:
    """Refuse integer results that would exceed MAX_INT_BITS, before computing them."""
    if not (isinstance(a, int) and isinstance(b, int)):
        return
    too_big = b > MAX_INT_BITS or a.bit_length() * b > MAX_INT_BITS + a.bit_length()
    if isinstance(op, ast.Pow) and abs(a) > 1 and b > 0 and too_big:
        raise CalculatorError(f"exponent too large: the result would exceed {MAX_INT_BITS} bits")
    if isinstance(op, ast.Mult) and a.bit_length() + b.bit_length() > MAX_INT_BITS + 1:
        raise CalculatorError(f"product too large: the result would exceed {MAX_INT_BITS} bits")


def _checked(value: Number) -> Number:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculatorError(f"number too large: more than {MAX_INT_BITS} bits")
    if isinstance(value, complex):
        raise CalculatorError("complex results are not supported")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("result is not a finite number")
    return value


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"the name {node.id!r} (only pi, e, tau are known)"
    if isinstance(node, ast.Call):
        names = ", ".join(sorted(_FUNCTIONS))
        return f"this function call (known functions: {names}; no keyword arguments)"
    if isinstance(node, ast.Attribute):
        return "attribute access"
    if isinstance(node, ast.Constant):
        return f"the constant {node.value!r}"
    return type(node).__name__


def format_number(value: Number) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class CalculatorArgs(ToolArgs):
    expression: Annotated[
        str,
        msgspec.Meta(
            min_length=1, max_length=MAX_EXPRESSION_CHARS, examples=["(2 + 3) * sqrt(16)"]
        ),
    ]


@tool(
    name="calculator",
    description=(
        "Evaluate an arithmetic expression exactly: numbers, + - * / // % **, parentheses, "
        "sqrt, abs, round, min, max, floor, ceil, log, log10, exp, sin, cos, tan, pi, e."
    ),
    read_only=True,
)
def calculator(args: CalculatorArgs) -> str:
    return format_number(evaluate(args.expression))
