"""The manifest format (version 1) as pydantic models; schemas/ is generated from these."""

from __future__ import annotations

import functools
import zoneinfo
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    create_model,
    field_validator,
)

from reconcile.manifest.suggest import did_you_mean
from reconcile.model import (
    MembersPolicy,
    Namespace,
    PropertyType,
    SubscriptionStatus,
    text_problem,
    unencodable,
)
from reconcile.policy import ContactPrune, DefinitionPrune, MemberPrune
from reconcile.providers import registry
from reconcile.providers.registry import ProviderOptions

SCHEMA_ID = "https://reconcile.dev/schemas/manifest.schema.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


RENAMED_FROM_HELP = (
    "earlier names: one of them that exists in the account is renamed to this name in place, "
    "keeping what it holds; nothing once renamed, so it may stay"
)


class PropertySpec(_Strict):
    type: PropertyType
    namespace: Namespace = Namespace.STATIC
    replace: StrictBool = Field(
        False,
        description="allow deleting and recreating the definition when its type differs "
        "(every contact's value of it is lost)",
    )
    renamed_from: list[StrictStr] = Field(default_factory=list, description=RENAMED_FROM_HELP)


class ListSpec(_Strict):
    members: MembersPolicy = Field(
        MembersPolicy.ADDITIVE,
        description="additive never removes anyone; exact removes members not declared",
    )
    renamed_from: list[StrictStr] = Field(
        default_factory=list,
        description=f"{RENAMED_FROM_HELP} (every member and unsubscribe is kept)",
    )


OPT_IN_HELP = (
    "when the person gave consent (ISO 8601 time, e.g. 2026-11-30T09:00:00Z): undoes only an "
    "opt-out from before that time, so it is used once"
)
RESUBSCRIBE_MOVED = (
    "resubscribe: true is replaced by opted_in_at: <when the person gave consent>, e.g. "
    "opted_in_at: 2026-11-30T09:00:00Z; an opt-in now undoes only an unsubscribe from before "
    "that time (README: Consent)"
)
# A timestamp as written (YAML may hand over a datetime); the loader checks and normalises it.
OptInInput = Annotated[Any, WithJsonSchema({"type": "string", "format": "date-time"})]


class MembershipSpec(_Strict):
    status: SubscriptionStatus = SubscriptionStatus.SUBSCRIBED
    opted_in_at: OptInInput = Field(None, description=OPT_IN_HELP)


# Property values are checked against their declared type by the loader (with the
# field's name and line); the schema only documents what is accepted.
PropertyInput = Annotated[
    Any,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "integer"},
                {"type": "number"},
                {"type": "boolean"},
                {"type": "null"},
            ]
        }
    ),
]
MembershipValue = SubscriptionStatus | MembershipSpec


