"""Checks a weft guest module before componentize-py builds it, so that a
mistake is one sentence at build time rather than a backtrace from the
build or an error at the first connection, and prints the world to build
it for (`stateful-service`, or `datagram-service` for a module that calls
reactor.listenUDP). `_build.py` runs it, with a Python that has
componentize-py: _check.py BINDINGS SDK FOLDER MODULE."""

import importlib
import os
import sys
import traceback

bindings, sdk, folder, module = sys.argv[1:5]
sys.dont_write_bytecode = True
path = os.path.join(folder, module + ".py")


def fail(message):
    print(f"{path}: {message}", file=sys.stderr)
    sys.exit(1)


# A module on the build's path under a name the SDK's modules use would
# hide them (or be hidden): componentize-py serves the export from the
# SDK's `protocol`, and the guest's `from weft...` must reach the SDK.
taken = {"wit_world", "componentize_py_types", "componentize_py_runtime"}
taken |= {name.removesuffix(".py") for name in os.listdir(sdk) if not name.startswith((".", "_"))}
if module in taken:
    fail(
        f"a guest module may not be named `{module}`: that is the name of weft's own "
        f"`{module}` module, which it would hide; rename it"
    )
for name in sorted(taken):
    for clash in (name + ".py", name):
        if os.path.exists(os.path.join(folder, clash)) and clash != module + ".py":
            fail(
                f"`{clash}` beside it would hide weft's own `{name}` module (or be "
                f"hidden by it); rename it or build the guest from another folder"
            )

with open(path, "rb") as source:
    code = source.read()
try:
    compile(code, path, "exec")
except SyntaxError as error:
    print("".join(traceback.format_exception_only(type(error), error)), end="", file=sys.stderr)
    fail("the module is not valid Python (above)")

# The module runs at build time anyway (componentize-py imports it): run
# it here to see what it defines.
sys.path[:0] = [bindings, sdk, folder]
try:
    importlib.import_module(module)
except Exception:
    traceback.print_exc()
    fail("the module raised while it was imported (above)")

from weft import _served  # noqa: E402

datagram_protocols = [cls.__qualname__ for cls in _served._defined["datagram"]]
listened = _served._listened_udp
if listened or datagram_protocols:
    if _served._defined["factory"] or _served._defined["resource"]:
        fail(
            "it defines a DatagramProtocol and a Factory (or Resource): a weft guest "
            "serves datagrams or connections, not both; make them two guests"
        )
    if not listened:
        fail(
            f"it defines {', '.join(datagram_protocols)} but never calls "
            "reactor.listenUDP(port, protocol): weft serves the protocol passed to it"
        )
    if len(listened) > 1:
        fail(f"it calls reactor.listenUDP {len(listened)} times: weft serves one datagram protocol")
    print("datagram-service")
    sys.exit(0)

factories = [cls.__qualname__ for cls in _served._defined["factory"]]
resources = [cls.__qualname__ for cls in _served._defined["resource"]]
if not factories and not resources:
    fail(
        "it defines no Factory subclass (and no Resource subclass): weft serves the "
        "factory a guest module defines, the one a Twisted program passes to listen()"
    )
if len(factories) > 1:
    fail(f"it defines {len(factories)} Factory subclasses ({', '.join(factories)}): weft serves exactly one")
if not factories and len(resources) > 1:
    fail(f"it defines {len(resources)} Resource subclasses ({', '.join(resources)}) and no Factory: weft serves one")
print("stateful-service")
