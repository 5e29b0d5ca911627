"""Model registry: build, cache and load the stock BLIP VQA models petstream serves (tiny, sim-tiny, base)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import string
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inference.types import DEFAULT_QUESTIONS

if TYPE_CHECKING:
    from transformers import BertTokenizerFast, BlipForQuestionAnswering, BlipProcessor  # type: ignore[attr-defined]

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
DECODER_BOS = "[DEC]"
ENCODER_TOKEN = "[ENC]"
ASSETS_DIR = Path(__file__).parent / "assets"
#: bump when a built-in model's recipe changes, so cached builds are rebuilt
BUILD_VERSION = 2
REGISTRY_NAMES = ("tiny", "sim-tiny", "blip-base-random")
#: words of the tiny model's vocabulary besides single characters: the default questions and the answers
TINY_WORDS = ("yes", "no", "a", "the", "is", "are", "there", "what", "dog", "cat", "pet") + tuple(
    w for q in DEFAULT_QUESTIONS for w in q.text.lower().replace("?", " ").split()
)


def _charset() -> list[str]:
    return sorted(set(string.ascii_lowercase + string.digits + string.punctuation))


def build_tokenizer(words: Iterable[str], *, vocab_size: int | None = None) -> BertTokenizerFast:
    """A lowercase WordPiece BERT tokenizer laid out like Salesforce's BLIP tokenizer ([DEC] bos, [ENC])."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast  # type: ignore[attr-defined]  # an alias in transformers 5

    vocab: dict[str, int] = {}

    def add(token: str) -> None:
        if token not in vocab:
            vocab[token] = len(vocab)

    for token in SPECIAL_TOKENS:
        add(token)
    for word in words:
        for piece in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(word.lower()):
            add(piece[0])
    for ch in _charset():  # single characters and ## continuations: any ASCII text tokenizes without [UNK]
        add(ch)
        add("##" + ch)
    if vocab_size is not None:
        if vocab_size < len(vocab) + 2:
            raise ValueError(f"vocab_size={vocab_size} is too small: need at least {len(vocab) + 2}")
        n = 0
        while len(vocab) < vocab_size - 2:
            add(f"[unused{n}]")
            n += 1
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.add_special_tokens([DECODER_BOS, ENCODER_TOKEN])
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return BertTokenizerFast(
        tokenizer_object=tok,
        do_lower_case=True,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        bos_token=DECODER_BOS,
        additional_special_tokens=[ENCODER_TOKEN],
        model_max_length=512,
    )


def build_blip_vqa(
    tokenizer: BertTokenizerFast,
    *,
    image_size: int,
    patch_size: int,
    vision_layers: int,
    text_layers: int,
    hidden: int,
    heads: int,
    intermediate: int,
    seed: int = 0,
    init_range: float = 0.02,
) -> BlipForQuestionAnswering:
    """A stock BlipForQuestionAnswering with random weights whose special-token ids come from `tokenizer`.

    `init_range` is the std of the random weights (text and vision); the tiny model uses a larger one so that
    its answers differ between images and questions, which makes equality tests meaningful.
    """
    import torch
    from transformers import BlipConfig, BlipForQuestionAnswering

    config = BlipConfig(
        text_config=_text_config(tokenizer, hidden=hidden, layers=text_layers, heads=heads, intermediate=intermediate),
        vision_config={
            "image_size": image_size,
            "patch_size": patch_size,
            "hidden_size": hidden,
            "num_hidden_layers": vision_layers,
            "num_attention_heads": heads,
            "intermediate_size": intermediate,
            # the stock default (1e-10) makes every patch embedding ~0, so all images look alike
            "initializer_range": init_range,
        },
    )
    text_config: Any = config.text_config
    text_config.initializer_range = init_range
    torch.manual_seed(seed)
    return BlipForQuestionAnswering(config).eval()


def _text_config(tokenizer: BertTokenizerFast, *, hidden: int, layers: int, heads: int, intermediate: int) -> dict:
    sep = tokenizer.sep_token_id
    bos = tokenizer.convert_tokens_to_ids(DECODER_BOS)
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "encoder_hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": intermediate,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": bos,
        "decoder_start_token_id": bos,
        "sep_token_id": sep,
        "eos_token_id": sep,
    }


