"""The built-in guardrail kinds, registered exactly as a third party's would be."""

from dheera_ai import hookimpl


@hookimpl
def dheera_ai_register_guardrails(register):
    from dheera_ai.guardrails.builtin import (
        BannedWordsGuardrail,
        MaxInputTokensGuardrail,
        PiiGuardrail,
        SecretsGuardrail,
    )
    from dheera_ai.guardrails.services import ModerationGuardrail, PresidioGuardrail

    register("pii", PiiGuardrail)
    register("secrets", SecretsGuardrail)
    register("banned_words", BannedWordsGuardrail)
    register("max_input_tokens", MaxInputTokensGuardrail)
    register("moderation", ModerationGuardrail)
    register("presidio", PresidioGuardrail)
