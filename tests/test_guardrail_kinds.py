"""The built-in guardrail kinds on real-looking data, and the stream window, without a gateway."""

import pytest

from dheera_ai.guardrails import Finding, GuardrailKinds
from dheera_ai.guardrails.builtin import BannedWordsGuardrail, MaxInputTokensGuardrail, PiiGuardrail, SecretsGuardrail
from dheera_ai.guardrails.config import build_guardrails
from dheera_ai.guardrails.text import StreamText, answer_slots, replaced, request_slots

VALID_CARDS = ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005", "6011111111111117"]
INVALID_CARDS = ["4111 1111 1111 1112", "1234 5678 9012 3456"]
VALID_IBANS = ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "FR1420041010050500013M02606"]
INVALID_IBANS = ["DE89 3704 0044 0532 0130 01", "GB00WEST12345698765432"]


def found(guardrail, text):
    return [(f.entity, text[f.start:f.end]) for f in guardrail.inspect([text], None)]


@pytest.fixture(scope="module")
def pii():
    return PiiGuardrail("pii", {})


@pytest.mark.parametrize("card", VALID_CARDS)
def test_a_card_number_that_passes_luhn_is_found(pii, card):
    assert found(pii, f"my card is {card}, thanks") == [("CREDIT_CARD", card)]


@pytest.mark.parametrize("number", INVALID_CARDS)
def test_a_card_shaped_number_that_fails_luhn_is_not_a_card(pii, number):
    assert "CREDIT_CARD" not in [entity for entity, _ in found(pii, f"order {number}")]


@pytest.mark.parametrize("iban", VALID_IBANS)
def test_an_iban_with_a_valid_checksum_is_found(pii, iban):
    assert found(pii, f"pay to {iban} today") == [("IBAN_CODE", iban)]


@pytest.mark.parametrize("iban", INVALID_IBANS)
def test_an_iban_with_a_wrong_checksum_is_not(pii, iban):
    assert "IBAN_CODE" not in [entity for entity, _ in found(pii, f"pay to {iban} today")]


def test_emails_ssns_ips_and_phones_are_found_and_lookalikes_are_not(pii):
    text = ("Mail jane.doe+work@example.co.uk or call +1 415-555-0132. SSN 123-45-6789, not 000-12-3456 "
            "or 666-12-3456. Server 10.1.2.3 and 2001:db8::1, not 999.1.1.1 or version 1.2.3.")
    assert found(pii, text) == [("EMAIL_ADDRESS", "jane.doe+work@example.co.uk"), ("PHONE_NUMBER", "+1 415-555-0132"),
                                ("US_SSN", "123-45-6789"), ("IP_ADDRESS", "10.1.2.3"), ("IP_ADDRESS", "2001:db8::1")]


def test_pii_reports_an_api_key_under_one_name(pii):
    assert found(pii, "use sk-proj-abcdefghijklmnopqrstuvwxyz012345") == [
        ("API_KEY", "sk-proj-abcdefghijklmnopqrstuvwxyz012345")]


def test_pii_entities_limit_what_is_found():
    only_email = PiiGuardrail("pii", {"entities": ["EMAIL_ADDRESS"]})
    assert found(only_email, "a@b.io 4111 1111 1111 1111") == [("EMAIL_ADDRESS", "a@b.io")]


SECRETS = {
    "OPENAI_API_KEY": "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    "ANTHROPIC_API_KEY": "sk-ant-api03-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "GOOGLE_API_KEY": "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
    "GITHUB_TOKEN": "ghp_1234567890abcdefghijABCDEFGHIJ123456",
    "SLACK_TOKEN": "xoxb-123456789012-abcdefghijkl",
    "JWT": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
}


@pytest.mark.parametrize("entity", sorted(SECRETS))
def test_each_kind_of_secret_is_found(entity):
    secrets = SecretsGuardrail("secrets", {})
    assert found(secrets, f"here: {SECRETS[entity]} ok") == [(entity, SECRETS[entity])]


def test_ordinary_text_holds_no_secret():
    secrets = SecretsGuardrail("secrets", {})
    assert found(secrets, "The sky-blue task list is at docs/tasks; ask Bob for the eyJ-style token format.") == []


