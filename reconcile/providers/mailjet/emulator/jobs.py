"""POST /contact/managemanycontacts: asynchronous bulk upsert jobs.

A job is checked for shape when it is posted (400 on a malformed request) and
runs when a poll finds it due: per-contact failures are collected into an
error file, whole-job failures end it with Status "Error" and change nothing.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from reconcile.providers.mailjet.emulator.state import (
    LIST_ACTIONS,
    ApiError,
    JobRecord,
    MailjetState,
    coerce_value,
    is_valid_email,
    now_iso,
)

FINAL_STATUSES = ("Completed", "Error")
JOB_CONTACT_FIELDS = frozenset({"Email", "Name", "IsExcludedFromCampaigns", "Properties"})


@dataclass
class JobFaults:
    """Failures a test asks of the jobs that run next (the API documents both outcomes:
    a job ending in Status "Error", and per-contact rows in its ErrorFile)."""

    error_jobs: int = 0  # the next jobs to run end in "Error" and change nothing
    error_message: str = "Internal error while processing the job"
    failing_emails: dict[str, int] = field(default_factory=dict)  # lower email -> jobs left
    failure_message: str = "Contact could not be processed"

    def take_job_error(self) -> str | None:
        if self.error_jobs <= 0:
            return None
        self.error_jobs -= 1
        return self.error_message

    def take_contact_failure(self, email: str) -> str | None:
        key = email.lower()
        left = self.failing_emails.get(key, 0)
        if left <= 0:
            return None
        if left == 1:
            del self.failing_emails[key]
        else:
            self.failing_emails[key] = left - 1
        return self.failure_message


def parse_list_actions(value: Any) -> list[dict[str, Any]]:
    """Check a ContactsLists array: [{"ListID": int, "Action": one of LIST_ACTIONS}]."""
    if not isinstance(value, list):
        raise ApiError(400, {"ContactsLists": "Must be an array of {ListID, Action}"})
    actions: list[dict[str, Any]] = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"ListID", "Action"}:
            raise ApiError(400, {"ContactsLists": "Each item must be exactly {ListID, Action}"})
        list_id, action = item["ListID"], item["Action"]
        if not isinstance(list_id, int) or isinstance(list_id, bool):
            raise ApiError(400, {"ListID": f"Invalid ListID {list_id!r}"})
        if action not in LIST_ACTIONS:
            raise ApiError(400, {"Action": f'Unknown action "{action}"'})
        actions.append({"ListID": list_id, "Action": action})
    return actions


def parse_job_request(body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Shape checks done at POST time; content checks wait until the job runs."""
    unknown = sorted(set(body) - {"Contacts", "ContactsLists"})
    if unknown:
        raise ApiError(400, f'Unknown property "{unknown[0]}"')
    contacts = body.get("Contacts")
    if not isinstance(contacts, list) or not contacts:
        raise ApiError(400, {"Contacts": "Must be a non-empty array"})
    for item in contacts:
        if not isinstance(item, dict) or not isinstance(item.get("Email"), str):
            raise ApiError(400, {"Contacts": "Each contact must be an object with an Email"})
        extra = sorted(set(item) - JOB_CONTACT_FIELDS)
        if extra:
            raise ApiError(400, {"Contacts": f'Unknown property "{extra[0]}"'})
        if "Properties" in item and not isinstance(item["Properties"], dict):
            raise ApiError(400, {"Properties": "Must be an object of name: value"})
    actions = parse_list_actions(body.get("ContactsLists", []))
    return contacts, actions


def new_job(
    state: MailjetState, contacts: list[dict[str, Any]], actions: list[dict[str, Any]]
) -> JobRecord:
    job = JobRecord(
        id=state.new_id("job"), contacts=contacts, contacts_lists=actions, job_start=now_iso()
    )
    state.jobs[job.id] = job
    return job


@dataclass(frozen=True)
class JobBehaviour:
    """How jobs treat the fields of contacts that exist already (emulator settings)."""

    updates_existing_fields: bool = True
    stamp_exclusion: bool = True


