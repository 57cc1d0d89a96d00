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
    property_types: tuple[str, ...] = PROPERTY_TYPES
    values: dict[str, tuple[Any, ...]] | None = None  # None: VALUES
    names: bool = True  # contacts have a name field

    def typed(self, kind: str) -> tuple[Any, ...]:
        """The values the machine declares for a property of type `kind`."""
        return (self.values or VALUES)[kind]


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

# Mailchimp refuses reserved domains (example.com): real-looking ones. Lists are tags
# (compared without case: one spelling each here), properties are merge tags (A-Z0-9_,
# at most 10 characters; FNAME is one a new audience already has), no bool, dates only at
# midnight UTC, no name field, no empty text (null clears).
CHIMP_EMAILS = (
    "alice@acme-widgets.io",
    "Bob.Smith@lovelace-analytics.io",
    "carol+news@hopper-systems.com",
    "e.v.e@sub.turing-machines.co.uk",
    "frank_o'neil@dijkstra-paths.nl",
    "GRACE@JOHNSON-ORBITS.NET",
)

MAILCHIMP = Pools(
    provider="mailchimp",
    emails=CHIMP_EMAILS,
    world_emails=(*CHIMP_EMAILS, "bob.smith@lovelace-analytics.io", "alice@ACME-WIDGETS.io"),
    unexportable=(),
    lists=("news", "beta-testers", "vip 2", "Ünïcode", "a&b"),
    properties=("TEAM", "SEATS", "SCORE", "FNAME", "RENEWAL"),
    exact_lists=True,
    list_unsubscribe=False,
    list_delete=True,
    property_definitions=True,
    contact_prunes=("ignore", "exclude", "delete"),
    property_types=("str", "int", "float", "datetime"),
    values={
        "str": ("ops", "Zoë Ünïcode ✓", "a #b: c", "tab\there", " padded ", "7"),
        "int": (0, -3, 7, 2**40),
        "float": (0.5, -1.25, 3.0),
        "datetime": ("2026-01-02T00:00:00Z", "2025-06-30T00:00:00Z"),
    },
    names=False,
)

POOLS = {"mailjet": MAILJET, "mailjawn": MAILJAWN, "mailchimp": MAILCHIMP}
