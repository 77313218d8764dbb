"""Runs a Twisted program as componentize-py builds it: weft's reactor is
installed first, the program runs as `__main__` with the arguments given at
build time, its `listen...` calls are recorded, and `reactor.run()`
returns at once. What the program imported is what the component holds."""

import importlib
import importlib.util
import os
import sys
import types

from weft import _sandbox

# Modules a program (or Twisted itself) may reach for only once it serves:
# a module first imported at run time is not in the component.
PRELOADED = (
    "twisted.internet.defer",
    "twisted.internet.endpoints",
    "twisted.internet.error",
    "twisted.internet.protocol",
    "twisted.internet.task",
    "twisted.logger",
    "twisted.protocols.basic",
    "twisted.protocols.policies",
    "twisted.python.failure",
)
# weft's own modules where the world has their imports (a datagram
# guest's has no messaging).
PRELOADED_IF_GRANTED = ("weft.config", "weft.keyvalue", "weft.messaging")


# Before Twisted is first imported.
_sandbox.fit()

from weft import _aliases, _reactor  # noqa: E402


class BuildError(Exception):
    """The program cannot be served; the message says why."""


def run(module_name, argv, preload=()):
    """Install the reactor, then run the program `module_name` (found on
    the path) as `__main__` with `argv`; returns the program's module."""
    reactor = _reactor.install()
    _aliases.install()
    from weft import log

    log.begin_twisted_logging()
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        raise BuildError(f"{module_name}.py is not on the build's path")
    source = spec.loader.get_source(module_name)
    program = types.ModuleType("__main__")
    program.__file__ = spec.origin
    program.__builtins__ = __builtins__
    sys.modules["__main__"] = program
    # The build's command line while the program runs (componentize-py's
    # runtime needs its own back afterwards).
    runtime_argv, sys.argv = sys.argv, [os.path.basename(spec.origin), *argv]
    try:
        exec(compile(source, spec.origin, "exec"), program.__dict__)
    finally:
        sys.argv = runtime_argv
    for name in (*PRELOADED, *preload):
        importlib.import_module(name)
    for name in PRELOADED_IF_GRANTED:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    if not reactor.listens:
        _listen_defined(reactor, program)
    _check_listens(reactor)
    return program


def _listen_defined(reactor, program):
    """A guest written for weft's own look-alike API defines its factory
    (or resource, or datagram protocol) without listening: serve the one
    it defines."""
    from twisted.internet.protocol import DatagramProtocol, Factory
    from twisted.web.resource import Resource

    def defined(base):
        return [
            value
            for value in vars(program).values()
            if isinstance(value, type) and issubclass(value, base) and value.__module__ == "__main__"
        ]

    factories, resources = defined(Factory), defined(Resource)
    if len(factories) == 1:
        reactor.listen_defined(factories[0])
    elif not factories and len(resources) == 1:
        from twisted.web.server import Site

        resource = resources[0]
        reactor.listen_defined(lambda: Site(resource()))
    elif not factories and not resources and defined(DatagramProtocol):
        raise BuildError(
            "it defines a DatagramProtocol but never calls reactor.listenUDP(port, protocol): "
            "weft serves the protocol passed to it"
        )
    else:
        raise BuildError(
            "it never listens: weft serves the factory a program passes to reactor.listenTCP "
            "(or endpoints.serverFromString(reactor, ...).listen), or the one Factory "
            f"(or Resource) subclass it defines; it defines {len(factories)} factories "
            f"and {len(resources)} resources"
        )


def _check_listens(reactor):
    kinds = [listen.kind for listen in reactor.listens]
    if "udp" in kinds and len(set(kinds)) > 1:
        raise BuildError(
            "it listens for datagrams and connections: a weft guest serves one or the other; "
            "make them two programs"
        )
    if kinds.count("udp") > 1:
        raise BuildError(f"it calls reactor.listenUDP {kinds.count('udp')} times: weft serves one datagram protocol")


def world():
    """The WIT world the program needs."""
    udp = any(listen.kind == "udp" for listen in _reactor.reactor().listens)
    return "datagram-service" if udp else "stateful-service"
