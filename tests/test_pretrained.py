"""Hugging Face folders in minitx, exactly: logits, greedy and beam tokens, tokenizers, saving back.

Every folder is built offline by ``transformers`` from a small config with
redrawn weights (see ``hf_folders.py``), saved with ``save_pretrained``,
loaded by :func:`minitx.from_pretrained` (safetensors + NumPy) and compared
with the ``transformers`` model itself. Several configurations per family
(activations, depths, tied/untied heads, gated MLPs, head widths...), and
prompts of different lengths batched together on the minitx side.
"""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test-only reference; pip install torch")
transformers = pytest.importorskip("transformers", reason="transformers is a test-only reference; pip install transformers")
pytest.importorskip("tokenizers", reason="tokenizers is a test-only reference; pip install tokenizers")

import hf_folders as H  # noqa: E402

import minitx  # noqa: E402
from minitx.pretrained import PretrainedError  # noqa: E402
from minitx.pretrained.generation import generate  # noqa: E402

VARIANTS = {
    "gpt2": [dict(), dict(seed=1, n_layer=3, n_head=4, n_embd=24, activation="gelu", n_inner=40, eps=1e-6),
             dict(seed=2, activation="relu", tie=False, min_length=12)],
    # Llama: grouped-query (4 heads, 2 KV heads); multi-query with every bias, another theta and a tied head;
    # full multi-head with 6 heads of width 4 and an odd MLP width
    "llama": [dict(), dict(seed=1, layers=3, kv_heads=1, attention_bias=True, mlp_bias=True, theta=500.0, tie=True,
                           eps=1e-5),
              dict(seed=2, heads=6, kv_heads=6, d=24, d_ff=37, min_length=12)],
    # BLOOM: 3 heads (slopes of a non-power-of-two count), then 4 heads in 3 layers
    "bloom": [dict(), dict(seed=1, layers=3, heads=4, d=32, eps=1e-6)],
    "bert": [dict(), dict(seed=1, n_layer=3, n_head=4, d=24, d_ff=40, act="relu"), dict(seed=2, act="silu")],
    "bart": [dict(), dict(seed=1, enc=1, dec=3, heads=4, d=24, ffn=40, act="gelu_new", scale_embedding=True),
             dict(seed=2, forced_bos_token_id=0, min_length=5)],
    "t5": [dict(), dict(seed=1, layers=3, dec_layers=2, heads=4, d=24, d_kv=5, d_ff=40, proj="gated-gelu",
                        buckets=12, max_distance=9, tokenizer="bpe")],
}
CASES = [(arch, i) for arch, vs in VARIANTS.items() for i in range(len(vs))]
TEXTS = ["hello world", "the river bank holds water.", "a", "attention mixes tokens, 42 times!"]
DECODERS = ("gpt2", "llama", "bloom")  # decoder-only: GPT.forward(ids), the continuation after the prompt


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    cache = {}

    def get(arch, i):
        if (arch, i) not in cache:
            folder = tmp_path_factory.mktemp(f"{arch}{i}")
            cache[arch, i] = getattr(H, f"{arch}_folder")(folder, **VARIANTS[arch][i])
        return cache[arch, i]

    return get


def hf_forward(arch, hf, ids, mask=None, dec=None):
    with torch.no_grad():
        t = torch.tensor(ids)
        m = None if mask is None else torch.tensor(mask.astype(np.int64))
        if arch in DECODERS:
            return hf(t, attention_mask=m).logits.numpy()
        if arch == "bert":
            out = hf(t, attention_mask=m)
            return out.logits.numpy() if hasattr(out, "logits") else out.last_hidden_state.numpy()
        return hf(input_ids=t, attention_mask=m, decoder_input_ids=torch.tensor(dec)).logits.numpy()


def mx_forward(arch, model, ids, mask=None, dec=None):
    pad = None if mask is None else ~mask.astype(bool)
    if arch in DECODERS:
        return model.forward(ids, key_padding_mask=pad)
    if arch == "bert":
        return model.forward(ids, pad)
    return model.forward(ids, dec, pad)


def random_ids(vocab, shape, seed):
    return np.random.default_rng(seed).integers(0, vocab, size=shape)


@pytest.mark.parametrize("arch,i", CASES)
def test_logits_match_transformers(folders, arch, i):
    folder, hf, _ = folders(arch, i)
    model, _ = minitx.from_pretrained(folder)
    V = hf.config.vocab_size
    ids = random_ids(V, (3, 9), seed=i)
    dec = random_ids(V, (3, 5), seed=10 + i)
    got = mx_forward(arch, model, ids, dec=dec)
    ref = hf_forward(arch, hf, ids, dec=dec)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    if arch not in ("gpt2",):  # padding: the attention mask hides the last tokens of row 1
        mask = np.ones((3, 9), dtype=np.int64)
        mask[1, 6:] = 0
        np.testing.assert_allclose(mx_forward(arch, model, ids, mask, dec), hf_forward(arch, hf, ids, mask, dec),
                                   atol=1e-4, rtol=0)


