"""Refuse, before any write, what a manifest asks that its provider cannot do."""

from __future__ import annotations

from reconcile.diff import list_ref, membership_ref
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


def raise_if_unsupported(manifest: Manifest, provider: type[Provider]) -> None:
    issues = capability_issues(manifest, provider)
    if issues:
        raise ManifestError(issues)
