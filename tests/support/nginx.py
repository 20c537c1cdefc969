"""Real nginx running conf/nginx.conf as shipped, in front of two gateway instances on loopback."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import requests

from tests.support.servers import free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
CONF = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "conf", "nginx.conf")


def render(conf: str, tmp_path, ports, listen) -> str:
    """conf/nginx.conf with this test's ports and writable paths, otherwise as shipped."""
    conf = conf.replace("worker_processes auto;", "worker_processes 1;")
    if os.geteuid() == 0:
        # Run as root, nginx's workers would be `nobody`, who may not write bodies over 1 MB into
        # this test's (private) temporary directory.
        conf = "user root;\n" + conf
    conf = re.sub(r"pid [^;]+;", f"pid {tmp_path}/nginx.pid;", conf)
    conf = re.sub(r"error_log [^;]+;", f"error_log {tmp_path}/error.log warn;", conf)
    conf = re.sub(r"access_log [^;]+;", f"access_log {tmp_path}/access.log;", conf)
    conf = conf.replace("server 127.0.0.1:4000", f"server 127.0.0.1:{ports[0]}")
    conf = conf.replace("server 127.0.0.1:4001", f"server 127.0.0.1:{ports[1]}")
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{listen};")
    temp = "".join(f"    {name}_temp_path {tmp_path}/{name};\n"
                   for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return conf.replace("http {\n", "http {\n" + temp, 1)


class Nginx:
    """nginx in the foreground, its files in `tmp_path`, balancing over the instances on `ports`."""

    def __init__(self, tmp_path, ports):
        listen = free_port()
        with open(CONF, encoding="utf-8") as f:
            (tmp_path / "nginx.conf").write_text(render(f.read(), tmp_path, ports, listen))
        self.process = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                                         "-g", "daemon off;"], stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{listen}"
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                requests.get(self.url + "/health/liveliness", timeout=5)
                break
            except requests.RequestException:  # not listening yet, or not answering yet
                time.sleep(0.05)

    def close(self):
        self.process.terminate()
        self.process.wait(10)
