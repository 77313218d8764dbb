"""Puts weft's WIT into the package as it is built, from the checkout's
wit/ (its only source), so that the installed `weft-python` has it."""

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithWit(build_py):
    def run(self):
        # A build folder left by an earlier release may hold modules this
        # one no longer has.
        shutil.rmtree(os.path.join(self.build_lib, "weft"), ignore_errors=True)
        super().run()
        wit = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "wit")
        if not os.path.isdir(wit):
            raise SystemExit(f"weft's WIT is not at {wit}: install the SDK from a weft checkout")
        target = os.path.join(self.build_lib, "weft", "_wit")
        shutil.rmtree(target, ignore_errors=True)
        # The current version only: frozen ones are the host's concern.
        shutil.copytree(wit, target, ignore=shutil.ignore_patterns("v0.*"))


setup(cmdclass={"build_py": BuildWithWit})
