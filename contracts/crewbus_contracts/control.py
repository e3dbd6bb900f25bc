"""Commands people send about a running task (`crewbus.control`, request/reply)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from crewbus_contracts.base import Message, Model

Who = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Reason = Annotated[str, msgspec.Meta(max_length=2000)]


class ApprovalDecision(Model):
    approved: bool
    by: str
    reason: str = ""
    at: float = 0.0


class CancelTask(Message, tag="cancel_task"):
    """Command: stop this task; nothing new is dispatched, running steps stop."""

    task_id: str
    by: Who
    reason: Reason = ""


class ResolveApproval(Message, tag="resolve_approval"):
    """Command: approve or deny a paused tool call (the oldest pending one when no key)."""

    task_id: str
    approved: bool
    by: Who
    reason: Reason = ""
    call_key: str | None = None


ControlCommand = CancelTask | ResolveApproval


class ControlAccepted(Message, tag="control_accepted"):
    """Reply to a command: what the task's status is now."""

    task_id: str
    status: str
    detail: str = ""
