"""Checks a weft guest module before componentize-py builds it, so that a
mistake is one sentence at build time rather than a backtrace from the
build or an error at the first connection, and prints the world to build
it for (`stateful-service`, or `datagram-service` for a module that calls
reactor.listenUDP). `_build.py` runs it, with a Python that has
componentize-py and Twisted: _check.py BINDINGS SDK FOLDER MODULE [ARG...]."""

import os
import sys
import traceback

bindings, sdk, folder, module = sys.argv[1:5]
argv = sys.argv[5:]
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

# The program runs at build time anyway (componentize-py runs it): run it
# here, natively and with weft's reactor, to see what it listens on.
sys.path[:0] = [bindings, sdk, folder]
from weft import _program  # noqa: E402

try:
    _program.run(module, argv)
except _program.BuildError as error:
    fail(str(error))
except SystemExit:
    fail("the program exited while it was run at build time")
except Exception:
    traceback.print_exc()
    fail("the program raised while it was run at build time (above)")
print(_program.world())
