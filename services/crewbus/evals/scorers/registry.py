"""Declaring scorers and building them from specs, the way tools are declared and called.

A scorer is one typed function, registered by a decorator:

    class StartsWith(ScorerParams):
        prefix: str

    @scorer("starts_with", type="boolean", version="1")
    def starts_with(obs: Observation, params: StartsWith) -> bool:
        return obs.answer.startswith(params.prefix)

Its second argument is a msgspec Struct whose fields are the scorer's parameters (the
keys of its `[[scorer]]` table in eval.toml); an optional third is the `ScorerContext`.
It may be sync (run in a worker thread) or async, and returns a `bool` (boolean
scorers), a `float` in 0..1 (numeric), a `str` label (categorical), a `Verdict` (one of
those with an explanation) or a whole `Score`. It raises `ScoringError` when the item
cannot be judged; that, and any other exception, becomes a Score with `error` set and
`passed=False`: an evaluation error, never a pass.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, get_type_hints

import anyio.to_thread
import msgspec

from crewbus.evals.scorers.base import Observation, Scorer
from crewbus.evals.scorers.context import ScorerContext
from crewbus.evals.scorers.errors import ScorerConfigError, ScorerDefinitionError, ScoringError
from crewbus_contracts.evals import DatasetItem, Score, ScorerSpec, ScoreType

log = logging.getLogger(__name__)

KIND = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
"""A scorer kind: a word, so the CLI's short forms (`kind:k=v`, `kind<=x`) can split it."""
RESERVED_PARAMS = frozenset({"kind", "name", "where"})
"""Keys of a `[[scorer]]` table that are not parameters."""
SCORE_TYPES: tuple[ScoreType, ...] = ("boolean", "numeric", "categorical")

P = TypeVar("P", bound=msgspec.Struct)
F = TypeVar("F", bound=Callable[..., Any])


class ScorerParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A convenient base for parameter Structs: a misspelt key is an error naming it."""


class NoParams(ScorerParams):
    """For a scorer that takes no parameters."""


@dataclass(frozen=True)
class Verdict:
    """A scorer's value with the reason for it. `passed` is a numeric or categorical
    scorer's own bar (None: it has none); a boolean scorer's value is its verdict."""

    value: bool | float | str
    explanation: str = ""
    passed: bool | None = None


ParamsType = type[msgspec.Struct]
ScoreResult = bool | float | str | Verdict | Score
Build = Callable[[Any, str, dict[str, str], ScorerContext], Scorer]
"""Makes one configured scorer from (validated params, its name, its `where`, context)."""


@dataclass(frozen=True)
class ScorerKind:
    """A registered kind of scorer: what specs name in `kind`."""

    kind: str
    type: ScoreType
    version: str
    params_type: ParamsType
    build: Build
    primary: str | None = None
    """The parameter a positional CLI value sets (`tool_called calculator`, `cost_usd<=0.1`)."""
    description: str = ""
    origin: str = ""
    """`module.function` that defined it: the same origin registering again is a module
    being re-imported (a reload), which replaces the kind instead of clashing."""

    @property
    def param_names(self) -> list[str]:
        return [f.encode_name for f in msgspec.structs.fields(self.params_type)]


class ScorerRegistry:
    """Scorer kinds by name. `REGISTRY` is the default; a test may make its own."""

    def __init__(self, loader: Callable[[], None] | None = None) -> None:
        self._kinds: dict[str, ScorerKind] = {}
        self._loader = loader

    def register(self, kind: ScorerKind) -> ScorerKind:
        existing = self._kinds.get(kind.kind)
        if existing is not None and not (kind.origin and existing.origin == kind.origin):
            where = f" by {existing.origin}" if existing.origin else ""
            raise ScorerDefinitionError(f"scorer kind {kind.kind!r} is already registered{where}")
        self._kinds[kind.kind] = kind
        return kind

    def _load(self) -> None:
        loader, self._loader = self._loader, None
        if loader is not None:
            loader()

    def get(self, kind: str) -> ScorerKind:
        self._load()
        found = self._kinds.get(kind)
        if found is None:
            raise ScorerConfigError(
                f"unknown scorer kind {kind!r} (known: {', '.join(self.kinds)}; "
                "a scorer of your own must be imported as a plugin)"
            )
        return found

    @property
    def kinds(self) -> list[str]:
        self._load()
        return sorted(self._kinds)

    def scorer(
        self,
        kind: str,
        *,
        type: ScoreType,
        version: str,
        primary: str | None = None,
        prepare: Callable[[Any, ScorerContext], Any] | None = None,
        description: str | None = None,
        needs_tool_calls: bool = False,
    ) -> Callable[[F], F]:
        """Decorator: register `fn` as scorer `kind`; the function itself is returned
        unchanged, so it can still be called (and tested) directly.

        `prepare(params, context) -> params` runs once when the scorer is built: it may
        load a file named in the params or refuse them (raise `ScorerConfigError`).
        `needs_tool_calls`: the scorer reads `obs.tool_calls`, so the runner reads each
        task's trace for it (skipped otherwise: it costs a stream read per item)."""

        def wrap(fn: F) -> F:
            self.register(
                function_kind(
                    fn, kind, type=type, version=version, primary=primary,
                    prepare=prepare, description=description,
                    needs_tool_calls=needs_tool_calls,
                )
            )
            return fn

        return wrap