def test_banned_words_match_whole_words_in_any_case(tmp_path):
    words_file = tmp_path / "words.txt"
    words_file.write_text("# one a line\nProject Falcon\n")
    banned = BannedWordsGuardrail("banned", {"words": ["ass"], "words_file": str(words_file)})
    assert found(banned, "A classic assessment about project FALCON. Ass!") == [
        ("BANNED_WORD", "project FALCON"), ("BANNED_WORD", "Ass")]


def test_max_input_tokens_counts_about_four_characters_a_token():
    limit = MaxInputTokensGuardrail("short", {"max_input_tokens": 10})
    assert limit.inspect(["x" * 40], None) == []
    assert limit.inspect(["x" * 30, "y" * 11], None) == [Finding("OVER_10_TOKENS")]


def test_the_request_and_answer_texts_are_what_a_model_reads_and_writes():
    body = {"model": "m", "temperature": 0.2, "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                              "function": {"name": "f", "arguments": "{\"q\": 1}"}}]}]}
    # Names, roles, ids and URLs are structure; a tool call's arguments are text.
    assert [s.get() for s in request_slots(body)] == ["be brief", "look", "{\"q\": 1}"]
    answer = {"id": "chatcmpl-1", "model": "m", "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hello"}}]}
    slots = answer_slots(answer)
    assert [s.get() for s in slots] == ["hello"]
    slots[0].set("changed")
    assert answer["choices"][0]["message"]["content"] == "changed"


def test_replaced_puts_each_replacement_in_its_span():
    text = "mail a@b.io or c@d.io"
    findings = [Finding("E", 0, 5, 11, "<E1>"), Finding("E", 0, 15, 21, "<E2>")]
    assert replaced(text, findings, None) == "mail <E1> or <E2>"


def test_the_stream_window_catches_a_term_split_across_pieces_and_holds_back_only_the_window():
    pii = PiiGuardrail("pii", {"entities": ["EMAIL_ADDRESS"]})

    def check(text):
        return [Finding(f.entity, 0, f.start, f.end, "<EMAIL_ADDRESS>") for f in pii.inspect([text], None)]
    window = StreamText(32, check)
    opening = "Here is the address you asked for. Write to jane.d"
    out = [window.feed(0, piece) for piece in [opening, "oe@exam", "ple.com soon, and then"]]
    out.append(window.flush(0))
    assert "".join(out) == "Here is the address you asked for. Write to <EMAIL_ADDRESS> soon, and then"
    assert out[0] == opening[:-32]  # all but the window went out at once
    assert "jane" not in "".join(out)


def test_a_bad_guardrail_config_names_its_path():
    kinds = GuardrailKinds()
    kinds.register("pii", PiiGuardrail)
    _, problems = build_guardrails([
        {"guardrail_name": "a", "dheera_ai_params": {"guardrail": "nope"}},
        {"guardrail_name": "b", "litellm_params": {"guardrail": "pii", "mode": "after_call"}},
        {"guardrail_name": "c", "dheera_ai_params": {"guardrail": "pii", "entities": ["SHOE_SIZE"]}},
        {"guardrail_name": "d", "dheera_ai_params": {"guardrail": "pii", "mode": "during_call", "action": "mask"}},
        {"guardrail_name": "a", "dheera_ai_params": {"guardrail": "pii"}},
    ], kinds)
    assert problems[0].startswith("guardrails[0].dheera_ai_params.guardrail: unknown guardrail kind 'nope'")
    assert problems[1].startswith("guardrails[1].litellm_params.mode: unknown phase 'after_call'")
    assert problems[2].startswith("guardrails[2].dheera_ai_params.entities: unknown entity 'SHOE_SIZE'")
    assert problems[3].startswith("guardrails[3].dheera_ai_params.action: a during_call check")
    assert problems[4] == "guardrails[4].guardrail_name: 'a' is used twice"


def test_the_stream_window_releases_prose_as_soon_as_no_finding_can_still_be_in_it():
    def check(text):
        return []
    window = StreamText(64, check, window_words=3)
    out = window.feed(0, "one two three four five six")
    assert out == "one two three "  # the last three words wait; 64 characters would have held it all
    assert window.flush(0) == "four five six"
