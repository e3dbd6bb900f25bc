"""Where the simulated model finds arithmetic in a step's instruction, for the calculator.

A real model asked "What is (12 + 30) * 2?" hands the expression to its calculator tool
rather than doing sums in its head. The simulated model does the same, without knowing
any arithmetic itself: it only spots a written expression and copies it out, and the
`calculator` tool computes it. What counts as an expression:

- numbers (`7`, `2.5`) joined by `+ - * / // % **` and parentheses, with `sqrt`, `abs`,
  `floor`, `ceil`, `round`, `log`, `log10`, `exp` of one argument and `pi`; `^` and the
  typographic times, divide and minus signs are written as the calculator spells them
  (`**`, `*`, `/`, `-`);
- at least one operator between two values: `42` alone is a number, not a sum;
- not numbers joined only by unspaced hyphens (`2024-12-25`, `5-7-5`, `10-20`): dates,
  codes and ranges, not subtractions;
- nothing in words: "six times seven" or "15% of 240" is a word problem, which an honest
  pipeline without a real model cannot turn into a calculation.

When an instruction holds several, the one with the most parts is taken (the first of
equals). The expression is checked to parse as arithmetic, never evaluated here.
"""

from __future__ import annotations

import ast
import re

_FUNCTIONS = ("sqrt", "abs", "floor", "ceil", "round", "log10", "log", "exp")
_TOKEN = re.compile(
    r"""
      (?P<number>(?<![\w.])\d+(?:\.\d+)?(?!\w))
    | (?P<function>(?<!\w)(?:"""
    + "|".join(_FUNCTIONS)
    + r""")(?=\s*\())
    | (?P<constant>(?<!\w)pi(?!\w))
    | (?P<operator>\*\*|//|[-+*/%^\u00d7\u00f7\u2212])
    | (?P<paren>[()])
    """,
    re.VERBOSE,
)
_SPELLING = {"^": "**", "\u00d7": "*", "\u00f7": "/", "\u2212": "-"}
_BINARY_ONLY = {"*", "/", "//", "%", "**", "^", "\u00d7", "\u00f7"}
_ALLOWED_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Call, ast.Name, ast.Load,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd,
)


def find_expression(text: str) -> str | None:
    """The arithmetic expression written in `text`, in the calculator's syntax, or None."""
    best: tuple[int, str] | None = None
    for run in _runs(text):
        trimmed = _trim(run)
        if trimmed is None:
            continue
        expression = _spelled(text, trimmed)
        if _is_arithmetic(expression, trimmed, text) and (best is None or len(trimmed) > best[0]):
            best = (len(trimmed), expression)
    return None if best is None else best[1]


_Token = tuple[str, str, int, int]
"""(kind, text, start, end) of one token in the instruction."""


def _runs(text: str) -> list[list[_Token]]:
    """Tokens that follow each other with only spaces between them, grouped."""
    runs: list[list[_Token]] = []
    current: list[_Token] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or ""
        token = (kind, match.group(), match.start(), match.end())
        if current and text[current[-1][3] : match.start()].strip():
            runs.append(current)
            current = []
        current.append(token)
    if current:
        runs.append(current)
    return runs


def _trim(run: list[_Token]) -> list[_Token] | None:
    """The run without dangling operators and unmatched outer parentheses (None: empty or
    still unbalanced)."""
    tokens = list(run)
    while tokens:
        first, last = tokens[0][1], tokens[-1][1]
        opens = sum(t[1] == "(" for t in tokens)
        closes = sum(t[1] == ")" for t in tokens)
        if first == ")" or first in _BINARY_ONLY or (first == "(" and opens > closes):
            tokens.pop(0)
        elif last == "(" or tokens[-1][0] in {"operator", "function"} or (
            last == ")" and closes > opens
        ):
            tokens.pop()
        else:
            break
    if not tokens or _depth_goes_negative(tokens):
        return None
    return tokens


def _depth_goes_negative(tokens: list[_Token]) -> bool:
    depth = 0
    for token in tokens:
        depth += {"(": 1, ")": -1}.get(token[1], 0)
        if depth < 0:
            return True
    return depth != 0


def _spelled(text: str, tokens: list[_Token]) -> str:
    """The expression as written, with the operators the calculator spells differently."""
    written = text[tokens[0][2] : tokens[-1][3]]
    for theirs, ours in _SPELLING.items():
        written = written.replace(theirs, ours)
    return " ".join(written.split())


def _is_arithmetic(expression: str, tokens: list[_Token], text: str) -> bool:
    operators = [t for t in tokens if t[0] == "operator"]
    if all(t[1] == "-" and _unspaced(text, t) for t in operators) and len(operators) >= 1:
        return False  # a date, a code or a range, not a subtraction
    try:
        tree = ast.parse(expression, mode="eval")
    except (SyntaxError, ValueError):
        return False
    nodes = list(ast.walk(tree))
    if not all(isinstance(n, _ALLOWED_NODES) for n in nodes):
        return False
    if any(isinstance(n, ast.Constant) and isinstance(n.value, bool | complex | str)
           for n in nodes):
        return False
    return any(isinstance(n, ast.BinOp) for n in nodes)


def _unspaced(text: str, token: _Token) -> bool:
    _, _, start, end = token
    return start > 0 and end < len(text) and not text[start - 1].isspace() and not (
        text[end].isspace()
    )
