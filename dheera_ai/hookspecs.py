"""The hooks a Dheera AI plugin can implement. Each docstring is the contract.

A plugin is a module or an object with functions named like these, decorated with
`dheera_ai.hookimpl`; it may accept any subset of a hook's arguments. Specs gain arguments
over time and never rename one. Only the pipeline (`dheera_ai.pipeline`) calls them.
"""

import pluggy

hookspec = pluggy.HookspecMarker("dheera_ai")


@hookspec
def dheera_ai_register_providers(register):
    """Register model providers, once at start-up.

    Call `register(name, provider)` for each provider this plugin offers; `name` is the prefix
    users write in `model: <name>/<model>`, `provider` a `dheera_ai.providers.Provider`.
    Registering a name twice is an error. Returns nothing.
    """


@hookspec(firstresult=True)
def dheera_ai_authenticate(credentials, settings):
    """Decide who is calling.

    `credentials` is a `dheera_ai.types.Credentials`; `settings` the loaded `Config`.
    Return a `Principal` to accept, raise an `AuthenticationError` (or another
    `DheeraAIError`) to refuse with that answer, or return None to let the next plugin decide.
    Stops at first non-None result. If every plugin returns None the call is refused (401):
    authentication denies by default.
    """


@hookspec
def dheera_ai_pre_call(call, settings):
    """Enrich and check a call before a deployment is chosen. Every implementation runs.

    May set `call.metadata`, `call.tags`, change `call.body`, or raise a `DheeraAIError` to
    refuse the call (that error is the client's answer). Returns nothing.
    """


@hookspec
def dheera_ai_pre_attempt(call, deployment):
    """Check one attempt before it is dispatched: the first, every retry, every fallback.

    `deployment` is the one chosen for this attempt (`call.deployment` still names the previous
    one). Every implementation runs. Raise a `DheeraAIError` to refuse the attempt: no other
    deployment of that model group is tried; a refused fallback group is skipped, and when no
    group is left the client gets the last error a group actually failed with (the refusal
    itself when the first attempt of the call was refused). Returns nothing.
    """


@hookspec(firstresult=True)
def dheera_ai_dispatch(call, deployment, provider):
    """Carry out the call against the chosen deployment.

    Return a `dheera_ai.types.Reply`, or None to let the next plugin answer. Stops at first
    non-None result. The built-in implementation (trylast) hands the call to `provider`, and
    serves `responses*` and `anthropic_messages` calls through the provider's chat completions
    when it has no method for them (`dheera_ai.bridges`); a cache or guardrail plugin may answer
    first (tryfirst). Raise a `DheeraAIError` for a failed call.

    Called once per attempt (retries and fallbacks call it again with another deployment). A
    wrapper (`wrapper=True`) sees whichever answer won, and may replace the Reply or wrap its
    stream: the response cache keeps fresh answers that way (`plugins.cache`).
    """


@hookspec
def dheera_ai_register_guardrails(register):
    """Register guardrail kinds, once at start-up.

    Call `register(name, kind)` for each kind this plugin offers; `name` is what the config's
    `guardrails[].dheera_ai_params.guardrail` names, `kind` a `dheera_ai.guardrails.Guardrail`
    subclass (its `inspect(texts, call)` returns `Finding`s). Registering a name twice is an
    error. Returns nothing.
    """


@hookspec
def dheera_ai_check_reply(call, reply):
    """Check or change an answer before it reaches the client. Every implementation runs.

    Called once per call, after the attempts (retries, fallbacks) have produced `reply`, a
    `dheera_ai.types.Reply`: may replace `reply.body` / `reply.data`, wrap `reply.stream` (its
    first chunk is already in hand; nothing has been sent), or raise a `DheeraAIError` to refuse
    the call with that answer. An error raised while a wrapped stream is read becomes the
    stream's error event. Returns nothing.
    """


@hookspec
def dheera_ai_attempt_started(call, deployment):
    """One attempt at `deployment` is about to be dispatched: the first, each retry, and each
    fallback group's attempts (a call that is refused before routing has none).

    May set `call.upstream_headers` (headers every upstream request of this attempt carries,
    e.g. a tracing plugin's `traceparent`). Every implementation runs. Must not raise: an
    exception is logged and the next implementation still runs. Returns nothing.
    """


@hookspec
def dheera_ai_attempt_ended(call, deployment, error):
    """The attempt that `dheera_ai_attempt_started` announced is over: a plain answer has arrived,
    a stream has ended (or the client left it), or it failed with `error` (a `DheeraAIError`;
    None for an answer). Called exactly once per started attempt, before the next one starts
    and before the post-call hooks. Every implementation runs. Must not raise.
    """


@hookspec
def dheera_ai_post_call_success(call, outcome):
    """Record a call that answered (for a stream: once it has ended or the client left).

    `outcome` is a `dheera_ai.types.Outcome` with usage and latency. Every implementation
    runs. Must not raise: an exception is logged and the next implementation still runs.
    """


@hookspec
def dheera_ai_post_call_failure(call, outcome):
    """Record a call that failed; `outcome.error` is the `DheeraAIError` the client got.

    Every implementation runs. Must not raise: an exception is logged and the next
    implementation still runs.
    """
