"""Tiny transformers models built from a config (random weights, a few biases set so outputs are predictable),
saved into a Hugging Face cache folder laid out as the Hub client writes it. Used by the transformers, routing and
model-server tests and by scripts/bench_backends.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

WORDS = [
    "the",
    "a",
    "is",
    "was",
    "good",
    "great",
    "bad",
    "awful",
    "movie",
    "film",
    "zebra",
    "cat",
    "dog",
    "paris",
    "france",
    "capital",
    "of",
    "what",
    "where",
    "who",
    "it",
]


def cache_folder(cache: Path, model_id: str) -> Path:
    """Make `models--org--name/snapshots/<commit>/` with `refs/main` pointing at it; returns the snapshot folder."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    repo = cache / ("models--" + model_id.replace("/", "--"))
    commit = hashlib.sha1(model_id.encode()).hexdigest()
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    folder = repo / "snapshots" / commit
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _bert_tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz?.,"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(folder)
    return tokenizer


def _bert_config(hidden: int, **extra):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=64,
        hidden_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=512,
        **extra,
    )


def text_classifier(cache: Path, model_id: str = "tiny/bert-sentiment", hidden: int = 16) -> Path:
    """BERT sequence classifier whose bias makes POSITIVE win."""
    import torch
    from transformers import BertForSequenceClassification

    folder = cache_folder(cache, model_id)
    _bert_tokenizer(folder)
    torch.manual_seed(0)
    config = _bert_config(hidden, num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"})
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([-3.0, 3.0]))
    model.save_pretrained(folder)
    return folder


def token_classifier(cache: Path, model_id: str = "tiny/bert-ner") -> Path:
    """BERT token classifier that tags every word as a location."""
    import torch
    from transformers import BertForTokenClassification

    folder = cache_folder(cache, model_id)
    _bert_tokenizer(folder)
    torch.manual_seed(0)
    labels = {0: "O", 1: "B-LOC", 2: "I-LOC"}
    model = BertForTokenClassification(_bert_config(16, num_labels=3, id2label=labels))
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    model.save_pretrained(folder)
    return folder


def question_answerer(cache: Path, model_id: str = "tiny/bert-qa") -> Path:
    """BERT span extractor (random weights): always answers with some span of the context."""
    import torch
    from transformers import BertForQuestionAnswering

    folder = cache_folder(cache, model_id)
    _bert_tokenizer(folder)
    torch.manual_seed(0)
    BertForQuestionAnswering(_bert_config(16)).save_pretrained(folder)
    return folder


def feature_extractor(cache: Path, model_id: str = "tiny/bert-embed") -> Path:
    import torch
    from transformers import BertModel

    folder = cache_folder(cache, model_id)
    _bert_tokenizer(folder)
    torch.manual_seed(0)
    BertModel(_bert_config(16)).save_pretrained(folder)
    return folder


def image_classifier(cache: Path, model_id: str = "tiny/vit-animals", hidden: int = 16) -> Path:
    """ViT on 32x32 images whose bias makes `zebra` win."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil as ViTImageProcessor

    folder = cache_folder(cache, model_id)
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        num_labels=3,
        id2label={0: "cat", 1: "dog", 2: "zebra"},
    )
    model = ViTForImageClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 0.0, 4.0]))
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def object_detector(cache: Path, model_id: str = "tiny/yolos-zoo") -> Path:
    """YOLOS with 4 detection tokens on 64x64 inputs whose class bias makes every token a confident `zebra`."""
    import torch
    from transformers import YolosConfig, YolosForObjectDetection
    from transformers.models.yolos.image_processing_pil_yolos import YolosImageProcessorPil as YolosImageProcessor

    folder = cache_folder(cache, model_id)
    torch.manual_seed(0)
    config = YolosConfig(
        image_size=[64, 64],
        patch_size=16,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_detection_tokens=4,
        num_labels=2,
        id2label={0: "zebra", 1: "giraffe"},
    )
    model = YolosForObjectDetection(config)
    with torch.no_grad():
        last = model.class_labels_classifier.layers[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([8.0, 0.0, 0.0]))  # zebra, giraffe, no-object
    model.save_pretrained(folder)
    YolosImageProcessor(size={"shortest_edge": 64, "longest_edge": 64}).save_pretrained(folder)
    return folder


def speech_recognizer(cache: Path, model_id: str = "tiny/wav2vec2-asr") -> Path:
    """wav2vec2 CTC model whose output bias spells `a` on every frame (CTC collapses repeats)."""
    import json

    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    folder = cache_folder(cache, model_id)
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, "a": 3, "b": 4}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    Wav2Vec2CTCTokenizer(str(folder / "vocab.json")).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True).save_pretrained(folder)
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8, 8),
        conv_stride=(5, 4),
        conv_kernel=(10, 4),
        num_feat_extract_layers=2,
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
        do_stable_layer_norm=True,
        pad_token_id=0,
    )
    model = Wav2Vec2ForCTC(config)
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 6.0, 0.0]))
    model.save_pretrained(folder)
    return folder


def speech_synthesizer(cache: Path, model_id: str = "tiny/vits-tts") -> Path:
    """A tiny VITS text-to-speech model (random weights: it makes noise of a sensible length)."""
    import json

    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    folder = cache_folder(cache, model_id)
    symbols = ["<pad>", " ", *"abcdefghijklmnopqrstuvwxyz.,?!'"]
    (folder / "vocab.json").write_text(json.dumps({s: i for i, s in enumerate(symbols)}))
    VitsTokenizer(str(folder / "vocab.json"), add_blank=True, normalize=True, phonemize=False).save_pretrained(folder)
    torch.manual_seed(0)
    config = VitsConfig(
        vocab_size=len(symbols),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        ffn_dim=32,
        flow_size=8,
        spectrogram_bins=17,
        upsample_initial_channel=16,
        upsample_rates=[4, 4],
        upsample_kernel_sizes=[8, 8],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        prior_encoder_num_flows=1,
        prior_encoder_num_wavenet_layers=1,
        posterior_encoder_num_wavenet_layers=1,
        duration_predictor_num_flows=1,
        duration_predictor_filter_channels=16,
        depth_separable_num_layers=1,
        use_stochastic_duration_prediction=False,
        sampling_rate=16000,
    )
    VitsModel(config).save_pretrained(folder)
    return folder
