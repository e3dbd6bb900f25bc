"""What a scorer may need beyond its parameters: where relative files live, and the judge.

One `ScorerContext` serves every scorer of an experiment. It owns the judge's model
clients (one per model name, made on first use), so close it when the run ends:
`async with ScorerContext(...) as context: scorers = build_scorers(specs, context)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from crewbus.llm.settings import LLMSettings

if TYPE_CHECKING:
    from crewbus.llm.adapter import LLMClient

JUDGE_ROLE = "judge"
"""The agent name judge calls carry (`X-Crewbus-Agent`, metrics' `agent` label)."""


@dataclass
class ScorerContext:
    """Shared by the scorers of one run. `base_dir` resolves relative paths in parameters
    (a rubric or schema file named in eval.toml is relative to eval.toml)."""

    base_dir: Path = field(default_factory=Path.cwd)
    judge: LLMSettings = field(default_factory=LLMSettings)
    """The judge model's settings (`Settings.judge`, from `CREWBUS_JUDGE_*`)."""
    _clients: dict[str, LLMClient] = field(default_factory=dict, repr=False)

    def resolve(self, path: str) -> Path:
        """`path` as given when absolute, else relative to `base_dir`."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    def judge_client(self, model: str | None = None) -> LLMClient:
        """The client for the judge settings, with `model` instead of theirs when given."""
        settings = self.judge if not model else msgspec.structs.replace(self.judge, model=model)
        client = self._clients.get(settings.model)
        if client is None:
            from crewbus.llm.adapter import LLMClient  # the openai import, only with a judge

            client = self._clients[settings.model] = LLMClient(settings, JUDGE_ROLE)
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    async def __aenter__(self) -> ScorerContext:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
