"""Helpers shared by the HTTP API tests."""


def H(key: str) -> dict[str, str]:
    """Authorization header for an API key."""
    return {"Authorization": f"Bearer {key}"}


def _problem(r, status: int) -> dict:
    """Assert an RFC 7807 problem+json response with ``status``; return its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"] and "type" in body
    return body
