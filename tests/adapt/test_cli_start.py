"""The CLI's first contact: quick help, clear one-line errors, no network, nothing heavy imported."""

import inspect
import json
import os
import subprocess
import sys

import pytest

from sam3_adapt.cli import EXTRA_VERBS, verb_function

# A fresh interpreter where every network connection fails; it runs the CLI and reports what it did.
PROBE = """
import io, json, socket, sys, contextlib
calls = []
def refuse(*args, **kwargs):
    calls.append(str(args[1:2]))
    raise OSError("network is off in this test")
socket.socket.connect = refuse
socket.getaddrinfo = refuse
from sam3_adapt.cli import main
out, err, code = io.StringIO(), io.StringIO(), 0
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
        main(json.loads(sys.argv[1]))
    except SystemExit as stop:
        code = stop.code or 0
heavy = sorted(m for m in ("torch", "lightning", "transformers") if m in sys.modules)
print(json.dumps({"code": code, "out": out.getvalue(), "err": err.getvalue(), "heavy": heavy, "net": calls}))
"""


def probe(args: list[str], cache) -> dict:
    env = dict(os.environ, SAM3_ADAPT_CACHE=str(cache))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_overview_version_and_a_mistyped_verb_need_no_heavy_import(tmp_path):
    overview = probe(["--help"], tmp_path)
    assert overview["code"] == 0 and "make-shapes" in overview["out"] and overview["heavy"] == []
    version = probe(["--version"], tmp_path)
    assert version["code"] == 0 and version["out"].startswith("sam3-adapt ")
    typo = probe(["dmeo"], tmp_path)
    assert typo["code"] == 2 and typo["heavy"] == []
    assert "Did you mean 'demo'?" in typo["err"] and "mine-negatives" in typo["err"]


def test_fit_without_a_recipe_says_what_is_missing_in_one_line_and_touches_no_network(tmp_path):
    done = probe(["fit"], tmp_path)
    assert done["code"] == 2
    lines = done["err"].strip().splitlines()
    assert len(lines) == 1 and "no recipe given" in lines[0] and "tiny-cpu" in lines[0]
    assert done["heavy"] == [] and done["net"] == []


def test_a_verbs_help_comes_from_the_cache_the_second_time(tmp_path):
    first = probe(["fit", "--help"], tmp_path)
    assert first["code"] == 0 and "--model.checkpoint" in first["out"]
    second = probe(["fit", "--help"], tmp_path)
    assert second["out"] == first["out"] and second["heavy"] == []
    assert len(list((tmp_path / "help").glob("fit-*.txt"))) == 1


def test_an_unknown_recipe_is_one_line_without_traceback(tmp_path):
    done = probe(["fit", "--config", "no-such-recipe"], tmp_path)
    assert done["code"] == 1
    assert done["err"].count("\n") == 1 and "Traceback" not in done["err"]
    assert "no recipe 'no-such-recipe'" in done["err"] and "tiny-10shot" in done["err"]


@pytest.mark.parametrize("verb", sorted(EXTRA_VERBS))
def test_the_overview_summary_of_each_verb_is_its_docstrings_first_line(verb):
    first = inspect.getdoc(verb_function(verb)).splitlines()[0]
    assert EXTRA_VERBS[verb].summary == first


@pytest.mark.parametrize("verb", sorted(EXTRA_VERBS))
def test_no_verb_has_a_parameter_that_jsonargparse_takes_for_its_own_config_option(verb):
    # jsonargparse's CLI keeps --config for a file of the verb's arguments: a parameter of that name
    # would silently keep its default (`memory --config full-finetune` estimated lora-10shot).
    assert "config" not in inspect.signature(verb_function(verb)).parameters


def test_memory_takes_its_recipe_from_config_as_fit_does(tmp_path, capsys):
    from sam3_adapt.cli import main

    recipe = tmp_path / "full-tiny.yaml"
    recipe.write_text("model:\n  checkpoint: tiny-random\n  adaptation: full\ndata:\n  image_size: 224\n")
    main(["memory", "--config", str(recipe), "--phrases", "[1]"])
    main(["memory", f"--config={recipe}", "--phrases", "[1]"])
    main(["memory", str(recipe), "--phrases", "[1]"])
    lines = capsys.readouterr().out.splitlines()
    headers = [line for line in lines if line.startswith(recipe.name)]
    assert len(headers) == 3 and all("tiny-random at 224 px" in line for line in headers)
