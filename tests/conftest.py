import os

import pytest
import torch

# Tests never reach a hub, and they share two cores with whatever else runs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Built-in models are written into a per-session cache, never into the user's home."""
    monkeypatch.setenv("SAM3_ADAPT_CACHE", str(tmp_path_factory.getbasetemp() / "sam3-adapt-cache"))
