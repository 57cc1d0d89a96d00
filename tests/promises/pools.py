"""What each provider accepts, as small pools the machine draws from.

Mailjet list names are free text (unique per account, case-sensitive); MailJawn lists are
tags, which must be lowercase slugs. Emails are what the WHATWG rule accepts (ASCII);
the outside world may also hold addresses only the provider accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROPERTY_TYPES = ("str", "int", "float", "bool", "datetime")

VALUES: dict[str, tuple[Any, ...]] = {
    # "7" and "0.5" read as numbers once the property is retyped (replace: true)
    "str": ("ops", "", "Zoë Ünïcode ✓", "a #b: c", "tab\there", "line\nbreak", " padded ", "7"),
    "int": (0, -3, 7, 2**40),
    "float": (0.5, -1.25, 3.0),
    "bool": (True, False),
    "datetime": ("2026-01-02T03:04:05Z", "2025-06-30T23:59:59Z"),
}

NAMES = ("Ann", "Zoë Ünïcode", "O'Brien, Pat", "#1 fan", "tab\tname", "Ann")

BASE_EMAILS = (
    "alice@example.com",
    "Bob.Smith@example.com",
    "carol+news@example.com",
    "dan/ops@example.org",
    "e.v.e@sub.example.co",
    "frank_o'neil@example.com",
    "GRACE@EXAMPLE.NET",
)


@dataclass(frozen=True)
class Pools:
    provider: str
    emails: tuple[str, ...]
    world_emails: tuple[str, ...]  # also what other tools create (spelling variants)
    unexportable: tuple[str, ...]  # world emails the provider keeps and the loader refuses
    lists: tuple[str, ...]
    properties: tuple[str, ...]
    exact_lists: bool  # members: exact / unsubscribed memberships supported
    list_unsubscribe: bool  # a person can unsubscribe from one list
    list_delete: bool  # lists can be deleted (prune lists: delete)
    property_definitions: bool  # the account holds property definitions
    contact_prunes: tuple[str, ...]


MAILJET = Pools(
    provider="mailjet",
    emails=BASE_EMAILS,
    world_emails=(
        *BASE_EMAILS,
        "bob.smith@example.com",
        "alice@EXAMPLE.com",
        "ünï@exämple.com",
        '"quoted"@example.com',
        "a..b@example.com",
    ),
    unexportable=('"quoted"@example.com', "a..b@example.com"),
    lists=(
        "news/letter",
        "what?",
        "#hash",
        "100%",
        "a&b",
        "c+d",
        "with space",
        ".dotted",
        "Ünïcode",
        "Case",
        "case",
    ),
    properties=("team", "seats", "score", "vip", "renewal"),
    exact_lists=True,
    list_unsubscribe=True,
    list_delete=True,
    property_definitions=True,
    contact_prunes=("ignore", "exclude", "unsubscribe", "delete"),
)

MAILJAWN = Pools(
    provider="mailjawn",
    emails=BASE_EMAILS,
    world_emails=(*BASE_EMAILS, "bob.smith@example.com", "alice@EXAMPLE.com"),
    unexportable=(),
    lists=("news", "beta-testers", "vip_2", "a1", "plain"),
    properties=("team", "seats", "score", "vip", "renewal"),
    exact_lists=False,
    list_unsubscribe=False,
    list_delete=False,
    property_definitions=False,
    contact_prunes=("ignore", "exclude", "delete"),
)

POOLS = {"mailjet": MAILJET, "mailjawn": MAILJAWN}
