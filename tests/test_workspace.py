import hashlib
from http.server import BaseHTTPRequestHandler

import pytest

from helpers import http_server
from hugginggpt.errors import WorkspaceError
from hugginggpt.workspace import Workspace


@pytest.fixture
def roots(tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "photo.jpg").write_bytes(b"jpeg")
    (inputs / "sub").mkdir()
    (inputs / "sub" / "clip.wav").write_bytes(b"wav")
    (tmp_path / "secret.txt").write_text("secret")
    return inputs


def test_relative_and_absolute_paths_inside_a_root_resolve(tmp_path, roots):
    ws = Workspace(tmp_path / "out", [roots])
    assert ws.resolve_input("photo.jpg") == (roots / "photo.jpg").resolve()
    assert ws.resolve_input("'sub/clip.wav'") == (roots / "sub" / "clip.wav").resolve()
    assert ws.resolve_input(str(roots / "photo.jpg")) == (roots / "photo.jpg").resolve()


@pytest.mark.parametrize("name", ["../secret.txt", "sub/../../secret.txt", "/etc/passwd"])
def test_paths_outside_the_roots_are_rejected(tmp_path, roots, name):
    with pytest.raises(WorkspaceError, match="outside the allowed input folders"):
        Workspace(tmp_path / "out", [roots]).resolve_input(name)


def test_symlink_pointing_outside_is_rejected(tmp_path, roots):
    (roots / "link.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(WorkspaceError, match="outside"):
        Workspace(tmp_path / "out", [roots]).resolve_input("link.txt")


def test_missing_file_is_a_clear_error(tmp_path, roots):
    with pytest.raises(WorkspaceError, match="input file 'nope.png' not found"):
        Workspace(tmp_path / "out", [roots]).resolve_input("nope.png")


def test_no_roots_means_no_inputs(tmp_path):
    with pytest.raises(WorkspaceError, match="allows no input folders"):
        Workspace(tmp_path / "out").resolve_input("photo.jpg")


def test_outputs_get_unique_names_and_artifacts_record_hash(tmp_path):
    ws = Workspace(tmp_path / "out")
    a, b = ws.new_path(0, "object-detection", ".png"), ws.new_path(0, "object-detection", "png")
    assert a != b and a.parent == b.parent == ws.root and a.suffix == ".png"
    assert a.name.startswith("0-object-detection-")
    a.write_bytes(b"pixels")
    artifact = ws.put(a, "image")
    assert artifact.sha256 == hashlib.sha256(b"pixels").hexdigest()
    assert artifact.media_type == "image/png" and artifact.size == 6


class _Files(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/cat.png":
            body = b"\x89PNG fake"
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/big":
            self.send_response(200)
            self.send_header("content-type", "image/jpeg")
            self.end_headers()
            self.wfile.write(b"x" * 5000)
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("location", "/cat.png")
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()


@pytest.fixture
def file_server():
    with http_server(_Files) as url:
        yield url


async def test_fetch_downloads_into_the_workspace(tmp_path, file_server):
    ws = Workspace(tmp_path / "out", allow_private_urls=True)
    path = await ws.fetch(f"{file_server}/moved")
    assert path.read_bytes() == b"\x89PNG fake"
    assert path.is_relative_to(ws.root) and path.suffix == ".png"


async def test_fetch_refuses_private_addresses_by_default(tmp_path, file_server):
    with pytest.raises(WorkspaceError, match="private address"):
        await Workspace(tmp_path / "out").fetch(f"{file_server}/cat.png")


async def test_fetch_enforces_the_size_limit_and_reports_http_errors(tmp_path, file_server):
    ws = Workspace(tmp_path / "out", allow_private_urls=True, max_download_bytes=1000)
    with pytest.raises(WorkspaceError, match="over the 1000-byte limit"):
        await ws.fetch(f"{file_server}/big")
    with pytest.raises(WorkspaceError, match="HTTP 404"):
        await ws.fetch(f"{file_server}/missing.png")


async def test_fetch_refuses_other_schemes(tmp_path):
    with pytest.raises(WorkspaceError, match="only http"):
        await Workspace(tmp_path / "out").fetch("file:///etc/passwd")


def test_has_input_says_whether_a_name_is_a_file_in_the_input_folders(tmp_path):
    from hugginggpt.workspace import Workspace

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "sign.png").write_bytes(b"x")
    (tmp_path / "secret.png").write_bytes(b"x")
    workspace = Workspace(tmp_path / "out", [tmp_path / "in"])
    assert workspace.has_input("sign.png")
    assert not workspace.has_input("lighthouse.jpg") and not workspace.has_input("../secret.png")
