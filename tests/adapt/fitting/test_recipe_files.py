from pathlib import Path

import pytest

from sam3_adapt.fitting.recipe_files import recipe_names, recipe_path, recipes, recipes_folder

ROOT = Path(__file__).parents[3]
tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def test_every_recipe_is_package_data_so_a_plain_install_has_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    assert "sam3_adapt.recipes" in setuptools["packages"]
    assert setuptools["package-dir"]["sam3_adapt.recipes"] == "recipes"
    patterns = setuptools["package-data"]["sam3_adapt.recipes"]
    shipped = {p for pattern in patterns for p in (ROOT / "recipes").glob(pattern)}
    assert shipped == set((ROOT / "recipes").rglob("*.yaml"))


def test_named_recipes_resolve_from_the_recipes_package():
    assert recipes_folder().resolve() == (ROOT / "recipes").resolve()
    assert recipe_path("box-only") == recipes_folder() / "box-only.yaml"
    assert "tiny-10shot" in recipe_names()
    with pytest.raises(FileNotFoundError, match="lora-10shot"):
        recipe_path("no-such-recipe")


def test_a_users_own_file_wins_and_a_recipes_path_falls_back_to_the_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert recipe_path("recipes/tiny-cpu.yaml") == recipes_folder() / "tiny-cpu.yaml"
    own = tmp_path / "recipes" / "tiny-cpu.yaml"
    own.parent.mkdir()
    own.write_text("model: {}\n")
    assert recipe_path("recipes/tiny-cpu.yaml") == Path("recipes/tiny-cpu.yaml")
    with pytest.raises(FileNotFoundError):
        recipe_path("elsewhere/tiny-cpu.yaml")


def test_the_recipes_verb_lists_them_and_copies_one_out_without_overwriting(tmp_path, capsys):
    assert recipes() == recipe_names()
    listing = capsys.readouterr().out
    assert all(line.split()[0] in recipe_names() for line in listing.splitlines())
    [written] = recipes(copy="tiny-cpu", out=str(tmp_path / "mine.yaml"))
    assert Path(written).read_text() == (recipes_folder() / "tiny-cpu.yaml").read_text()
    with pytest.raises(FileExistsError, match="mine.yaml exists"):
        recipes(copy="tiny-cpu", out=written)
    with pytest.raises(FileNotFoundError, match="no shipped recipe 'nope'"):
        recipes(copy="nope")
