"""The comment log's records applied to a HistoryStore, with no log client: the one copy of the
rules both ``livechat worker persist`` (Kafka) and an embedded edge's start-up replay of its SQLite
log (``livechat.server.log_replay``) follow. Importing it imports no driver.

``plan_records`` turns a batch of records (each stream's in offset order) into store steps:
comments -> ``put_many`` (idempotent; "deletes win"), ``del`` -> ``delete``, ``purge`` ->
``delete_user``, every other event -> nothing; one plan per run of records ending with a purge (a
purge must see exactly the user's comments logged before it, and is not idempotent once later
comments are stored: see ``livechat.workers.persist``). ``PlanWriter`` runs a plan's steps, then
``set_watermarks`` (stream -> offset of its last record in the plan), and resumes from the step that
failed. A record that is not a well-formed event is logged, counted as ``skipped`` and passed over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from livechat.ports.history import HistoryStore, StoredComment
from livechat.protocol import EventKind, unpackb
from livechat.workers.settings import DELETE_CONCURRENCY

log = logging.getLogger("livechat.workers")

_COMMENT = EventKind.COMMENT.value
_DELETE = EventKind.DELETE.value
_PURGE = EventKind.PURGE.value


class LogRecordLike(Protocol):
    """What is read of a log record (aiokafka's ConsumerRecord has these; key = the stream, UTF-8)."""

    @property
    def key(self) -> bytes | None: ...

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...


@dataclass(slots=True)
class Step:
    """One store call (``kind``: put | delete | purge)."""

    kind: str
    comments: list[StoredComment] = field(default_factory=list)
    deletes: list[tuple[str, int]] = field(default_factory=list)
    purge: tuple[str, str] | None = None


@dataclass(slots=True)
class Plan:
    """The store steps of one batch, in the order they must run, and the watermarks after them."""

    steps: list[Step]
    marks: dict[str, int]
    # Log records the plan covers (consecutive in the batch).
    records: int = 0
    comments: int = 0
    deletes: int = 0
    purges: int = 0
    ignored: int = 0
    skipped: int = 0


def plan_records(records: Sequence[LogRecordLike]) -> list[Plan]:
    """The plans that copy ``records`` (each partition's in offset order) into history: one per
    run of records ending with a purge, then one for the rest (see the module docstring)."""
    plans: list[Plan] = []
    plan = Plan([], {})
    puts: list[StoredComment] = []
    dels: list[tuple[str, int]] = []
    seen: set[tuple[str, int]] = set()

    def flush() -> None:
        nonlocal puts, dels
        if puts:
            plan.steps.append(Step("put", comments=puts))
            puts = []
        if dels:
            plan.steps.append(Step("delete", deletes=dels))
            dels = []

    for index, record in enumerate(records):
        offset = record.offset
        plan.records += 1
        try:
            stream = record.key.decode() if record.key is not None else ""
            if not stream or record.value is None:
                raise ValueError("no stream key or no value")
            marks = plan.marks
            marks[stream] = max(offset, marks.get(stream, -1))
            # Decoding the whole map measured 0.76 µs for a 128 B comment against 2.2 µs for
            # reading only k, id and u with a streaming Unpacker.
            event = unpackb(record.value)
            kind = event.get("k")
            if kind == _COMMENT:
                comment_id = event["id"]
                if type(comment_id) is not int:
                    raise ValueError(f"comment id {comment_id!r}")
                if (stream, comment_id) not in seen:
                    seen.add((stream, comment_id))
                    puts.append(StoredComment(stream, comment_id, str(event["u"]), record.value))
                plan.comments += 1
            elif kind == _DELETE:
                comment_id = event["id"]
                if type(comment_id) is not int:
                    raise ValueError(f"deleted id {comment_id!r}")
                dels.append((stream, comment_id))
                plan.deletes += 1
            elif kind == _PURGE:
                user = str(event["u"])
                flush()  # the user's comments logged before the purge are stored first
                plan.steps.append(Step("purge", purge=(stream, user)))
                plan.purges += 1
                if index + 1 < len(records):
                    plans.append(plan)
                    plan = Plan([], {})
            elif kind is None:
                raise ValueError("no event kind")
            else:
                plan.ignored += 1
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            plan.skipped += 1
            log.warning("persist worker: skipping the record at offset %d: %s", offset, exc)
    flush()
    plans.append(plan)
    return plans


class PlanWriter:
    """Runs a plan's steps, then its watermarks. ``write`` called again after a failure goes on
    from the step that failed (every step is idempotent on its own; see the module docstring for
    why the steps before it are not run again)."""

    def __init__(self, history: HistoryStore, plan: Plan) -> None:
        self._history = history
        self._plan = plan
        self.done = 0
        self.marked = False

    async def write(self) -> None:
        steps = self._plan.steps
        while self.done < len(steps):
            await self._run(steps[self.done])
            self.done += 1
        if not self.marked:
            await self._history.set_watermarks(self._plan.marks)
            self.marked = True

    async def _run(self, step: Step) -> None:
        history = self._history
        if step.kind == "put":
            await history.put_many(step.comments)
        elif step.kind == "purge":
            assert step.purge is not None
            await history.delete_user(*step.purge)
        else:
            await _delete_all(history, step.deletes)


async def _delete_all(history: HistoryStore, deletes: list[tuple[str, int]]) -> None:
    """Every delete, ``DELETE_CONCURRENCY`` at a time; the first failure is raised once all ended
    (none is left running behind the retry)."""
    slots = asyncio.Semaphore(DELETE_CONCURRENCY)

    async def one(stream: str, comment_id: int) -> None:
        async with slots:
            await history.delete(stream, comment_id)

    results = await asyncio.gather(*(one(s, c) for s, c in deletes), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def apply_records(history: HistoryStore, records: Sequence[LogRecordLike]) -> list[Plan]:
    """Copy ``records`` into ``history`` and advance its watermarks (one attempt: a failure raises)."""
    plans = plan_records(records)
    for plan in plans:
        await PlanWriter(history, plan).write()
    return plans
