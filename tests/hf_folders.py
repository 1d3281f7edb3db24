"""Tiny Hugging Face model folders for the pretrained tests, built offline.

Each builder trains a tokenizer with ``tokenizers`` on a small text, builds
the ``transformers`` model from a small config, redraws *every* weight
(LayerNorm gains and biases too, so a mix-up in the mapping cannot hide
behind ones and zeros) with a larger std than the default so that the
model's choices are decided by the model and not by float noise, and saves
both with ``save_pretrained``. Only the test modules import this file, and
only after ``pytest.importorskip`` has found torch and transformers.
"""
from __future__ import annotations

import json

TEXT = ("the quick brown fox jumps over the lazy dog. a bank by the river holds money and water. "
        "models read text and write text; attention mixes tokens, and the residual stream carries them. "
        "hello world, hello minitx! numbers 0123456789 and symbols #$%&*+-=/ are text too. ") * 20


def byte_bpe(vocab_size: int, specials: list[str], template: str | None = None):
    """A byte-level BPE ``tokenizers.Tokenizer`` (no normaliser, GPT-2 style pre-tokeniser)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TEXT], trainer)
    if template is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[(s, tok.token_to_id(s)) for s in specials if s in template])
    return tok


def wordpiece(vocab_size: int = 200):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator([TEXT], trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                              show_progress=False))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")),
                                                 ("[SEP]", tok.token_to_id("[SEP]"))])
    return tok


def randomise(model, seed: int, std: float = 0.3):
    """Redraw every floating tensor: gains 1 + N(0, 0.1^2), biases and matrices N(0, std^2)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if not p.is_floating_point():
                continue
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
            is_gain = p.ndim == 1 and ("norm" in name.lower() or name.endswith(("ln_1.weight", "ln_2.weight",
                                                                                  "ln_f.weight")))
            p.copy_(1.0 + 0.1 * noise if is_gain else std * noise)
    model.eval()
    return model


def save(model, tok, folder):
    model.save_pretrained(folder)
    tok.save(str(folder / "tokenizer.json"))
    return folder


def gpt2_folder(folder, *, seed=0, n_layer=2, n_head=2, n_embd=32, n_positions=64, activation="gelu_new",
                n_inner=None, tie=True, eps=1e-5, **generation):
    import transformers

    tok = byte_bpe(300, ["<|endoftext|>"])
    eos = tok.token_to_id("<|endoftext|>")
    cfg = transformers.GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=n_positions, n_layer=n_layer,
                                  n_head=n_head, n_embd=n_embd, n_inner=n_inner, activation_function=activation,
                                  layer_norm_epsilon=eps, bos_token_id=eos, eos_token_id=eos,
                                  tie_word_embeddings=tie)
    model = randomise(transformers.GPT2LMHeadModel(cfg), seed)
    for key, value in generation.items():
        setattr(model.generation_config, key, value)
    return save(model, tok, folder), model, tok


def bert_folder(folder, *, seed=0, classifier=False, n_layer=2, n_head=2, d=32, d_ff=48, act="gelu", n_labels=3):
    import transformers

    tok = wordpiece()
    cfg = transformers.BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=d, num_hidden_layers=n_layer,
                                  num_attention_heads=n_head, intermediate_size=d_ff, hidden_act=act,
                                  max_position_embeddings=64, pad_token_id=tok.token_to_id("[PAD]"),
                                  num_labels=n_labels)
    cls = transformers.BertForSequenceClassification if classifier else transformers.BertModel
    model = randomise(cls(cfg), seed)
    return save(model, tok, folder), model, tok


