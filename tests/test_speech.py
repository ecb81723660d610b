"""Speech round trip: the TTS expert speaks a sentence, the ASR expert transcribes it back."""

from __future__ import annotations

import re
import wave
from pathlib import Path

import pytest

from hugginggpt.config import Settings
from hugginggpt.errors import ExpertError
from hugginggpt.experts.embedded import embedded_experts
from hugginggpt.experts.protocol import ExpertContext
from hugginggpt.workspace import Workspace, sha256_of

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


@pytest.fixture(scope="module")
def experts():
    return {e.card.task: e for e in embedded_experts(Settings())}


@pytest.fixture
def workspace(tmp_path):
    return Workspace(tmp_path / "out", [tmp_path])


def _words(value):
    return re.findall(r"[a-z0-9]+", value.lower())


@pytest.mark.integration
async def test_a_sentence_spoken_by_tts_is_transcribed_back_by_asr(experts, workspace):
    spoken = await experts["text-to-speech"].run(
        {"text": SENTENCE}, ExpertContext(workspace=workspace, task_id=0, task="text-to-speech")
    )
    audio = spoken["audio"]
    assert audio.media_type == "audio/wav" and audio.modality == "audio"
    assert audio.sha256 == sha256_of(Path(audio.path))
    with wave.open(audio.path, "rb") as handle:
        assert handle.getframerate() == spoken["json"]["sample_rate"] == 22050
        assert handle.getnchannels() == 1
        seconds = handle.getnframes() / handle.getframerate()
    assert 2.0 < seconds < 8.0
    assert spoken["json"]["seconds"] == pytest.approx(seconds, abs=0.01)

    heard = await experts["automatic-speech-recognition"].run(
        {"audio": audio.path}, ExpertContext(workspace=workspace, task_id=1, task="automatic-speech-recognition")
    )
    assert _words(heard["text"]) == _words(SENTENCE)
    assert heard["json"]["language"] == "en"
    segments = heard["json"]["segments"]
    assert segments and segments[-1]["end"] <= heard["json"]["duration"] + 0.5


@pytest.mark.integration
async def test_tts_needs_words_to_say(experts, workspace):
    with pytest.raises(ExpertError, match="needs some text"):
        await experts["text-to-speech"].run(
            {"text": " ... "}, ExpertContext(workspace=workspace, task_id=0, task="text-to-speech")
        )


@pytest.mark.integration
async def test_asr_says_when_the_file_is_not_audio(experts, workspace, tmp_path):
    bogus = tmp_path / "voice.wav"
    bogus.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(ExpertError, match=r"cannot transcribe voice\.wav"):
        await experts["automatic-speech-recognition"].run(
            {"audio": str(bogus)}, ExpertContext(workspace=workspace, task_id=0, task="automatic-speech-recognition")
        )
