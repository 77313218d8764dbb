"""weft's Twisted look-alike of earlier releases (`weft.internet`,
`weft.protocols`, `weft.python`, `weft.web`) is retired: a guest that
imports those names gets Twisted's own modules, and the reactor."""

import importlib
import importlib.util
import sys

RETIRED = {
    "weft.internet": "twisted.internet",
    "weft.internet.address": "twisted.internet.address",
    "weft.internet.defer": "twisted.internet.defer",
    "weft.internet.endpoints": "twisted.internet.endpoints",
    "weft.internet.error": "twisted.internet.error",
    "weft.internet.interfaces": "twisted.internet.interfaces",
    "weft.internet.protocol": "twisted.internet.protocol",
    "weft.internet.task": "twisted.internet.task",
    "weft.protocols": "twisted.protocols",
    "weft.protocols.basic": "twisted.protocols.basic",
    "weft.protocols.policies": "twisted.protocols.policies",
    "weft.python": "twisted.python",
    "weft.python.failure": "twisted.python.failure",
    "weft.web": "twisted.web",
    "weft.web.http": "twisted.web.http",
    "weft.web.resource": "twisted.web.resource",
    "weft.web.server": "twisted.web.server",
}


class _Retired:
    """Finds a retired `weft.*` name and loads Twisted's module for it."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name not in RETIRED:
            return None
        return importlib.util.spec_from_loader(name, _Retired)

    @staticmethod
    def create_module(spec):
        module = importlib.import_module(RETIRED[spec.name])
        if spec.name == "weft.internet":
            # `from weft.internet import reactor`: the installed reactor.
            importlib.import_module("twisted.internet.reactor")
        return module

    @staticmethod
    def exec_module(module):
        pass


def install():
    sys.meta_path.insert(0, _Retired)
