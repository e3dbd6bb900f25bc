"""What the researcher and the executor share: one step of the plan, given the task and
the outputs of the steps it depends on."""

from __future__ import annotations

from crewbus.llm.hint import ModelHint, ShownMemory
from crewbus_agents.recall import Recalled
from crewbus_agents.roles.base import Role
from crewbus_contracts import StepOutput, StepRequest


class StepAgent(Role[StepRequest]):
    request_type = StepRequest
    output_type = StepOutput

    def takes(self, request: StepRequest) -> bool:
        return request.step.role == self.name

    def user_message(self, request: StepRequest) -> str:
        parts = [f"Overall task:\n{request.task_text}",
                 f"Your step ({request.step.id}):\n{request.step.instruction}"]
        for step_id, output in request.inputs.items():
            parts.append(f"Output of step {step_id}:\n{output}")
        return "\n\n".join(parts)

    def hint(self, request: StepRequest, recalled: Recalled) -> ModelHint:
        return ModelHint(task=request.task_text, step=request.step.id,
                         instruction=request.step.instruction, inputs=tuple(request.inputs),
                         input_texts=tuple(request.inputs.values()),
                         memory=tuple(recalled.ids),
                         memories=tuple(ShownMemory(id=h.id, kind=h.kind, text=h.text)
                                        for h in recalled.hits))
