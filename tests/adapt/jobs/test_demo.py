"""The main job's code path end to end, on a small world and the random tiny model."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sam3_adapt.fitting.recipe_files import recipe_path
from sam3_adapt.jobs.demo import demo
from sam3_adapt.model.loading import load_sam3
from sam3_adapt.model.tiny import write_tiny_random_sam3

README = Path(__file__).parents[3] / "README.md"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return write_tiny_random_sam3(tmp_path_factory.mktemp("base") / "base-168", image_size=168)


def small(out: Path, base: Path, *extra: str) -> list[str]:
    """``sam3-adapt demo`` on a world small enough for a test."""
    args = ["--out", str(out), "--shots", "2", "--base", str(base), "--anchor_images", "4"]
    return [sys.executable, "-m", "sam3_adapt.cli", "demo", *args, "--val_images", "2", *extra]


def test_demo_evaluates_the_same_held_out_sets_before_and_after_and_saves_an_adapter(tmp_path, capsys, base):
    results = demo(
        domain="industrial",
        out=str(tmp_path / "demo"),
        shots=2,
        base=str(base),
        max_epochs=1,
        anchor_images=4,
        val_images=2,
    )
    saved = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    for when in ("before", "after"):
        assert {"target", "anchor"} <= results[when].keys()
        assert "segm/AP" in results[when]["target"] and "cgF1" in results[when]["anchor"]
    world = tmp_path / "demo" / "world"
    train = json.loads((world / "industrial" / "train" / "annotations.json").read_text())
    assert len(train["images"]) == 2
    table = capsys.readouterr().out
    assert "| target (industrial) | segm/AP |" in table and results["adapter"] in table
    model, _ = load_sam3(str(base), adapter=results["adapter"])
    assert any("lora_" in name for name, _ in model.named_parameters())
    assert Path(results["picture"]).stat().st_size > 10_000
    # Every demo output the README names is where the demo puts it.
    named = set(re.findall(r"runs/demo/([\w./-]*[\w])", README.read_text()))
    assert {"adapter", "results.json", "before_after.png"} <= named
    for path in named:
        assert (tmp_path / "demo" / path).exists(), f"README names runs/demo/{path}; the demo writes none"


def test_the_readme_step_count_is_the_recipes():
    recipe = yaml.safe_load(recipe_path("tiny-10shot").read_text())
    steps = recipe["trainer"]["max_steps"]
    text = README.read_text()
    assert f"`recipes/tiny-10shot.yaml`,\n{steps} steps" in text  # the demo's paragraph
    claimed = {int(n) for n in re.findall(r"(\d+) steps for 10 shots", text)}
    assert claimed == {steps}


@pytest.mark.slow
def test_a_demo_writing_to_a_log_shows_step_lines_while_it_trains(tmp_path, base):
    log = tmp_path / "log.txt"
    with log.open("w") as out:
        done = subprocess.run(small(tmp_path / "demo", base, "--max_epochs", "2"), stdout=out, timeout=600)
    assert done.returncode == 0
    lines = log.read_text().splitlines()
    steps = [line for line in lines if re.match(r"step \d+/\d+ +epoch \d+ +loss [\d.]+ +elapsed", line)]
    assert len(steps) >= 2, lines[-20:]
    # No progress bar redrawn into the file ("Epoch 0/1 ━━━━ 2/2 0:00:01 • 0:00:00 1.2it/s").
    assert not any("it/s" in line and "/" in line for line in lines), lines


@pytest.mark.slow
def test_a_killed_demo_resumes_from_its_checkpoint(tmp_path, base):
    recipe = yaml.safe_load(recipe_path("tiny-10shot").read_text())
    recipe["trainer"]["max_steps"] = 24  # 12 passes of two batches of 4 (2 shots + 4 anchor images)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    command = small(tmp_path / "demo", base, "--recipe", str(path))
    last = tmp_path / "demo" / "fit" / "checkpoints" / "last.ckpt"
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not last.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, "the demo ended before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming the fit from" in second.stdout
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert results["steps"] == 24  # no step lost
