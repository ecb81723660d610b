"""Uploads and downloads: safe names, size limits, path traversal attempts, and what a client sees of server paths."""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import pytest
from PIL import Image

from hugginggpt.server.files import PublicView, Spaces, safe_filename
from serverkit import Served

CONV = "conv-" + "ab" * 12


@pytest.mark.parametrize(
    ("given", "safe"),
    [
        ("cat.png", "cat.png"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        (".bashrc", "bashrc"),
        ("..", "upload"),
        ("", "upload"),
        ("a b?<x>.png", "a-b-x-.png"),
        ("/abs/path/photo.JPG", "photo.JPG"),
        ("x" * 200 + ".png", "x" * 76 + ".png"),
    ],
)
def test_upload_names_are_reduced_to_a_safe_last_component(given, safe):
    assert safe_filename(given) == safe


def test_spaces_keep_every_file_inside_its_conversation(tmp_path):
    spaces = Spaces(tmp_path / "files")
    first = spaces.save_upload(CONV, "../../a.png", io.BytesIO(b"one"))
    second = spaces.save_upload(CONV, "a.png", io.BytesIO(b"two"))
    assert first == spaces.uploads(CONV) / "a.png" and second == spaces.uploads(CONV) / "a-2.png"
    assert spaces.locate(CONV, "uploads/a-2.png").read_bytes() == b"two"
    assert spaces.locate(CONV, "../../a.png") is None
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (spaces.uploads(CONV) / "link.txt").symlink_to(secret)
    assert spaces.locate(CONV, "uploads/link.txt") is None
    with pytest.raises(ValueError):
        spaces.folder("../conv")


def test_the_public_view_cuts_server_paths_even_when_split_across_deltas(tmp_path):
    folder = tmp_path / "files" / CONV
    view = PublicView(folder, {})
    text = f"See {folder}/outputs/r/0.png and {folder} itself."
    assert view.text(text) == "See outputs/r/0.png and . itself."
    for size in (1, 3, 7):
        streamed = "".join(view.feed(text[i : i + size]) for i in range(0, len(text), size)) + view.flush()
        assert streamed == view.text(text)


@pytest.fixture
def server(tmp_path):
    with Served(tmp_path, max_upload_bytes=2000) as live:
        yield live


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One server with an uploaded file, for the many read-only traversal attempts."""
    with Served(tmp_path_factory.mktemp("traversal")) as live:
        httpx.post(f"{live.url}/v1/files", files={"file": ("sun.png", _png(), "image/png")})
        yield live


def _png(size=(10, 10), color=(230, 200, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_upload_is_stored_in_its_conversation_and_served_back(server):
    data = _png()
    info = httpx.post(f"{server.url}/v1/files", files={"file": ("../../../sun.png", data, "image/png")}).json()
    assert info["object"] == "file" and info["bytes"] == len(data)
    assert info["filename"] == "sun.png" and info["name"] == "uploads/sun.png"
    assert not (server.settings.db.parent / "sun.png").exists()
    content = httpx.get(server.url + info["url"])
    assert content.content == data
    assert content.headers["content-type"] == "image/png"
    assert content.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in content.headers["content-security-policy"]
    listed = httpx.get(f"{server.url}/v1/files", params={"conversation_id": info["conversation_id"]}).json()
    assert [f["id"] for f in listed["data"]] == [info["id"]]


def test_an_uploaded_page_is_served_as_a_download_not_as_a_page(server):
    info = httpx.post(f"{server.url}/v1/files", files={"file": ("x.html", b"<script>alert(1)</script>", "text/html")})
    content = httpx.get(server.url + info.json()["url"])
    assert content.headers["content-type"] == "application/octet-stream"
    assert content.headers["content-disposition"].startswith("attachment")


def test_uploads_over_the_limit_are_refused(server):
    big = b"x" * 5000
    declared = httpx.post(f"{server.url}/v1/files", files={"file": ("big.bin", big)})
    assert declared.status_code == 413
    assert "upload limit of 2000 bytes" in declared.json()["error"]["message"]

    def chunks():
        boundary = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
        yield boundary
        for _ in range(200):
            yield b"y" * 1000
        yield b"\r\n--b--\r\n"

    chunked = httpx.post(
        f"{server.url}/v1/files", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert chunked.status_code == 413
    just_over = httpx.post(f"{server.url}/v1/files", files={"file": ("over.bin", b"z" * 2001)})
    assert just_over.status_code == 413
    assert httpx.post(f"{server.url}/v1/files", files={"file": ("ok.bin", b"z" * 2000)}).status_code == 200
    stored = sorted(p.name for p in Path(server.settings.db.parent).rglob("*.bin"))
    assert stored == ["ok.bin"]


def test_bad_uploads_get_clear_errors(server):
    assert httpx.post(f"{server.url}/v1/files", files={"file": ("e.png", b"")}).status_code == 400
    missing = httpx.post(f"{server.url}/v1/files", files={"other": ("e.png", b"x")})
    assert missing.status_code == 400 and "'file'" in missing.json()["error"]["message"]
    assert httpx.post(f"{server.url}/v1/files", json={"file": "x"}).status_code == 400


def test_an_inline_file_over_the_limit_is_refused(server):
    import base64

    url = "data:image/png;base64," + base64.b64encode(b"p" * 5000).decode()
    content = [{"type": "text", "text": "describe it"}, {"type": "image_url", "image_url": {"url": url}}]
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "hugginggpt", "messages": [{"role": "user", "content": content}]},
    )
    assert response.status_code == 413


def test_a_huge_json_body_is_refused_before_it_is_read(server):
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=b'{"model": "hugginggpt", "messages": [], "pad": "' + b"p" * 1_200_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    "path",
    [
        "/v1/files/../../server.db/content",
        "/v1/files/%2e%2e%2f%2e%2e%2fserver.db/content",
        "/v1/files/..%2F..%2Fserver.db/content",
        "/v1/files/%2e%2e/content",
        "/v1/files/..%5c..%5cserver.db/content",
        "/v1/files/file-%00/content",
        "/v1/files/uploads%2fsun.png/content",
        "/static/../server.db",
        "/static/%2e%2e/%2e%2e/server.db",
        "/static/..%2f..%2fapp.py",
        "/static/%2e%2e%2fapp.py",
    ],
)
def test_path_traversal_in_file_urls_finds_nothing(shared_server, path):
    server = shared_server
    with httpx.Client(base_url=server.url) as client:
        request = client.build_request("GET", "/")
        request.url = request.url.copy_with(raw_path=path.encode())
        response = client.send(request)
    assert response.status_code in (400, 404), (path, response.status_code)
    assert b"SQLite format" not in response.content
    assert b"create_app" not in response.content


def test_a_file_swapped_for_a_link_out_of_its_conversation_is_not_served(server, tmp_path):
    info = httpx.post(f"{server.url}/v1/files", files={"file": ("note.txt", b"hello", "text/plain")}).json()
    stored = next(Path(server.settings.db.parent).rglob("note.txt"))
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    os.remove(stored)
    stored.symlink_to(secret)
    response = httpx.get(server.url + info["url"])
    assert response.status_code == 404
    assert b"top secret" not in response.content
