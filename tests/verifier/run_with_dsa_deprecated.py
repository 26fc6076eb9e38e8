"""Run `dossier ARGS...` with cryptography's DSA names deprecated as cryptography 51 deprecates
them (each use warns), whatever cryptography is installed: the test that no command touches DSA
without a DSA key then fails on any version.

Only the module our code imports (`asymmetric.dsa`) warns: cryptography's own code, which
51 points at private aliases, keeps the module it imported."""

from __future__ import annotations

import runpy
import sys
import types
import warnings
from typing import Any

from cryptography import utils, x509  # noqa: F401  (their import-time uses of DSA names come first)
from cryptography.hazmat.primitives import asymmetric, serialization  # noqa: F401
from cryptography.hazmat.primitives.asymmetric import dsa

_NAMES = frozenset({"DSAPublicKey", "DSAPrivateKey", "DSAParameters", "DSAPublicNumbers", "DSAPrivateNumbers",
                    "DSAParameterNumbers", "generate_private_key", "generate_parameters"})


class _DeprecatedDSA(types.ModuleType):
    """`asymmetric.dsa` as our code sees it: each DSA name warns, as cryptography 51's do."""

    def __getattr__(self, name: str) -> Any:
        if name in _NAMES:
            warnings.warn("DSA is deprecated (as in cryptography 51)", utils.CryptographyDeprecationWarning,
                          stacklevel=2)
        return getattr(dsa, name)


if __name__ == "__main__":
    asymmetric.dsa = _DeprecatedDSA(dsa.__name__)  # what `from ...asymmetric import dsa` gets from now on
    sys.argv = ["dossier", *sys.argv[1:]]
    runpy.run_module("dossier_cli", run_name="__main__", alter_sys=True)
