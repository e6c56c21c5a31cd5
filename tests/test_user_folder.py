"""The kit works from a user's own project folder, whatever it holds: a ``model.py``, a ``recipes/``."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture
def user_folder(tmp_path):
    """A folder whose own ``model.py``, ``adapt.py`` and ``recipes/`` would shadow generic package names."""
    (tmp_path / "model.py").write_text("raise ImportError('the user model.py was imported')\n")
    (tmp_path / "adapt.py").write_text("raise ImportError('the user adapt.py was imported')\n")
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "mine.yaml").write_text("model: {}\n")
    return tmp_path


def test_imports_and_help_work_beside_a_users_model_py(user_folder):
    python = run([sys.executable, "-c", "from sam3_adapt.model import load_sam3; print('ok')"], user_folder)
    assert python.returncode == 0 and python.stdout.strip() == "ok", python.stderr
    overview = run([str(BIN / "sam3-adapt"), "--help"], user_folder)
    assert overview.returncode == 0 and "demo" in overview.stdout, overview.stderr
    demo = run([str(BIN / "sam3-adapt"), "demo", "--help"], user_folder)
    assert demo.returncode == 0 and "--domain" in demo.stdout, demo.stderr
    module = run([sys.executable, "-m", "sam3_adapt.cli", "--help"], user_folder)
    assert module.returncode == 0 and "make-shapes" in module.stdout, module.stderr


@pytest.mark.slow
def test_a_two_step_fit_of_a_named_recipe_beside_a_users_recipes_folder(user_folder):
    cli = str(BIN / "sam3-adapt")
    shapes = run([cli, "make-shapes", "--out", "runs/shapes", "--num_images", "4"], user_folder)
    assert shapes.returncode == 0, shapes.stderr
    fit = run([cli, "fit", "--config", "tiny-cpu", "--trainer.max_steps", "2"], user_folder)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert list((user_folder / "runs" / "tiny-cpu").rglob("last.ckpt"))
