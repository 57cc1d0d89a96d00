"""Synthetic accounts and manifests for benchmarks: N contacts, 5 properties, 3 lists.

The live account holds 80% of the manifest's contacts (so 20% are new); of those,
a quarter differ in one managed property and one in eleven has another name (the
manifest renames them); every contact is on 2 lists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROPERTIES = {
    "department": "str",
    "seats": "int",
    "score": "float",
    "vip": "bool",
    "renewal": "datetime",
}
LISTS = ("newsletter", "product", "events")
DEPARTMENTS = ("Sales", "Engineering", "Support", "Finance", "Marketing")


def email(n: int) -> str:
    return f"person{n:07d}@example.com"


def desired_values(n: int) -> dict[str, Any]:
    return {
        "department": DEPARTMENTS[n % 5],
        "seats": n % 50,
        "score": (n % 100) / 4,
        "vip": n % 7 == 0,
        "renewal": f"2027-{1 + n % 12:02d}-01T00:00:00Z",  # with its offset: never guessed
    }


def renamed(n: int) -> bool:
    """Whether the live account has contact `n` under another name than the manifest."""
    return n % 11 == 3


def live_name(n: int) -> str:
    return f"Person {n} (old)" if renamed(n) else f"Person {n}"


def lists_of(n: int) -> list[str]:
    return [LISTS[n % 3], LISTS[(n + 1) % 3]]


def manifest_yaml(count: int) -> str:
    lines = ["provider: {type: mailjet, requests_per_minute: 200}", "properties:"]
    lines += [f"  {name}: {{type: {kind}}}" for name, kind in PROPERTIES.items()]
    lines += ["lists:"] + [f"  {name}: {{}}" for name in LISTS] + ["contacts:"]
    for n in range(count):
        values = desired_values(n)
        props = ", ".join(
            f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in values.items()
        )
        lines += [
            f"  - email: {email(n)}",
            f"    name: Person {n}",
            f"    properties: {{{props}}}",
            f"    lists: [{', '.join(lists_of(n))}]",
        ]
    return "\n".join(lines) + "\n"


def live_contacts(count: int) -> list[tuple[str, str, dict[str, Any], list[str]]]:
    """(email, name, properties, lists) of the live account: 80% present, 1 in 4 changed."""
    result = []
    for n in range(count):
        if n % 5 == 4:
            continue  # new in the manifest
        values = desired_values(n)
        if n % 4 == 0:
            values["seats"] = values["seats"] + 1
        result.append((email(n), live_name(n), values, lists_of(n)))
    return result


def write_yaml_manifest(directory: Path, count: int) -> Path:
    """The audience with its contacts in the YAML manifest itself."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"audience-{count}.yaml"
    path.write_text(manifest_yaml(count), "utf-8")
    return path


def write_csv_manifest(directory: Path, count: int) -> Path:
    """The same audience with its contacts in a CSV file (`contacts_from`)."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = ["email,name,lists,properties"]
    for n in range(count):
        values = json.dumps(desired_values(n)).replace('"', '""')
        rows.append(f'{email(n)},Person {n},{";".join(lists_of(n))},"{values}"')
    csv_path = directory / f"people-{count}.csv"
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    head = manifest_yaml(0)
    path = directory / f"audience-{count}-csv.yaml"
    path.write_text(head.replace("contacts:\n", f"contacts_from: {csv_path.name}\n"), "utf-8")
    return path


def renames_case(count: int, renames: int) -> tuple[str, list[tuple[str, str]]]:
    """A manifest of `count` contacts (name and email only) and the live account it meets:
    every contact present, the first `renames` of them under another name."""
    lines = ["provider: {type: mailjet, requests_per_minute: 200}", "contacts:"]
    live = []
    for n in range(count):
        lines.append(f"  - {{email: {email(n)}, name: Person {n}}}")
        live.append((email(n), f"Person {n} (old)" if n < renames else f"Person {n}"))
    return "\n".join(lines) + "\n", live
