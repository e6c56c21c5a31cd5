from pathlib import Path

import pytest

from adapt.recipe_files import recipe_path, recipes_folder

ROOT = Path(__file__).parents[2]
tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def test_every_recipe_is_package_data_so_a_plain_install_has_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    assert "recipes*" in setuptools["packages"]["find"]["include"]
    patterns = setuptools["package-data"]["recipes"]
    shipped = {p for pattern in patterns for p in (ROOT / "recipes").glob(pattern)}
    assert shipped == set((ROOT / "recipes").rglob("*.yaml"))


def test_named_recipes_resolve_from_the_recipes_package():
    assert recipes_folder().resolve() == (ROOT / "recipes").resolve()
    assert recipe_path("box-only") == recipes_folder() / "box-only.yaml"
    with pytest.raises(FileNotFoundError, match="lora-10shot"):
        recipe_path("no-such-recipe")
