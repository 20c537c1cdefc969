"""The real `dheera_ai` command as a subprocess on a free port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

import requests

from tests.support.servers import free_port

COMMAND = os.path.join(os.path.dirname(sys.executable), "dheera_ai")


class GatewayProcess:
    def __init__(self, *args, env=None, port=None, cwd=None, preexec_fn=None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        self.started = time.perf_counter()
        self.process = subprocess.Popen([COMMAND, *args, "--port", str(self.port)], stdout=self.log,
                                        stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                        # A quick start keeps its state in the working directory.
                                        cwd=cwd or tempfile.mkdtemp(prefix="dheera_ai-run-"),
                                        preexec_fn=preexec_fn)

    def wait_ready(self, timeout=30.0) -> float:
        """Seconds from launch until the gateway answered its liveness probe."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dheera_ai exited with {self.process.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + "/health/liveliness", timeout=5).status_code == 200:
                    return time.perf_counter() - self.started
            except requests.RequestException:  # not listening yet, or a worker still booting (busy machine)
                pass
            time.sleep(0.05)
        self.stop()  # a caller whose fixture never reaches its teardown must not leave gunicorn running
        raise TimeoutError(f"dheera_ai did not answer within {timeout}s:\n{self.output()}")

    def workers(self) -> set[int]:
        """The pids of gunicorn's workers (the command execs gunicorn, so its pid is the master's)."""
        try:
            with open(f"/proc/{self.process.pid}/task/{self.process.pid}/children") as f:
                return {int(pid) for pid in f.read().split()}
        except FileNotFoundError:
            return set()

    def output(self) -> str:
        self.log.flush()
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self, timeout=30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def close(self):
        self.stop()
        self.log.close()
        os.unlink(self.log.name)
