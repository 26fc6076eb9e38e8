"""Run `dossier ARGS...` where each forked verifier worker dies at the K-th file it verifies:

    python3 run_with_dying_worker.py exit|kill K ARGS...

`exit`: the worker calls os._exit(3) (a crash); `kill`: it sends itself SIGKILL (the kernel's
OOM killer, an operator's kill -9). The main process verifies as usual, so a run that hands a
dead worker's files to it prints every file's verdict."""

from __future__ import annotations

import os
import runpy
import signal
import sys

from verifier import cli

if __name__ == "__main__":
    how, dies_at = sys.argv[1], int(sys.argv[2])
    main_pid = os.getpid()
    verify_one = cli._verify_one
    verified = 0  # by this worker (a forked copy of the main process's 0)

    def dying(path: str, stdin_bytes: bytes | None = None):
        global verified
        if os.getpid() != main_pid:
            verified += 1
            if verified == dies_at:
                if how == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                os._exit(3)
        return verify_one(path, stdin_bytes)

    cli._verify_one = dying  # `_verify_json` calls it too
    sys.argv = ["dossier", *sys.argv[3:]]
    runpy.run_module("dossier_cli", run_name="__main__", alter_sys=True)
