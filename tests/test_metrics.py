"""/metrics: Prometheus counts of calls, tokens and latency, across all gunicorn workers."""

import re
import time

import pytest
import requests
import yaml

from tests.conftest import MASTER_KEY
from tests.support.process import GatewayProcess


def sample(text: str, name: str, **labels) -> float:
    """The value of one sample in a Prometheus exposition (0 if absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def chat(client, auth, model="demo"):
    return client.post("/v1/chat/completions", headers=auth,
                       json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def test_calls_tokens_and_latency_are_counted(client, auth, app):
    for _ in range(3):
        assert chat(client, auth).status_code == 200
    text = client.get("/metrics", headers=auth).get_data(as_text=True)

    deployment = app.extensions["dheera_ai"].router.groups["demo"].deployments[0].id
    assert sample(text, "dheera_ai_requests_total", model_group="demo", deployment=deployment, status="200") == 3
    assert sample(text, "dheera_ai_tokens_total", model_group="demo", kind="completion") > 0
    assert sample(text, "dheera_ai_request_latency_seconds_count", model_group="demo") == 3
    assert sample(text, "dheera_ai_in_flight_requests") == 0


def test_failures_are_counted_by_error_class_without_the_requested_name(client, auth):
    assert chat(client, auth, model="random-name-12345").status_code == 400
    text = client.get("/metrics", headers=auth).get_data(as_text=True)
    assert sample(text, "dheera_ai_request_errors_total", model_group="unknown", error_type="BadRequestError") == 1
    assert "random-name-12345" not in text
    assert sample(text, "dheera_ai_in_flight_requests") == 0


def test_metrics_need_the_master_key_unless_configured_public(client, make_app, base_config):
    assert client.get("/metrics").status_code == 401
    base_config["general_settings"]["require_auth_for_metrics_endpoint"] = False
    assert make_app(base_config).test_client().get("/metrics").status_code == 200


def test_every_worker_is_counted(tmp_path):
    config = tmp_path / "config.yaml"
    demo = {"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"},
            "model_info": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}
    config.write_text(yaml.safe_dump({"model_list": [demo], "general_settings": {"master_key": MASTER_KEY}}))
    samples = tmp_path / "prometheus"
    gateway = GatewayProcess("--config", str(config), "--workers", "2", "--host", "127.0.0.1",
                             env={"PROMETHEUS_MULTIPROC_DIR": str(samples)})
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "Connection": "close"}
    try:
        gateway.wait_ready()
        sent, spent = 0, 0.0
        # Fresh connections until both workers have written samples (bounded): a worker writes
        # what it counted within a second (metrics.FLUSH_SECONDS).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len({p.name.split("_")[-1] for p in samples.glob("counter_*.db")}) < 2:
            response = requests.post(gateway.url + "/v1/chat/completions", headers=headers, timeout=10,
                                     json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
            assert response.status_code == 200
            sent += 1
            spent += float(response.headers["x-dheera-ai-response-cost"])
        assert len(list(samples.glob("counter_*.db"))) == 2, "the calls never reached the second worker"
        text = ""
        for _ in range(30):  # the other worker's last second of counts arrives within a second
            text = requests.get(gateway.url + "/metrics", headers=headers, timeout=10).text
            if sample(text, "dheera_ai_requests_total", model_group="demo", status="200") == sent:
                break
            time.sleep(0.1)
        assert sample(text, "dheera_ai_requests_total", model_group="demo", status="200") == sent
        assert sample(text, "dheera_ai_spend_usd_total", model_group="demo") == pytest.approx(spent)
    finally:
        gateway.close()


def test_cooldowns_and_spool_depth_are_read_when_scraped(make_app, upstream, tmp_path, monkeypatch, auth,
                                                         store_refuses_spend):
    monkeypatch.chdir(tmp_path)  # a dict config keeps its state (cooldowns, spool) in the working directory
    upstream.always("/a/", status=500)
    config = {"model_list": [
        {"model_name": "pair", "model_info": {"id": name},
         "dheera_ai_params": {"model": "openai/m", "api_base": f"{upstream.url}/{name}/v1", "api_key": "sk-x"}}
        for name in ("a", "b")],
        "router_settings": {"allowed_fails": 1, "cooldown_time": 30},
        "general_settings": {"master_key": MASTER_KEY}}
    app = make_app(config)
    client = app.test_client()
    text = client.get("/metrics", headers=auth).get_data(as_text=True)
    assert sample(text, "dheera_ai_deployments_cooling_down", model_group="pair") == 0
    assert sample(text, "dheera_ai_spool_pending_bytes") == 0
    store_refuses_spend(app)  # the calls' spend rows wait in the spool
    while upstream.count("/a/") < 1:
        chat(client, auth, model="pair")
    text = client.get("/metrics", headers=auth).get_data(as_text=True)
    assert sample(text, "dheera_ai_deployments_cooling_down", model_group="pair") == 1
    assert sample(text, "dheera_ai_spool_pending_bytes") > 0  # the calls' spend rows


def priced_app(make_app, base_config, **general):
    from tests.test_spend import PRICES

    base_config["model_list"][0]["model_info"] = dict(PRICES)
    base_config["general_settings"].update(general)
    return make_app(base_config)


def test_spend_is_counted_by_model_group_as_it_was_priced(make_app, base_config, auth):
    from tests.test_spend import PLAIN_COST

    client = priced_app(make_app, base_config).test_client()
    costs = [float(chat(client, auth, model="gpt-4o-mini").headers["x-dheera-ai-response-cost"]) for _ in range(3)]
    assert chat(client, auth).status_code == 200  # the mock model has no price: no spend
    text = client.get("/metrics", headers=auth).get_data(as_text=True)
    assert sample(text, "dheera_ai_spend_usd_total", model_group="gpt-4o-mini") == pytest.approx(sum(costs))
    assert sum(costs) == pytest.approx(3 * PLAIN_COST)
    assert sample(text, "dheera_ai_spend_usd_total", model_group="demo") == 0
    assert sample(text, "dheera_ai_spend_rows_dropped_total") == 0


def test_spend_rows_the_full_spool_dropped_are_counted(make_app, base_config, auth):
    client = priced_app(make_app, base_config, spend_spool_max_mb=0.0001).test_client()  # ~100 bytes: no row fits
    assert all(chat(client, auth, model="gpt-4o-mini").status_code == 200 for _ in range(2))
    text = client.get("/metrics", headers=auth).get_data(as_text=True)
    assert sample(text, "dheera_ai_spend_rows_dropped_total", model_group="gpt-4o-mini") == 2
    assert sample(text, "dheera_ai_spend_usd_total", model_group="gpt-4o-mini") > 0  # priced all the same


def test_a_clean_stop_leaves_no_samples_directory_and_a_configured_one_is_kept(tmp_path):
    config = tmp_path / "config.yaml"
    demo = {"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}
    config.write_text(yaml.safe_dump({"model_list": [demo], "general_settings": {"master_key": MASTER_KEY}}))
    temp = tmp_path / "tmp"
    temp.mkdir()
    configured = tmp_path / "prometheus"
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    for env in ({"TMPDIR": str(temp)}, {"TMPDIR": str(temp), "PROMETHEUS_MULTIPROC_DIR": str(configured)}):
        gateway = GatewayProcess("--config", str(config), "--workers", "2", env=env)
        try:
            gateway.wait_ready()
            made = list(temp.glob("dheera-ai-metrics-*"))
            assert len(made) == (0 if "PROMETHEUS_MULTIPROC_DIR" in env else 1)
            response = requests.post(gateway.url + "/v1/chat/completions", headers=headers, timeout=10,
                                     json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
            assert response.status_code == 200
            assert gateway.stop() == 0
        finally:
            gateway.close()
        assert list(temp.glob("dheera-ai-metrics-*")) == []
    assert list(configured.glob("counter_*.db"))  # the configured directory and its samples stay


def test_counts_written_in_batches_read_as_counted_one_by_one():
    """A call adds to pending counts that a flush writes; the exposition is what writing each
    observation and increment at once gives, bucket bounds included (a value on a bound is in it)."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from proxy_app.metrics import LATENCY_BUCKETS, Metrics

    metrics = Metrics()
    reference = CollectorRegistry()
    latency = Histogram("dheera_ai_request_latency_seconds", "Whole call, as the client saw it", ["model_group"],
                        buckets=LATENCY_BUCKETS, registry=reference)
    tokens = Counter("dheera_ai_tokens", "Tokens the upstream reported", ["model_group", "kind"], registry=reference)
    values = [0.0, 0.005, 0.0051, 0.3, 1, 1, 299.9, 300, 301, 1e9]
    with metrics._lock:
        for value in values:
            metrics._observe(metrics.latency, ("g",), value)
            metrics._count(metrics.tokens, ("g", "prompt"), 7)
    for value in values:
        latency.labels("g").observe(value)
        tokens.labels("g", "prompt").inc(7)
    metrics.flush()

    def lines(registry, prefix):
        return [line for line in generate_latest(registry).decode().splitlines()
                if line.startswith(prefix) and "_created" not in line]
    for prefix in ("dheera_ai_request_latency_seconds", "dheera_ai_tokens"):
        assert lines(metrics.registry, prefix) == lines(reference, prefix)
    assert lines(metrics.registry, "dheera_ai_request_latency_seconds_count") == [
        'dheera_ai_request_latency_seconds_count{model_group="g"} 10.0']


def test_a_stopping_worker_writes_its_last_counts(tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    config = tmp_path / "config.yaml"
    demo = {"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}
    config.write_text(yaml.safe_dump({"model_list": [demo], "general_settings": {"master_key": MASTER_KEY}}))
    samples = tmp_path / "prometheus"
    gateway = GatewayProcess("--config", str(config), "--workers", "1",
                             env={"PROMETHEUS_MULTIPROC_DIR": str(samples)})
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    try:
        gateway.wait_ready()
        for _ in range(5):
            response = requests.post(gateway.url + "/v1/chat/completions", headers=headers, timeout=10,
                                     json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
            assert response.status_code == 200
        assert gateway.stop() == 0  # at once: within the second a worker may keep counts unwritten
    finally:
        gateway.close()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(samples))
    assert sample(generate_latest(registry).decode(), "dheera_ai_requests_total", model_group="demo") == 5