def _load_builtins() -> None:
    """The built-in scorers register themselves when their modules are imported."""
    from crewbus.evals.scorers import builtin, judge, trajectory  # noqa: F401


REGISTRY = ScorerRegistry(loader=_load_builtins)


scorer = REGISTRY.scorer
"""Register a scorer function on the default registry (see `ScorerRegistry.scorer`)."""


def function_kind(
    fn: Callable[..., Any],
    kind: str,
    *,
    type: ScoreType,
    version: str,
    primary: str | None = None,
    prepare: Callable[[Any, ScorerContext], Any] | None = None,
    description: str | None = None,
    needs_tool_calls: bool = False,
) -> ScorerKind:
    """Inspect `fn` and describe it as a scorer kind; a function that could not be called
    as a scorer is refused here, at import time."""
    params_type, wants_context = _signature(fn, kind)
    check_kind(kind, type, version, params_type, primary)
    primary = primary or _only_field(params_type)

    def build(
        params: Any, name: str, where: dict[str, str], context: ScorerContext
    ) -> Scorer:
        if prepare is not None:
            params = prepare(params, context)
        return FunctionScorer(
            name=name, type=type, version=version, fn=fn, params=params, where=where,
            context=context, wants_context=wants_context, needs_tool_calls=needs_tool_calls,
        )

    return ScorerKind(
        kind=kind, type=type, version=version, params_type=params_type, build=build,
        primary=primary, description=description or inspect.getdoc(fn) or "",
        origin=f"{fn.__module__}.{fn.__qualname__}",
    )


def check_kind(
    kind: str, type: str, version: str, params_type: type[msgspec.Struct], primary: str | None
) -> None:
    """Refuse a kind the configuration formats could not name or parameterise."""
    if not KIND.match(kind):
        raise ScorerDefinitionError(f"scorer kind {kind!r} must match {KIND.pattern}")
    if type not in SCORE_TYPES:
        raise ScorerDefinitionError(
            f"scorer {kind!r}: type must be one of {', '.join(SCORE_TYPES)}, not {type!r}"
        )
    if not isinstance(version, str) or not version:
        raise ScorerDefinitionError(f"scorer {kind!r}: version must be a non-empty string")
    names = {f.encode_name for f in msgspec.structs.fields(params_type)}
    if names & RESERVED_PARAMS:
        raise ScorerDefinitionError(
            f"scorer {kind!r}: parameter names {sorted(names & RESERVED_PARAMS)} are "
            f"reserved ({', '.join(sorted(RESERVED_PARAMS))} are keys of the scorer's table)"
        )
    if primary is not None and primary not in names:
        raise ScorerDefinitionError(f"scorer {kind!r}: primary {primary!r} is not a parameter")


def _signature(fn: Callable[..., Any], kind: str) -> tuple[type[msgspec.Struct], bool]:
    params = list(inspect.signature(fn).parameters.values())
    if len(params) not in (2, 3):
        raise ScorerDefinitionError(
            f"scorer {kind!r} must take (obs: Observation, params: AStruct"
            "[, context: ScorerContext])"
        )
    try:
        hints = get_type_hints(fn)
    except NameError as exc:
        raise ScorerDefinitionError(
            f"scorer {kind!r}: cannot resolve its annotations ({exc}); "
            "define the parameter Struct at module level"
        ) from None
    params_type = hints.get(params[1].name)
    if not (isinstance(params_type, type) and issubclass(params_type, msgspec.Struct)):
        raise ScorerDefinitionError(
            f"scorer {kind!r}: its second parameter must be annotated with a msgspec.Struct "
            "(use NoParams for none)"
        )
    if hints.get(params[0].name, Observation) is not Observation:
        raise ScorerDefinitionError(f"scorer {kind!r}: its first parameter is an Observation")
    wants_context = len(params) == 3
    if wants_context and hints.get(params[2].name) is not ScorerContext:
        raise ScorerDefinitionError(f"scorer {kind!r}: its third parameter is a ScorerContext")
    return params_type, wants_context


def _only_field(params_type: type[msgspec.Struct]) -> str | None:
    fields = msgspec.structs.fields(params_type)
    return fields[0].encode_name if len(fields) == 1 else None


def matches_where(where: dict[str, str], item: DatasetItem) -> bool:
    """True when every `where` key has that value in the item's metadata (or its input's).
    Values compare as text: `true`/`false` for booleans, `str()` for numbers."""
    for key, want in where.items():
        value = item.metadata.get(key, item.input.metadata.get(key))
        if value is None or _as_text(value) != want:
            return False
    return True


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return msgspec.json.encode(value).decode()


