"""Mistyped flags and commands: the subcommand's own usage, the nearest name, exit 2."""
import pytest

from minitx.cli import main


@pytest.mark.parametrize("argv, usage, hint", [
    (["generate", "--checkpoint", "x", "--temprature", "0.8"], "usage: minitx generate", "did you mean --temperature?"),
    (["train", "--max-iter", "3", "--lr-rate", "1"], "usage: minitx train", "did you mean --lr?"),
    (["genrate"], "usage: minitx ", "did you mean 'generate'?"),
    (["tokenizer", "encod"], "usage: minitx tokenizer", "did you mean 'encode'?"),
    (["train-classifer", "--out", "x"], "usage: minitx ", "did you mean 'train-classifier'?"),
])
def test_mistyped_names_get_the_subcommand_usage_and_a_suggestion(argv, usage, hint, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert usage in err and hint in err, err
    assert "Traceback" not in err


def test_a_flag_with_no_near_name_gets_no_suggestion(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--checkpoint", "x", "--zzzzzz"])
    err = capsys.readouterr().err
    assert "unrecognized argument: --zzzzzz" in err and "did you mean" not in err


def test_gpu_skip_reason_fits_a_machine_without_a_gpu(monkeypatch):
    """No GPU at all: the reason says so and where GPU tests run, not "install CuPy"."""
    import conftest

    monkeypatch.setattr(conftest, "_nvidia_gpu_present", lambda: False)
    ok, why = conftest._gpu_available()
    if ok:
        pytest.skip("this machine has a usable GPU")
    assert "no CUDA GPU on this machine" in why and "tools/gpu_check.sh" in why and "pip install" not in why


def _all_parsers():
    import argparse

    from minitx.cli import build_parser

    todo = [build_parser()]
    while todo:
        parser = todo.pop()
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())


def test_every_option_says_what_it_is_and_its_default():
    """--help is where a newcomer looks: each option has help text, and each that takes a value shows its default."""
    import argparse

    missing = []
    for parser in _all_parsers():
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            flag = f"{parser.prog} {action.option_strings[-1]}"
            takes_value = action.nargs != 0
            if not action.help:
                missing.append(f"{flag}: no help")
            elif takes_value and not action.required and "default" not in action.help:
                missing.append(f"{flag}: no default in {action.help!r}")
    assert not missing, "\n".join(missing)


def test_help_is_plain_text():
    for parser in _all_parsers():
        text = parser.format_help()
        assert "``" not in text and ":class:" not in text and ":func:" not in text, parser.prog