def advance_job(
    state: MailjetState,
    job: JobRecord,
    polls_to_complete: int,
    max_contacts: int,
    faults: JobFaults | None = None,
    *,
    behaviour: JobBehaviour | None = None,
) -> None:
    """Count one poll: running for `polls_to_complete` polls, then run and finish."""
    if job.status in FINAL_STATUSES:
        return
    job.polls += 1
    if job.polls <= polls_to_complete:
        job.status = "Allocated" if job.polls == 1 else "In Progress"
        return
    _run(state, job, max_contacts, faults or JobFaults(), behaviour or JobBehaviour())
    job.job_end = now_iso()


def _run(
    state: MailjetState,
    job: JobRecord,
    max_contacts: int,
    faults: JobFaults,
    behaviour: JobBehaviour,
) -> None:
    if len(job.contacts) > max_contacts:
        job.status = "Error"
        job.error = f"Too many contacts in one job: {len(job.contacts)} (maximum {max_contacts})"
        return
    injected = faults.take_job_error()
    if injected is not None:
        job.status = "Error"
        job.error = injected
        return
    missing = [a["ListID"] for a in job.contacts_lists if a["ListID"] not in state.lists]
    if missing:
        job.status = "Error"
        job.error = f"ContactsList {missing[0]} not found"
        return
    done: list[int] = []
    for item in job.contacts:
        try:
            update = _ContactUpdate.from_item(state, item)
        except ValueError as exc:
            job.failures.append([str(item["Email"]), str(exc)])
            continue
        failure = faults.take_contact_failure(str(item["Email"]))
        if failure is not None:
            job.failures.append([str(item["Email"]), failure])
            continue
        done.append(update.apply(state, behaviour))
    for action in job.contacts_lists:
        for contact_id in done:
            state.apply_list_action(contact_id, action["ListID"], action["Action"])
    job.status = "Completed"
    if job.failures:
        job.error = f"{len(job.failures)} of {len(job.contacts)} contacts failed, see ErrorFile"


@dataclass
class _ContactUpdate:
    """One validated contact of a job: fields given are set, omitted ones kept."""

    email: str
    fields: dict[str, Any]
    properties: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_item(cls, state: MailjetState, item: dict[str, Any]) -> _ContactUpdate:
        email = item["Email"]
        if not is_valid_email(email):
            raise ValueError("Invalid email address")
        fields: dict[str, Any] = {}
        if "Name" in item:
            if not isinstance(item["Name"], str):
                raise ValueError("Name must be a string")
            fields["name"] = item["Name"]
        if "IsExcludedFromCampaigns" in item:
            if not isinstance(item["IsExcludedFromCampaigns"], bool):
                raise ValueError("IsExcludedFromCampaigns must be a boolean")
            fields["excluded"] = item["IsExcludedFromCampaigns"]
        return cls(email, fields, _typed_properties(state, item.get("Properties", {})))

    def apply(self, state: MailjetState, behaviour: JobBehaviour) -> int:
        existing = state.contact_by_email(self.email)
        contact = existing or state.add_contact(self.email)
        fields = self.fields if existing is None or behaviour.updates_existing_fields else {}
        if "name" in fields:
            contact.name = fields["name"]
        if "excluded" in fields:
            contact.set_excluded(fields["excluded"], behaviour.stamp_exclusion)
        for name, value in self.properties.items():
            if value is None:
                contact.properties.pop(name, None)
            else:
                contact.properties[name] = value
        return contact.id


def _typed_properties(state: MailjetState, given: dict[str, Any]) -> dict[str, Any]:
    typed: dict[str, Any] = {}
    for name, value in given.items():
        record = state.property_by_name(name)
        if record is None:
            raise ValueError(f'Invalid key name: "{name}"')
        if record.namespace != "static":
            raise ValueError(f'Property "{name}" is not in the static namespace')
        try:
            typed[name] = None if value is None else coerce_value(record.datatype, value)
        except ValueError as exc:
            raise ValueError(f'Invalid value for property "{name}": {exc}') from exc
    return typed


def job_api(job: JobRecord, error_file_url: str) -> dict[str, Any]:
    return {
        "ContactsLists": job.contacts_lists,
        "Count": len(job.contacts),
        "Error": job.error,
        "ErrorFile": error_file_url if job.failures else "",
        "JobEnd": job.job_end,
        "JobStart": job.job_start,
        "Status": job.status,
    }


def error_csv(job: JobRecord) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "error"])
    writer.writerows(job.failures)
    return out.getvalue()
