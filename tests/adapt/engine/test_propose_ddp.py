import json
import shutil

import pytest

from sam3_adapt.engine.propose import TrainerOptions, propose
from sam3_adapt.engine.store import read_proposals

from .conftest import PHRASES

CPU = TrainerOptions(accelerator="cpu")


@pytest.mark.slow
def test_two_gloo_processes_give_the_same_proposals_as_one(anchor_pool, tmp_path):
    # Three images on two processes: Lightning's predict loop splits them without repeats (2 + 1).
    pool = tmp_path / "pool"
    pool.mkdir()
    for path in sorted(anchor_pool[1].iterdir())[:3]:
        shutil.copy(path, pool / path.name)
    common = {"images_per_step": 1, "progress": False, "trainer": CPU}
    one = propose(str(pool), PHRASES, str(tmp_path / "one"), **common)
    two = propose(
        str(pool),
        PHRASES,
        str(tmp_path / "two"),
        **{**common, "trainer": TrainerOptions(devices=2, accelerator="cpu", strategy="ddp_spawn")},
    )
    shards = sorted(p.name for p in (tmp_path / "two").glob("shard-*.jsonl"))
    assert shards == ["shard-0.jsonl", "shard-1.jsonl"]
    lines = [json.loads(line) for s in shards for line in (tmp_path / "two" / s).read_text().splitlines()]
    assert len(lines) == len({line["file_name"] for line in lines}) == 3
    assert all((tmp_path / "two" / s).read_text() for s in shards)  # both processes proposed
    assert one["images"] == two["images"] == 3 and one["instances"] == two["instances"] > 0
    assert read_proposals(tmp_path / "two") == read_proposals(tmp_path / "one")
