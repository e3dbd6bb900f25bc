"""Wire names you can grep: every tagged contract spells its tag out in its own class
statement, and every subject says who publishes and who reads it, checked against the code.

How the producer/consumer check works. Each subject in `crewbus_contracts/subjects.py` has a
docstring with `Producer: `module`, ...` and `Consumer: `module` ...` (or "outside crewbus"
for a side that is not crewbus code, pinned below). For every module named there, the test
reads its source and looks for one function that does both:
- refers to the subject, as `subjects.WORK`, an imported `WORK`, or its helper `work(...)`;
- publishes (a producer: `publish`, `request`, `publish_dead_letter`) or reads (a consumer:
  `subscribe`, `pull_subscribe(_bind)`, `run_pull_worker`, `get_msg`), directly or through
  a function of the same module that does.
A consumer that reads through a durable JetStream consumer (`through `WORKER_CONSUMER``)
must bind that consumer's name instead, and the topology must create that durable with a
filter on the subject. So the test fails when a subject loses its publisher, its reader,
or its durable consumer, or when a docstring names a module that no longer does what it says.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
import re
import textwrap
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import msgspec
import pytest
from nats.js.api import ConsumerConfig

import crewbus_contracts
from crewbus.bus.topology import consumer_configs, evaluator_consumer_config, stream_configs
from crewbus.settings import BusSettings
from crewbus.tracing.settings import TraceSettings
from crewbus.tracing.topology import trace_stream_config
from crewbus_contracts import Message, subjects

CONTRACT_MODULES = [
    importlib.import_module(m.name)
    for m in pkgutil.iter_modules(crewbus_contracts.__path__, "crewbus_contracts.")
]

# -- Tags -------------------------------------------------------------------------------


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _tagged_structs() -> list[type[msgspec.Struct]]:
    """Every tagged Struct defined in the contracts (messages, outbox entries), and every
    Message subclass loaded from anywhere."""
    found: set[type[msgspec.Struct]] = set(_subclasses(Message))
    for module in CONTRACT_MODULES:
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, msgspec.Struct)
                    and value.__module__ == module.__name__ and value is not Message
                    and value.__struct_config__.tag_field is not None):
                found.add(value)
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


TAGGED = _tagged_structs()


def _declared_tag(cls: type) -> str | None:
    """The `tag="..."` keyword of the class statement itself, if it is a string literal."""
    node = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    assert isinstance(node, ast.ClassDef)
    for keyword in node.keywords:
        if keyword.arg == "tag":
            value = keyword.value
            return value.value if isinstance(value, ast.Constant) and isinstance(
                value.value, str) else None
    return None


def test_the_contracts_have_tagged_structs_to_check() -> None:
    assert len(TAGGED) > 30
    assert {c.__name__ for c in TAGGED} >= {"TaskCompleted", "Span", "Dispatch", "Emit"}


def test_the_base_message_leaves_the_tag_to_each_message() -> None:
    assert _declared_tag(Message) is None
    assert Message.__struct_config__.tag_field == "type"


@pytest.mark.parametrize("cls", TAGGED, ids=[c.__name__ for c in TAGGED])
def test_every_tagged_struct_spells_its_own_tag_out(cls: type[msgspec.Struct]) -> None:
    """`grep 'tag="task_completed"'` finds the class: the tag is not computed or inherited."""
    assert _declared_tag(cls) == cls.__struct_config__.tag


def test_no_two_structs_share_a_tag() -> None:
    tags = Counter((c.__struct_config__.tag_field, c.__struct_config__.tag) for c in TAGGED)
    assert [tag for tag, n in tags.items() if n > 1] == []


# -- Subjects ---------------------------------------------------------------------------

OUTSIDE_PRODUCERS = {"MAX_DELIVERIES_ADVISORY"}
"""Published by nats-server itself."""
OUTSIDE_CONSUMERS = {"DEAD_LETTER"}
"""Read by people (`nats stream view CREWBUS_DLQ`); nothing in crewbus reads it back."""

PRODUCING = frozenset({"publish", "request", "publish_dead_letter", "publish_retrying"})
CONSUMING = frozenset(
    {"subscribe", "pull_subscribe", "pull_subscribe_bind", "run_pull_worker", "get_msg"}
)

STORED_IN = {
    "TASK": subjects.TASKS_STREAM,
    "WORK": subjects.WORK_STREAM,
    "RESULTS": subjects.RESULTS_STREAM,
    "EVENTS": subjects.EVENTS_STREAM,
    "DEAD_LETTER": subjects.DLQ_STREAM,
    "TRACES": subjects.TRACES_STREAM,
    "EVALS": subjects.EVALS_STREAM,
}
"""The stream that keeps each subject; every other subject is request/reply, in no stream."""


def _docstrings() -> dict[str, str]:
    """The docstring under each module-level constant of subjects.py."""
    tree = ast.parse(Path(subjects.__file__).read_text())
    docs = {}
    for stmt, after in zip(tree.body, tree.body[1:], strict=False):
        if (isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)):
            docs[stmt.targets[0].id] = str(after.value.value)
    return docs


DOCS = _docstrings()
SUBJECTS = {
    name: value for name, value in vars(subjects).items()
    if name.isupper() and isinstance(value, str) and value.startswith(("crewbus.", "$JS."))
}


@dataclass
class Route:
    producers: list[str] = field(default_factory=list)
    consumers: list[tuple[str, str | None]] = field(default_factory=list)
    """(module, the durable consumer it reads through, if any)"""
    outside_producer: bool = False
    outside_consumer: bool = False


_MODULE = re.compile(r"`(crewbus\w*(?:\.\w+)+)`(?: through `([A-Z_]+)`)?")


def _route(doc: str) -> Route:
    text = " ".join(doc.split())
    found = re.search(r"Producers?: (.*?) Consumers?: (.*)$", text)
    assert found, f"no 'Producer: ... Consumer: ...' in {doc!r}"
    produced, consumed = found.groups()
    return Route(
        producers=[m for m, _ in _MODULE.findall(produced)],
        consumers=[(m, through or None) for m, through in _MODULE.findall(consumed)],
        outside_producer=produced.startswith("outside crewbus"),
        outside_consumer=consumed.startswith("outside crewbus"),
    )


@cache
def _tree(module: str) -> ast.Module:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"no module {module}"
    return ast.parse(Path(spec.origin).read_text())


@cache
def _subjects_aliases(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Names bound to the subjects module, and names imported from it."""
    modules, names = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "crewbus_contracts":
            modules |= {a.asname or a.name for a in node.names if a.name == "subjects"}
        elif isinstance(node, ast.ImportFrom) and node.module == "crewbus_contracts.subjects":
            names |= {a.asname or a.name for a in node.names}
    return modules, names


