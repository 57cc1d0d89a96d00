"""`prune: contacts: action: archive` only where the provider can archive a contact."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile import engine
from reconcile.errors import ManifestError
from reconcile.providers import registry
from reconcile.providers.base import Capability

MANIFEST = """\
provider: {provider}
lists: {{news: {{}}}}
prune: {{contacts: {{action: archive}}}}
contacts: []
"""


@pytest.mark.parametrize("name", ["mailjet", "mailjawn", "postbox"])
def test_a_provider_that_cannot_archive_refuses_the_policy(tmp_path: Path, name: str) -> None:
    assert Capability.ARCHIVE not in registry.plugin(name).capabilities
    path = tmp_path / "audience.yaml"
    path.write_text(MANIFEST.format(provider=name), encoding="utf-8")
    with pytest.raises(ManifestError) as raised:
        engine.validate([path])
    assert f"{path}:3: prune.contacts.action:" in str(raised.value)
    assert "archive a contact" in str(raised.value)


def test_mailchimp_can_archive(tmp_path: Path) -> None:
    path = tmp_path / "audience.yaml"
    text = MANIFEST.format(provider="{type: mailchimp, audience: a1b2c3d4e5}")
    path.write_text(text, encoding="utf-8")
    assert engine.validate([path]).policy.contacts.value == "archive"
