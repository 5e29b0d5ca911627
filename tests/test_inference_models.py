"""Model registry: tokenizer layout, config token ids, resolve_model errors."""

from __future__ import annotations

import pytest

from inference.models import build_blip_vqa, build_tokenizer, make_processor, resolve_model


def test_tokenizer_layout_like_salesforce():
    tok = build_tokenizer(["dog", "barking"], vocab_size=200)
    assert len(tok) == 200
    assert tok.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [0, 1, 2, 3, 4]
    assert tok.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [198, 199]
    assert tok.bos_token == "[DEC]"
    ids = tok("Dog BARKING? zqx")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.unk_token_id not in ids
    assert tok.convert_ids_to_tokens(ids[1:4]) == ["dog", "barking", "?"]


def test_model_config_takes_ids_from_tokenizer():
    tok = build_tokenizer(["yes", "no"])
    model = build_blip_vqa(
        tok, image_size=32, patch_size=8, vision_layers=1, text_layers=1, hidden=32, heads=2, intermediate=64
    )
    text = model.config.text_config
    assert text.vocab_size == len(tok)
    assert text.bos_token_id == model.decoder_start_token_id == tok.convert_tokens_to_ids("[DEC]")
    assert text.pad_token_id == tok.pad_token_id and text.sep_token_id == tok.sep_token_id
    assert model.config.vision_config.initializer_range > 1e-3
    assert make_processor(tok, 32).image_processor.size["height"] == 32


def test_resolve_model_errors(tmp_path, monkeypatch):
    import inference.models as models

    monkeypatch.setattr(models, "ASSETS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="sim-tiny"):
        resolve_model("sim-tiny")
    with pytest.raises(ValueError, match="tiny, sim-tiny, blip-base-random"):
        resolve_model("no-such-model")
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("Salesforce/blip-vqa-base") == "Salesforce/blip-vqa-base"
