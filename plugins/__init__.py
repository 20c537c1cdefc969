"""The built-in plugins. Each is registered through the `dheera_ai` entry-point group (setup.cfg),
exactly as a third party's plugin would be; `BUILTIN` lists them for tests that build a plugin
manager without entry points."""

BUILTIN = (
    "plugins.auth",
    "plugins.enrichment",
    "plugins.call_log",
    "plugins.guardrails",
    "plugins.providers.openai",
    "plugins.providers.mock",
    "plugins.providers.azure",
    "plugins.providers.anthropic",
    "plugins.providers.cohere",
    "plugins.providers.gemini",
    "plugins.providers.dheera_ai_proxy",
    "plugins.providers.openai_compatible",
    "plugins.providers.unbuilt",
    "plugins.providers.bedrock",
    "plugins.providers.vertex_ai",
    "plugins.providers.pass_through",
)
