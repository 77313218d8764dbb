"""Build a Twisted program into a weft component, from any folder:
`weft-python app.py [OUT.wasm] [-- ARG...]` once the SDK is installed with
pip, or `cargo xtask python app.py`, which runs this file. The program is
run first, natively with weft's reactor (`_check.py`), with ARG... as its
command line; then componentize-py builds it, with Twisted's pure-Python
modules beside it, for the world it needs (`stateful-service`, or
`datagram-service` for a program that calls listenUDP). No bytecode is left
in the program's folder. Only the standard library is used here."""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

if __package__:
    from . import _immortal
else:  # run as a script, from its folder
    import _immortal

HERE = os.path.dirname(os.path.abspath(__file__))

# The Twisted weft's reactor is written against: another release fails the
# build, as its internals (ReactorBase, the endpoint parsers) may differ.
TWISTED = "26.10.0"

# The module componentize-py builds: it runs the program, then names the
# exports componentize-py looks for in it.
APP = """\
from weft import _program
_program.run({module!r}, {argv!r}, {preload!r})
from weft._served import DatagramHandler, Events, Producers, Subscriber
from weft import _immortal
_immortal.mark()
"""


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="weft-python",
        description="Build a weft guest module (Python) into a WebAssembly component.",
    )
    parser.add_argument("module", help="the Twisted program, such as echo.py")
    parser.add_argument("out", nargs="?", help="the component to write (default: MODULE.wasm beside it)")
    parser.add_argument(
        "--import",
        dest="preload",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module the program imports only once it serves (the component holds only "
        "what was imported when it was built)",
    )
    parser.add_argument("--wit", default=os.path.join(HERE, "_wit"), help=argparse.SUPPRESS)
    parser.add_argument("--bindings", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    program_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    try:
        out = build(args.module, args.out, args.wit, args.bindings, program_args, args.preload)
    except BuildError as error:
        print(f"weft-python: {error}", file=sys.stderr)
        return 1
    print(f"built {out}")
    return 0


class BuildError(Exception):
    """The build failed; the message says why (or the check said it above)."""


def build(module_path, out, wit, bindings=None, program_args=(), preload=()):
    """Check, then componentize `module_path` into `out`, run with
    `program_args` as its command line; returns `out`."""
    if not module_path.endswith(".py") or not os.path.isfile(module_path):
        raise BuildError(f"{module_path}: expected a Python module, such as myecho.py")
    if not os.path.isdir(wit):
        raise BuildError(f"weft's WIT is not at {wit}")
    folder = os.path.dirname(os.path.abspath(module_path))
    module = os.path.basename(module_path)[: -len(".py")]
    out = out or os.path.join(folder, module + ".wasm")
    componentize_py = _componentize_py()
    with tempfile.TemporaryDirectory(prefix="weft-python-") as scratch:
        # The SDK alone on the guest's path: in an installed SDK, its
        # folder is site-packages, which holds much more.
        sdk = os.path.join(scratch, "sdk")
        os.makedirs(sdk)
        shutil.copytree(HERE, os.path.join(sdk, "weft"), ignore=shutil.ignore_patterns("_wit", "__pycache__"))
        shutil.copy(os.path.join(os.path.dirname(HERE), "protocol.py"), sdk)
        _bundle_twisted(sdk)
        with open(os.path.join(sdk, "_weft_app.py"), "w") as app:
            app.write(APP.format(module=module, argv=list(program_args), preload=list(preload)))
        if bindings is None:
            bindings = os.path.join(scratch, "bindings")
        if not os.path.isdir(bindings):
            _run([componentize_py, "-d", wit, "-w", "stateful-service", "bindings", bindings])
        world = _check(bindings, sdk, folder, module, program_args)
        bytecode = os.path.join(folder, "__pycache__")
        before = _listing(bytecode)
        try:
            _run(
                [componentize_py, "-d", wit, "-w", world, "componentize", "-p", sdk, "-p", folder, "_weft_app", "-o", out],
                # Its failures are the guest's, not componentize-py's own: no Rust backtrace.
                RUST_BACKTRACE="0",
            )
        finally:
            _remove_new(bytecode, before)
    # The snapshot's objects, listed as its last step, made immortal.
    _immortal.patch(out)
    return out


def _componentize_py():
    beside = os.path.join(os.path.dirname(sys.executable), "componentize-py")
    found = beside if os.path.exists(beside) else shutil.which("componentize-py")
    if found is None:
        raise BuildError("componentize-py is not installed: pip install componentize-py==0.25.1")
    return found


def _bundle_twisted(into):
    """Copy the pure-Python modules of this Python's Twisted and of what it
    requires into `into`, leaving out tests and native extensions
    (zope.interface runs on its pure-Python fallback)."""
    from importlib import metadata

    try:
        version = metadata.version("twisted")
    except metadata.PackageNotFoundError:
        raise BuildError(f"Twisted is not installed beside weft-python: pip install twisted=={TWISTED}") from None
    if version != TWISTED:
        raise BuildError(
            f"weft's reactor is written for Twisted {TWISTED}, and this Python has Twisted "
            f"{version}: pip install twisted=={TWISTED}"
        )
    seen, todo = set(), ["twisted"]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for requirement in dist.requires or ():
            if "extra ==" not in requirement:
                todo.append(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))
        for file in dist.files or ():
            parts = file.parts
            if file.suffix != ".py" or parts[0].endswith(".dist-info") or {"test", "tests"} & set(parts[:-1]):
                continue
            target = os.path.join(into, *parts)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(dist.locate_file(file), target)


def _check(bindings, sdk, folder, module, program_args):
    """Run `_check.py`: it says what is wrong itself, or prints the world."""
    checked = subprocess.run(
        [sys.executable, os.path.join(HERE, "_check.py"), bindings, sdk, folder, module, *program_args],
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
    )
    # What the module prints as it is imported comes first; the world last.
    lines = checked.stdout.decode(errors="replace").splitlines()
    if checked.returncode != 0 or not lines or lines[-1] not in ("stateful-service", "datagram-service"):
        raise BuildError(f"{module}.py was not built")
    return lines[-1]


def _run(command, **env):
    try:
        ran = subprocess.run(command, env=dict(os.environ, **env))
    except OSError as error:
        raise BuildError(f"cannot run {command[0]}: {error}") from None
    if ran.returncode != 0:
        raise BuildError(f"{os.path.basename(command[0])} {command[1:]} failed: exit status {ran.returncode}")


def _listing(folder):
    return set(os.listdir(folder)) if os.path.isdir(folder) else None


def _remove_new(folder, before):
    """Remove what was added to `folder` since `before` was listed: all of
    it, with the folder, if it did not exist then."""
    if before is None:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for name in _listing(folder) or ():
        if name not in before:
            os.remove(os.path.join(folder, name))


if __name__ == "__main__":
    sys.exit(main())
