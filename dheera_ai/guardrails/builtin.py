"""The built-in guardrail kinds that need nothing but the text: pii, secrets, banned_words,
max_input_tokens. Patterns are compiled when the guardrail is built (at start-up), and every
candidate a pattern finds is confirmed where a checksum exists (Luhn, IBAN mod-97, SSN ranges,
real IP addresses), so ordinary numbers are not taken for cards.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re

from dheera_ai.guardrails import Finding, Guardrail


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _iban(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _ssn(candidate: str) -> bool:
    area, group, serial = re.split(r"[- ]", candidate)
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def _ip(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def _phone(candidate: str) -> bool:
    # An SSN's shape (3-2-4) is an SSN or nothing: never reported as a phone number.
    return 7 <= sum(c.isdigit() for c in candidate) <= 15 and not _SSN_SHAPE.fullmatch(candidate)


_SSN_SHAPE = re.compile(r"\d{3}[- ]\d{2}[- ]\d{4}")


# Secrets, most specific first (an Anthropic key also looks like an OpenAI one). Each pattern
# matches a secret's distinctive beginning, so a stream is stopped before the rest of it is sent.
SECRET_PATTERNS = {
    "PRIVATE_KEY": r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----)?",
    "ANTHROPIC_API_KEY": r"\bsk-ant-[A-Za-z0-9_-]{20,}",
    "OPENAI_API_KEY": r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
    "STRIPE_KEY": r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
    "AWS_ACCESS_KEY_ID": r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
    "AWS_SECRET_ACCESS_KEY": r"(?i:aws)[_ .-]?(?i:secret)(?:[_ .-]?(?i:access))?(?:[_ .-]?(?i:key))?['\"]?[ \t]*[:=]"
                             r"[ \t]*['\"]?[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])",
    "GOOGLE_API_KEY": r"\bAIza[0-9A-Za-z_-]{35}",
    "GCP_SERVICE_ACCOUNT_KEY": r"\"private_key_id\"\s*:\s*\"[0-9a-f]{40}\"",
    "AZURE_STORAGE_KEY": r"AccountKey=[A-Za-z0-9+/]{86}==",
    "GITHUB_TOKEN": r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22,})",
    "SLACK_TOKEN": r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    "JWT": r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
}

# Personal data: (pattern, confirmation). API_KEY stands for every secret pattern above.
PII_PATTERNS = {
    "EMAIL_ADDRESS": (r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b", None),
    "CREDIT_CARD": (r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])", lambda c: _luhn(re.sub(r"[ -]", "", c))),
    "IBAN_CODE": (r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", _iban),
    "US_SSN": (r"(?<![\d-])\d{3}[- ]\d{2}[- ]\d{4}(?![\d-])", _ssn),
    "IP_ADDRESS": (r"(?<![\w.:])(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})(?![\w.:])",
                   _ip),
    "PHONE_NUMBER": (r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,3}(?![\w-])",
                     _phone),
}
PII_ENTITIES = (*PII_PATTERNS, "API_KEY")


class PatternGuardrail(Guardrail):
    """Finds spans with named patterns; where two overlap, the earlier, then the longer, then the
    one listed first wins (so a card number or an SSN is not also reported as a phone number)."""

    patterns: dict = {}  # entity -> (compiled pattern, confirmation or None)

    def inspect(self, texts, call):
        found = []
        for index, text in enumerate(texts):
            found += self.scan(text, index)
        return found

    def scan(self, text: str, index: int = 0) -> list[Finding]:
        candidates = []
        for priority, (entity, (pattern, confirm)) in enumerate(self.patterns.items()):
            for match in pattern.finditer(text):
                if confirm is None or confirm(match.group(0)):
                    candidates.append((match.start(), -(match.end() - match.start()), priority, entity, match.end()))
        found, covered = [], -1
        for start, _, _, entity, end in sorted(candidates):
            if start >= covered:
                found.append(Finding(entity, index, start, end))
                covered = end
        return found


def _compiled(table: dict, names) -> dict:
    return {name: (re.compile(table[name][0]), table[name][1]) for name in names}


class PiiGuardrail(PatternGuardrail):
    """`pii`: emails, phone numbers, cards (Luhn), IBANs (mod-97), US SSNs, IPs, API keys; masks by default."""

    default_action = "mask"
    default_modes = ("pre_call",)
    window = 64  # a card with separators is 23 characters, an IBAN 42, most emails fewer than 64
    window_words = 9  # an IBAN written in groups of four

    def __init__(self, name, params):
        super().__init__(name, params)
        entities = params.get("entities", list(PII_ENTITIES))
        if not isinstance(entities, list) or not entities or not all(isinstance(e, str) for e in entities):
            raise ValueError(f"entities: a list of {', '.join(PII_ENTITIES)}")
        unknown = [e for e in entities if e not in PII_ENTITIES]
        if unknown:
            raise ValueError(f"entities: unknown entity {unknown[0]!r}; known: {', '.join(PII_ENTITIES)}")
        table = {name: (pattern, confirm) for name, (pattern, confirm) in PII_PATTERNS.items() if name in entities}
        if "API_KEY" in entities:  # the secrets' patterns, reported under one name
            table.update({name: (pattern, None) for name, pattern in SECRET_PATTERNS.items()})
        self.patterns = _compiled(table, table)
        self.api_key_names = set(SECRET_PATTERNS) if "API_KEY" in entities else set()
        if self.api_key_names:
            self.window = SecretsGuardrail.window

    def scan(self, text, index=0):
        return [Finding("API_KEY", f.index, f.start, f.end) if f.entity in self.api_key_names else f
                for f in super().scan(text, index)]


class SecretsGuardrail(PatternGuardrail):
    """`secrets`: provider keys, private keys, JWTs, cloud credentials; blocks by default."""

    default_action = "block"
    default_modes = ("pre_call",)
    window = 128  # each pattern needs at most this much of a secret to recognise it (most need 40)
    window_words = 7  # "aws secret access key = <40 characters>", "-----BEGIN RSA PRIVATE KEY-----"

    def __init__(self, name, params):
        super().__init__(name, params)
        self.patterns = {name: (re.compile(pattern), None) for name, pattern in SECRET_PATTERNS.items()}


class BannedWordsGuardrail(PatternGuardrail):
    """`banned_words`: `words: [...]` and/or `words_file: PATH` (one a line); whole words, any case."""

    default_action = "block"
    default_modes = ("pre_call",)

    def __init__(self, name, params):
        super().__init__(name, params)
        words = params.get("words", [])
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ValueError("words: a list of strings")
        path = params.get("words_file")
        if path is not None:
            if not isinstance(path, str) or not os.path.isfile(path):
                raise ValueError(f"words_file: not a file: {path!r}")
            with open(path, encoding="utf-8") as f:
                words = words + [line.strip() for line in f if line.strip() and not line.startswith("#")]
        words = [w.strip() for w in words if w.strip()]
        if not words:
            raise ValueError("words: give at least one word (or a words_file)")
        alternatives = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
        self.patterns = {"BANNED_WORD": (re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE), None)}
        self.window = max(len(w) for w in words) + 1
        self.window_words = max(len(w.split()) for w in words) + 1


class MaxInputTokensGuardrail(Guardrail):
    """`max_input_tokens: N`: refuses a request whose text is over N tokens (about four characters a
    token, as the gateway estimates usage elsewhere: no tokenizer download)."""

    default_action = "block"
    default_modes = ("pre_call",)

    def __init__(self, name, params):
        super().__init__(name, params)
        limit = params.get("max_input_tokens", params.get("max_tokens"))
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"max_input_tokens: a positive whole number, not {limit!r}")
        self.limit = limit

    def inspect(self, texts, call):
        tokens = math.ceil(sum(len(t) for t in texts) / 4)
        return [Finding(f"OVER_{self.limit}_TOKENS")] if tokens > self.limit else []
