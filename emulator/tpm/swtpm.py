"""A real software TPM (swtpm in socket mode, driven with tpm2-tools) behind one node.

The node's measured boot and IMA log are extended into it, and its quotes and certificate
signatures are the TPM's own: what proves that the built-in model's structures and PCR
arithmetic match a TPM's. A PCR cannot be un-extended, so when the device's state changes a
measurement already extended, the TPM is restarted (a reboot: PCRs back to zero) and the logs
extended again; the AK is persistent and survives.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["AK_HANDLE", "Swtpm", "SwtpmError", "swtpm_available"]

AK_HANDLE = "0x81010002"  # the AK's persistent handle (TCG's range for storage/attestation keys)
STARTUP_TIMEOUT_S = 10.0  # time for swtpm to create its socket
TOOL_TIMEOUT_S = 30.0
# One tpm2_pcrextend call per this many measurements: long logs stay within argv limits.
EXTENDS_PER_CALL = 256
TOOLS = ("swtpm", "tpm2_createek", "tpm2_createak", "tpm2_evictcontrol", "tpm2_flushcontext",
         "tpm2_pcrextend", "tpm2_quote", "tpm2_sign")


class SwtpmError(Exception):
    """swtpm or a tpm2-tools command failed; the message has the command and its error."""


def swtpm_available() -> bool:
    return all(shutil.which(tool) for tool in TOOLS)


class Swtpm:
    """One swtpm process with its state in `folder`; `start()` before use, `stop()` after."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.state = self.folder / "state"
        # A unix socket path is limited to ~108 bytes: it lives in a short temporary folder.
        self._run_dir = Path(tempfile.mkdtemp(prefix="swtpm-"))
        self.socket = self._run_dir / "tpm.sock"
        self._process: subprocess.Popen[bytes] | None = None
        self.log = self.folder / "swtpm.log"  # its stderr: a pipe nobody reads could fill and stall it
        self.extended: list[tuple[int, bytes]] = []  # measurements in the TPM since it started

    def start(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        for stale in (self.socket, Path(f"{self.socket}.ctrl")):
            stale.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(
                ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={self.state}",
                 "--server", f"type=unixio,path={self.socket}", "--ctrl", f"type=unixio,path={self.socket}.ctrl",
                 "--flags", "not-need-init,startup-clear"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not (self.socket.exists() and Path(f"{self.socket}.ctrl").exists()):
            if self._process.poll() is not None:
                error = self.log.read_text(errors="replace").strip()[-400:]
                raise SwtpmError(f"swtpm exited with {self._process.returncode}: {error}")
            if time.monotonic() > deadline:
                self.stop()
                raise SwtpmError(f"swtpm did not create {self.socket} within {STARTUP_TIMEOUT_S} s")
            time.sleep(0.01)
        self.extended = []

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._run_dir, ignore_errors=True)

    def _tool(self, *args: str, input_file: Path | None = None) -> bytes:
        env = dict(os.environ, TPM2TOOLS_TCTI=f"swtpm:path={self.socket}")
        result = subprocess.run(args, cwd=self.folder, env=env, capture_output=True, timeout=TOOL_TIMEOUT_S,
                                check=False)
        if result.returncode != 0:
            raise SwtpmError(f"{' '.join(args[:2])} failed ({result.returncode}): "
                             f"{result.stderr.decode(errors='replace').strip()[-400:]}")
        return result.stdout

    def ak_public(self) -> ec.EllipticCurvePublicKey:
        """The AK's public key, creating the AK under the EK and persisting it on first use."""
        pem = self.folder / "ak.pub.pem"
        if not pem.exists():
            self._tool("tpm2_createek", "-c", "ek.ctx", "-G", "ecc", "-u", "ek.pub")
            self._tool("tpm2_flushcontext", "-t")  # no resource manager: free the transient slots
            self._tool("tpm2_createak", "-C", "ek.ctx", "-c", "ak.ctx", "-G", "ecc", "-g", "sha256", "-s", "ecdsa",
                       "-u", "ak.pub.pem.tmp", "-f", "pem", "-n", "ak.name", "-r", "ak.priv")
            self._tool("tpm2_flushcontext", "-t")
            self._tool("tpm2_evictcontrol", "-C", "o", "-c", "ak.ctx", AK_HANDLE)
            self._tool("tpm2_flushcontext", "-t")
            os.replace(self.folder / "ak.pub.pem.tmp", pem)
        key = serialization.load_pem_public_key(pem.read_bytes())
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise SwtpmError(f"{pem}: expected the AK's EC public key")
        return key

    def measure(self, measurements: list[tuple[int, bytes]]) -> None:
        """Make the TPM's PCRs the result of `measurements` (pcr, SHA-256 digest), in order."""
        if measurements[: len(self.extended)] != self.extended:
            self.stop()
            self.start()
        pending = measurements[len(self.extended):]
        for start in range(0, len(pending), EXTENDS_PER_CALL):
            batch = pending[start:start + EXTENDS_PER_CALL]
            self._tool("tpm2_pcrextend", *(f"{pcr}:sha256={digest.hex()}" for pcr, digest in batch))
            self.extended.extend(batch)

    def quote(self, indexes: list[int], qualifying_data: bytes) -> tuple[bytes, bytes]:
        """(TPMS_ATTEST, TPMT_SIGNATURE) of TPM2_Quote by the AK, as `tpm2_quote -m/-s` write them."""
        args = ["tpm2_quote", "-c", AK_HANDLE, "-l", "sha256:" + ",".join(map(str, indexes)), "-g", "sha256",
                "-m", "quote.msg", "-s", "quote.sig"]
        if qualifying_data:
            args += ["-q", qualifying_data.hex()]
        self._tool(*args)
        return (self.folder / "quote.msg").read_bytes(), (self.folder / "quote.sig").read_bytes()

    def sign(self, data: bytes) -> bytes:
        """ECDSA-SHA256 signature (DER) by the AK over `data` (the TPM hashes it for a ticket)."""
        (self.folder / "sign.data").write_bytes(data)
        self._tool("tpm2_sign", "-c", AK_HANDLE, "-g", "sha256", "-f", "plain", "-o", "sign.der", "sign.data")
        return (self.folder / "sign.der").read_bytes()
