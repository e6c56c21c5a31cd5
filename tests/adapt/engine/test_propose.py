import json
import shutil

import pytest

from sam3_adapt.cli import main
from sam3_adapt.engine.pool import PoolError
from sam3_adapt.engine.propose import TrainerOptions, propose
from sam3_adapt.engine.signals import EV_SIGNALS, MV_SIGNALS
from sam3_adapt.engine.store import ProposalRunError, read_proposals, run_info

from .conftest import PHRASES

CPU = TrainerOptions(accelerator="cpu")


def test_proposals_hold_presence_instances_and_signals_per_pair(proposals):
    records = read_proposals(proposals)
    assert len(records) == 4
    for record in records.values():
        assert [p["phrase"] for p in record["pairs"]] == PHRASES
        for pair in record["pairs"]:
            assert 0.0 <= pair["presence"] <= 1.0
            assert set(pair["signals"]) == set(EV_SIGNALS)
            for inst in pair["instances"]:
                assert inst["score"] >= 0.5 and len(inst["box"]) == 4
                assert inst["segmentation"]["size"] == [record["height"], record["width"]]
                assert set(inst["signals"]) == set(MV_SIGNALS)
                assert 0.0 <= inst["signals"]["stability"] <= 1.0
    # The pretrained tiny base knows the anchor world: it finds objects there.
    assert sum(len(p["instances"]) for r in records.values() for p in r["pairs"]) > 0


def test_propose_resumes_without_redoing_images(anchor_pool, proposals, tmp_path):
    pool = tmp_path / "pool"
    shutil.copytree(anchor_pool[1], pool)
    names = sorted(p.name for p in pool.iterdir())
    held = [pool / name for name in names[2:]]
    for path in held:  # the first run sees two images
        path.rename(tmp_path / path.name)
    out = tmp_path / "run"
    first = propose(str(pool), PHRASES, str(out), progress=False, trainer=CPU)
    assert (first["images"], first["new"]) == (2, 2)
    shard = out / "shard-0.jsonl"
    before = shard.read_text()
    # A killed run leaves half a line: it is dropped and that image done again.
    shard.write_text(before + '{"file_name": "' + names[2] + '", "pai')
    for path in held:
        (tmp_path / path.name).rename(path)
    second = propose(str(pool), PHRASES, str(out), progress=False, trainer=CPU)
    assert (second["images"], second["new"]) == (4, 2)
    lines = shard.read_text().splitlines()
    assert lines[:2] == before.splitlines()  # the first two images were not redone
    assert [json.loads(line)["file_name"] for line in lines] == names
    third = propose(str(pool), PHRASES, str(out), progress=False, trainer=CPU)
    assert third["new"] == 0 and shard.read_text().splitlines() == lines
    # Same images, same model: the same proposals as the one-go run.
    assert read_proposals(out) == read_proposals(proposals)


def test_a_folder_of_another_run_is_not_mixed_in(proposals, anchor_pool):
    run_id = run_info(proposals)["run_id"]
    with pytest.raises(ProposalRunError, match="threshold"):
        propose(str(anchor_pool[1]), PHRASES, str(proposals), threshold=0.6, progress=False)
    assert run_info(proposals)["run_id"] == run_id and len(read_proposals(proposals)) == 4


def test_bad_pools_and_phrase_lists_are_named(tmp_path, anchor_pool):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PoolError, match="holds no image"):
        propose(str(empty), PHRASES, str(tmp_path / "a"), progress=False)
    with pytest.raises(PoolError, match="no phrase"):
        propose(str(anchor_pool[1]), [" ", ""], str(tmp_path / "b"), progress=False)
    (tmp_path / "phrases.txt").write_text("# nothing but a comment\n")
    with pytest.raises(PoolError, match="phrases.txt: no phrase"):
        propose(str(anchor_pool[1]), str(tmp_path / "phrases.txt"), str(tmp_path / "b"), progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_unreadable_images_are_named_and_skipped_or_raise(tmp_path, anchor_pool, capsys):
    pool = tmp_path / "pool"
    shutil.copytree(anchor_pool[1], pool)
    (pool / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (pool / "empty.jpg").write_bytes(b"")
    summary = propose(str(pool), PHRASES[:1], str(tmp_path / "run"), progress=False, trainer=CPU)
    assert summary["images"] == 4 and len(summary["skipped_unreadable"]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "empty.jpg" in err
    with pytest.raises(PoolError, match="broken.png: unreadable pool image"):
        propose(str(pool), PHRASES[:1], str(tmp_path / "run2"), on_error="raise", progress=False)


def test_an_adapter_for_another_base_is_refused_before_anything_is_written(tmp_path, anchor_pool):
    from sam3_adapt.model.adaptation import LoraSettings, apply_lora
    from sam3_adapt.model.loading import load_sam3
    from sam3_adapt.model.persistence import save_adapter

    network, _ = load_sam3("tiny-random")
    adapter = save_adapter(apply_lora(network, LoraSettings(rank=2)), tmp_path / "adapter", "tiny-random")
    with pytest.raises(ValueError, match="tiny-random"):
        propose(str(anchor_pool[1]), PHRASES, str(tmp_path / "run"), model="tiny", adapter=str(adapter))
    assert not (tmp_path / "run").exists()


def test_the_cli_gives_one_line_for_an_empty_pool(tmp_path, capsys):
    (tmp_path / "pool").mkdir()
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "propose",
                "--pool",
                str(tmp_path / "pool"),
                "--phrases",
                "[circle]",
                "--out",
                str(tmp_path / "o"),
            ]
        )
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no image" in err[0] and err[0].startswith("sam3-adapt propose: error:")


def test_a_coco_file_with_missing_labels_is_a_pool_too(anchor_pool, tmp_path):
    from sam3_adapt.engine.pool import read_pool

    document = json.loads(anchor_pool[0].read_text())
    document["annotations"] = document["annotations"][:1]  # partial labels: proposals cover every image
    document["images"].append({"id": 99, "file_name": "gone.png", "width": 168, "height": 168})
    coco = tmp_path / "partial.json"
    coco.write_text(json.dumps(document))
    images, unreadable = read_pool(coco, anchor_pool[1])
    assert [i.file_name for i in images] == sorted(i["file_name"] for i in document["images"][:-1])
    assert len(unreadable) == 1 and "gone.png" in unreadable[0]
    with pytest.raises(PoolError, match="not a COCO file"):
        read_pool(anchor_pool[1] / "0000.png")
