"""The workflow behind the web app example: an expense waits for a person's approval.

``ExpenseApproval`` checks a submitted expense, asks a person to approve it
(``ctx.wait_for_event`` publishes an ``InputRequiredEvent`` and the step holds no
worker while the person thinks), and records the decision. Its typed state
(``ExpenseState``) follows the expense through the steps; the final state is the
run's result.

This module imports nothing but stalkflow, so workers can serve it:
``STALKFLOW_WORKFLOWS=examples.webapp.workflow celery -A worker.app worker``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from stalkflow import Context, Workflow, step
from stalkflow.events import Event, HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent

#: How long a run waits for its approval (the run's timeout too).
APPROVAL_TIMEOUT_S = 3600.0
#: Answers that approve; anything else rejects.
APPROVING_ANSWERS = frozenset({"yes", "y", "approve", "approved", "ok"})


class ExpenseSubmitted(StartEvent):
    """Starts a run: what was spent, and how much."""

    description: str = Field(min_length=1, max_length=200)
    amount: float = Field(gt=0, le=1_000_000)


class Progress(Event):
    """A line for the person watching the run."""

    message: str


class Checked(Event):
    """The expense passed the checks and awaits a decision."""


class Decided(Event):
    approved: bool


class ExpenseState(BaseModel):
    """The run's typed state; every field has a default."""

    description: str = ""
    amount: float = 0.0
    decision: str = "pending"
    history: list[str] = Field(default_factory=list)


class ExpenseApproval(Workflow):
    """Checks an expense, asks a person to approve it, records the decision."""

    @step
    async def check(self, ctx: Context[ExpenseState], ev: ExpenseSubmitted) -> Checked:
        async with ctx.store.edit_state() as state:
            state.description = ev.description
            state.amount = ev.amount
            state.history.append(f"submitted {ev.amount:.2f} for {ev.description}")
        ctx.write_event_to_stream(
            Progress(message=f"{ev.description!r} ({ev.amount:.2f}) needs a manager's approval")
        )
        return Checked()

    @step
    async def approve(self, ctx: Context[ExpenseState], ev: Checked) -> Decided:
        # This step runs again from the top when the answer arrives: nothing above
        # the wait may have effects.
        expense = await ctx.store.get_state()
        answer = await ctx.wait_for_event(
            HumanResponseEvent,
            waiter_event=InputRequiredEvent(
                prefix=f"Approve {expense.amount:.2f} for {expense.description!r}? (yes/no)"
            ),
            timeout=APPROVAL_TIMEOUT_S,
        )
        approved = answer.response.strip().lower() in APPROVING_ANSWERS
        async with ctx.store.edit_state() as state:
            state.decision = "approved" if approved else "rejected"
            state.history.append(f"{state.decision}: {answer.response!r}")
        return Decided(approved=approved)

    @step
    async def record(self, ctx: Context[ExpenseState], ev: Decided) -> StopEvent:
        state = await ctx.store.get_state()
        verdict = "approved" if ev.approved else "rejected"
        ctx.write_event_to_stream(Progress(message=f"{state.description!r} {verdict}"))
        return StopEvent(result=state.model_dump(mode="json"))


#: The instance the web app submits to, and the workers serve.
expense_approval = ExpenseApproval(timeout=APPROVAL_TIMEOUT_S)
