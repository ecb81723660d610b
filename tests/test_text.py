"""The embedded text experts on real text: MiniLM similarity, zero-shot and retrieval QA, spaCy NER, VADER, sumy."""

from __future__ import annotations

import pytest

from hugginggpt.config import Settings
from hugginggpt.errors import ExpertError
from hugginggpt.experts import text
from hugginggpt.experts.embedded import embedded_experts
from hugginggpt.experts.protocol import ExpertContext
from hugginggpt.workspace import Workspace

ARTICLE = (
    "The city council met on Tuesday to debate the new bicycle lanes. "
    "Supporters said the lanes would make streets safer for children riding to school. "
    "Shop owners worried that removing parking spaces would cost them customers. "
    "The mayor proposed a six-month trial on two main streets. "
    "Traffic engineers will count cyclists, cars and accidents during the trial. "
    "The council will vote on the permanent plan after the trial ends. "
    "Local newspapers printed letters from both sides all week."
)


@pytest.fixture(scope="module")
def experts():
    return {(e.card.task, e.card.id): e for e in embedded_experts(Settings())}


@pytest.fixture
def ctx(tmp_path):
    return ExpertContext(workspace=Workspace(tmp_path / "out", [tmp_path]), task_id=0, task="text")


def _expert(experts, task, model_id):
    return experts[(task, model_id)]


def test_sentences_split_at_ends_but_not_at_abbreviations_or_initials():
    passage = "Dr. Smith met J. R. Jones in Washington. They talked, e.g. about rain!  Was it late? Yes."
    assert text.split_sentences(passage) == [
        "Dr. Smith met J. R. Jones in Washington.",
        "They talked, e.g. about rain!",
        "Was it late?",
        "Yes.",
    ]
    for start, end in text.sentence_spans(passage):
        assert passage[start:end] == passage[start:end].strip()


def test_labels_are_parsed_from_commas_or_a_list():
    assert text.parse_labels("sports, politics ,science") == ["sports", "politics", "science"]
    assert text.parse_labels("['cats', \"dogs\"]") == ["cats", "dogs"]
    assert text.parse_labels("") == []


@pytest.mark.integration
async def test_ner_finds_a_person_and_a_place(experts, ctx):
    ner = _expert(experts, "token-classification", "spacy/en_core_web_sm")
    sentence = "Marie Curie moved from Warsaw to Paris to study physics."
    out = await ner.run({"text": sentence}, ctx)
    entities = out["json"]["entities"]
    assert {"word": "Marie Curie", "entity_group": "PERSON"}.items() <= _by_word(entities, "Marie Curie").items()
    places = {e["word"] for e in entities if e["entity_group"] in ("GPE", "LOC")}
    assert {"Warsaw", "Paris"} <= places
    for entity in entities:
        assert sentence[entity["start"] : entity["end"]] == entity["word"]
    assert "Marie Curie (PERSON)" in out["text"]


def _by_word(entities, word):
    return next(e for e in entities if e["word"] == word)


@pytest.mark.integration
async def test_ner_refuses_weights_that_do_not_match_the_pinned_hash(monkeypatch, ctx):
    monkeypatch.setattr(text, "SPACY_NER_SHA256", "0" * 64)
    ner = text.NERExpert(next(e.card for e in embedded_experts(Settings()) if e.card.task == "token-classification"))
    with pytest.raises(ExpertError, match="not the pinned"):
        await ner.run({"text": "Ada Lovelace lived in London."}, ctx)


@pytest.mark.integration
async def test_similarity_ranks_a_paraphrase_above_an_unrelated_sentence(experts, ctx):
    similarity = _expert(experts, "sentence-similarity", "sentence-transformers/all-MiniLM-L6-v2")
    sentence = "A man is playing a guitar on stage."
    paraphrase = await similarity.run({"text": sentence, "text_2": "Someone performs guitar music at a concert."}, ctx)
    unrelated = await similarity.run({"text": sentence, "text_2": "The stock market fell sharply this morning."}, ctx)
    assert paraphrase["json"]["score"] > unrelated["json"]["score"] + 0.3
    assert -1.0 <= unrelated["json"]["score"] <= paraphrase["json"]["score"] <= 1.0