def _mentions(node: ast.AST, wanted: set[str], tree: ast.Module, tainted: set[str]) -> bool:
    """`node` mentions a constant (or helper) of `wanted`, or a variable holding one."""
    modules, imported = _subjects_aliases(tree)
    for sub in ast.walk(node):
        if (isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name)
                and sub.value.id in modules and sub.attr in wanted):
            return True
        if isinstance(sub, ast.Name) and (
                sub.id in tainted or (sub.id in wanted and sub.id in imported)):
            return True
    return False


def _calls(fn: ast.AST, tree: ast.Module) -> Iterator[tuple[str, list[ast.AST]]]:
    """Every call in `fn` as (callee name, arguments); `tg.start_soon(f, *args)` is a call
    of `f`. Calls of the subjects helpers are left out: they only build names."""
    modules, _ = _subjects_aliases(tree)
    for node in ast.walk(fn):
        if not isinstance(node, ast.Call):
            continue
        args: list[ast.AST] = [*node.args, *(k.value for k in node.keywords)]
        callee = node.func
        if isinstance(callee, ast.Attribute) and callee.attr == "start_soon" and node.args:
            callee, args = node.args[0], list(node.args[1:])
        if isinstance(callee, ast.Attribute):
            if not (isinstance(callee.value, ast.Name) and callee.value.id in modules):
                yield callee.attr, args
        elif isinstance(callee, ast.Name):
            yield callee.id, args


def _tainted(fn: ast.AST, wanted: set[str], tree: ast.Module) -> set[str]:
    """Local variables that hold the subject: `subject = subjects.work(role)`,
    `spec = WorkerSpec(consumer=...)`, `for subject, cb in handlers.items()`."""
    tainted: set[str] = set()
    while True:
        more = set()
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                source: ast.AST = node.value
            elif isinstance(node, ast.For):
                targets, source = [node.target], node.iter
            else:
                continue
            if _mentions(source, wanted, tree, tainted):
                more |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        if more <= tainted:
            return tainted
        tainted |= more


def _durables() -> list[ConsumerConfig]:
    """Every durable consumer crewbus creates: the topology's, and the evaluator's own."""
    return [*(config for _, config in consumer_configs(BusSettings())),
            evaluator_consumer_config(BusSettings())]


