"""Settings of the Mailchimp emulator, including a switch for every behaviour the
API reference (/work/shared/mailchimp-api.md) could not settle. Each switch's
comment quotes the reference and names the default and why."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

SANDBOX_API_KEY = "0123456789abcdef0123456789abcdef-us1"


@dataclass
class MailchimpEmulatorSettings:
    # Basic auth: any user name, one of these keys as password. A key must end in -usN.
    api_keys: tuple[str, ...] = (SANDBOX_API_KEY,)
    # "10 simultaneous connections per user; over that, 429" (FUN). 0 = no limit.
    max_connections: int = 10
    # "at exceptionally high volumes a 429 or 403 without a JSON body" (FUN): "429" answers
    # problem+json; "403" answers a bare 403 with an empty body.
    over_connection_answer: Literal["429", "403"] = "429"
    # "the title string of a real 429 body" — not found. Default: the glossary name.
    too_many_requests_title: str = "Too Many Requests"
    # "what the current API does with count>1000 was not found — clamp client-side".
    # "reject" (default; a client that sends more is caught) answers 400; "clamp" serves 1000.
    over_max_count: Literal["reject", "clamp"] = "reject"
    # "What POST does with a lowercase or over-long tag (reject, truncate, upcase) was not
    # found". "reject" (default, conservative) answers 400; "normalize" upcases, replaces
    # other characters with _ and truncates to 10.
    merge_tag_policy: Literal["reject", "normalize"] = "reject"
    # PATCH merge field: "no type (KJ marks type read-only)". Whether a differing type is
    # refused or ignored is not stated. "reject" (default) answers 400; "ignore" keeps it.
    merge_field_type_change: Literal["reject", "ignore"] = "reject"
    # "Sources disagree on whether name is required on PATCH (KJ: required; TS: optional)".
    # Default True (KJ, the stricter reading).
    patch_merge_field_requires_name: bool = True
    # "30 per audience reported ... plan-dependent".
    max_merge_fields: int = 30
    # "Whether archived members appear without status=archived is not documented; a user
    # comment suggests they do not". Default False (they do not).
    list_members_includes_archived: bool = False
    # "PATCH reportedly does not [revive an archived member]" (2016 report). Default False:
    # a PATCH to an archived member leaves it archived (other fields still change).
    patch_revives_archived: bool = False
    # "GR: POST of the archived address -> 200 subscribed ... Older reports had POST
    # answering Member Exists". Default True (the newer recording).
    post_revives_archived: bool = True
    # PATCH status enum: "TS includes transactional, KJ lists only the other four —
    # disagreement". Default True (TS, the newer SDK).
    patch_accepts_transactional: bool = True
    # Compliance State: "It is not every unsubscribe ... an API unsubscribe ... was reversed
    # by PUT subscribed -> 200 ... No source states the full rule". Default False: only
    # cleaned members and members seeded as self-unsubscribed (compliance=True) are refused.
    api_unsubscribe_is_compliance: bool = False
    # Batch subscribe: "tag support in batch subscribe is unverified". "ignore" (default)
    # drops item tags; "apply" adds them (sync_tags replaces); "reject" fails the item.
    batch_subscribe_tags: Literal["ignore", "apply", "reject"] = "ignore"
    # Segment batch: "addresses not on the list are ignored" — whether they are also listed
    # in `errors` is not stated. Default True (listed, nothing changed for them).
    segment_batch_reports_unknown: bool = True
    # "Length: 50 characters for static segment names in 2013 ... no v3 figure found".
    # None (default) = no limit; an int refuses longer tag names.
    max_tag_name_length: int | None = None
    # Batch subscribe items: "Member items (KJ AddListMembers.md): email_address, email_type,
    # status (...), merge_fields, ..." — whether an item for an existing member (with
    # update_existing) may omit `status` is not stated. Default True, the strict reading: the
    # spec lists status among item fields and the TS/KJ models mark it required for new
    # members, so such an item is a per-member error "status: This value should not be
    # blank." False keeps the member's status, as a PUT without status would.
    batch_subscribe_existing_requires_status: bool = True
    # Batch subscribe with update_existing: "PUT/PATCH merge merge_fields" is documented for
    # the member routes only; what batch subscribe does with an existing member's merge
    # fields is not stated. "merge" (default, as PUT) changes only the tags in the item;
    # "replace" makes the member's merge fields exactly those in the item and erases the
    # others (an item without merge_fields erases them all) — a client that sends only what
    # changed loses data under it, which is what this setting exists to show.
    batch_subscribe_merge_fields: Literal["merge", "replace"] = "merge"
    # Double opt-in: "pending is what sends it [the confirmation email]" (§3). Whether a
    # write that sets pending on a member already pending mails it again is not stated.
    # Default True (the cautious reading for a client: repeating pending may mail the person
    # again); every send is counted in the member's `opt_in_emails_sent` (dump_state,
    # MailchimpEmulator.opt_in_emails_sent). False counts only a change into pending.
    pending_write_resends_opt_in: bool = True
    # "Separate per-address throttle: 400 '... has signed up to a lot of lists very
    # recently; we're not allowing more signups for now' ... not retryable soon" (§1, §4).
    # These (lower-cased) addresses are throttled: creating one, or (re)subscribing one
    # (into subscribed or pending), answers that 400 (title "Invalid Resource"); in batch
    # subscribe it is a per-member ERROR_GENERIC. Default empty: nobody is throttled.
    throttled_addresses: frozenset[str] = frozenset()
    # "the emulator should reproduce one such rule": these domains "look fake or invalid".
    fake_domains: tuple[str, ...] = ("example.com", "example.net", "example.org")
    clock: Callable[[], float] = field(default=time.time)

    def __post_init__(self) -> None:
        self.throttled_addresses = frozenset(a.strip().lower() for a in self.throttled_addresses)
        for key in self.api_keys:
            prefix, dash, dc = key.rpartition("-")
            if not prefix or not dash or not dc.startswith("us") or not dc[2:].isdigit():
                raise ValueError(f"API key {key!r} must end in -usN")
