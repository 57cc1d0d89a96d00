"""Refuse, before any write, what a manifest asks that its provider cannot do."""

from __future__ import annotations

from reconcile.diff import contact_ref, list_ref, membership_ref
from reconcile.errors import ManifestError, ManifestIssue
from reconcile.manifest.loader import Manifest
from reconcile.model import MembersPolicy, SubscriptionStatus
from reconcile.policy import ContactPrune, DefinitionPrune, MemberPrune, Policy
from reconcile.providers.base import Capability, Provider


def _policy_needs(policy: Policy, has_exact_list: bool) -> list[tuple[str, Capability]]:
    """(field, capability) for each prune policy that needs the provider to do something."""
    needs: list[tuple[str, Capability]] = []
    if policy.contacts is ContactPrune.UNSUBSCRIBE:
        needs.append(("prune.contacts.action", Capability.LIST_UNSUBSCRIBE))
    if policy.contacts is ContactPrune.DELETE:
        needs.append(("prune.contacts.action", Capability.HARD_DELETE))
    if policy.contacts is ContactPrune.ARCHIVE:
        needs.append(("prune.contacts.action", Capability.ARCHIVE))
    if policy.exact_members is MemberPrune.UNSUBSCRIBE and has_exact_list:
        needs.append(("prune.members", Capability.LIST_UNSUBSCRIBE))
    if policy.lists is DefinitionPrune.DELETE:
        needs.append(("prune.lists", Capability.DELETE_LIST))
    if policy.properties is DefinitionPrune.DELETE:
        needs.append(("prune.properties", Capability.PROPERTY_DEFINITIONS))
    return needs


def capability_issues(manifest: Manifest, provider: type[Provider]) -> list[ManifestIssue]:
    can = provider.capabilities
    name = provider.name
    issues: list[ManifestIssue] = []
    if Capability.REMOVE_LIST_MEMBER not in can:
        for list_name, spec in manifest.desired.lists.items():
            if spec.members is MembersPolicy.EXACT:
                issues.append(
                    ManifestIssue(
                        manifest.source_of(list_ref(list_name)),
                        f"lists.{list_name}.members",
                        f"members: exact needs removing list members, which {name} cannot do "
                        "(use members: additive)",
                    )
                )
    if Capability.LIST_UNSUBSCRIBE not in can:
        for (list_name, email), membership in manifest.desired.memberships.items():
            if membership.status is SubscriptionStatus.UNSUBSCRIBED:
                issues.append(
                    manifest.issue(
                        membership_ref(list_name, email),
                        f"an unsubscribed membership needs a list-level unsubscribe, which {name} "
                        "cannot do (use excluded_from_campaigns: true to stop all campaigns)",
                    )
                )
    issues.extend(_rename_issues(manifest, provider))
    has_exact = any(s.members is MembersPolicy.EXACT for s in manifest.desired.lists.values())
    for field_name, capability in _policy_needs(manifest.policy, has_exact):
        if capability not in can:
            issues.append(
                ManifestIssue(
                    manifest.locate(field_name),
                    field_name,
                    f"this policy needs '{capability}', which {name} cannot do",
                )
            )
    for finding in provider.check_desired(manifest.desired):
        issues.append(manifest.issue(finding.ref, finding.message, finding.at))
    return issues


def _rename_issues(manifest: Manifest, provider: type[Provider]) -> list[ManifestIssue]:
    """renamed_from: on a list or property the provider can't rename in place, and on any
    contact (reconcile never changes an email address)."""
    can, name = provider.capabilities, provider.name
    issues: list[ManifestIssue] = []
    for kind, declared, capability, kept in (
        ("lists", manifest.desired.lists, Capability.RENAME_LIST, "its members and unsubscribes"),
        (
            "properties",
            manifest.desired.properties,
            Capability.RENAME_PROPERTY,
            "every contact's value of it",
        ),
    ):
        if capability in can:
            continue
        for declared_name, spec in declared.items():
            if spec.renamed_from:
                field_path = f"{kind}.{declared_name}.renamed_from"
                issues.append(
                    ManifestIssue(
                        manifest.source_of(field_path),
                        field_path,
                        f"{name} can't {capability} in place, so a rename would lose "
                        f"{kept}: drop renamed_from (a new one is created, the old one is "
                        "kept), or rename it in the provider's own interface",
                    )
                )
    for email in manifest.address_changes:
        issues.append(
            manifest.issue(
                contact_ref(email),
                "reconcile never changes a contact's email address (the address is the "
                f"contact's identity, and a change keeps no history it can check): {name}: "
                f"{provider.address_change}. Change it there, then write the new address "
                "here without renamed_from",
                ("renamed_from",),
            )
        )
    return issues


def raise_if_unsupported(manifest: Manifest, provider: type[Provider]) -> None:
    issues = capability_issues(manifest, provider)
    if issues:
        raise ManifestError(issues)
