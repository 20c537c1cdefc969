"""`/openapi.json`: the gateway's own OpenAPI document, and `/docs` served without the internet."""

import re

import pytest


@pytest.fixture
def document(client):
    answer = client.get("/openapi.json")
    assert answer.status_code == 200 and answer.content_type == "application/json"
    return answer.json


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-zA-Z_]+)>", r"{\1}", rule)


def test_every_route_of_the_app_is_in_the_document(app, document):
    assert document["openapi"].startswith("3.")
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("ui."):
            assert not any(path.startswith("/ui") for path in document["paths"])  # pages, not API
            continue
        if rule.endpoint == "azure.deployment_call":
            assert "/openai/deployments/{deployment}/chat/completions" in document["paths"]
            continue
        operations = document["paths"][_openapi_path(rule.rule)]
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in operations, f"{method} {rule.rule}"


def test_request_bodies_come_from_the_marshmallow_schemas(document):
    chat = document["paths"]["/v1/chat/completions"]["post"]
    ref = chat["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"model", "messages"}
    assert schema["properties"]["temperature"]["maximum"] == 2
    edit = document["paths"]["/v1/images/edits"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in edit
    generate = document["paths"]["/key/generate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "key_alias" in document["components"]["schemas"][generate["$ref"].rsplit("/", 1)[1]]["properties"]


def test_errors_are_described_with_openais_error_object(document):
    error = document["components"]["schemas"]["Error"]
    assert set(error["properties"]["error"]["properties"]) == {"message", "type", "param", "code"}
    answers = document["paths"]["/v1/embeddings"]["post"]["responses"]
    for status in ("400", "401", "403", "404", "429", "500"):
        assert answers[status]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error"


def test_operation_ids_are_unique(document):
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_docs_are_served_from_local_files_only(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.content_type.startswith("text/html")
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html  # nothing fetched from elsewhere
    assert "validatorUrl: null" in html  # Swagger UI would otherwise ask an online validator
    for asset in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert client.get(asset).status_code == 200, asset
    assert client.get("/docs/../setup.cfg").status_code == 404
    assert client.get("/docs/index.html").status_code == 404