def test_bert_classifier_logits_match(folders, tmp_path):
    folder, hf, _ = H.bert_folder(tmp_path / "cls", classifier=True, seed=3, n_labels=4)
    model, _ = minitx.from_pretrained(folder)
    assert type(model).__name__ == "EncoderClassifier" and model.n_classes == 4
    ids = random_ids(hf.config.vocab_size, (2, 7), seed=5)
    mask = np.ones((2, 7), dtype=np.int64)
    mask[0, 4:] = 0
    np.testing.assert_allclose(model.forward(ids, mask == 0), hf_forward("bert", hf, ids, mask), atol=1e-4, rtol=0)
    saved = tmp_path / "saved"
    minitx.save_pretrained(model, None, saved)
    again = transformers.BertForSequenceClassification.from_pretrained(saved).eval()
    np.testing.assert_allclose(hf_forward("bert", again, ids, mask), hf_forward("bert", hf, ids, mask), atol=1e-5)


def _hf_generate(arch, hf, ids, beams, n):
    with torch.no_grad():
        out = hf.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, num_beams=beams,
                          early_stopping=True, length_penalty=1.0)[0].tolist()
    out = out[len(ids):] if arch in DECODERS else out[1:]
    eos = hf.generation_config.eos_token_id
    return out[: out.index(eos) + 1] if eos in out else out


# transformers' BLOOM beam search alone takes about 10 s here: 4 beams are checked on BLOOM's first config only.
GENERATION_CASES = [(arch, i, beams) for arch, i in CASES if arch != "bert" for beams in (1, 4)
                    if not (arch == "bloom" and i > 0 and beams > 1)]


@pytest.mark.parametrize("arch,i,beams", GENERATION_CASES)
def test_generation_is_token_identical(folders, arch, i, beams):
    folder, hf, _ = folders(arch, i)
    model, tok = minitx.from_pretrained(folder)
    prompts = [tok.encode(t) for t in TEXTS]
    prompts.append(random_ids(hf.config.vocab_size, 6, seed=20 + i).tolist())  # pad ids and all
    n = 14
    got = generate(model, prompts, n, num_beams=beams)  # all prompts in one batch
    for prompt, mine in zip(prompts, got):
        assert mine == _hf_generate(arch, hf, prompt, beams, n), (arch, i, prompt)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bart", "t5", "bert"])
def test_tokenizer_ids_match(folders, arch):
    folder, _, tok = folders(arch, 0)
    _, mine = minitx.from_pretrained(folder)
    for text in TEXTS + ["Ünïcode 🤖 and\ttabs\nnewlines", "  spaces  ", "<s> and </s> [CLS] <|endoftext|>"]:
        assert mine.encode(text) == tok.encode(text).ids, text
        ids = tok.encode(text).ids
        assert mine.decode(ids) == tok.decode(ids), text


@pytest.mark.parametrize("arch,i", CASES)
def test_save_pretrained_round_trip(folders, arch, i, tmp_path):
    folder, hf, tok = folders(arch, i)
    model, mtok = minitx.from_pretrained(folder)
    minitx.save_pretrained(model, mtok, tmp_path)
    cls = type(hf)
    again = cls.from_pretrained(tmp_path).eval()
    V = hf.config.vocab_size
    ids, dec = random_ids(V, (2, 8), seed=30 + i), random_ids(V, (2, 4), seed=40 + i)
    np.testing.assert_allclose(hf_forward(arch, again, ids, dec=dec), hf_forward(arch, hf, ids, dec=dec), atol=1e-5)
    from tokenizers import Tokenizer

    assert Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode("hello world").ids == \
        tok.encode("hello world").ids
    reloaded, _ = minitx.from_pretrained(tmp_path)  # and minitx reads its own output
    np.testing.assert_array_equal(mx_forward(arch, reloaded, ids, dec=dec), mx_forward(arch, model, ids, dec=dec))


