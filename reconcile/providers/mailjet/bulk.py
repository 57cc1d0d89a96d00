"""Bulk writes through /contact/managemanycontacts jobs.

A job upserts up to `chunk_size` contacts (email, fields, static properties) and
applies one set of list actions to all of them, so contacts are grouped by the list
actions they need. Jobs run asynchronously: each is polled with growing waits until
it ends; its Error and ErrorFile are mapped back to the contacts they concern.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from reconcile.diff import Change
from reconcile.errors import ApiError
from reconcile.providers.base import INTERRUPTED, Cancellation
from reconcile.providers.mailjet.client import API_PREFIX, MailjetClient

JOBS = "/contact/managemanycontacts"
FINISHED = {"completed": True, "error": False, "abort": False}  # status -> succeeded
ListAction = tuple[int, str]  # (ListID, Action)
W = TypeVar("W")


@dataclass(frozen=True)
class JobPolling:
    first_wait: float = 1.0
    max_wait: float = 15.0
    timeout: float = 3600.0


@dataclass(slots=True)
class BulkItem:
    """One contact in a job: its upsert body and the changes the job carries out for it.
    `checked`: the contact change whose Name/IsExcludedFromCampaigns the body carries for
    an existing contact, with `before`, those fields' values when the body was made (by
    body key), for the read-back that tells whether the job applied them. Once the job
    is sent, the body keeps only those fields (`sent`)."""

    body: dict[str, Any]
    changes: list[Change]
    checked: Change | None = None
    before: dict[str, Any] = field(default_factory=dict)
    email: str = field(init=False)

    def __post_init__(self) -> None:
        self.email = str(self.body["Email"])

    def sent(self) -> None:
        """The job went out: drop what only its request needed."""
        self.body = {name: self.body[name] for name in self.before}


@dataclass
class JobResult:
    """Per-contact failures (by lower-case email), or one message failing the whole job."""

    failed: dict[str, str] = field(default_factory=dict)
    job_error: str | None = None

    def error_for(self, item: BulkItem) -> str | None:
        return self.job_error or self.failed.get(item.email.lower())


def chunked(items: Sequence[W], size: int) -> list[Sequence[W]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


Build = Callable[[Sequence[W]], list[BulkItem]]
Settle = Callable[[list[BulkItem], JobResult], None]


class BulkWriter:
    def __init__(
        self,
        client: MailjetClient,
        polling: JobPolling,
        chunk_size: int,
        cancel: Cancellation,
        sending: int = 8,
    ) -> None:
        self.client = client
        self.polling = polling
        self.chunk_size = chunk_size
        self.cancel = cancel
        self.jobs_pending = 0  # submitted and not finished yet (for progress)
        # Jobs being built and sent at once: enough to keep the rate limit busy, while
        # the bodies of a million contacts are never all held together.
        self._sending = asyncio.Semaphore(sending)

    async def run(
        self,
        actions: Sequence[ListAction],
        works: Sequence[W],
        build: Build[W],
        settle: Settle,
    ) -> None:
        """A job per `chunk_size` of `works`, its items made (`build`) only when its turn
        to be sent comes, and settled (`settle`) with its result once it ends."""
        await asyncio.gather(
            *(self._job(actions, chunk, build, settle) for chunk in chunked(works, self.chunk_size))
        )

    async def _job(
        self, actions: Sequence[ListAction], works: Sequence[W], build: Build[W], settle: Settle
    ) -> None:
        async with self._sending:
            items = build(works)
            if not items:
                return
            sent = await self._send(actions, items)
        for item in items:
            item.sent()
        settle(items, sent if isinstance(sent, JobResult) else await self._finish(sent))

    async def _send(self, actions: Sequence[ListAction], items: list[BulkItem]) -> int | JobResult:
        """The job's id, or the result that ends it before it ran."""
        if self.cancel.requested:
            return JobResult(job_error=INTERRUPTED)
        body: dict[str, Any] = {"Contacts": [item.body for item in items]}
        if actions:
            body["ContactsLists"] = [{"ListID": lid, "Action": act} for lid, act in actions]
        try:
            # An upsert by email with idempotent list actions: safe to send again.
            return _job_id(await self.client.post(JOBS, body, idempotent=True))
        except ApiError as error:
            return JobResult(job_error=str(error))

    async def _finish(self, job_id: int) -> JobResult:
        self.jobs_pending += 1
        try:
            status = await self._wait(job_id)
        except ApiError as error:
            return JobResult(job_error=str(error))
        finally:
            self.jobs_pending -= 1
        return await self._result(job_id, status)

    async def _wait(self, job_id: int) -> dict[str, Any]:
        wait = self.polling.first_wait
        waited = 0.0
        path = f"{JOBS}/{job_id}"
        while True:
            records = await self.client.get(path)
            status = records[0] if records and isinstance(records[0], dict) else None
            if status is None or not isinstance(status.get("Status"), str):
                # An unknown status means running; no status at all is a misread answer.
                raise ApiError(
                    f"bulk job {job_id}: answer has no Status: {records!r}"[:300],
                    method="GET",
                    path=API_PREFIX + path,
                )
            if status["Status"].lower() in FINISHED:
                return status
            if waited >= self.polling.timeout:
                raise ApiError(
                    f"bulk job {job_id} still {status['Status']!r} after {waited:.0f} s; "
                    "re-run apply later to finish (it converges)",
                    method="GET",
                    path=API_PREFIX + path,
                )
            await asyncio.sleep(wait)
            waited += wait
            wait = min(wait * 2, self.polling.max_wait)

    async def _result(self, job_id: int, status: dict[str, Any]) -> JobResult:
        state = str(status.get("Status", "")).lower()
        error = str(status.get("Error") or "")
        if not FINISHED[state]:
            return JobResult(job_error=f"bulk job {job_id} ended {status.get('Status')}: {error}")
        error_file = status.get("ErrorFile")
        if not error_file:
            return JobResult()
        failed = await self._error_rows(str(error_file))
        if not failed:
            return JobResult(job_error=f"bulk job {job_id} reported errors: {error}")
        return JobResult(
            failed={email: f"bulk job {job_id}: {reason}" for email, reason in failed.items()}
        )

    async def _error_rows(self, url: str) -> dict[str, str]:
        text = await self.client.download(url)
        rows = csv.DictReader(io.StringIO(text))
        failed: dict[str, str] = {}
        for row in rows:
            email = (row.get("email") or row.get("Email") or "").strip().lower()
            if email:
                failed[email] = row.get("error") or row.get("Error") or "failed"
        return failed


def _job_id(answer: list[Any]) -> int:
    job = answer[0] if answer else None
    job_id = job.get("JobID") if isinstance(job, dict) else None
    if not isinstance(job_id, int) or isinstance(job_id, bool):
        raise ApiError(
            f"bulk job answer has no JobID: {answer!r}"[:300], method="POST", path=API_PREFIX + JOBS
        )
    return job_id
