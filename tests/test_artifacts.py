"""The local artifact store: references are plain data; files in the request's folders are referenced in place,
others copied in; only the request's files can be opened; an input read by several tasks is hashed once."""

import hashlib
import pickle

import pytest

from hugginggpt.artifacts import ArtifactStore, LocalArtifacts, suffix_for
from hugginggpt.errors import WorkspaceError
from hugginggpt.types import Artifact
from hugginggpt.workspace import Workspace


@pytest.fixture
def store(tmp_path):
    (tmp_path / "in").mkdir()
    return LocalArtifacts(tmp_path / "out" / "req", readable=[tmp_path / "in"])


def test_bytes_are_kept_in_the_folder_under_the_media_types_suffix(store):
    ref = store.put(b"RIFF....WAVE", "audio", "audio/wav")
    assert ref.modality == "audio" and ref.media_type == "audio/wav" and ref.size == 12
    assert ref.sha256 == hashlib.sha256(b"RIFF....WAVE").hexdigest()
    path = store.open(ref)
    assert path.parent == store.root and path.suffix == ".wav" and path.read_bytes() == b"RIFF....WAVE"


def test_an_output_and_an_input_are_referenced_where_they_lie(store, tmp_path):
    output = store.new_path(2, "object detection", ".png")
    output.write_bytes(b"png")
    photo = tmp_path / "in" / "photo.jpg"
    photo.write_bytes(b"jpeg")
    made, given = store.put(output, "image"), store.put(photo, "image")
    assert made.path == str(output) and output.name.startswith("2-object-detection-")
    assert given.path == str(photo) and given.media_type == "image/jpeg"
    assert store.open(made) == output and store.open(given) == photo


def test_a_file_from_elsewhere_is_copied_in(store, tmp_path):
    elsewhere = tmp_path / "scratch.png"
    elsewhere.write_bytes(b"png")
    ref = store.put(elsewhere, "image")
    assert ref.path != str(elsewhere) and store.open(ref).read_bytes() == b"png"
    assert store.open(ref).parent == store.root and store.open(ref).name.startswith("scratch-")


def test_only_the_requests_files_can_be_opened(store, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    forged = Artifact(path=str(tmp_path / "secret.txt"), media_type="text/plain", sha256="0" * 64, modality="text")
    with pytest.raises(WorkspaceError, match="not a file of this request"):
        store.open(forged)
    with pytest.raises(WorkspaceError, match="not a file of this request"):
        store.open(forged.model_copy(update={"path": str(store.root / ".." / ".." / "secret.txt")}))
    ref = store.put(b"x", "image", "image/png")
    store.open(ref).unlink()
    with pytest.raises(WorkspaceError, match="no longer there"):
        store.open(ref)


def test_an_input_several_tasks_read_is_hashed_once(store, tmp_path, monkeypatch):
    photo = tmp_path / "in" / "photo.png"
    photo.write_bytes(b"one")
    hashed = []
    monkeypatch.setattr("hugginggpt.artifacts.sha256_of", lambda path: hashed.append(path) or "0" * 64)
    assert store.put(photo, "image") == store.put(photo, "image")
    photo.write_bytes(b"other")  # a changed file is hashed again
    store.put(photo, "image")
    assert len(hashed) == 2


def test_references_are_plain_data(store):
    ref = store.put(b"png", "image", "image/png")
    assert Artifact.model_validate_json(ref.model_dump_json()) == ref == pickle.loads(pickle.dumps(ref))


def test_the_workspace_is_the_requests_local_store(tmp_path):
    workspace = Workspace(tmp_path / "out", [tmp_path])
    assert isinstance(workspace, ArtifactStore) and isinstance(workspace, LocalArtifacts)
    assert workspace.root == tmp_path / "out" / workspace.request_id
    ref = workspace.put(b"png", "image", "image/png")
    assert workspace.open(ref).parent == workspace.root


def test_suffixes_of_media_types():
    assert (suffix_for("image/jpeg"), suffix_for("audio/mpeg"), suffix_for("no/such")) == (".jpg", ".mp3", "")
