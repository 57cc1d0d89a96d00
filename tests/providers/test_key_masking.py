"""A key echoed in an answer is masked (MailJawn, Mailchimp); a "key" as short as a common word is
not a real key, and masking it would garble every message that holds the word."""

from __future__ import annotations

from reconcile.providers.mailchimp.client import MailchimpClient
from reconcile.providers.mailjawn.client import MailJawnClient
from tests.support import run


def masked(key: str, text: str) -> str:
    client = MailJawnClient(api_key=key, project_id="p")
    try:
        return client.redact(text)
    finally:
        run(client.aclose())


def test_a_real_key_is_masked() -> None:
    key = "mj_live_0123456789abcdef"
    assert masked(key, f"invalid key {key}") == "invalid key mj_***"


def test_a_word_sized_key_leaves_the_message_readable() -> None:
    assert masked("attempts", "All connection attempts failed") == (
        "All connection attempts failed"
    )
    assert masked("k", "not known") == "not known"


def test_a_mailchimp_key_is_masked_and_a_short_one_left_alone() -> None:
    key = "0123456789abcdef0123456789abcdef-us6"
    client = MailchimpClient(api_key=key, base_url="https://us6.api.mailchimp.com")
    short = MailchimpClient(api_key="key-us6", base_url="https://us6.api.mailchimp.com")
    try:
        assert client.redact(f"API Key Invalid {key}") == "API Key Invalid ***"
        assert short.redact("the key-us6 is wrong") == "the key-us6 is wrong"
    finally:
        run(client.aclose())
        run(short.aclose())