class ContactSpec(_Strict):
    email: StrictStr
    name: StrictStr | None = Field(None, description="omit to leave the live name as it is")
    excluded_from_campaigns: StrictBool | None = Field(
        None, description="omit to leave it as it is"
    )
    properties: dict[StrictStr, PropertyInput] = Field(
        default_factory=dict, description="null clears a property"
    )
    lists: list[StrictStr] | dict[StrictStr, MembershipValue] = Field(
        default_factory=list, description="a list of names (subscribed) or name: status"
    )
    opted_in_at: OptInInput = Field(
        None, description=f"campaigns (excluded_from_campaigns: false): {OPT_IN_HELP}"
    )
    renamed_from: list[StrictStr] | None = Field(
        None,
        description="refused: reconcile never changes a contact's email address (README: Renames)",
    )

    @field_validator("lists", mode="before")
    @classmethod
    def _no_resubscribe(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for name, membership in value.items():
                if isinstance(membership, dict) and "resubscribe" in membership:
                    raise ValueError(f"{name}: {RESUBSCRIBE_MOVED}")
        return value

    @field_validator("name", "excluded_from_campaigns", mode="before")
    @classmethod
    def _no_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null; leave the field out to keep the live value")
        return value

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        problem = text_problem(value) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value


class MarkerSpec(_Strict):
    property: StrictStr
    value: StrictBool | StrictInt | StrictFloat | StrictStr


class ContactScopeSpec(_Strict):
    lists: list[StrictStr] | None = Field(
        None,
        description="live contacts on at least one of these lists (default: every list the "
        "manifest declares)",
    )
    marker: MarkerSpec | None = Field(
        None, description="and carrying this property value (e.g. managed_by: reconcile)"
    )


class ContactPruneSpec(_Strict):
    action: ContactPrune = Field(
        ContactPrune.IGNORE,
        description="ignore | exclude (from campaigns) | unsubscribe (from managed lists) "
        "| delete (erasure, irreversible) | archive (where the provider can: no campaigns, "
        "record kept)",
    )
    scope: ContactScopeSpec = Field(default_factory=ContactScopeSpec)


class PruneSpec(_Strict):
    """What happens to what no manifest declares. Everything is off by default."""

    contacts: ContactPruneSpec = Field(default_factory=ContactPruneSpec)
    members: MemberPrune = Field(
        MemberPrune.REMOVE,
        description="undeclared members of members: exact lists: remove or unsubscribe",
    )
    lists: DefinitionPrune = DefinitionPrune.IGNORE
    properties: DefinitionPrune = DefinitionPrune.IGNORE


class ProtectSpec(_Strict):
    """Contacts and lists no plan may delete, remove, unsubscribe or exclude."""

    contacts: list[StrictStr] = Field(default_factory=list)
    lists: list[StrictStr] = Field(default_factory=list)


class SafetySpec(_Strict):
    max_delete_share: float = Field(
        0.10, ge=0, le=1, description="of the live records of a type: deletes + unsubscribes"
    )
    max_update_share: float = Field(0.30, ge=0, le=1)
    min_records: int = Field(20, ge=0, description="no limit below this many live records")


class CsvSourceSpec(_Strict):
    """A CSV file of contacts, with how to read it."""

    path: StrictStr = Field(description="the CSV file, relative to this manifest")
    timezone: StrictStr | None = Field(
        None,
        description="IANA time zone (e.g. Europe/Paris) of datetime values written without "
        "an offset; without it such a value is an error",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            zone_problem(value)
        return value


def zone_problem(name: str) -> None:
    """Raise ValueError naming what is wrong with time zone `name` (an IANA name)."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        hint = did_you_mean(name, sorted(zoneinfo.available_timezones()))
        raise ValueError(
            f"unknown time zone {name[:60]!r}: an IANA name such as Europe/Paris or UTC{hint}"
        ) from None


CsvSource = StrictStr | CsvSourceSpec


def _fit_name(value: str) -> str:
    # Only what no provider can hold: an account's list may have a control character in
    # its name, and an export writes it as it is.
    problem = unencodable(value)
    if problem:
        raise ValueError(f"the name {problem}")
    return value


# A list's or property's name: shown in every plan and sent to the provider.
Name = Annotated[StrictStr, AfterValidator(_fit_name)]


class ManifestDocument(_Strict):
    """One YAML file; a manifest is the merge of one or more of these."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"$id": SCHEMA_ID, "title": "reconcile manifest (version 1)"},
    )

    version: Literal[1] = 1
    # Narrowed to the installed providers' options by `document_model`.
    provider: Any = Field(None, description="a provider name, or its options with type: NAME")
    properties: dict[Name, PropertySpec] = Field(default_factory=dict)
    lists: dict[Name, ListSpec] = Field(default_factory=dict)
    contacts: list[ContactSpec] = Field(default_factory=list)
    contacts_from: CsvSource | list[CsvSource] | None = Field(
        None,
        description="CSV file(s), relative to this file, or {path: FILE, timezone: ZONE}: "
        "columns email, name, excluded_from_campaigns, lists (a;b or a:unsubscribed), "
        "properties (JSON object); comma, semicolon or tab separated",
    )
    prune: PruneSpec | None = None
    protect: ProtectSpec | None = None
    safety: SafetySpec | None = None


@functools.cache
def document_model(options: tuple[type[ProviderOptions], ...]) -> type[ManifestDocument]:
    """ManifestDocument whose `provider` is one of these providers: its name alone, or its
    options (told apart by `type`)."""
    names = tuple(
        name for model in options for name in get_args(model.model_fields["type"].annotation)
    )
    name_type: Any = Literal[names]
    options_type: Any = (
        Annotated[Union[options], Field(discriminator="type")]  # noqa: UP007 (a runtime tuple)
        if len(options) > 1
        else options[0]
    )

    def known_provider(value: Any) -> Any:
        named = value.get("type") if isinstance(value, dict) else value
        if isinstance(value, dict) and not isinstance(named, str):
            raise ValueError(f"needs type: the provider's name (installed: {', '.join(names)})")
        if isinstance(named, str) and named in registry.broken():
            raise ValueError(registry.broken()[named])
        if isinstance(named, str) and named not in names:
            hint = did_you_mean(named, names)
            raise ValueError(
                f"unknown provider {named!r}; installed providers: {', '.join(names)}{hint}"
            )
        return value

    return create_model(
        "ManifestDocument",
        __base__=ManifestDocument,
        __doc__=ManifestDocument.__doc__,
        __validators__={
            "known_provider": field_validator("provider", mode="before")(known_provider)
        },
        provider=(name_type | options_type | None, None),
    )


def manifest_json_schema(options: tuple[type[ProviderOptions], ...]) -> dict[str, Any]:
    schema = document_model(options).model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
