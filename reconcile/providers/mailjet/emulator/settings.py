"""Settings of the Mailjet emulator; every quirk where the seed and the real API differ."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class MailjetEmulatorSettings:
    """Defaults follow the real API (mailjet-facts.md); the alternatives follow the seed."""

    api_key: str = "sandbox-key"
    secret_key: str = "sandbox-secret"  # noqa: S105 (sandbox-only, not a real secret)
    # 0 = unlimited; past it 429 (no Retry-After, no rate headers), per API key,
    # in fixed windows of 60 / time_scale seconds.
    requests_per_minute: int = 0
    time_scale: float = 1.0
    # real API: 400 MJ18; seed: POST returns the existing record.
    duplicate_contact: Literal["mj18", "return_existing"] = "mj18"
    # real: Count and Total are both the page size; seed: Total is the full count.
    total_mode: Literal["page", "full"] = "page"
    # seed: PUT resets omitted editable fields to their default; AD: PUT acts as PATCH.
    contact_put: Literal["replace", "merge"] = "replace"
    # real API: v3 has no DELETE on /contact (405); erasure is DELETE /v4/contacts/{id}.
    v3_contact_delete: bool = False
    # managemanycontacts jobs report a running status this many polls before finishing.
    job_polls_to_complete: int = 3
    # Whether a contact's UnsubscribedAt is set when it becomes excluded from campaigns
    # (the seed documents the field, not when the real API fills it in).
    stamp_exclusion: bool = True
    max_job_contacts: int = 50000
    # mailjet-facts.md: a job's contact items upsert Name and IsExcludedFromCampaigns by
    # email. False: a job sets them only on the contacts it creates and leaves an existing
    # contact's as they are (what a client must notice and work around).
    bulk_updates_name_and_exclusion: bool = True
