"""conf/nginx.conf for real: nginx in front of two gateway instances, streaming through it."""

import os
import time

import openai
import pytest
import requests
import yaml

from tests.support.fake_upstream import chat_chunks
from tests.support.nginx import NGINX, Nginx
from tests.support.process import GatewayProcess

MASTER = "sk-nginx-master-key"
pytestmark = pytest.mark.skipif(NGINX is None and os.environ.get("CI") != "true",
                                reason="nginx is not installed (apt-get install nginx-light); CI installs it")


@pytest.fixture
def stack(tmp_path, upstream):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "model_list": [{"model_name": "gpt-4o-mini", "dheera_ai_params": {
            "model": "openai/gpt-4o-mini", "api_base": upstream.url + "/v1", "api_key": "sk-up"}}],
        "general_settings": {"master_key": MASTER, "max_request_size_mb": 1}}))
    instances = [GatewayProcess("--config", str(config), "--workers", "1", "--host", "127.0.0.1") for _ in range(2)]
    for instance in instances:
        instance.wait_ready()
    nginx = Nginx(tmp_path, [i.port for i in instances])
    yield nginx.url, instances
    nginx.close()
    for instance in instances:
        instance.close()


def test_a_stream_passes_through_nginx_chunk_by_chunk(stack, upstream):
    url, _ = stack
    upstream.stream(chat_chunks(words=["one", " two", " three", " four"]), event_delay=0.15)
    client = openai.OpenAI(base_url=url + "/v1", api_key=MASTER, max_retries=0, timeout=20)
    arrivals = []
    for chunk in client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                messages=[{"role": "user", "content": "count"}]):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append((chunk.choices[0].delta.content, time.perf_counter()))
    assert "".join(text for text, _ in arrivals) == "one two three four"
    gaps = [b[1] - a[1] for a, b in zip(arrivals, arrivals[1:], strict=False)]
    # Each chunk arrived about when the upstream sent it: nothing was held back and batched.
    assert all(gap > 0.08 for gap in gaps), gaps


def test_both_instances_serve(stack):
    url, instances = stack
    for _ in range(6):
        response = requests.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER}"},
                                 json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                                 timeout=10)
        assert response.status_code == 200
    deadline = time.time() + 5
    while time.time() < deadline and not all('"event":"call"' in i.output() for i in instances):
        time.sleep(0.05)
    assert all('"event":"call"' in i.output() for i in instances)


def test_nginx_own_errors_are_openai_json(stack):
    url, instances = stack
    too_big = requests.post(url + "/v1/chat/completions", data=b"x" * (33 * 1024 * 1024),
                            headers={"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"},
                            timeout=30)
    assert too_big.status_code == 413
    assert too_big.json()["error"]["type"] == "invalid_request_error"

    for instance in instances:
        instance.stop()
    down = requests.get(url + "/v1/models", headers={"Authorization": f"Bearer {MASTER}"}, timeout=10)
    assert down.status_code in (502, 503)
    assert down.json()["error"]["code"] == "gateway_unavailable"


def test_a_file_larger_than_a_request_may_be_goes_up_through_nginx(stack):
    """/v1/files takes up to max_file_size_mb (nginx: 201m there), other routes stay at 32m."""
    url, _ = stack
    content = b'{"custom_id": "x"}\n' * (40 * 1024 * 1024 // 19)
    auth = {"Authorization": f"Bearer {MASTER}"}
    uploaded = requests.post(url + "/v1/files", headers=auth, data={"purpose": "batch"},
                             files={"file": ("big.jsonl", content)}, timeout=60)
    assert uploaded.status_code == 200 and uploaded.json()["bytes"] == len(content), uploaded.text[:500]
    refused = requests.post(url + "/v1/chat/completions", headers={**auth, "Content-Type": "application/json"},
                            data=b'{"model": "gpt-4o-mini", "messages": [], "pad": "' + content + b'"}', timeout=60)
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "request_too_large"
