"""Building the plugin manager: built-in defaults, entry points, and plugins named in the config."""

from __future__ import annotations

import importlib

import pluggy

from dheera_ai import hookspecs

PROJECT = "dheera_ai"
hookimpl = pluggy.HookimplMarker(PROJECT)


class DefaultDispatch:
    """The dispatch every gateway has: hand the call to the deployment's provider, bridging the
    Responses and Anthropic Messages APIs through chat completions where the provider lacks them."""

    def __init__(self):
        from dheera_ai.bridges import Bridges  # the translators are big: not imported with `hookimpl`

        self.bridges = Bridges()

    @hookimpl(trylast=True)
    def dheera_ai_dispatch(self, call, deployment, provider):
        return self.bridges.dispatch(call, deployment, provider)


def get_plugin_manager(load_entrypoints: bool = True, plugins=(), modules=()) -> pluggy.PluginManager:
    """A plugin manager with the hookspecs and the default dispatch registered.

    `load_entrypoints` loads every plugin of the `dheera_ai` entry-point group (the built-in ones
    are registered that way too); tests pass False and list what they want in `plugins`
    (objects or modules). `modules` are dotted module paths, as the config's `plugins:` names them.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(DefaultDispatch(), name="default-dispatch")
    if load_entrypoints:
        pm.load_setuptools_entrypoints(PROJECT)
    for plugin in plugins:
        if not pm.is_registered(plugin):
            pm.register(plugin)
    for path in modules:
        module = importlib.import_module(path)
        if not pm.is_registered(module):
            pm.register(module, name=path)
    # A misspelled hook name would otherwise be silently ignored.
    pm.check_pending()
    return pm
