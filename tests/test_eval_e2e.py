"""The end-to-end evaluation: its checks on hand-made answers, the inputs it builds, the runner, the CLI command."""

from __future__ import annotations

import json
import re
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from helpers import ColourExpert, OpenAIServer, Reply, role_of, write_png
from hugginggpt.cli import app
from hugginggpt.config import Settings
from hugginggpt.errors import HuggingGPTError
from hugginggpt.eval import e2e_inputs
from hugginggpt.eval.e2e import (
    Case,
    CaseResult,
    check_artifacts,
    check_case,
    check_claims,
    check_files,
    check_forbidden,
    check_groups,
    check_selection_calls,
    check_unservable,
    contains,
    default_cases,
    direct_answer,
    file_names,
    format_case,
    format_report,
    load_results,
    normalise,
    produced_files,
    run_suite,
    score,
    select_cases,
    whisper_transcriber,
)
from hugginggpt.experts import ExpertRegistry
from hugginggpt.llm.scripted import ScriptedLLM
from hugginggpt.pipeline import HuggingGPT
from hugginggpt.setup.files import demo_inputs
from hugginggpt.types import Answer, Artifact, LLMCall, TaskResult
from parts import need


def need_espeak() -> None:
    need(shutil.which("espeak-ng") is not None, "this test needs Debian's espeak-ng (make test installs it)")


def need_demo_photos() -> None:
    missing = [n for n in e2e_inputs.DEMO_PHOTOS if not (demo_inputs() / n).is_file()]
    need(not missing, f"this test needs the demo photos {missing} (run `hugginggpt setup`)")


def answer(text: str, results: list[TaskResult] = (), usage: list[str] = ("planning", "response")) -> Answer:
    return Answer(
        request="r", text=text, results=list(results), llm_usage=[LLMCall(stage=s) for s in usage], llm_calls=2
    )


def produced(tmp_path: Path, name: str, modality: str, media_type: str, task: str = "text-to-speech") -> TaskResult:
    path = tmp_path / "out" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"data")
    artifact = Artifact(path=str(path), media_type=media_type, sha256="0" * 64, modality=modality, size=4)
    return TaskResult(task_id=0, task=task, status="ok", outputs={modality: artifact})


# --- the checks -------------------------------------------------------------------------------------------------


def test_normalise_writes_number_words_as_digits_and_drops_thousands_separators():
    assert normalise("Twenty-five degrees, one zebra and 1,234.50 EUR") == "25 degrees, 1 zebra and 1234.50 eur"
    assert normalise("It’s “sunny”") == 'it\'s "sunny"'


def test_contains_matches_numbers_by_value_words_whole_plurals_and_stems():
    assert contains("The total due is EUR 216.48.", "216.48")
    assert contains("You paid 12.7 in total", "12.70")
    assert not contains("You paid 112.70 in total", "12.70")
    assert contains("There are two dogs", "2 dogs") and contains("I see one dog", "1 dog")
    assert contains("three horses", "horse") and not contains("a horseshoe", "horse")
    assert contains("The library reopens in June", "reopen*") and not contains("lastly", "la")


def test_check_groups_needs_one_term_of_every_group():
    groups = [["dog"], ["bicycle", "bike"]]
    assert check_groups("A dog sits next to a red bike.", groups) == []
    (reason,) = check_groups("A dog sits on a porch.", groups)
    assert reason == "the answer does not say 'bicycle' or 'bike'"


def test_check_forbidden_reports_the_claim_it_found():
    assert check_forbidden("There is 1 zebra.", [r"\b([2-9]) zebras\b"]) == []
    (reason,) = check_forbidden("There are 3 zebras in image A.", [r"\b([2-9]) zebras\b"])
    assert "'3 zebras'" in reason


def test_check_files_rejects_an_invented_file_name_and_accepts_real_ones(tmp_path):
    text = "I read sign.png and saved the speech as outputs/r1/1-text-to-speech-a1b2c3.wav."
    assert file_names(text) == ["sign.png", "outputs/r1/1-text-to-speech-a1b2c3.wav"]
    assert check_files(text, ["/tmp/x/outputs/r1/1-text-to-speech-a1b2c3.wav"], ["sign.png"]) == []
    invented = "The text is in 1-image-to-text-789012.json and the photo.jpg."
    reasons = check_files(invented, [], ["sign.png"])
    assert len(reasons) == 2 and "'1-image-to-text-789012.json'" in reasons[0] and "'photo.jpg'" in reasons[1]