def _functions_doing(module: str, name: str, verbs: frozenset[str]) -> list[str]:
    """The functions of `module` that hand `name` (the constant, its helper's result, or a
    variable holding it) to a call that does one of `verbs`, or to a function of the same
    module that does."""
    tree = _tree(module)
    functions = [n for n in ast.walk(tree)
                 if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    doing: set[str] = set()
    while True:
        more = {f.name for f in functions
                if any(callee in verbs | doing for callee, _ in _calls(f, tree))} - doing
        if not more:
            break
        doing |= more
    wanted = {name, name.lower()}
    found = []
    for f in functions:
        tainted = _tainted(f, wanted, tree)
        if any(callee in verbs | doing and any(_mentions(a, wanted, tree, tainted) for a in args)
               for callee, args in _calls(f, tree)):
            found.append(f.name)
    return found


def _pattern(template: str) -> re.Pattern[str]:
    """A name of `template`, or a filter on it (a part may be `*`)."""
    literal = [re.escape(piece) for piece in re.split(r"\{\w+\}", template)]
    return re.compile("[^.]+".join(literal) + "$")


def test_every_subject_is_a_constant_with_a_route() -> None:
    assert set(SUBJECTS) >= {"SUBMIT", "CONTROL", "TASK", "WORK", "RESULTS", "EVENTS",
                             "DEAD_LETTER", "TRACES", "MEMORY_SEARCH"}
    assert sorted(n for n in SUBJECTS if n not in DOCS) == []
    routes = {name: _route(DOCS[name]) for name in SUBJECTS}
    assert {n for n, r in routes.items() if r.outside_producer} == OUTSIDE_PRODUCERS
    assert {n for n, r in routes.items() if r.outside_consumer} == OUTSIDE_CONSUMERS


@pytest.mark.parametrize("name", sorted(SUBJECTS))
def test_every_subject_has_the_producer_and_consumer_its_docstring_names(name: str) -> None:
    route = _route(DOCS[name])
    assert route.producers or name in OUTSIDE_PRODUCERS, f"{name} has no producer"
    assert route.consumers or name in OUTSIDE_CONSUMERS, f"{name} has no consumer"
    for module in route.producers:
        assert _functions_doing(module, name, PRODUCING), f"{module} does not publish {name}"
    for module, through in route.consumers:
        if through is None:
            assert _functions_doing(module, name, CONSUMING), f"{module} does not read {name}"
            continue
        durables = [config for config in _durables()
                    if _pattern(getattr(subjects, through)).match(config.durable_name or "")]
        assert durables, f"the topology creates no durable {through}"
        for config in durables:
            filters = [config.filter_subject or "", *(config.filter_subjects or [])]
            assert any(_pattern(SUBJECTS[name]).match(f) for f in filters if f), config
        assert _functions_doing(module, through, CONSUMING), f"{module} does not bind {through}"


def test_the_check_fails_for_a_module_that_does_not_publish_the_subject() -> None:
    """The scan is not vacuous: the gateway answers SUBMIT but never publishes it."""
    assert _functions_doing("crewbus.gateway.submit", "SUBMIT", CONSUMING) == ["start"]
    assert _functions_doing("crewbus.gateway.submit", "SUBMIT", PRODUCING) == []
    assert _functions_doing("crewbus.gateway.submit", "WORK", PRODUCING) == []


@pytest.mark.parametrize("name", sorted(n for n in SUBJECTS if subjects.parts(SUBJECTS[n])))
def test_every_template_has_a_helper_named_after_it(name: str) -> None:
    """So `grep -rniw subjects.work` finds the template and every use of its helper."""
    template = SUBJECTS[name]
    values = {part: f"<{part}>" for part in subjects.parts(template)}
    helper = getattr(subjects, name.lower())
    assert helper(**values) == subjects.fill(template, **values)


def _matches(filter_subject: str, subject: str) -> bool:
    """NATS subject matching: `*` is any one token, a final `>` any tokens after it."""
    want, got = filter_subject.split("."), subject.split(".")
    if want[-1] == ">":
        prefix = want[:-1]
        return len(got) > len(prefix) and all(
            w in ("*", g) for w, g in zip(prefix, got, strict=False))
    return len(want) == len(got) and all(w in ("*", g) for w, g in zip(want, got, strict=True))


@pytest.mark.parametrize("name", sorted(SUBJECTS))
def test_every_subject_is_kept_by_its_stream_alone(name: str) -> None:
    """Stream filters are the templates' wildcards; request/reply subjects are in no stream."""
    configs = [*stream_configs(BusSettings()), trace_stream_config(TraceSettings())]
    template = SUBJECTS[name]
    sample = subjects.fill(template, **{p: "x" for p in subjects.parts(template)})
    keeping = [c.name for c in configs if any(_matches(f, sample) for f in c.subjects or [])]
    assert keeping == ([STORED_IN[name]] if name in STORED_IN else [])
    if name in STORED_IN:
        assert subjects.wildcard(template) in next(
            c.subjects or [] for c in configs if c.name == STORED_IN[name])


def test_fill_wants_every_part_and_no_other() -> None:
    assert subjects.fill(subjects.EVENTS, task_id="t1", kind="task_failed") == (
        "crewbus.events.t1.task_failed")
    assert subjects.part(subjects.EVENTS, "task_id", "crewbus.events.t1.task_failed") == "t1"
    assert subjects.worker_role(subjects.worker_consumer("critic")) == "critic"
    with pytest.raises(ValueError, match="takes"):
        subjects.fill(subjects.WORK)
    with pytest.raises(ValueError, match="takes"):
        subjects.fill(subjects.WORK, role="critic", task_id="t1")
