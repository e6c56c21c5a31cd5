"""The shipped recipes: YAML data only, found through ``importlib.resources``.

`sam3_adapt.fitting.recipe_files` looks them up by name.
"""