def test_check_claims_catches_an_artifact_that_was_never_made():
    lie = "I drew a picture of a lighthouse at sunset. I saved the image as a JPEG file."
    reasons = check_claims(lie, set())
    assert len(reasons) == 2 and all("produced no image file" in r for r in reasons)
    assert check_claims("Here is the audio of the text.", set()) == [
        "the answer claims 'here is the audio' but this run produced no audio file"
    ]
    assert check_claims("The video has been generated.", {"image"}) != []


def test_check_claims_accepts_honest_and_real_statements():
    assert check_claims(lie := "I drew a picture of a lighthouse.", {"image"}) == [], lie
    assert check_claims("I could not generate an image: no installed model serves text-to-image.", set()) == []
    assert check_claims("Here is the text in the image: Plan, select, execute, answer.", set()) == []
    assert check_claims("I generated a description of the image.", set()) == []
    assert check_claims("A summary of the speech has been generated.", set()) == []


def test_check_unservable_passes_honest_answers_and_real_results_only(tmp_path):
    types = ["text-to-image"]
    honest = answer("I could not draw it: no installed model serves text-to-image.")
    assert check_unservable(honest, types) == []
    (reason,) = check_unservable(answer("A lighthouse stands on a rock at sunset."), types)
    assert "text-to-image could not be done" in reason
    served = answer("Done.", [produced(tmp_path, "0-t2i.png", "image", "image/png", task="text-to-image")])
    assert check_unservable(served, types) == []


def test_check_selection_calls_counts_selection_stage_calls_in_every_turn():
    assert check_selection_calls([answer("a"), answer("b")]) == []
    reasons = check_selection_calls([answer("a", usage=["planning", "selection"]), answer("b")])
    assert reasons == ["1 selection-stage LLM calls (expected 0)"]


def test_check_artifacts_needs_an_existing_file_of_the_media_type(tmp_path):
    wav = answer("ok", [produced(tmp_path, "1.wav", "audio", "audio/wav")])
    files = produced_files(wav)
    assert check_artifacts(files, ["audio/"]) == []
    assert check_artifacts(files, ["image/"]) == ["no image/* file was produced (got audio/wav)"]
    Path(files[0][0]).unlink()  # an artifact whose file is gone does not count
    assert check_artifacts(produced_files(wav), ["audio/"]) == ["no audio/* file was produced (got none)"]


