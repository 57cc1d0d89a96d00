"""Providers are plug-ins: found through the entry-point group, never by name in the core."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from reconcile.errors import ConfigError
from reconcile.providers import registry
from reconcile.providers.base import Provider
from reconcile.providers.registry import ProviderOptions, ProviderPlugin

PACKAGE = Path(registry.__file__).parents[1]
# Where a provider may be named: its own package (emulator included), nowhere else.
PROVIDER_HOMES = ("providers",)
# Built-in names, and the next provider's, so the check also holds before it exists.
PROVIDER_NAME = re.compile(r"mail\s*jet|mail\s*jawn|mail\s*chimp", re.IGNORECASE)


def core_files() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in PROVIDER_HOMES
    ]


def test_the_core_names_no_provider() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in core_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if PROVIDER_NAME.search(line)
    ]
    assert len(core_files()) > 20  # the walk itself found the core
    assert found == []


def test_the_name_check_would_see_a_provider_name() -> None:
    assert PROVIDER_NAME.search("return MailjetProvider if isinstance(config, X) else y")
    assert PROVIDER_NAME.search('help="mailjawn or ..."')


def test_the_built_in_providers_register_through_entry_points() -> None:
    installed = registry.installed()
    assert {"mailjet", "mailjawn", "mailchimp"} <= set(installed)
    for name, plugin in installed.items():
        assert plugin.name == name
        assert issubclass(plugin.provider_class, Provider)
        assert issubclass(plugin.options_model, ProviderOptions)
        fields = plugin.options_model.model_fields
        required = {key: "x" for key, field in fields.items() if field.is_required()}
        assert plugin.options({**required, "type": name}).type == name
    with pytest.raises(ConfigError, match="audience: Field required"):
        registry.plugin("mailchimp").options({})


def test_an_unknown_provider_lists_the_installed_ones() -> None:
    with pytest.raises(ConfigError) as raised:
        registry.plugin("mailchimpp")
    assert str(raised.value) == (
        "unknown provider 'mailchimpp'; installed providers: " + ", ".join(registry.names())
    )


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[EntryPoint]]:
    """The entry points the registry sees, replaced for one test."""
    points: list[EntryPoint] = []
    monkeypatch.setattr(registry, "entry_points", lambda group: list(points))
    registry.rescan()
    yield points
    registry.rescan()


def entry(name: str, value: str) -> EntryPoint:
    return EntryPoint(name, value, registry.ENTRY_POINT_GROUP)


def test_without_any_provider_installed_the_error_says_to_reinstall(
    entry_points: list[EntryPoint],
) -> None:
    with pytest.raises(ConfigError, match=r"no provider is installed.*reinstall reconcile"):
        registry.plugin("mailjet")
    with pytest.raises(ConfigError, match="no provider is installed"):
        registry.option_models()


def test_a_plugin_that_fails_to_import_breaks_only_itself(
    entry_points: list[EntryPoint],
) -> None:
    entry_points.append(entry("broken", "reconcile_provider_nowhere.plugin:PLUGIN"))
    entry_points.append(entry("mailjet", "reconcile.providers.mailjet.plugin:PLUGIN"))
    assert registry.names() == ["mailjet"]
    assert registry.plugin("mailjet").name == "mailjet"
    with pytest.raises(ConfigError, match=r"'broken' \(reconcile_provider_nowhere.*failed to load"):
        registry.plugin("broken")


def test_an_entry_point_that_is_not_a_plugin_is_refused(entry_points: list[EntryPoint]) -> None:
    entry_points.append(entry("odd", "reconcile.providers.registry:ENTRY_POINT_GROUP"))
    with pytest.raises(ConfigError, match="is not a ProviderPlugin"):
        registry.plugin("odd")


def test_a_plugin_registered_under_another_name_is_refused(
    entry_points: list[EntryPoint],
) -> None:
    entry_points.append(entry("jet", "reconcile.providers.mailjet.plugin:PLUGIN"))
    with pytest.raises(ConfigError, match="registered as 'jet' but calls itself mailjet;"):
        registry.plugin("jet")


def test_the_default_provider_is_the_only_one_or_the_declared_one(
    entry_points: list[EntryPoint],
) -> None:
    entry_points.append(entry("mailjawn", "reconcile.providers.mailjawn.plugin:PLUGIN"))
    assert registry.default_name() == "mailjawn"  # the only one installed
    registry.rescan()
    entry_points.append(entry("mailjet", "reconcile.providers.mailjet.plugin:PLUGIN"))
    assert registry.default_name() == "mailjet"  # declares itself the default


def test_a_plugin_class_is_instantiated(entry_points: list[EntryPoint]) -> None:
    entry_points.append(entry("mailjet", "reconcile.providers.mailjet.plugin:MailjetPlugin"))
    assert isinstance(registry.plugin("mailjet"), ProviderPlugin)


def test_bad_saved_options_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"bad mailjet provider options \(requests_per_minute"):
        registry.plugin("mailjet").options({"requests_per_minute": 0})


def plug_in_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> None:
    """A module `name` importable for this test only."""
    (tmp_path / f"{name}.py").write_text(body, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_two_packages_claiming_one_name_break_that_name(
    entry_points: list[EntryPoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plug_in_module(
        tmp_path,
        monkeypatch,
        "shadow_provider",
        "from reconcile.providers.mailjet.plugin import MailjetPlugin\nPLUGIN = MailjetPlugin()\n",
    )
    entry_points.append(entry("mailjet", "reconcile.providers.mailjet.plugin:PLUGIN"))
    entry_points.append(entry("mailjet", "shadow_provider:PLUGIN"))
    with pytest.raises(ConfigError, match=r"registered by more than one package.*shadow_provider"):
        registry.plugin("mailjet")


def test_a_plugin_that_exits_at_import_breaks_only_itself(
    entry_points: list[EntryPoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plug_in_module(tmp_path, monkeypatch, "exiting_provider", "raise SystemExit(0)\n")
    entry_points.append(entry("exits", "exiting_provider:PLUGIN"))
    entry_points.append(entry("mailjet", "reconcile.providers.mailjet.plugin:PLUGIN"))
    assert registry.names() == ["mailjet"]
    with pytest.raises(ConfigError, match=r"'exits'.*failed to load.*SystemExit"):
        registry.plugin("exits")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("class P(MailjetPlugin):\n    name = None  # type: ignore\n", "does not declare name"),
        (
            "class O(ProviderOptions):\n    type: str\n"
            "class P(MailjetPlugin):\n    options_model = O\n",
            'must declare type: Literal["mailjet"]',
        ),
    ],
)
def test_a_plugin_that_declares_too_little_breaks_only_itself(
    entry_points: list[EntryPoint],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    body: str,
    problem: str,
) -> None:
    header = (
        "from reconcile.providers.mailjet.plugin import MailjetPlugin\n"
        "from reconcile.providers.registry import ProviderOptions\n"
    )
    module = f"thin_provider_{len(body)}"  # one per case: imported modules are cached
    plug_in_module(tmp_path, monkeypatch, module, header + body + "PLUGIN = P()\n")
    entry_points.append(entry("mailjet", f"{module}:PLUGIN"))
    entry_points.append(entry("mailjawn", "reconcile.providers.mailjawn.plugin:PLUGIN"))
    assert registry.names() == ["mailjawn"]
    with pytest.raises(ConfigError, match=re.escape(problem)):
        registry.plugin("mailjet")


def test_a_plugin_claiming_the_default_does_not_take_it_from_the_built_in(
    entry_points: list[EntryPoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plug_in_module(
        tmp_path,
        monkeypatch,
        "eager_provider",
        "from reconcile.providers.mailjawn.plugin import MailJawnPlugin\n"
        "class P(MailJawnPlugin):\n    default = True\nPLUGIN = P()\n",
    )
    entry_points.append(entry("mailjawn", "eager_provider:PLUGIN"))
    entry_points.append(entry("mailjet", "reconcile.providers.mailjet.plugin:PLUGIN"))
    assert registry.default_name() == "mailjet"
