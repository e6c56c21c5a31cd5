"""A plain (non-editable) install: one top-level package, and the CLI works from any folder."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The kit's wheel, built offline from a copy of the tracked files (the checkout stays clean)."""
    source = tmp_path_factory.mktemp("source")
    listing = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    files = subprocess.run(listing, cwd=ROOT, capture_output=True, text=True, check=True)
    for name in files.stdout.splitlines():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)]
    subprocess.run([*build, str(source)], check=True, capture_output=True, timeout=600)
    return next(dist.glob("sam3_adapt-*.whl"))


def test_the_wheel_installs_exactly_one_top_level_package(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/RECORD"))
        top_level = archive.read(f"{info}/top_level.txt").decode().split()
    assert top_level == ["sam3_adapt"]
    assert {name.split("/")[0] for name in names} == {"sam3_adapt", info}
    assert "sam3_adapt/recipes/tiny-cpu.yaml" in names
    assert "sam3_adapt/model/assets/tiny-sam3/model.safetensors" in names
    assert "sam3_adapt/review_page/page.html" in names  # the review page is package data


@pytest.mark.slow
def test_a_named_recipe_fits_from_an_empty_folder_after_a_plain_install(wheel, tmp_path):
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site)]
    subprocess.run([*install, str(wheel)], check=True, capture_output=True, timeout=300)
    work = tmp_path / "empty"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site))

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "sam3_adapt.cli", *args]
        return subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)

    where = subprocess.run(
        [sys.executable, "-c", "import sam3_adapt; print(sam3_adapt.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(site)
    assert cli("make-shapes", "--out", "runs/shapes", "--num_images", "4").returncode == 0
    fit = cli("fit", "--config", "tiny-cpu", "--trainer.max_steps", "2")
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert list((work / "runs" / "tiny-cpu").rglob("last.ckpt"))
