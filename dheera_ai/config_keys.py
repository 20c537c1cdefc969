"""Which config keys Dheera AI reads, which LiteLLM keys it knows and leaves alone, and what it
says about the rest.

A LiteLLM config must start unchanged, so nothing here stops start-up: a key nobody reads is a
warning (with a did-you-mean for a typo), because a silently ignored `cache:` or `guardrails:`
makes a user believe a feature is on. When a part of the gateway starts reading a key, add it to
`READ` (or give its section's schema the field); when a LiteLLM key is knowingly left alone, add
it to `LITELLM_UNUSED` with what to do instead.
"""

from __future__ import annotations

import difflib

# Section -> keys read somewhere in the gateway besides the fields its schema declares
# (config.py's schemas are consulted too, so a declared field needs no line here).
READ: dict[str, tuple[str, ...]] = {
    "": ("model_list", "router_settings", "dheera_ai_settings", "litellm_settings", "general_settings",
         "environment_variables", "plugins", "guardrails", "callback_settings"),
    "general_settings": ("spend_spool_max_mb", "spend_flush_seconds", "local_state_dir",
                         "require_auth_for_metrics_endpoint"),
    "litellm_settings": ("drop_params", "require_auth_for_metrics_endpoint", "cache", "cache_params",
                         "callbacks", "success_callback", "failure_callback"),
    "router_settings": (),
}
READ["dheera_ai_settings"] = READ["litellm_settings"]

# Section -> LiteLLM keys Dheera AI accepts and does not use -> what to know (or "" for nothing).
LITELLM_UNUSED: dict[str, dict[str, str]] = {
    "": {
        "finetune_settings": "Dheera AI has no /fine_tuning endpoints",
        "files_settings": "/v1/files are kept under general_settings.files_dir",
        "credential_list": "give credentials in each deployment's params",
        "cache": "no cache is on: Dheera AI has no response cache configured from this section",
        "cache_params": "",
    },
    "general_settings": {
        "store_model_in_db": "models added with /model/new are always stored in the state store",
        "proxy_budget_rescheduler_min_time": "budgets are checked on every call",
        "proxy_budget_rescheduler_max_time": "budgets are checked on every call",
        "proxy_batch_write_at": "spend rows are written in batches off the hot path (spend_flush_seconds)",
        "database_connection_pool_limit": "",
        "database_connection_timeout": "",
        "alerting": "", "alerting_threshold": "", "alert_types": "",
        "disable_spend_logs": "", "disable_master_key_return": "", "ui_access_mode": "",
        "allowed_routes": "", "admin_only_routes": "", "enforce_user_param": "",
        "custom_auth": "write an auth plugin (dheera_ai_authenticate) instead",
        "background_health_checks": "", "health_check_interval": "",
        "enable_jwt_auth": "", "litellm_jwtauth": "", "max_parallel_requests": "",
        "global_max_parallel_requests": "", "infer_model_from_keys": "",
    },
    "litellm_settings": {
        "telemetry": "Dheera AI sends no telemetry",
        "set_verbose": "use `dheera_ai --detailed_debug`", "json_logs": "",
        "default_team_settings": "per-team callbacks are not supported",
        "service_callback": "",
        "max_budget": "", "budget_duration": "", "max_end_user_budget": "",
        "turn_off_message_logging": "", "redact_user_api_key_info": "",
        "modify_params": "", "ssl_verify": "", "default_internal_user_params": "",
        "enable_preview_features": "", "force_ipv4": "",
    },
    "router_settings": {
        "redis_host": "set general_settings.redis_url instead",
        "redis_port": "set general_settings.redis_url instead",
        "redis_password": "set general_settings.redis_url instead",
        "redis_url": "set general_settings.redis_url instead",
        "enable_pre_call_checks": "", "cache_responses": "",
        "provider_budget_config": "", "optional_pre_call_checks": "", "routing_strategy_args": "",
        "disable_cooldowns": "", "set_verbose": "", "debug_level": "", "polling_interval": "",
    },
}
LITELLM_UNUSED["dheera_ai_settings"] = LITELLM_UNUSED["litellm_settings"]


def key_warnings(raw: dict, declared: dict[str, tuple[str, ...]]) -> list[str]:
    """One warning per key no part of the gateway reads: top-level sections and the keys of the
    settings sections. `declared` is section -> the fields its schema knows."""
    out = []
    out += _section_warnings("", raw, declared)
    for section in ("general_settings", "litellm_settings", "dheera_ai_settings", "router_settings"):
        if isinstance(raw.get(section), dict):
            out += _section_warnings(section, raw[section], declared)
    return out


def is_read(section: str, key) -> bool:
    return key in READ.get(section, ())


def _section_warnings(section: str, data: dict, declared) -> list[str]:
    known = set(READ.get(section, ())) | set(declared.get(section, ()))
    unused = LITELLM_UNUSED.get(section, {})
    out = []
    for key in data:
        if key in known:
            continue
        where = f"{section}.{key}" if section else str(key)
        if key in unused:
            why = f" ({unused[key]})" if unused[key] else ""
            out.append(f"{where}: a LiteLLM setting Dheera AI does not use; ignored{why}")
            continue
        close = difflib.get_close_matches(str(key), sorted(known | set(unused)), n=1, cutoff=0.75)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        out.append(f"{where}: unknown key, ignored{hint}")
    return out
