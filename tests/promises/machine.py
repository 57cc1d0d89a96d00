"""The promise machine: an author editing the manifest, the outside world acting on the
account, and reconcile (the real CLI, in-process, `--sandbox`) interleave; every step that
reconcile takes is checked against the product's promises (tests/promises/invariants.py)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule
from typer.testing import CliRunner, Result

from reconcile.cli import app
from reconcile.providers.mailchimp.emulator.app import create_mailchimp_emulator
from reconcile.providers.mailchimp.emulator.settings import MailchimpEmulatorSettings
from reconcile.providers.mailjawn.emulator.app import (
    ALL_SCOPES,
    MailJawnEmulatorSettings,
    create_mailjawn_emulator,
)
from reconcile.providers.mailjet.emulator.app import (
    MailjetEmulatorSettings,
    create_mailjet_emulator,
)
from reconcile.sandbox.runtime import state_file
from tests.promises import world as w
from tests.promises.author import (
    CHIMP_AUDIENCE_NAME,
    ContactDecl,
    Manifest,
    MembershipDecl,
    PropertyDecl,
    Prune,
    adopt,
    exported_emails,
)
from tests.promises.invariants import (
    CliBroken,
    ExportNotRoundTrip,
    ForeignPlanWrote,
    FutureOptInAccepted,
    NotConverged,
    OptOutKey,
    ProtectedNotRefused,
    ReadOnlyWrote,
    RedactionLeaked,
    SecretShown,
    StalePlanWrote,
    UnmatchedProtectSilent,
    check_consent,
    check_destruction_and_ownership,
    observe,
)
from tests.promises.pools import NAMES, Pools
from tests.support import create_emulator, served

OLD_OPT_IN = datetime(2020, 1, 1, tzinfo=UTC)
OPT_INS = ("none", "old", "now", "now", "none", "future")
EXPORT_FORMS = ("file", "file-over", "dir", "dir-over", "dir-again")
MANIFEST = "manifest"
USAGE_ERRORS: tuple[tuple[str, ...], ...] = (
    ("plan", "--sandbox", "--format", "yaml", MANIFEST),
    ("plan", "--sandbox", "--no-such-option", MANIFEST),
    ("plan", "--sandbox"),  # PATH missing
    ("apply", "--sandbox", "--plan"),  # an option without its value
    ("export", "--sandbox", "--provider", "nosuch"),
    ("export", "--sandbox", "--contacts-per-file", "many", "-o", "x/"),
    ("no-such-command",),
)
BAD_SETTINGS = (
    ("RECONCILE_READ_TIMEOUT", "-1"),
    ("RECONCILE_CONNECT_TIMEOUT", "soon"),
    ("RECONCILE_RETRY_ATTEMPTS", "0"),
    ("RECONCILE_RETRY_WAIT", "forever"),
)
# (type, value, new type): a declared value that reads equal once retyped ("7" -> 7)
KEPT_ACROSS_RETYPE: tuple[tuple[str, Any, str], ...] = (
    ("int", 7, "float"),
    ("float", 3.0, "int"),
    ("int", 0, "float"),
    ("str", "7", "int"),
)
FOREIGN_CHIMP_KEY = "fedcba9876543210fedcba9876543210-us2"
BROKEN_STATES = (b"{", b"[]", b"\xff\xfe", b"")  # not JSON, not an account, not UTF-8


class Counter:
    steps = 0
    examples = 0
    outcomes: ClassVar[dict[tuple[str, int], int]] = {}
    errors: ClassVar[dict[str, int]] = {}


def _changes(text: str) -> str:
    return text if len(text) < 4000 else text[:4000] + "\n[...]"


class PromiseMachine(RuleBasedStateMachine):
    pools: ClassVar[Pools]

    def __init__(self) -> None:
        super().__init__()
        Counter.examples += 1
        self.provider = self.pools.provider
        self.home = os.getcwd()
        self.root = Path(tempfile.mkdtemp(prefix=f"promises-{self.provider}-"))
        os.chdir(self.root)  # the sandbox state file lives under the current directory
        self.runner = CliRunner()
        self.account = w.Account(self.provider, self.root)
        self.manifest = Manifest(self.provider)
        self.manifest.write(self.root / MANIFEST)
        self.optouts: dict[OptOutKey, datetime] = {}
        self.exports = 0
        self.last_dir: Path | None = None  # the directory of the last --contacts-per-file export
        self.saved: tuple[Manifest, list[dict[str, Any]], w.Snapshot] | None = None

    def teardown(self) -> None:
        os.chdir(self.home)
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- plumbing -------------------------------------------------------------

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        """Promise 7: no traceback, exit codes 0/1 (2 only under --detailed-exitcode)."""
        result = self.runner.invoke(app, list(args), env=env)
        shown = " ".join(args)
        error = result.exception
        if error is not None and not isinstance(error, SystemExit):
            trace = "".join(traceback.format_exception(error))
            raise CliBroken(f"reconcile {shown} raised {error!r}\n{result.output}\n{trace}")
        if "Traceback" in result.output:
            raise CliBroken(f"reconcile {shown} printed a traceback:\n{result.output}")
        if "internal error (" in result.output:  # the last-resort guard caught a bug
            raise CliBroken(f"reconcile {shown} met an internal error:\n{result.output}")
        outcome = (args[0], result.exit_code)
        Counter.outcomes[outcome] = Counter.outcomes.get(outcome, 0) + 1
        if result.exit_code == 1:
            first = next((line for line in result.output.splitlines() if "Error" in line), "")
            Counter.errors[first[:150]] = Counter.errors.get(first[:150], 0) + 1
        allowed = {0, 1, 2} if "--detailed-exitcode" in args else {0, 1}
        if result.exit_code not in allowed:
            raise CliBroken(f"reconcile {shown} exited {result.exit_code}:\n{result.output}")
        return result

    def world(self, action: Callable[..., Any]) -> bool:
        """One act of a person or another tool; False when the provider refused it."""
        before = self.account.snapshot()
        try:
            self.account.act(action)
            done = True
        except w.WorldRefused:
            done = False
        observe(self.optouts, before, self.account.snapshot(), datetime.now(UTC))
        outcome = (f"world:{getattr(action, '__qualname__', '?').split('.')[0]}", int(done))
        Counter.outcomes[outcome] = Counter.outcomes.get(outcome, 0) + 1
        return done

    def no_secrets(self, what: str, text: str) -> None:
        """Credentials are never printed, nor written into plan files."""
        _, credentials = create_emulator(self.provider, None)
        if "secret_key" in credentials:  # Mailjet: both halves (plans hold a digest of the key)
            pair = f"{credentials['api_key']}:{credentials['secret_key']}".encode()
            secrets = [*credentials.values(), base64.b64encode(pair).decode()]
        elif self.provider == "mailchimp":  # Basic auth: the key, and the header made of it
            pair = f"reconcile:{credentials['api_key']}".encode()
            secrets = [credentials["api_key"], base64.b64encode(pair).decode()]
        else:  # MailJawn: the bearer key is the secret, the project id is public
            secrets = [credentials["api_key"]]
        for secret in secrets:
            if secret in text:
                raise SecretShown(f"{what} shows a credential:\n{_changes(text)}")

    def nothing_personal(self, what: str, text: str) -> None:
        """--redact: no email, name or text value of the manifest or the account is printed
        (only the distinctive ones are looked for: short words occur in any output)."""
        live = self.account.snapshot()
        emails = {p.email for p in live.people.values()} | {
            c.email for c in self.manifest.contacts.values()
        }
        names = {p.name for p in live.people.values()} | {
            c.name for c in self.manifest.contacts.values() if c.name is not None
        }
        values = {
            v
            for props in [p.properties for p in live.people.values()]
            + [c.properties for c in self.manifest.contacts.values()]
            for v in props.values()
            if isinstance(v, str)
        }
        kept = set(live.lists) | set(self.manifest.lists)  # list names are not redacted
        personal = {t for t in names | values if len(t) >= 6 and not any(t in n for n in kept)}
        lowered = text.lower()
        shown = sorted(e for e in emails if e.lower() in lowered) + sorted(
            t for t in personal if t in text
        )
        if shown:
            raise RedactionLeaked(f"{what} shows {shown}:\n{_changes(text)}")

    def unmatched_protections(self) -> list[str]:
        """protect: entries that name nothing in the manifest or the account."""
        live = self.account.snapshot()
        people = set(live.people) | set(self.manifest.contacts)
        found = [e for e in self.manifest.protect_contacts if e.lower() not in people]
        lists = live.lists | set(self.manifest.lists)
        return found + [n for n in self.manifest.protect_lists if n not in lists]

    def built(self, situation: str, reached: bool = True) -> None:
        """Counts how often a targeted rule got its rare situation in place (or not)."""
        key = (f"built:{situation}", int(reached))
        Counter.outcomes[key] = Counter.outcomes.get(key, 0) + 1

    def edited(self) -> None:
        Counter.outcomes[("author", 0)] = Counter.outcomes.get(("author", 0), 0) + 1
        self.manifest.write(self.root / MANIFEST)

    def read_only(self, *args: str) -> Result:
        before = self.account.snapshot()
        result = self.cli(*args)
        if self.account.snapshot().raw != before.raw:
            raise ReadOnlyWrote(f"reconcile {' '.join(args)} changed the account")
        return result

    def writing(self, manifest: Manifest, *args: str, planned: w.Snapshot | None = None) -> Result:
        """A command that may write: every transition it made is checked."""
        Counter.steps += 1
        before = self.account.snapshot()
        result = self.cli(*args)
        after = self.account.snapshot()
        check_consent(self.optouts, before, after, manifest)
        check_destruction_and_ownership(before, after, manifest, planned)
        observe(self.optouts, before, after, datetime.now(UTC))
        if manifest.future_opt_in(datetime.now(UTC)) and (
            result.exit_code == 0 or after.raw != before.raw
        ):
            raise FutureOptInAccepted(f"reconcile {' '.join(args)}:\n{result.output}")
        return result

    def converged(self, why: str) -> None:
        """Promise 4: after a successful apply the next plan is empty."""
        again = self.read_only("plan", "--sandbox", "--quiet", "--detailed-exitcode", MANIFEST)
        if again.exit_code != 0:
            raise NotConverged(
                f"after {why}, plan exits {again.exit_code}:\n{_changes(again.output)}"
            )

    def opt_in_time(self, kind: str, keys: list[OptOutKey]) -> datetime | None:
        if kind == "none":
            return None
        if kind == "old":
            return OLD_OPT_IN
        if kind == "future":
            return datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
        latest = max((self.optouts[k] for k in keys if k in self.optouts), default=None)
        moment = datetime.now(UTC).replace(microsecond=0)
        while latest is not None and moment <= latest:  # consent after the opt-out
            time.sleep(0.2)
            moment = datetime.now(UTC).replace(microsecond=0)
        return moment

    def someone(self, who: int) -> w.Person | None:
        """A person the account holds (by position, so examples shrink)."""
        people = self.account.snapshot().people
        email = _pick(sorted(people), who)
        return None if email is None else people[email]

    def move_under(self, changes: list[dict[str, Any]], pick: int) -> str | None:
        """Another tool changes one resource the saved plan touches."""
        live = self.account.snapshot()
        jet = self.provider == "mailjet"
        if self.provider == "mailchimp":
            return self.move_under_chimp(changes, pick, live)
        for change in (
            changes[pick % max(len(changes), 1) :] + changes[: pick % max(len(changes), 1)]
        ):
            kind, key = change["type"], change["key"]
            action: Callable[..., Any] | None = None
            if kind == "contact":
                person = live.people.get(key[0].lower())
                if person is None:
                    action = (
                        w.mj_create_contact(key[0], "moved", [])
                        if jet
                        else w.jawn_identify(key[0], name="moved")
                    )
                elif jet:
                    action = w.mj_put_contact(key[0], person.name + " (moved)", None)
                else:
                    action = w.jawn_patch(key[0], name=person.name + " (moved)")
            elif kind == "membership":
                name, email = key
                person = live.people.get(email.lower())
                if person is None or name not in live.lists:
                    continue
                if not jet:
                    action = w.jawn_identify(email, tags=[name])
                elif name in person.lists:
                    action = w.mj_set_member(email, name, unsubscribed=person.lists[name])
                else:
                    action = w.mj_join(email, name)
            elif kind == "list" and jet:
                action = (
                    w.mj_rename_list(key[0], key[0] + " moved")
                    if key[0] in live.lists
                    else w.mj_create_list(key[0])
                )
            elif kind == "property" and jet:
                after = change.get("after") or {}
                action = (
                    w.mj_delete_property(key[0])
                    if key[0] in live.properties
                    else w.mj_create_property(key[0], str(after.get("type", "str")))
                )
            if action is not None and self.world(action):
                return f"{change['address']} moved"
        return None

    def move_under_chimp(
        self, changes: list[dict[str, Any]], pick: int, live: w.Snapshot
    ) -> str | None:
        """Another tool adds a member or a tag, or changes a member, a tag or a merge field
        that the saved plan touches."""
        start = pick % max(len(changes), 1)
        for change in changes[start:] + changes[:start]:
            kind, key = change["type"], change["key"]
            action: Callable[..., Any] | None = None
            if kind == "contact":
                person = live.people.get(key[0].lower())
                if person is None:
                    action = w.mc_member(key[0], "subscribed")
                else:
                    action = w.mc_patch(key[0], merge_fields={"FNAME": "moved"})
            elif kind == "membership":
                name, email = key
                person = live.people.get(email.lower())
                if person is None:
                    continue
                action = w.mc_tag(email, name, active=name not in person.lists)
            elif kind == "list":
                action = (
                    w.mc_delete_tag(key[0]) if key[0] in live.lists else w.mc_create_tag(key[0])
                )
            elif kind == "property":
                after = change.get("after") or {}
                action = (
                    w.mc_delete_field(key[0])
                    if key[0] in live.properties
                    else w.mc_create_field(key[0], str(after.get("type", "str")))
                )
            if action is not None and self.world(action):
                return f"{change['address']} moved"
        return None

    def exported(self, args: list[str], target: Path) -> None:
        """Promise 5: the export holds exactly the account's people (those the loader
        accepts), and its plan against the same account is empty."""
        result = self.read_only(*args)
        if result.exit_code != 0:
            raise ExportNotRoundTrip(f"reconcile {' '.join(args)} failed:\n{result.output}")
        refused = {e.lower() for e in self.pools.unexportable}
        live = set(self.account.snapshot().people) - refused  # left out, with a warning
        written = [e.lower() for e in exported_emails(target)]
        if sorted(written) != sorted(live):
            raise ExportNotRoundTrip(
                f"{' '.join(args)}: exported {sorted(written)}, account holds {sorted(live)} "
                f"(of which the loader refuses {sorted(refused)})"
            )
        again = self.read_only("plan", "--sandbox", "--quiet", "--detailed-exitcode", str(target))
        if again.exit_code != 0:
            raise ExportNotRoundTrip(
                f"{' '.join(args)} then plan exits {again.exit_code}:\n{_changes(again.output)}"
            )

    def erase(self, email: str) -> Callable[..., Any]:
        """Another tool deletes the person (Mailchimp: permanently)."""
        if self.provider == "mailchimp":
            return w.mc_forget(email)
        if self.provider == "mailjet":
            return w.mj_delete_contact(email)
        return w.jawn_delete(email)

    def export_args(self) -> list[str]:
        """export --sandbox of this provider (Mailchimp: the audience is an option)."""
        args = ["export", "--sandbox", "--provider", self.provider]
        if self.provider == "mailchimp":
            args += ["--option", f"audience={CHIMP_AUDIENCE_NAME}"]
        return args

    def declared(self, email: str) -> ContactDecl:
        found = self.manifest.contact(email)
        if found is None:
            found = ContactDecl(email)
            self.manifest.contacts[email.lower()] = found
        return found


def _moved(change: dict[str, Any], then: w.Snapshot, now: w.Snapshot) -> bool:
    """Whether the resource a saved change touches is clearly not what was planned."""
    kind, key = change["type"], change["key"]
    if kind == "property":
        return then.properties.get(key[0]) != now.properties.get(key[0])
    if kind == "list":
        return (key[0] in then.lists) != (key[0] in now.lists)
    if kind == "contact":
        was, is_ = then.people.get(key[0].lower()), now.people.get(key[0].lower())
        if was is None or is_ is None:
            return (was is None) != (is_ is None)
        fields = set((change.get("after") or {}) | (change.get("before") or {}))
        props = {f.removeprefix("properties.") for f in fields if f.startswith("properties.")}
        return (
            was.name != is_.name
            or was.status != is_.status
            or any(was.properties.get(p) != is_.properties.get(p) for p in props)
        )
    if kind == "membership":
        name, email = key
        was, is_ = then.people.get(email.lower()), now.people.get(email.lower())
        return (None if was is None else was.lists.get(name)) != (
            None if is_ is None else is_.lists.get(name)
        )
    return False


def _converted(value: Any, kind: str, pools: Pools) -> Any:
    """The value an author keeps across a type change ("7" -> 7 -> 7.0), where it can."""
    try:
        if kind == "str" and not isinstance(value, bool):
            return str(value)
        if kind == "int" and not isinstance(value, bool) and float(value).is_integer():
            return int(float(value))
        if kind == "float" and not isinstance(value, bool):
            return float(value)
    except ValueError:
        pass
    return pools.typed(kind)[0]


def _pick(items: list[str], index: int) -> str | None:
    return items[index % len(items)] if items else None


def make_machine(pools: Pools) -> type[PromiseMachine]:
    emails = st.sampled_from(pools.emails)
    lists = st.sampled_from(pools.lists)
    props = st.sampled_from(pools.properties)
    names = st.sampled_from(NAMES)
    index = st.integers(0, 20)
    any_value = st.sampled_from([v for kind in pools.property_types for v in pools.typed(kind)])
    kinds_of = st.sampled_from(pools.property_types)
    jet = pools.provider == "mailjet"
    chimp = pools.provider == "mailchimp"

    class Machine(PromiseMachine):
        # ---- a starting audience -------------------------------------------------------

        @initialize(
            on=st.lists(lists, min_size=1, max_size=3, unique=True),
            kinds=st.lists(kinds_of, min_size=1, max_size=2),
            people=st.lists(emails, min_size=2, max_size=4, unique_by=str.lower),
            seed=st.integers(0, 2**16),
            stranger=st.sampled_from(pools.world_emails),
        )
        def start(
            self: PromiseMachine,
            on: list[str],
            kinds: list[str],
            people: list[str],
            seed: int,
            stranger: str,
        ) -> None:
            """A declared audience, applied; plus what the manifest does not manage: a
            stranger on a declared list, and (Mailjet) another tool's list and property."""
            for name in on:
                self.manifest.lists[name] = "additive"
            for prop, kind in zip(pools.properties, kinds, strict=False):
                self.manifest.properties[prop] = PropertyDecl(kind)
            for n, email in enumerate(people):
                contact = self.declared(email)
                if pools.names:
                    contact.name = NAMES[(seed + n) % len(NAMES)]
                prop = pools.properties[n % len(kinds)]
                values = pools.typed(self.manifest.properties[prop].type)
                contact.properties[prop] = values[(seed >> n) % len(values)]
                for k, name in enumerate(on):
                    if (seed >> (n + k)) % 3:
                        contact.lists[name] = MembershipDecl()
            self.edited()
            result = self.writing(
                self.manifest, "apply", "--sandbox", "--quiet", "--auto-approve", MANIFEST
            )
            if result.exit_code == 0:
                self.converged("the first apply")
            if stranger.lower() not in self.manifest.contacts:
                if chimp:
                    self.world(w.mc_member(stranger, "subscribed", tags=on[:1]))
                elif jet:
                    self.world(w.mj_create_contact(stranger, "Stranger", on[:1]))
                else:
                    self.world(w.jawn_identify(stranger, name="Stranger", tags=on[:1]))
            if jet:
                self.world(w.mj_create_list("other tool"))
                self.world(w.mj_create_property("legacy", "str"))
            if chimp:
                self.world(w.mc_create_tag("other tool"))
                self.world(w.mc_create_field("LEGACY", "str"))

        # ---- author ------------------------------------------------------------------

        @rule(
            email=emails,
            name=st.none() | names,
            excluded=st.sampled_from([None, None, False, True]),
        )
        def author_put_contact(
            self: PromiseMachine, email: str, name: str | None, excluded: bool | None
        ) -> None:
            contact = self.declared(email)
            contact.name = name if pools.names else None
            contact.excluded = excluded
            self.edited()

        @rule(email=emails)
        def author_drop_contact(self: PromiseMachine, email: str) -> None:
            self.manifest.contacts.pop(email.lower(), None)
            self.edited()

        @rule(email=emails, prop=props, value=st.none() | any_value, unmanage=st.booleans())
        def author_set_value(
            self: PromiseMachine, email: str, prop: str, value: Any, unmanage: bool
        ) -> None:
            spec = self.manifest.properties.get(prop)
            if spec is None:
                return
            contact = self.declared(email)
            if unmanage:
                contact.properties.pop(prop, None)
            else:  # a value of the declared type (drawn by position, so it shrinks)
                typed = pools.typed(spec.type)
                contact.properties[prop] = (
                    None if value is None else typed[hash(repr(value)) % len(typed)]
                )
            self.edited()

        @rule(
            email=emails,
            list_index=index,
            unsubscribed=st.booleans(),
            opt_in=st.sampled_from(OPT_INS),
            drop=st.booleans(),
        )
        def author_membership(
            self: PromiseMachine,
            email: str,
            list_index: int,
            unsubscribed: bool,
            opt_in: str,
            drop: bool,
        ) -> None:
            name = _pick(list(self.manifest.lists), list_index)
            if name is None:
                return
            contact = self.declared(email)
            if drop:
                contact.lists.pop(name, None)
            else:
                status = "unsubscribed" if unsubscribed and pools.list_unsubscribe else "subscribed"
                moment = (
                    self.opt_in_time(opt_in, [("list", email.lower(), name)])
                    if pools.list_unsubscribe
                    else None
                )
                contact.lists[name] = MembershipDecl(status, moment)
            self.edited()

        @rule(email=emails, opt_in=st.sampled_from(OPT_INS))
        def author_contact_opt_in(self: PromiseMachine, email: str, opt_in: str) -> None:
            contact = self.declared(email)
            contact.opted_in_at = self.opt_in_time(opt_in, [("global", email.lower())])
            if contact.opted_in_at is not None and contact.excluded is None:
                contact.excluded = False
            self.edited()

        @rule(name=lists, exact=st.booleans())
        def author_add_list(self: PromiseMachine, name: str, exact: bool) -> None:
            self.manifest.lists[name] = "exact" if exact and pools.exact_lists else "additive"
            self.edited()

        @rule(name=lists)
        def author_drop_list(self: PromiseMachine, name: str) -> None:
            self.manifest.lists.pop(name, None)
            for contact in self.manifest.contacts.values():
                contact.lists.pop(name, None)
            if self.manifest.prune.scope_lists is not None:
                self.manifest.prune.scope_lists = [
                    n for n in self.manifest.prune.scope_lists if n != name
                ] or None
            self.edited()

        @rule(name=props, kind=kinds_of, replace=st.booleans())
        def author_add_property(self: PromiseMachine, name: str, kind: str, replace: bool) -> None:
            if name not in self.manifest.properties:
                self.manifest.properties[name] = PropertyDecl(kind, replace)
                self.edited()

        @rule(name=props)
        def author_drop_property(self: PromiseMachine, name: str) -> None:
            self.manifest.properties.pop(name, None)
            for contact in self.manifest.contacts.values():
                contact.properties.pop(name, None)
            self.edited()

        @rule(name=props, kind=kinds_of)
        def author_retype_property(self: PromiseMachine, name: str, kind: str) -> None:
            """A type change with replace: true; declared values follow the new type."""
            spec = self.manifest.properties.get(name)
            if spec is None or spec.type == kind:
                return
            self.manifest.properties[name] = PropertyDecl(kind, replace=True)
            for contact in self.manifest.contacts.values():
                if contact.properties.get(name) is not None:
                    contact.properties[name] = _converted(contact.properties[name], kind, pools)
            self.edited()

        @rule(
            contacts=st.sampled_from(pools.contact_prunes),
            scope=st.none() | st.lists(lists, max_size=2, unique=True),
            members=st.sampled_from(
                ["remove", "unsubscribe"] if pools.list_unsubscribe else ["remove"]
            ),
            delete_lists=st.booleans(),
            delete_properties=st.booleans(),
        )
        def author_prune(
            self: PromiseMachine,
            contacts: str,
            scope: list[str] | None,
            members: str,
            delete_lists: bool,
            delete_properties: bool,
        ) -> None:
            scope = [n for n in scope if n in self.manifest.lists] if scope else None
            self.manifest.prune = Prune(
                contacts=contacts,
                scope_lists=scope or None,
                members=members,
                lists="delete" if delete_lists and pools.list_delete else "ignore",
                properties="delete"
                if delete_properties and pools.property_definitions
                else "ignore",
            )
            self.edited()

        @rule(email=st.none() | emails, name=st.none() | lists, add=st.booleans())
        def author_protect(
            self: PromiseMachine, email: str | None, name: str | None, add: bool
        ) -> None:
            if email is not None:
                current = [e for e in self.manifest.protect_contacts if e.lower() != email.lower()]
                self.manifest.protect_contacts = [*current, email] if add else current
            if name is not None:
                current = [n for n in self.manifest.protect_lists if n != name]
                self.manifest.protect_lists = [*current, name] if add else current
            self.edited()

        @rule(on=st.booleans())
        def author_contacts_in_csv(self: PromiseMachine, on: bool) -> None:
            self.manifest.csv_contacts = on
            self.edited()

        # ---- the outside world -------------------------------------------------------

        @rule(who=index, which=index)
        def world_unsubscribes_from_list(self: PromiseMachine, who: int, which: int) -> None:
            person = self.someone(who)
            if jet and person is not None:
                on = sorted(n for n, subscribed in person.lists.items() if subscribed)
                name = _pick(on, which)
                if name is not None:
                    self.world(w.mj_set_member(person.email, name, unsubscribed=True))

        @rule(who=index, by_link=st.booleans())
        def world_opts_out_globally(self: PromiseMachine, who: int, by_link: bool) -> None:
            """Mailchimp: through a campaign's link (compliance state) or by an admin."""
            person = self.someone(who)
            if person is None:
                return
            if chimp:
                self.world(
                    w.mc_self_unsubscribe(person.email)
                    if by_link
                    else w.mc_patch(person.email, status="unsubscribed")
                )
            elif jet:
                self.world(w.mj_put_contact(person.email, None, excluded=True))
            else:
                self.world(w.jawn_patch(person.email, status="unsubscribed"))

        @precondition(lambda self: not jet)
        @rule(who=index, status=st.sampled_from(["bounced", "complained"]))
        def world_bounces(self: PromiseMachine, who: int, status: str) -> None:
            person = self.someone(who)
            if person is None:
                return
            if chimp:
                self.world(w.mc_bounce(person.email))
            else:
                self.world(w.jawn_patch(person.email, status=status))

        @precondition(lambda self: chimp)
        @rule(who=index)
        def world_archives(self: PromiseMachine, who: int) -> None:
            """Someone archives a member in the web app (refused for pending and cleaned)."""
            person = self.someone(who)
            if person is not None:
                self.world(w.mc_archive(person.email))

        @precondition(lambda self: chimp)
        @rule(email=st.sampled_from(pools.world_emails), confirm=st.booleans())
        def world_pending_signup(self: PromiseMachine, email: str, confirm: bool) -> None:
            """A double opt-in form: the member is pending (one confirmation email is sent);
            or (confirm) a pending person clicks the link in it and is subscribed."""
            person = self.account.snapshot().people.get(email.lower())
            if confirm:
                if person is not None and person.status == "pending":
                    self.world(w.mc_patch(person.email, status="subscribed"))
            elif person is None or person.status == "archived":
                self.world(w.mc_member(email, "pending"))

        @rule(who=index, which=st.none() | index)
        def world_person_opts_back_in(self: PromiseMachine, who: int, which: int | None) -> None:
            """The person's own consent, through a form or a preference centre."""
            person = self.someone(who)
            if person is None:
                return
            name = None if which is None else _pick(sorted(self.account.snapshot().lists), which)
            if chimp and name is not None:
                self.world(w.mc_tag(person.email, name))
            elif chimp:  # a hosted form: pending until they confirm
                self.world(w.mc_put(person.email, status="pending"))
            elif jet and name is not None:
                if not self.world(w.mj_set_member(person.email, name, unsubscribed=False)):
                    self.world(w.mj_join(person.email, name))
            elif jet:
                self.world(w.mj_put_contact(person.email, None, excluded=False))
            elif name is not None:
                self.world(w.jawn_signup(person.email, name))
            elif person.status == "unsubscribed":
                self.world(w.jawn_patch(person.email, status="active"))

        @rule(who=index, name=names)
        def world_renames_contact(self: PromiseMachine, who: int, name: str) -> None:
            person = self.someone(who)
            if person is None:
                return
            email = person.email
            if chimp:  # no name field: another tool writes FNAME
                self.world(w.mc_patch(email, merge_fields={"FNAME": name}))
            else:
                self.world(
                    w.mj_put_contact(email, name, None) if jet else w.jawn_patch(email, name=name)
                )

        @rule(who=index, prop=props, value=st.none() | any_value)
        def world_sets_value(self: PromiseMachine, who: int, prop: str, value: Any) -> None:
            person = self.someone(who)
            if person is None:
                return
            if jet or chimp:
                kind = self.account.snapshot().types.get(prop, "str")
                typed = pools.typed(kind)
                fitting = None if value is None else typed[hash(repr(value)) % len(typed)]
                if chimp:
                    body = {"merge_fields": {prop: w.mc_value(fitting)}}
                    self.world(w.mc_patch(person.email, **body))
                else:
                    self.world(w.mj_set_value(person.email, prop, fitting))
            else:
                self.world(w.jawn_patch(person.email, custom_fields={prop: value}))

        @rule(
            email=st.sampled_from(pools.world_emails),
            name=names,
            on=st.lists(lists, max_size=2, unique=True),
        )
        def world_creates_contact(
            self: PromiseMachine, email: str, name: str, on: list[str]
        ) -> None:
            if chimp:
                self.world(w.mc_member(email, "subscribed", tags=on))
            elif jet:
                self.world(w.mj_create_contact(email, name, on))
            else:
                self.world(w.jawn_identify(email, name=name, tags=on))

        @rule(who=index)
        def world_deletes_contact(self: PromiseMachine, who: int) -> None:
            """Mailchimp: a permanent delete (the address can't be added again)."""
            person = self.someone(who)
            if person is not None:
                self.world(self.erase(person.email))

        @rule(name=lists, who=index)
        def world_creates_list(self: PromiseMachine, name: str, who: int) -> None:
            if jet:
                self.world(w.mj_create_list(name))
                return
            person = self.someone(who)
            if chimp and who % 2:
                self.world(w.mc_create_tag(name))
            elif person is not None:  # a tag comes into being when someone is tagged
                self.world(
                    w.mc_tag(person.email, name)
                    if chimp
                    else w.jawn_identify(person.email, tags=[name])
                )

        @precondition(lambda self: jet)
        @rule(which=index, new_name=lists)
        def world_renames_list(self: PromiseMachine, which: int, new_name: str) -> None:
            name = _pick(sorted(self.account.snapshot().lists), which)
            if name is not None:
                self.world(w.mj_rename_list(name, new_name))

        @precondition(lambda self: jet or chimp)
        @rule(which=index)
        def world_deletes_list(self: PromiseMachine, which: int) -> None:
            name = _pick(sorted(self.account.snapshot().lists), which)
            if name is not None:
                self.world(w.mj_delete_list(name) if jet else w.mc_delete_tag(name))

        @precondition(lambda self: jet or chimp)
        @rule(name=props, kind=kinds_of, delete=st.booleans())
        def world_edits_property(self: PromiseMachine, name: str, kind: str, delete: bool) -> None:
            if chimp:
                self.world(w.mc_delete_field(name) if delete else w.mc_create_field(name, kind))
            else:
                self.world(
                    w.mj_delete_property(name) if delete else w.mj_create_property(name, kind)
                )

        # ---- reconcile ---------------------------------------------------------------

        @rule()
        def reconcile_validate(self: PromiseMachine) -> None:
            result = self.read_only("validate", MANIFEST)
            if self.manifest.future_opt_in(datetime.now(UTC)) and result.exit_code == 0:
                raise FutureOptInAccepted(f"validate accepted a future opt-in:\n{result.output}")

        @rule(
            output=st.sampled_from(["text", "json", "markdown"]),
            redact=st.booleans(),
            debug=st.booleans(),
        )
        def reconcile_plan(self: PromiseMachine, output: str, redact: bool, debug: bool) -> None:
            args = [*(["--debug"] if debug else []), "plan", "--sandbox", "--detailed-exitcode"]
            args += ["--format", output, *(["--redact"] if redact else []), MANIFEST]
            result = self.read_only(*args)
            self.no_secrets(" ".join(args), result.output)
            if self.manifest.future_opt_in(datetime.now(UTC)) and result.exit_code != 1:
                raise FutureOptInAccepted(f"plan accepted a future opt-in:\n{result.output}")
            if redact:
                self.nothing_personal(" ".join(args), result.output)
            unmatched = self.unmatched_protections()
            if unmatched and result.exit_code != 1 and "under protect:" not in result.output:
                raise UnmatchedProtectSilent(
                    f"protect: names {unmatched}, which are neither in the manifest nor in the "
                    f"account; reconcile {' '.join(args)} did not warn:\n{_changes(result.output)}"
                )

        @rule()
        def reconcile_apply_unattended(self: PromiseMachine) -> None:
            """apply without --auto-approve and without a terminal refuses, writing nothing."""
            planned = self.read_only(
                "plan", "--sandbox", "--quiet", "--detailed-exitcode", MANIFEST
            )
            result = self.read_only("apply", "--sandbox", "--quiet", MANIFEST)
            if planned.exit_code == 2 and result.exit_code != 1:
                raise ReadOnlyWrote(f"apply of changes, no terminal, exited {result.exit_code}")

        @rule()
        def reconcile_apply(self: PromiseMachine) -> None:
            result = self.writing(
                self.manifest, "apply", "--sandbox", "--quiet", "--auto-approve", MANIFEST
            )
            if result.exit_code == 0:
                self.converged("apply --auto-approve")

        @rule(move=st.booleans(), pick=index)
        def reconcile_saved_plan(self: PromiseMachine, move: bool, pick: int) -> None:
            """plan --out, (the account moves under a resource the plan touches), apply --plan."""
            planned = self.manifest.copy()
            made = self.read_only("plan", "--sandbox", "--quiet", "--out", "p.json", MANIFEST)
            if made.exit_code != 0:
                return
            saved = json.loads((self.root / "p.json").read_text(encoding="utf-8"))
            moved = self.move_under(saved["changes"], pick) if move else None
            if moved is not None:
                before = self.account.snapshot()
                result = self.cli("apply", "--sandbox", "--quiet", "--plan", "p.json")
                if result.exit_code != 1 or self.account.snapshot().raw != before.raw:
                    raise StalePlanWrote(
                        f"{moved} between plan and apply; apply --plan exited "
                        f"{result.exit_code}:\n{_changes(result.output)}"
                    )
                return
            result = self.writing(planned, "apply", "--sandbox", "--quiet", "--plan", "p.json")
            if result.exit_code == 0 and self.manifest == planned:
                self.converged("apply --plan")

        @rule()
        def reconcile_plan_out(self: PromiseMachine) -> None:
            """plan --out saved.json, kept for a later apply --plan (steps may come between)."""
            planned = self.manifest.copy()
            made = self.read_only("plan", "--sandbox", "--quiet", "--out", "saved.json", MANIFEST)
            if made.exit_code == 0:
                self.no_secrets(
                    "saved.json", (self.root / "saved.json").read_text(encoding="utf-8")
                )
                saved = json.loads((self.root / "saved.json").read_text(encoding="utf-8"))
                self.saved = (planned, saved["changes"], self.account.snapshot())

        @precondition(lambda self: self.saved is not None)
        @rule()
        def reconcile_apply_saved(self: PromiseMachine) -> None:
            """apply --plan of the plan saved earlier: refused with nothing written when a
            resource it touches moved since; otherwise checked like any apply."""
            assert self.saved is not None
            planned, changes, then = self.saved
            self.saved = None
            now = self.account.snapshot()
            moved = [c["address"] for c in changes if _moved(c, then, now)]
            result = self.writing(
                planned, "apply", "--sandbox", "--quiet", "--plan", "saved.json", planned=then
            )
            if moved and (result.exit_code != 1 or self.account.snapshot().raw != now.raw):
                raise StalePlanWrote(
                    f"{', '.join(moved)} moved since the plan was saved; apply --plan exited "
                    f"{result.exit_code}:\n{_changes(result.output)}"
                )

        @rule(form=st.sampled_from(EXPORT_FORMS), per_file=st.integers(1, 3))
        def reconcile_export(self: PromiseMachine, form: str, per_file: int) -> None:
            """Promise 5: export, then plan of the export against the same account, is empty.
            Over the author's manifest (its contacts in YAML and CSV), into a new file or
            directory, or again into the directory of an earlier export (which it rewrites)."""
            Counter.steps += 1
            over = form.endswith("-over")
            if over:  # export keeps what only a manifest holds: only over a plannable one
                args = ["plan", "--sandbox", "--quiet", "--detailed-exitcode", MANIFEST]
                over = self.read_only(*args).exit_code != 1
            if over:
                target = self.root / MANIFEST
            elif form == "dir-again" and self.last_dir is not None:
                target = self.last_dir
            else:
                self.exports += 1
                target = self.root / "exports" / str(self.exports)
                target.mkdir(parents=True)
            several = len(list(target.glob("*.yaml"))) > 1
            args = self.export_args()
            if form.startswith("dir") or several:
                args += ["--contacts-per-file", str(per_file), "-o", f"{target}/"]
                if not over:
                    self.last_dir = target
            else:
                args += ["-o", str(target / "audience.yaml")]
            self.exported(args, target)
            if over:  # the author continues from what export wrote
                self.manifest = adopt(target, self.provider)

        @rule(
            who=index,
            on_list=st.booleans(),
            opt_in=st.sampled_from(OPT_INS),
            again=st.booleans(),
        )
        def consent_round(
            self: PromiseMachine, who: int, on_list: bool, opt_in: str, again: bool
        ) -> None:
            """Promise 1 played through in one step: a declared person opts out (of one
            list, or of every campaign); the author declares them back (subscribed, or
            excluded_from_campaigns: false) with an opt-in drawn from none, before the
            opt-out, after it, or in the future; apply; and (again) they opt out once more
            and the same manifest is applied again: an opt-in is used once."""
            live = self.account.snapshot()
            declared = sorted(e for e in self.manifest.contacts if e in live.people)
            email = _pick(declared, who)
            if email is None:
                return
            person = live.people[email]
            contact = self.declared(email)
            if on_list and pools.list_unsubscribe:
                on = sorted(
                    n for n, sub in person.lists.items() if sub and n in self.manifest.lists
                )
                name = _pick(on, who)
                if name is None:
                    return
                opt_out = w.mj_set_member(person.email, name, unsubscribed=True)
                if not self.world(opt_out):
                    return
                moment = self.opt_in_time(opt_in, [("list", email, name)])
                contact.lists[name] = MembershipDecl("subscribed", moment)
            else:
                if person.opted_out:
                    return
                if chimp:  # by a campaign's link (compliance state), or by an admin
                    opt_out = (
                        w.mc_self_unsubscribe(person.email)
                        if who % 2
                        else w.mc_patch(person.email, status="unsubscribed")
                    )
                else:
                    opt_out = (
                        w.mj_put_contact(person.email, None, excluded=True)
                        if jet
                        else w.jawn_patch(person.email, status="unsubscribed")
                    )
                if not self.world(opt_out):
                    return
                contact.excluded = False
                contact.opted_in_at = self.opt_in_time(opt_in, [("global", email)])
            self.edited()
            args = ("apply", "--sandbox", "--quiet", "--auto-approve", MANIFEST)
            if self.writing(self.manifest, *args).exit_code != 0 or not again:
                return
            time.sleep(1.0)  # opt-out times have a resolution of a second
            if self.world(opt_out):
                self.writing(self.manifest, *args)

        # ---- rare situations, built on purpose ------------------------------------------

        @precondition(lambda self: jet or chimp)
        @rule(prop=props, case=st.sampled_from(KEPT_ACROSS_RETYPE), who=index)
        def retype_keeping_values(
            self: PromiseMachine, prop: str, case: tuple[str, Any, str], who: int
        ) -> None:
            """replace: true converges in one apply: a property with values declared and
            live is retyped with replace: true, the author keeping values that read equal
            after the conversion ("7" live, 7 declared). The recreated property starts empty,
            so the apply must write them again: the next plan is empty and they are there."""
            kind_before, value, kind = case
            live = self.account.snapshot()
            refused = {e.lower() for e in pools.unexportable}
            holders = sorted(e for e in self.manifest.contacts if e in live.people)
            holders = [e for e in holders if e not in refused]
            if not holders:
                self.built("retype", reached=False)
                return
            chosen = {_pick(holders, who), _pick(holders, who + 1)}
            had = live.properties.get(prop)
            replace = had is not None and had[0] != kind_before
            self.manifest.properties[prop] = PropertyDecl(kind_before, replace=replace)
            for email, contact in self.manifest.contacts.items():
                if email in chosen:
                    contact.properties[prop] = value
                elif contact.properties.get(prop) is not None:
                    contact.properties[prop] = _converted(
                        contact.properties[prop], kind_before, pools
                    )
            self.edited()
            args = ("apply", "--sandbox", "--quiet", "--auto-approve", MANIFEST)
            if self.writing(self.manifest, *args).exit_code != 0:
                self.built("retype", reached=False)
                return
            people = self.account.snapshot().people
            if any(people[e].properties.get(prop) != value for e in chosen if e is not None):
                self.built("retype", reached=False)
                return  # not the situation (another tool's value won; checked elsewhere)
            self.built("retype")
            self.manifest.properties[prop] = PropertyDecl(kind, replace=True)
            for contact in self.manifest.contacts.values():
                if contact.properties.get(prop) is not None:
                    contact.properties[prop] = _converted(contact.properties[prop], kind, pools)
            self.edited()
            if self.writing(self.manifest, *args).exit_code != 0:
                return
            self.converged(f"{prop!r} retyped {kind_before} -> {kind} with replace: true")
            people = self.account.snapshot().people
            lost = {
                email: (people[email].properties.get(prop), contact.properties[prop])
                for email, contact in self.manifest.contacts.items()
                if email in people
                # An archived or cleaned member (Mailchimp) gets no write, values included:
                # the plan warns instead (invariant 1), so nothing can converge for them.
                and people[email].status not in ("archived", "cleaned")
                and contact.properties.get(prop) is not None
                and people[email].properties.get(prop) != contact.properties[prop]
            }
            if lost:
                raise NotConverged(
                    f"{prop!r} retyped {kind_before} -> {kind} with replace: true; after the "
                    f"apply, (live, declared) values differ: {lost}"
                )

        @rule(per_file=st.integers(1, 3), who=index, erase=st.integers(1, 2), prune=st.booleans())
        def export_again_after_erasure(
            self: PromiseMachine, per_file: int, who: int, erase: int, prune: bool
        ) -> None:
            """Promise 5 across a re-export: a directory export one contact per file; people
            are erased (by the world, or by the author's delete prune); export into the same
            directory again, which now needs fewer files: the files it no longer needs go,
            and nobody erased comes back (the directory is the account: its plan is empty)."""
            Counter.steps += 1
            live = self.account.snapshot()
            for email in pools.emails:
                if len(live.people) >= 3:
                    break
                if email.lower() not in live.people:
                    made = (
                        w.mj_create_contact(email, "Made", [])
                        if jet
                        else w.mc_member(email, "subscribed")
                        if chimp
                        else w.jawn_identify(email, name="Made")
                    )
                    self.world(made)
                    live = self.account.snapshot()
            self.exports += 1
            target = self.root / "exports" / str(self.exports)
            target.mkdir(parents=True)
            self.last_dir = target
            split = [*self.export_args(), "--contacts-per-file"]
            self.exported([*split, "1", "-o", f"{target}/"], target)
            subscribed = sorted(
                email
                for email, person in live.people.items()
                if email in self.manifest.contacts
                and not person.opted_out
                and not self.manifest.contact_protected(email)
                and any(person.lists.get(n) is True for n in self.manifest.lists)
            )
            dropped = _pick(subscribed, who) if prune else None
            if dropped is not None:  # the author drops them, with a delete prune
                self.manifest.contacts.pop(dropped)
                self.manifest.prune.contacts = "delete"
                self.manifest.prune.scope_lists = None
                self.edited()
                self.writing(
                    self.manifest, "apply", "--sandbox", "--quiet", "--auto-approve", MANIFEST
                )
            else:
                for n in range(erase):
                    person = self.someone(who + n)
                    if person is not None:
                        email = person.email
                        self.world(self.erase(email))
            self.built("re-export", len(self.account.snapshot().people) < len(live.people))
            self.exported([*split, str(per_file), "-o", f"{target}/"], target)

        @rule(who=index, prune=st.sampled_from([False, False, True]))
        def exclude_protected(self: PromiseMachine, who: int, prune: bool) -> None:
            """Promise 2: exclusion is destructive, so protect: covers it. An active contact
            is protected, and the author declares excluded_from_campaigns: true for them:
            plan and apply refuse (exit 1, nothing written), and the author backs the edit
            out. Or a prune (action: exclude) covers them: they are left included."""
            live = self.account.snapshot()
            refused = {e.lower() for e in pools.unexportable}
            active = sorted(
                e for e, p in live.people.items() if not p.opted_out and e not in refused
            )
            email = _pick(active, who)
            if email is None:
                self.built("exclude-protected", reached=False)
                return
            person = live.people[email]
            earlier = self.manifest.copy()
            self.manifest.protect_contacts = [
                *(e for e in self.manifest.protect_contacts if e.lower() != email),
                person.email,
            ]
            args = ("apply", "--sandbox", "--quiet", "--auto-approve", MANIFEST)
            if prune:
                self.manifest.contacts.pop(email, None)
                on = sorted(n for n, sub in person.lists.items() if sub and n in pools.lists)
                scope = _pick(on, who)
                if scope is not None:
                    self.manifest.lists.setdefault(scope, "additive")
                self.manifest.prune.contacts = "exclude"
                self.manifest.prune.scope_lists = None if scope is None else [scope]
                self.edited()
                self.writing(self.manifest, *args)
                now = self.account.snapshot().people.get(email)
                if now is not None and now.opted_out:
                    raise ProtectedNotRefused(f"protected {email} excluded by a prune")
                return
            self.declared(person.email).excluded = True
            self.edited()
            self.built("exclude-protected")
            planned = self.read_only(
                "plan", "--sandbox", "--quiet", "--detailed-exitcode", MANIFEST
            )
            before = self.account.snapshot()
            applied = self.writing(self.manifest, *args)
            wrote = self.account.snapshot().raw != before.raw
            if planned.exit_code != 1 or applied.exit_code != 1 or wrote:
                raise ProtectedNotRefused(
                    f"{email} is protected and declared excluded_from_campaigns: true; plan "
                    f"exited {planned.exit_code}, apply {applied.exit_code}"
                    f"{' and wrote' if wrote else ''}:\n{_changes(applied.output)}"
                )
            self.manifest = earlier
            self.edited()

        @rule(usage=st.sampled_from(USAGE_ERRORS), detailed=st.booleans(), redact=st.booleans())
        def reconcile_misused(
            self: PromiseMachine, usage: tuple[str, ...], detailed: bool, redact: bool
        ) -> None:
            """Promise 7: a usage error is one line and exit 1, never 2 (which
            --detailed-exitcode gives to 'the plan has changes'), and writes nothing."""
            args = [*usage[:1], *(["--detailed-exitcode"] if detailed else [])]
            args += [*(["--redact"] if redact else []), *usage[1:]]
            result = self.read_only(*args)
            if result.exit_code != 1 or "Error" not in result.output:
                raise CliBroken(
                    f"reconcile {' '.join(args)} (a usage error) exited {result.exit_code}:\n"
                    f"{_changes(result.output)}"
                )

        @rule(setting=st.sampled_from(BAD_SETTINGS))
        def reconcile_badly_configured(self: PromiseMachine, setting: tuple[str, str]) -> None:
            """Promise 7: a bad setting is one error line naming the variable, exit 1 (export:
            it reads the account whatever the manifest says)."""
            variable, value = setting
            args = self.export_args()
            before = self.account.snapshot()
            result = self.cli(*args, env={variable: value})
            if self.account.snapshot().raw != before.raw:
                raise ReadOnlyWrote(f"{variable}={value} reconcile {' '.join(args)} wrote")
            if result.exit_code != 1 or variable not in result.output:
                raise CliBroken(
                    f"{variable}={value} reconcile {' '.join(args)} exited "
                    f"{result.exit_code}, not naming the variable:\n{_changes(result.output)}"
                )

        @rule(broken=st.sampled_from(BROKEN_STATES))
        def reconcile_broken_sandbox_state(self: PromiseMachine, broken: bytes) -> None:
            """Promise 7: a sandbox state file that can't be read as an account is one error
            line naming the file, exit 1, and is left as it is."""
            elsewhere = self.root / "elsewhere"
            path = elsewhere / state_file(self.provider)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(broken)
            os.chdir(elsewhere)
            try:
                result = self.cli(*self.export_args())
            finally:
                os.chdir(self.root)
            if result.exit_code != 1 or path.name not in result.output:
                raise CliBroken(
                    f"a sandbox state file holding {broken!r}: export exited {result.exit_code}, "
                    f"not naming it:\n{_changes(result.output)}"
                )
            if path.read_bytes() != broken:
                raise CliBroken(f"a sandbox state file holding {broken!r} was rewritten")

        @rule()
        def reconcile_foreign_plan(self: PromiseMachine) -> None:
            """Promise 6: a plan made against another account (here: a copy of this one, so the
            plan would apply cleanly) is refused, and nothing is written."""
            Counter.steps += 1
            state = self.account.raw()
            emulator: Any
            env: dict[str, str]
            if chimp:
                emulator = create_mailchimp_emulator(
                    MailchimpEmulatorSettings(api_keys=(FOREIGN_CHIMP_KEY,)), state
                )
            elif jet:
                emulator = create_mailjet_emulator(
                    MailjetEmulatorSettings(
                        api_key="foreign-key", secret_key="foreign-secret", job_polls_to_complete=1
                    ),
                    state,
                )
            else:
                emulator = create_mailjawn_emulator(
                    MailJawnEmulatorSettings(
                        project_id="11111111-1111-4111-8111-111111111111",
                        api_keys={"mj_foreign_key": ALL_SCOPES},
                        read_limit=0,
                        write_limit=0,
                    ),
                    state,
                )
            with served(emulator.app) as url:
                if chimp:
                    env = {"MAILCHIMP_API_URL": url, "MAILCHIMP_API_KEY": FOREIGN_CHIMP_KEY}
                else:
                    env = (
                        {
                            "MAILJET_API_URL": url,
                            "MAILJET_API_KEY": "foreign-key",
                            "MAILJET_SECRET_KEY": "foreign-secret",
                        }
                        if jet
                        else {
                            "MAILJAWN_API_URL": url,
                            "MAILJAWN_API_KEY": "mj_foreign_key",
                            "MAILJAWN_PROJECT_ID": "11111111-1111-4111-8111-111111111111",
                        }
                    )
                made = self.cli("plan", "--quiet", "--out", "foreign.json", MANIFEST, env=env)
            if made.exit_code != 0:
                return
            before = self.account.snapshot()
            result = self.cli("apply", "--sandbox", "--quiet", "--plan", "foreign.json")
            if result.exit_code != 1 or self.account.snapshot().raw != before.raw:
                wrote = self.account.snapshot().raw != before.raw
                raise ForeignPlanWrote(
                    f"a plan made against another account: apply --plan exited {result.exit_code}"
                    f"{', and the account changed' if wrote else ''}:\n{_changes(result.output)}"
                )

    Machine.pools = pools
    Machine.__name__ = Machine.__qualname__ = f"{pools.provider.capitalize()}PromiseMachine"
    return Machine