def bart_folder(folder, *, seed=0, enc=2, dec=2, heads=2, d=32, ffn=48, act="gelu", scale_embedding=False,
                max_pos=64, **generation):
    import transformers

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = byte_bpe(300, specials, "<s> $A </s>")
    cfg = transformers.BartConfig(vocab_size=tok.get_vocab_size(), d_model=d, encoder_layers=enc,
                                  decoder_layers=dec, encoder_attention_heads=heads, decoder_attention_heads=heads,
                                  encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, activation_function=act,
                                  max_position_embeddings=max_pos, scale_embedding=scale_embedding, pad_token_id=1,
                                  bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2)
    model = randomise(transformers.BartForConditionalGeneration(cfg), seed)
    for key, value in generation.items():  # e.g. forced_bos_token_id, min_length
        setattr(model.generation_config, key, value)
    return save(model, tok, folder), model, tok


def unigram(vocab_size: int, specials: list[str], template: str):
    """A SentencePiece-style Unigram tokenizer (Nmt + NFKC normaliser, Metaspace), T5's kind."""
    from tokenizers import SentencePieceUnigramTokenizer, Tokenizer, processors

    sp = SentencePieceUnigramTokenizer()
    sp.train_from_iterator([TEXT], vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>",
                           show_progress=False)
    tok = Tokenizer.from_str(sp.to_str())
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(s, tok.token_to_id(s)) for s in specials if s in template])
    return tok


def t5_folder(folder, *, seed=0, layers=2, dec_layers=None, heads=2, d=32, d_kv=8, d_ff=48, proj="relu",
              buckets=8, max_distance=20, tokenizer="unigram"):
    import transformers

    specials = ["<pad>", "</s>", "<unk>"]
    tok = unigram(200, specials, "$A </s>") if tokenizer == "unigram" else byte_bpe(300, specials, "$A </s>")
    cfg = transformers.T5Config(vocab_size=tok.get_vocab_size(), d_model=d, d_kv=d_kv, d_ff=d_ff, num_layers=layers,
                                num_decoder_layers=dec_layers, num_heads=heads, feed_forward_proj=proj,
                                relative_attention_num_buckets=buckets, relative_attention_max_distance=max_distance,
                                pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    model = randomise(transformers.T5ForConditionalGeneration(cfg), seed)
    return save(model, tok, folder), model, tok


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def llama_folder(folder, *, seed=0, layers=2, heads=4, kv_heads=2, d=32, d_ff=40, theta=10000.0, max_pos=64,
                 attention_bias=False, mlp_bias=False, tie=False, eps=1e-6, **generation):
    """A ``LlamaForCausalLM`` (grouped-query when ``kv_heads < heads``) with a byte-level BPE tokenizer."""
    import transformers

    specials = ["<unk>", "<s>", "</s>"]
    tok = byte_bpe(300, specials, "<s> $A")  # Llama's tokenizers start every text with <s>
    cfg = transformers.LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=d, intermediate_size=d_ff,
                                   num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                                   max_position_embeddings=max_pos, rms_norm_eps=eps, attention_bias=attention_bias,
                                   mlp_bias=mlp_bias, tie_word_embeddings=tie, bos_token_id=1, eos_token_id=2,
                                   rope_parameters={"rope_type": "default", "rope_theta": theta})
    model = randomise(transformers.LlamaForCausalLM(cfg), seed)
    for key, value in generation.items():
        setattr(model.generation_config, key, value)
    return save(model, tok, folder), model, tok


def bloom_folder(folder, *, seed=0, layers=2, heads=3, d=24, eps=1e-5, **generation):
    """A ``BloomForCausalLM`` (3 heads by default: ALiBi's slopes for a count that is not a power of two)."""
    import transformers

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    tok = byte_bpe(300, specials)
    cfg = transformers.BloomConfig(vocab_size=tok.get_vocab_size(), hidden_size=d, n_layer=layers, n_head=heads,
                                   layer_norm_epsilon=eps, bos_token_id=1, eos_token_id=2, pad_token_id=3)
    model = randomise(transformers.BloomForCausalLM(cfg), seed)
    for key, value in generation.items():
        setattr(model.generation_config, key, value)
    return save(model, tok, folder), model, tok