@dataclass(frozen=True)
class FunctionScorer:
    """A scorer function bound to its parameters: what `build_scorers` returns for it."""

    name: str
    type: ScoreType
    version: str
    fn: Callable[..., Any]
    params: Any
    where: dict[str, str]
    context: ScorerContext
    wants_context: bool
    needs_tool_calls: bool = False
    """Read by the runner: fetch the task's tool calls from its trace for this scorer."""

    def applies_to(self, item: DatasetItem) -> bool:
        return matches_where(self.where, item)

    async def score(self, observation: Observation) -> Score:
        """The function's result as a Score; never raises for what the function does."""
        try:
            result = await self._call(observation)
            return to_score(result, self.name, self.type, self.version)
        except ScoringError as exc:
            return error_score(self.name, self.type, self.version, str(exc))
        except Exception as exc:
            log.warning("scorer %s raised %s", self.name, type(exc).__name__, exc_info=True)
            return error_score(
                self.name, self.type, self.version, f"the scorer raised {type(exc).__name__}: {exc}"
            )

    async def _call(self, observation: Observation) -> Any:
        args = (observation, self.params, self.context)[: 3 if self.wants_context else 2]
        if inspect.iscoroutinefunction(self.fn):
            result: Awaitable[Any] = self.fn(*args)
            return await result
        return await anyio.to_thread.run_sync(self.fn, *args, abandon_on_cancel=True)


def error_score(name: str, type: ScoreType, version: str, error: str) -> Score:
    """The Score of an item that could not be judged: never a pass."""
    return Score(
        name=name, type=type, scorer_version=version, passed=False, error=error or "error"
    )


def to_score(result: Any, name: str, type: ScoreType, version: str) -> Score:
    """What a scorer function returned, as a Score of scorer `name` (its type enforced)."""
    if isinstance(result, Score):
        score = msgspec.structs.replace(result, name=name, type=type, scorer_version=version)
        return msgspec.structs.replace(score, passed=False) if score.error else score
    verdict = result if isinstance(result, Verdict) else Verdict(result)
    value = verdict.value
    score = Score(name=name, type=type, scorer_version=version, explanation=verdict.explanation)
    if type == "boolean":
        if not isinstance(value, bool):
            raise ScoringError(f"a boolean scorer returns a bool, not {_kind_of(value)}")
        return msgspec.structs.replace(score, value=1.0 if value else 0.0, passed=value)
    if type == "numeric":
        if isinstance(value, bool):
            return msgspec.structs.replace(score, value=1.0 if value else 0.0, passed=value)
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise ScoringError(f"a numeric scorer returns a number in 0..1, not {_kind_of(value)}")
        if not 0.0 <= value <= 1.0:
            raise ScoringError(f"a numeric scorer returns a number in 0..1, not {value!r}")
        return msgspec.structs.replace(score, value=float(value), passed=verdict.passed)
    if not isinstance(value, str) or not value:
        raise ScoringError(f"a categorical scorer returns a label (str), not {_kind_of(value)}")
    return msgspec.structs.replace(score, label=value, passed=verdict.passed)


def _kind_of(value: Any) -> str:
    return "None" if value is None else f"a {type(value).__name__} ({value!r:.40})"


def build_scorers(
    specs: Iterable[ScorerSpec],
    context: ScorerContext | None = None,
    registry: ScorerRegistry | None = None,
) -> list[Scorer]:
    """One configured scorer per spec, in order. Raises `ScorerConfigError` (one line
    naming the scorer) for an unknown kind, bad parameters or two scorers with one name."""
    registry = registry or REGISTRY
    context = context or ScorerContext()
    built: list[Scorer] = []
    seen: set[str] = set()
    for index, spec in enumerate(specs, 1):
        label = spec.label
        if label in seen:
            raise ScorerConfigError(
                f"two scorers are named {label!r}: give the second one a `name`"
            )
        seen.add(label)
        built.append(build_one(spec, context, registry, index))
    return built


def build_one(
    spec: ScorerSpec, context: ScorerContext, registry: ScorerRegistry, index: int = 1
) -> Scorer:
    where = f"scorer {spec.label!r}" + (f" (kind {spec.kind})" if spec.name else "")
    try:
        kind = registry.get(spec.kind)
    except ScorerConfigError as exc:
        raise ScorerConfigError(f"scorer #{index}: {exc}") from None
    params = convert_params(kind, spec.params, where)
    try:
        return kind.build(params, spec.label, dict(spec.where), context)
    except ScorerConfigError as exc:
        raise ScorerConfigError(f"{where}: {exc}") from None
    except (ValueError, OSError) as exc:
        raise ScorerConfigError(f"{where}: {exc}") from None


def convert_params(kind: ScorerKind, params: dict[str, Any], where: str) -> Any:
    """`params` as the kind's Struct; text values (from the CLI) are converted to the
    field's type. An unknown key or a bad value is one line naming the key."""
    known = kind.param_names
    unknown = sorted(set(params) - set(known))
    if unknown:
        shown = ", ".join(known) if known else "none"
        raise ScorerConfigError(
            f"{where}: unknown parameter {unknown[0]!r} (its parameters: {shown})"
        )
    try:
        return msgspec.convert(params, kind.params_type, strict=False)
    except msgspec.ValidationError as exc:
        raise ScorerConfigError(f"{where}: {exc}") from None