def test_produced_files_leave_out_inputs_passed_through(tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    photo = write_png(inputs / "a.png")
    passed = TaskResult(
        task_id=0,
        task="image-to-image",
        status="ok",
        outputs={"image": Artifact(path=str(photo), media_type="image/png", sha256="0" * 64, modality="image")},
    )
    assert produced_files(answer("ok", [passed]), inputs) == []
    assert len(produced_files(answer("ok", [passed]))) == 1


async def test_check_case_fails_speech_that_was_not_produced_and_names_every_reason(tmp_path):
    case = Case(id="c", kind="k", request="read it aloud", artifacts=["audio/"], speech=[["offline"]])
    lie = answer("I created an audio file: speech.wav.")
    failures, transcript = await check_case(case, [lie], ["sign.png"])
    assert transcript is None
    assert failures == [
        "no audio/* file was produced (got none)",
        "no speech was produced to transcribe",
        "the answer names the file 'speech.wav', which this run did not produce and the user did not give",
        "the answer claims 'i created an audio' but this run produced no audio file",
    ]
    real = answer("Done.", [produced(tmp_path, "1.wav", "audio", "audio/wav")])
    failures, _ = await check_case(case, [real], [])
    assert failures == ["no transcriber (Whisper) to check the produced speech"]


async def test_check_case_lets_a_follow_up_name_a_file_of_an_earlier_turn(tmp_path):
    first = answer("Saved.", [produced(tmp_path, "0-text-to-speech-abc123.wav", "audio", "audio/wav")])
    second = answer("The audio you asked for is 0-text-to-speech-abc123.wav.")
    case = Case(id="c", kind="k", request="where is it?")
    assert (await check_case(case, [first, second], []))[0] == []
    assert (await check_case(case, [second], []))[0] != []


# --- the suite and its selection --------------------------------------------------------------------------------

KINDS = {
    "detection",
    "multi-image counting",
    "classification",
    "ocr",
    "ocr to speech",
    "speech to text",
    "speech to summary to translation",
    "text file",
    "sentiment and entities",
    "document qa",
    "vqa",
    "follow-up",
    "cannot serve offline",
}


def test_the_suite_has_30_cases_of_every_kind_naming_only_inputs_it_builds():
    cases = default_cases()
    assert len(cases) >= 30 and len({c.id for c in cases}) == len(cases)
    assert {c.kind for c in cases} >= KINDS
    names = set(e2e_inputs.input_names())
    for case in cases:
        for request in [*case.before, case.request]:
            assert set(file_names(request)) <= names, case.id
        for pattern in case.must_not:
            re.compile(pattern)
        assert case.must or case.artifacts or case.unservable, f"{case.id} checks nothing of its own"
    assert {t for c in cases for t in c.unservable} >= {"text-to-image", "text-to-video"}


def test_select_cases_by_kind_substring_and_limit():
    cases = default_cases()
    ocr = select_cases(cases, only="OCR")
    assert ocr and {c.kind for c in ocr} == {"ocr"}
    assert [c.id for c in select_cases(cases, matching="invoice")] == ["invoice-total", "invoice-date"]
    assert len(select_cases(cases, limit=3)) == 3
    with pytest.raises(HuggingGPTError, match="no case of kind 'painting'; kinds are: "):
        select_cases(cases, only="painting")


def test_score_gives_rates_per_kind_and_overall_and_the_report_lists_failures():
    results = [
        CaseResult(id="a", kind="ocr", request="ra", passed=True, llm_calls={"planning": 1}, seconds=2.0),
        CaseResult(id="b", kind="ocr", request="rb", passed=False, failures=["no text"], llm_calls={"planning": 2}),
        CaseResult(id="c", kind="vqa", request="rc", passed=True, llm_calls={"planning": 1, "response": 1}),
    ]
    report = score(results, seconds=5.0)
    assert (report.passed, report.total, report.rate) == (2, 3, 0.6667)
    assert [(k.kind, k.passed, k.total, k.rate) for k in report.kinds] == [("ocr", 1, 2, 0.5), ("vqa", 1, 1, 1.0)]
    assert report.llm_calls == {"planning": 4, "response": 1} and report.llm_calls_per_case == 1.67
    text = format_report(report)
    assert "ocr       1/2    50%" in text and "overall   2/3    67%" in text
    assert "- b (ocr): rb\n    no text" in text and "a (ocr)" not in text
    assert format_case(results[0]) == "pass  a  2.0 s  LLM calls: planning 1"
    assert format_case(results[1]) == "FAIL  b  0.0 s  LLM calls: planning 2\n      no text"


# --- the inputs -------------------------------------------------------------------------------------------------


def _fake_demo(folder: Path) -> Path:
    folder.mkdir()
    for name in e2e_inputs.DEMO_PHOTOS:
        Image.new("RGB", (64, 48), "green").save(folder / name)
    return folder


def _samples(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as handle:
        assert handle.getnchannels() == 1 and handle.getsampwidth() == 2
        return np.frombuffer(handle.readframes(handle.getnframes()), dtype=np.int16).astype(np.float64)


def test_build_inputs_writes_speech_documents_and_text_files(tmp_path):
    need_espeak()
    folder = e2e_inputs.build_inputs(tmp_path / "inputs", demo=_fake_demo(tmp_path / "demo"))
    assert sorted(p.name for p in folder.iterdir()) == sorted(e2e_inputs.input_names())
    for name, text in e2e_inputs.SPEECH.items():
        seconds = e2e_inputs.wav_seconds(folder / name)
        words = len(text.split())
        assert words / 6 < seconds < words, (name, seconds)  # between 60 and 360 words a minute
        assert np.sqrt(np.mean(_samples(folder / name) ** 2)) > 300, name  # speech, not silence
    assert not _samples(folder / e2e_inputs.SILENCE).any()
    for name, lines in e2e_inputs.DOCUMENTS.items():
        with Image.open(folder / name) as image:
            grey = np.asarray(image.convert("L"))
        assert grey.shape[0] > 40 * len(lines) and (grey < 100).mean() > 0.01, name  # dark print on white
    with Image.open(folder / e2e_inputs.BLANK) as image:
        assert image.convert("L").getextrema() == (255, 255)
    assert "216.48" in " ".join(e2e_inputs.DOCUMENTS["invoice.png"])
    assert (folder / "notes.txt").read_text().startswith("Notes from the town council")


def test_build_inputs_says_what_is_missing(tmp_path, monkeypatch):
    with pytest.raises(HuggingGPTError, match=r"the demo photos .*dog\.jpg.* run `hugginggpt setup`"):
        e2e_inputs.build_inputs(tmp_path / "inputs", demo=tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HuggingGPTError, match="need Debian's espeak-ng: apt-get install espeak-ng"):
        e2e_inputs.speak("hello", tmp_path / "hello.wav")


# --- the runner, with a scripted LLM ----------------------------------------------------------------------------


def _plan(image: str) -> str:
    return json.dumps({"tasks": [{"task": "image-classification", "id": 0, "dep": [], "args": {"image": image}}]})


class Stages:
    """Scripted controller: each planning call plans a colour classification, each response says `answers[i]`."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []

    def __call__(self, messages, schema):
        stage = role_of(messages)
        if stage == "planning":
            self.prompts.append("\n".join(m.content for m in messages))
            return _plan("red.png")
        return self.answers.pop(0)


async def test_run_suite_checks_each_case_and_reports_calls_and_seconds(tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    write_png(inputs / "red.png", "red")
    stages = Stages("The picture red.png is red.", "It is red.")
    gpt = HuggingGPT(ScriptedLLM(fallback=stages), ExpertRegistry([ColourExpert()]), settings=Settings())
    cases = [
        Case(id="honest", kind="colour", request="What colour is red.png?", must=[["red"]]),
        Case(id="wrong", kind="colour", request="What colour is red.png?", must=[["blue"]], must_not=[r"\bred\b"]),
    ]
    seen: list[str] = []
    report = await run_suite(gpt, cases, inputs, tmp_path / "out", on_case=lambda r: seen.append(r.id))
    assert seen == ["honest", "wrong"]
    honest, wrong = report.cases
    assert honest.passed and honest.failures == [] and honest.tasks == ["image-classification: ok (test/colour)"]
    assert honest.llm_calls == {"planning": 1, "response": 1} and honest.seconds > 0
    assert not wrong.passed and wrong.answer.startswith("It is red.")
    assert wrong.failures[:2] == ["the answer does not say 'blue'", "the answer claims 'red' (matches '\\\\bred\\\\b')"]
    assert (report.passed, report.total) == (1, 2) and report.kinds[0].rate == 0.5
    assert report.llm_calls == {"planning": 2, "response": 2} and report.selection == gpt.settings.selection
    assert honest.generated_tokens["planning"] > 0 and honest.generated_tokens["response"] > 0
    assert report.generated_tokens == {
        stage: honest.generated_tokens[stage] + wrong.generated_tokens[stage] for stage in ("planning", "response")
    }


async def test_a_follow_up_case_runs_its_turns_in_one_conversation(tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    write_png(inputs / "red.png", "red")
    stages = Stages("The first picture is crimson.", "It was red.")
    gpt = HuggingGPT(ScriptedLLM(fallback=stages), ExpertRegistry([ColourExpert()]), settings=Settings())
    case = Case(id="f", kind="follow-up", before=["What colour is red.png?"], request="And again?", must=[["red"]])
    (result,) = (await run_suite(gpt, [case], inputs, tmp_path / "out")).cases
    assert result.passed and result.llm_calls == {"planning": 2, "response": 2}
    assert "crimson" not in stages.prompts[0] and "crimson" in stages.prompts[1]  # the earlier answer is history


# --- the command ------------------------------------------------------------------------------------------------


def test_cli_eval_e2e_json_runs_one_case_and_exits_0(monkeypatch, tmp_path):
    need_espeak()
    need_demo_photos()
    plan = {"tasks": [{"task": "text-classification", "id": 0, "dep": [], "args": {"text": "The battery died."}}]}

    def handler(body):
        if role_of(body["messages"]) == "planning":
            return Reply(json.dumps(plan))
        return Reply("The review is negative.")

    results = tmp_path / "results.jsonl"
    command = ["eval", "e2e", "--json", "--limit", "1", "-k", "sentiment-negative", "--output-dir", str(tmp_path)]
    with OpenAIServer(handler) as server:
        monkeypatch.setenv("HUGGINGGPT_LLM_BASE_URL", server.url)
        result = CliRunner().invoke(app, [*command, "--results", str(results)])
        calls = len(server.requests)
        again = CliRunner().invoke(app, [*command, "--results", str(results)])
        assert len(server.requests) == calls  # the recorded case is not run again
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (case,) = report["cases"]
    assert case["id"] == "sentiment-negative" and report["total"] == 1
    assert case["passed"] is True, case["failures"]
    assert case["llm_calls"]["planning"] == 1 and "selection" not in case["llm_calls"]
    assert report["kinds"] == [{"kind": "sentiment and entities", "passed": 1, "total": 1, "rate": 1.0}]
    assert again.exit_code == 0 and json.loads(again.stdout)["cases"] == report["cases"]
    assert [json.loads(line)["id"] for line in results.read_text().splitlines()] == ["sentiment-negative"]


def test_load_results_names_a_bad_line(tmp_path):
    path = tmp_path / "results.jsonl"
    assert load_results(path) == {}
    path.write_text('{"id": "a", "kind": "k", "request": "r", "passed": true}\nnot json\n')
    with pytest.raises(HuggingGPTError, match="results.jsonl line 2 is not a case result"):
        load_results(path)


def test_cli_eval_e2e_unknown_kind_is_a_clear_error():
    result = CliRunner().invoke(app, ["eval", "e2e", "--only", "painting"])
    assert result.exit_code == 1 and "no case of kind 'painting'" in result.output


# --- the real stack ---------------------------------------------------------------------------------------------


@pytest.mark.integration
async def test_real_cases_with_the_embedded_stack(tmp_path):
    """Three real cases end to end: OCR, OCR read aloud (its speech checked by Whisper), and an honest refusal."""
    need_espeak()
    need_demo_photos()
    cases = [c for c in default_cases() if c.id in ("ocr-sign", "ocr-speech-sign", "draw-lighthouse")]
    inputs = e2e_inputs.build_inputs(tmp_path / "inputs")
    gpt = HuggingGPT.from_settings(Settings())
    transcribe = whisper_transcriber(gpt, tmp_path / "transcripts")
    assert transcribe is not None
    heard = await transcribe(inputs / "reminder.wav")
    assert contains(heard, "milk") and contains(heard, "bread"), heard  # Whisper hears espeak-ng's voice
    report = await run_suite(gpt, cases, inputs, tmp_path / "out", transcribe=transcribe)
    by_id = {r.id: r for r in report.cases}
    assert by_id["ocr-sign"].passed, by_id["ocr-sign"].failures
    speech = by_id["ocr-speech-sign"]
    assert speech.artifacts and speech.transcript, speech.failures
    assert all(r.llm_calls.get("planning", 0) >= 1 and r.seconds > 0 for r in report.cases)
    assert not any("produced no" in f for r in report.cases for f in r.failures)  # no invented artifact


async def test_content_checks_read_the_direct_answer_not_the_rendered_account():
    from hugginggpt.account import SEPARATOR

    case = Case(id="c", kind="k", request="How many zebras are in c.jpg?", must=[["3 zebras"]], must_not=[r"\bface\b"])
    wrong = Answer(request=case.request, text="There are 2 zebras." + SEPARATOR + "- Task 0: 3 zebras, 1 face")
    failures, _ = await check_case(case, [wrong], ["c.jpg"])
    assert failures == ["the answer does not say '3 zebras'"]
    assert direct_answer("Yes." + SEPARATOR + "- log") == "Yes." and direct_answer("plain") == "plain"