@pytest.mark.integration
async def test_zero_shot_picks_the_obvious_label(experts, ctx):
    classify = _expert(experts, "text-classification", "sentence-transformers/all-MiniLM-L6-v2")
    cases = {
        "The striker scored twice and the team won the championship final.": "sports",
        "Parliament passed the new tax bill after a long debate between the parties.": "politics",
        "Simmer the onions in butter, then add the flour and stir in the milk.": "cooking",
    }
    for sentence, expected in cases.items():
        out = await classify.run({"text": sentence, "labels": "politics, cooking, sports"}, ctx)
        assert out["text"] == expected
        assert out["json"]["labels"][0] == expected
        assert out["json"]["scores"] == sorted(out["json"]["scores"], reverse=True)


@pytest.mark.integration
async def test_zero_shot_without_labels_says_what_it_needs(experts, ctx):
    classify = _expert(experts, "text-classification", "sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(ExpertError, match="labels"):
        await classify.run({"text": "Any text at all."}, ctx)


@pytest.mark.integration
async def test_retrieval_qa_answers_with_the_matching_sentence_of_the_context(experts, ctx):
    qa = _expert(experts, "question-answering", "sentence-transformers/all-MiniLM-L6-v2")
    out = await qa.run({"text": "What did shop owners worry about?", "text_2": ARTICLE}, ctx)
    assert out["text"] == "Shop owners worried that removing parking spaces would cost them customers."
    assert ARTICLE[out["json"]["start"] : out["json"]["end"]] == out["text"]


@pytest.mark.integration
async def test_sentiment_signs(experts, ctx):
    sentiment = _expert(experts, "text-classification", "cjhutto/vaderSentiment")
    good = await sentiment.run({"text": "I love this phone, the screen is wonderful and the battery is great!"}, ctx)
    bad = await sentiment.run({"text": "This was a terrible, awful experience and I hate it."}, ctx)
    flat = await sentiment.run({"text": "The meeting is at three o'clock in room twelve."}, ctx)
    assert (good["text"], bad["text"], flat["text"]) == ("positive", "negative", "neutral")
    assert good["json"]["compound"] > 0.5 > -0.5 > bad["json"]["compound"]


@pytest.mark.integration
async def test_sentiment_answers_in_the_callers_labels_and_refuses_other_labels(experts, ctx):
    sentiment = _expert(experts, "text-classification", "cjhutto/vaderSentiment")
    out = await sentiment.run({"text": "What a lovely day!", "labels": "Positive, Negative"}, ctx)
    assert out["text"] == "Positive"
    with pytest.raises(ExpertError, match="only tells sentiment"):
        await sentiment.run({"text": "What a lovely day!", "labels": "weather, sports"}, ctx)


@pytest.mark.integration
async def test_summary_is_shorter_and_drawn_from_the_text(experts, ctx):
    summarize = _expert(experts, "summarization", "sumy/lex-rank")
    out = await summarize.run({"text": ARTICLE}, ctx)
    chosen = out["json"]["sentences"]
    assert 1 <= len(chosen) < len(text.split_sentences(ARTICLE))
    assert len(out["text"]) < len(ARTICLE)
    for sentence in chosen:
        assert sentence in text.split_sentences(ARTICLE)
    positions = [ARTICLE.index(s) for s in chosen]
    assert positions == sorted(positions)


@pytest.mark.integration
async def test_text_experts_reject_empty_text(experts, ctx):
    for expert in experts.values():
        if expert.card.task in ("summarization", "token-classification", "sentence-similarity"):
            with pytest.raises(ExpertError, match="empty"):
                await expert.run({"text": "  ", "text_2": "x"}, ctx)
