"""Plugins: the built-in ones come through the entry-point group, and so does a third party's."""

import configparser
import json
import textwrap

import pytest

import plugins
from dheera_ai.config import ConfigError
from dheera_ai.engine import Engine
from dheera_ai.plugin_manager import get_plugin_manager
from tests.conftest import MASTER_KEY
from tests.support.plugin_dist import install_plugin, run_with


def test_the_builtin_plugins_are_exactly_the_entry_points_setup_cfg_declares():
    parser = configparser.ConfigParser()
    parser.read("setup.cfg")
    declared = [line.split("=", 1)[1].strip()
                for line in parser["options.entry_points"]["dheera_ai"].strip().splitlines()]
    assert sorted(declared) == sorted(plugins.BUILTIN)


def test_the_installed_entry_points_load_every_builtin_plugin():
    pm = get_plugin_manager(load_entrypoints=True)
    names = {name for name, _ in pm.list_name_plugin()}
    assert {"auth", "enrichment", "call_log", "openai", "mock"} <= names


def test_a_misspelled_hook_fails_at_start_up():
    from pluggy import PluginValidationError

    from dheera_ai import hookimpl

    class Typo:
        @hookimpl
        def dheera_ai_pre_cal(self, call):
            pass

    with pytest.raises(PluginValidationError):
        get_plugin_manager(load_entrypoints=False, plugins=[Typo()])


def test_a_plugin_named_in_the_config_is_loaded(make_app, base_config, auth, tmp_path, monkeypatch, upstream):
    (tmp_path / "shout_plugin.py").write_text(textwrap.dedent("""
        from dheera_ai import hookimpl

        @hookimpl
        def dheera_ai_pre_call(call):
            call.body["messages"][-1]["content"] = call.body["messages"][-1]["content"].upper()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    base_config["plugins"] = ["shout_plugin"]
    client = make_app(base_config).test_client()
    response = client.post("/v1/chat/completions", headers=auth,
                           json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "quiet please"}]})
    assert response.status_code == 200
    assert upstream.last.json["messages"][-1]["content"] == "QUIET PLEASE"


def test_a_plugin_the_config_names_but_cannot_be_imported_stops_start_up():
    with pytest.raises(ConfigError, match="plugins: cannot import no_such_plugin_module"):
        Engine.from_raw_config({"plugins": ["no_such_plugin_module"]}, load_entrypoints=False)


def test_a_failing_post_call_plugin_neither_fails_the_call_nor_silences_the_others(make_app, base_config, auth,
                                                                                      call_log, caplog):
    from dheera_ai import hookimpl

    class Broken:
        @hookimpl(tryfirst=True)
        def dheera_ai_post_call_success(self, call, outcome):
            raise RuntimeError("logging backend down, key sk-live-0123456789abcdef")

    client = make_app(base_config, [Broken()]).test_client()
    response = client.post("/v1/chat/completions", headers=auth,
                           json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200
    assert call_log()[-1]["status"] == 200
    # Diagnosable from the message alone (whatever formats it), and redacted.
    [message] = [r.getMessage() for r in caplog.records if "raised in dheera_ai_post_call_success" in r.getMessage()]
    assert "RuntimeError: logging backend down" in message
    assert "Traceback" in message and "in dheera_ai_post_call_success" in message
    assert "0123456789abcdef" not in message and "sk-live****" in message


def test_a_third_party_distribution_is_live_once_installed(tmp_path):
    """`pip install` a plugin package with an entry point, and the gateway runs its hook."""
    site = install_plugin(tmp_path, "dheera-ai-sample-plugin", "dheera_ai_sample_plugin", """
        from dheera_ai import hookimpl
        from dheera_ai.types import Reply

        @hookimpl(tryfirst=True)
        def dheera_ai_dispatch(call, deployment):
            if call.body["messages"][-1]["content"] == "who answers?":
                return Reply(data={"answered_by": "the sample plugin", "deployment": deployment.model_name})
    """)
    answer = run_with(site, tmp_path, f"""
        import json
        from proxy_app import create_app
        app = create_app({{"model_list": [{{"model_name": "demo", "dheera_ai_params": {{"model": "mock/demo"}}}}],
                           "general_settings": {{"master_key": "{MASTER_KEY}"}}}})
        body = {{"model": "demo", "messages": [{{"role": "user", "content": "who answers?"}}]}}
        r = app.test_client().post("/v1/chat/completions", headers={{"Authorization": "Bearer {MASTER_KEY}"}},
                                   json=body)
        print(json.dumps(r.get_json()))
    """)
    assert json.loads(answer) == {"answered_by": "the sample plugin", "deployment": "demo"}
