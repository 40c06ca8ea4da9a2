"""Path confusion: normalized paths route and are forwarded normalized; encoded slashes,
backslashes and case tricks never reach a route their raw form would not."""
import json

import pytest

from conftest import get


@pytest.mark.parametrize("raw_path,normalized", [
    ("/public/a/../b", "/public/b"),
    ("/public/./c", "/public/c"),
    ("/x/../public/d", "/public/d"),
    ("/public/%2e%2e/public/e", "/public/e"),
    ("/public/%2E/f", "/public/f"),
    ("/public//g", "/public/g"),
    ("//public/h", "/public/h"),
    ("/%70ublic/%69", "/public/i"),
    ("/public/%7Euser", "/public/~user"),
])
def test_normalized_form_routes_and_is_forwarded(env, raw_path, normalized):
    r = get(env.gw.http, raw_path)
    assert r.status == 200, r
    seen = json.loads(r.body)["path"]
    assert seen == normalized, f"{raw_path} reached the upstream as {seen}"


def test_exact_path_after_normalization(env):
    r = get(env.gw.http, "/public/../exact")
    assert r.status == 200, r
    assert json.loads(r.body)["path"] == "/exact"


def test_whitelisted_route_is_403_from_loopback(env):
    r = get(env.gw.http, "/admin/x")
    assert r.status == 403, r
    assert r.h("x-portier-error") == "forbidden"


def test_denylisted_route_is_403_from_loopback(env):
    r = get(env.gw.http, "/denied/x")
    assert r.status == 403, r


@pytest.mark.parametrize("raw_path", [
    "/public/..%2Fadmin",
    "/public/..%2fadmin/x",
    "/public/%2e%2e/admin",
    "/public/%2E%2E%2Fadmin",
    "/public\\..\\admin",
    "/public/..\\admin",
    "/PUBLIC/../admin",
    "/public/%2e%2e%2f%2e%2e/admin",
    "/public/..;/admin",
    "/public/%252e%252e/admin",
])
def test_encoded_traversal_never_reaches_protected_route(env, raw_path):
    before = env.adm.count()
    r = get(env.gw.http, raw_path)
    assert r is not None
    assert not (r.status == 200 and r.h("x-upstream") == "adm"), f"{raw_path} reached admin: {r}"
    assert env.adm.count() == before, f"{raw_path}: the admin upstream received {env.adm.paths()[before:]}"
