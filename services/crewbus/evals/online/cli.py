"""`crewbus feedback TASK_ID --score 0..1 [--label WORD] [--comment TEXT] [--by NAME]`,
and the scores `crewbus status` shows under a task's state (and `--json` beside it)."""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.js.errors import BucketNotFoundError, NotFoundError

from crewbus_contracts.feedback import FEEDBACK_NAME, TaskScore


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    feedback = subparsers.add_parser("feedback", help="score a finished task yourself "
                                     "(stored beside the evaluators' scores)")
    feedback.add_argument("task_id")
    feedback.add_argument("--score", type=float, required=True, help="from 0 (bad) to 1 (good)")
    feedback.add_argument("--label", help="one word, e.g. good or bad")
    feedback.add_argument("--comment", default="", help="what was right or wrong")
    feedback.add_argument("--by", default=_user(), help="who you are (default: your user)")
    feedback.add_argument("--nats", help="NATS URL (default $CREWBUS_NATS_URL or localhost)")
    return feedback


def _user() -> str:
    try:
        name = getpass.getuser()
    except Exception:  # no user name in this environment (a container): say "human"
        return "human"
    return name if re.match(FEEDBACK_NAME, name) else "human"


async def feedback_command(nc: NATS, args: argparse.Namespace) -> int:
    from crewbus.client import CommandRefusedError, CrewbusClient
    from crewbus_contracts.feedback import Feedback

    # Checked here too, so a bad score is a usage error before anything is sent.
    feedback = msgspec.convert({"task_id": args.task_id, "score": args.score,
                                "label": args.label, "comment": args.comment,
                                "by": args.by}, Feedback)
    try:
        accepted = await CrewbusClient(nc).feedback(feedback)
    except CommandRefusedError as exc:
        print(f"crewbus feedback: refused: {exc}", file=sys.stderr)
        return 1
    print(f"feedback on task {accepted.task_id} stored ({accepted.key})")
    return 0


async def task_scores(nc: NATS, task_id: str) -> list[TaskScore]:
    """Every stored score of the task, evaluators' first (none when no score bucket exists:
    nothing was ever scored on this bus)."""
    from crewbus.evals.online.scores import TaskScoreStore

    try:
        store = await TaskScoreStore.open(nc.jetstream())
    except (BucketNotFoundError, NotFoundError):
        return []
    return await store.of_task(task_id)