def test_save_a_minitx_gpt_and_transformers_agrees(tmp_path):
    from minitx.models import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=16), seed=3)
    minitx.save_pretrained(model, None, tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    ids = random_ids(40, (2, 10), seed=1)
    np.testing.assert_allclose(model.forward(ids), hf_forward("gpt2", hf, ids), atol=1e-5)


def test_loaded_models_are_inference_ready(folders):
    folder, _, _ = folders("gpt2", 0)
    model, tok = minitx.from_pretrained(folder)
    assert not model.training
    assert model.hf_architecture == "GPT2LMHeadModel"
    assert tok.kind == "bpe"


# --------------------------------------------------------------------------
# Bad folders: one clear error naming the file, the tensor or the architecture
# --------------------------------------------------------------------------
def _copy(folder, dst):
    import shutil

    shutil.copytree(folder, dst)
    return dst


def test_missing_files_are_named(folders, tmp_path):
    folder, _, _ = folders("gpt2", 0)
    with pytest.raises(PretrainedError, match="not a folder"):
        minitx.from_pretrained(tmp_path / "nowhere")
    broken = _copy(folder, tmp_path / "a")
    (broken / "config.json").unlink()
    with pytest.raises(PretrainedError, match=r"config\.json: file missing"):
        minitx.from_pretrained(broken)
    broken = _copy(folder, tmp_path / "b")
    (broken / "model.safetensors").unlink()
    with pytest.raises(PretrainedError, match=r"model\.safetensors: file missing"):
        minitx.from_pretrained(broken)
    (broken / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(PretrainedError, match="pickled"):
        minitx.from_pretrained(broken)


def test_bad_tensors_and_types_are_named(folders, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder, _, _ = folders("gpt2", 0)
    broken = _copy(folder, tmp_path / "shape")
    tensors = load_file(str(broken / "model.safetensors"))
    tensors["transformer.h.1.mlp.c_fc.weight"] = tensors["transformer.h.1.mlp.c_fc.weight"][:, :-1].copy()
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(PretrainedError, match=r"h\.1\.mlp\.c_fc\.weight \(32, 127\)"):
        minitx.from_pretrained(broken)
    del tensors["transformer.h.1.mlp.c_fc.weight"]
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(PretrainedError, match=r"tensor h\.1\.mlp\.c_fc\.weight missing"):
        minitx.from_pretrained(broken)
    for key, value, message in (("model_type", "mamba", "model_type 'mamba' is not supported"),
                                ("architectures", ["GPT2ForTokenClassification"], "architecture 'GPT2For"),
                                ("scale_attn_by_inverse_layer_idx", True, "scale_attn_by_inverse_layer_idx"),
                                ("activation_function", "quick_gelu", "activation_function=.quick_gelu.")):
        bad = _copy(folder, tmp_path / key)
        cfg = json.loads((bad / "config.json").read_text())
        cfg[key] = value
        (bad / "config.json").write_text(json.dumps(cfg))
        with pytest.raises(PretrainedError, match=message):
            minitx.from_pretrained(bad)
    bad = _copy(folder, tmp_path / "json")
    (bad / "config.json").write_text("{not json")
    with pytest.raises(PretrainedError, match="not valid JSON"):
        minitx.from_pretrained(bad)


@pytest.mark.parametrize("arch,key,value,message", [
    ("llama", "rope_parameters", {"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0}, "rope_type='linear'"),
    ("llama", "head_dim", 16, "head_dim=16 is not supported"),
    ("llama", "hidden_act", "gelu", "hidden_act='gelu' is not supported for Llama"),
    ("llama", "num_key_value_heads", 3, "n_kv_head=3 with n_head=4"),
    ("bloom", "apply_residual_connection_post_layernorm", True, "apply_residual_connection_post_layernorm=True"),
    ("bloom", "n_head", 5, "n_embd=24 with n_head=5"),
])
def test_llama_and_bloom_configs_minitx_cannot_run_are_named(folders, tmp_path, arch, key, value, message):
    folder, _, _ = folders(arch, 0)
    bad = _copy(folder, tmp_path / "bad")
    cfg = json.loads((bad / "config.json").read_text())
    cfg[key] = value
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PretrainedError, match=message):
        minitx.from_pretrained(bad)


def test_unsupported_tokenizer_and_generation_settings_are_named(folders, tmp_path):
    folder, _, _ = folders("bart", 0)
    bad = _copy(folder, tmp_path / "gen")
    cfg = json.loads((bad / "generation_config.json").read_text())
    cfg["no_repeat_ngram_size"] = 3
    (bad / "generation_config.json").write_text(json.dumps(cfg))
    model, tok = minitx.from_pretrained(bad)
    with pytest.raises(PretrainedError, match="no_repeat_ngram_size=3"):
        generate(model, [tok.encode("hello")], 4)
    bad = _copy(folder, tmp_path / "tok")
    spec = json.loads((bad / "tokenizer.json").read_text())
    spec["model"]["type"] = "WordLevel"
    (bad / "tokenizer.json").write_text(json.dumps(spec))
    model, tok = minitx.from_pretrained(bad)  # the model still loads; the tokenizer names the problem when used
    assert model.hf_architecture == "BartForConditionalGeneration"
    with pytest.raises(PretrainedError, match="tokenizer model 'WordLevel'"):
        tok.encode("hello")


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bloom", "bert", "bart", "t5"])
def test_loaded_models_have_a_correct_backward(folders, arch):
    """Ready for fine-tuning: the gradient checker passes on every loaded architecture (float64)."""
    from minitx.gradcheck import gradcheck_module

    folder, hf, _ = folders(arch, 0)
    model, _ = minitx.from_pretrained(folder, dtype=np.float64)
    V = hf.config.vocab_size
    ids = random_ids(V, (2, 5), seed=7)
    inputs = (ids,) if arch in DECODERS + ("bert",) else (ids, random_ids(V, (2, 3), seed=8))
    result = gradcheck_module(model, *inputs, max_elements=2)
    assert result.ok(1e-6), result