def make_processor(tokenizer: BertTokenizerFast, image_size: int) -> BlipProcessor:
    """A BlipProcessor with the PIL image processor (torchvision is not installed) at `image_size` pixels."""
    from transformers import BlipProcessor

    try:
        from transformers import BlipImageProcessorPil as ImageProcessor
    except ImportError:  # older transformers 5.x: the PIL path is the plain class
        from transformers import BlipImageProcessor as ImageProcessor  # type: ignore[assignment]
    image_processor = ImageProcessor(size={"height": image_size, "width": image_size})
    return BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)


def cache_root() -> Path:
    """Where built models live: $PETSTREAM_CACHE/models or ~/.cache/petstream/models."""
    base = os.environ.get("PETSTREAM_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "petstream") / "models"


def _build_tiny(out: Path) -> None:
    tokenizer = build_tokenizer(TINY_WORDS)
    model = build_blip_vqa(
        tokenizer,
        image_size=64,
        patch_size=8,
        vision_layers=2,
        text_layers=2,
        hidden=128,
        heads=4,
        intermediate=256,
        init_range=0.1,
    )
    model.save_pretrained(out)
    make_processor(tokenizer, 64).save_pretrained(out)


def _build_base_random(out: Path) -> None:
    from transformers import BlipConfig, BlipForQuestionAnswering

    # bert-base-uncased has 30522 entries; with [DEC] and [ENC] that is Salesforce's 30524.
    tokenizer = build_tokenizer(TINY_WORDS, vocab_size=30524)
    defaults = BlipConfig()
    text: Any = defaults.text_config
    config = BlipConfig(
        text_config=_text_config(
            tokenizer,
            hidden=text.hidden_size,
            layers=text.num_hidden_layers,
            heads=text.num_attention_heads,
            intermediate=text.intermediate_size,
        ),
        vision_config={"initializer_range": 0.02},
    )
    import torch

    torch.manual_seed(0)
    model = BlipForQuestionAnswering(config).eval()
    model.save_pretrained(out)
    vision: Any = config.vision_config
    make_processor(tokenizer, vision.image_size).save_pretrained(out)


_BUILDERS = {"tiny": _build_tiny, "blip-base-random": _build_base_random}


def _build_cached(name: str) -> str:
    from filelock import FileLock

    out = cache_root() / name
    marker = out / "petstream_built.json"
    stamp = json.dumps({"name": name, "version": BUILD_VERSION})
    if marker.exists() and marker.read_text() == stamp:
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if marker.exists() and marker.read_text() == stamp:  # another process built it while we waited
            return str(out)
        log.info("building model %r into %s", name, out)
        _BUILDERS[name](out)
        marker.write_text(stamp)
    return str(out)


def resolve_model(name: str) -> str:
    """Registry name, local folder or hub id -> something `from_pretrained` accepts (a path or a hub id)."""
    if name in _BUILDERS:
        return _build_cached(name)
    if name == "sim-tiny":
        path = ASSETS_DIR / "sim-tiny"
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"model 'sim-tiny' is not shipped in this checkout ({path} has no config.json); "
                "train it with the training package, or use one of "
                f"{', '.join(REGISTRY_NAMES)}, a local folder or a hub id"
            )
        return str(path)
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name  # a hub id: from_pretrained loads it (or reads the local hub cache)
    raise ValueError(
        f"model {name!r} is neither a registry name ({', '.join(REGISTRY_NAMES)}), an existing folder, "
        "nor a hub id like 'Salesforce/blip-vqa-base'"
    )


def load_model(name: str) -> tuple[BlipForQuestionAnswering, BlipProcessor]:
    """Load the stock model and its processor with `from_pretrained`, in eval mode, fp32."""
    from transformers import BlipForQuestionAnswering, BlipProcessor

    path = resolve_model(name)
    model = BlipForQuestionAnswering.from_pretrained(path).eval()
    processor = BlipProcessor.from_pretrained(path)
    return model, processor


def model_fingerprint(model: BlipForQuestionAnswering) -> str:
    """sha256 of the config and a sample of every weight tensor: compiled artifacts bake weights in."""
    import torch

    config = {k: v for k, v in model.config.to_dict().items() if k not in ("_name_or_path", "transformers_version")}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        sample = tensor.detach().flatten()[:256].to("cpu", torch.float32).numpy()
        digest.update(name.encode())
        digest.update(sample.tobytes())
    return digest.hexdigest()[:16]
