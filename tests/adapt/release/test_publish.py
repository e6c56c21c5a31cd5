"""`sam3-adapt publish`: a finished run becomes a Hub folder that reloads to the trained model's outputs."""

import csv
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from peft import PeftModel
from PIL import Image
from transformers import Sam3Model, Sam3Processor

from sam3_adapt.data_mix.synthetic.shapes import write_shapes_coco
from sam3_adapt.fitting.lightning_cli import lightning_cli
from sam3_adapt.fitting.out_folder import OutFolderError, check_complete
from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.loading import load_sam3, resolve_checkpoint
from sam3_adapt.release.model_card import IMAGE_PLACEHOLDER
from sam3_adapt.release.publish import publish
from sam3_adapt.release.upload import PublishError, upload
from tests.adapt.release.fake_hub import TOKEN, fake_hub
from tests.robustness.test_run_folders import kill_when_writing

# One real fit feeds every test here: an end-to-end file.
pytestmark = pytest.mark.slow
PHRASES = ["red circle", "blue square"]


def outputs_of(segmenter: ConceptSegmenter) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out = segmenter.eval()(images, PHRASES, torch.tensor([0, 0]))
    return out.logits, out.boxes, out.presence_logits, out.masks


def assert_same_outputs(network, processor, expected, tol: float = 0.0) -> None:
    got = outputs_of(ConceptSegmenter(network, processor.tokenizer))
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=tol, rtol=tol)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A real LoRA fit through the CLI (2 steps, validated every epoch) and the trained model's outputs."""
    root = tmp_path_factory.mktemp("run")
    train_json, train_images = write_shapes_coco(root / "cells/train", num_images=2, image_size=64, seed=0)
    val_json, val_images = write_shapes_coco(root / "cells/val", num_images=2, image_size=64, seed=1)
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(root)}}
    cli = lightning_cli(
        [
            "--config=recipes/tiny-10shot.yaml",
            "--model.checkpoint=tiny-random",
            "--model.lr_detector=1e-2",
            "--model.lr_text=1e-2",
            "--model.warmup_steps=0",
            f"--data.train_json={train_json}",
            f"--data.image_dir={train_images}",
            f"--data.val_json={val_json}",
            f"--data.val_image_dir={val_images}",
            "--data.image_size=224",
            "--data.batch_size=2",
            f"--trainer.default_root_dir={root}",
            "--trainer.logger=" + json.dumps(logger),
            "--trainer.max_steps=2",
            "--trainer.check_val_every_n_epoch=1",
            "--trainer.log_every_n_steps=1",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ],
        run=False,
    )
    cli.trainer.fit(cli.model, cli.datamodule)
    run = root / "lightning_logs" / "version_0"
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, fake_hub(patch, root) as hub:
        with redirect_stdout(printed), redirect_stderr(printed):
            folder = publish(
                str(run),
                repo_id="org/cells-lora",
                out=str(root / "published"),
                private=True,
                commit_message="first cells adapter",
                num_samples=1,
            )
    return {
        "run": run,
        "folder": folder,
        "hub": hub,
        "printed": printed.getvalue(),
        "expected": outputs_of(cli.model.segmenter),
        "train_json": train_json,
        "val_image": next(iter(sorted(val_images.glob("*.png")))),
    }


def file_digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def last_validation_from_csv(metrics_csv: Path) -> dict[str, float]:
    rows = [r for r in csv.DictReader(metrics_csv.open()) if any(r[k] for k in r if k.startswith("val/"))]
    assert rows, "the fixture run must have validated"
    return {k.removeprefix("val/"): float(v) for k, v in rows[-1].items() if k.startswith("val/") and v}


def run_usage_snippet(card: ModelCard, image: Path) -> dict:
    code = re.search(r"```python\n(.*?)```", card.text, re.S).group(1)
    assert IMAGE_PLACEHOLDER in code
    namespace: dict = {}
    exec(code.replace(IMAGE_PLACEHOLDER, str(image)), namespace)
    return namespace["result"]


def test_published_adapter_reloads_to_the_trained_outputs_and_carries_its_card(trained):
    folder, run, expected = trained["folder"], trained["run"], trained["expected"]
    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md", "metrics.json"):
        assert (folder / name).is_file(), name
    assert (folder / "recipe.yaml").read_text() == (run / "config.yaml").read_text()
    assert (folder / "data" / "train.json").read_bytes() == trained["train_json"].read_bytes()
    for figure in ("training_curves.png", "predictions.png"):
        with Image.open(folder / "figures" / figure) as png:
            assert png.width > 100 and png.height > 100

    base, processor = load_sam3("tiny-random")
    with pytest.raises(AssertionError):  # the adapter changed the model, so equality below means something
        assert_same_outputs(base, processor, expected)
    base_only = Sam3Model.from_pretrained(resolve_checkpoint("tiny-random"))
    plain = PeftModel.from_pretrained(base_only, str(folder))
    assert_same_outputs(plain, processor, expected)
    loaded, processor = load_sam3("tiny-random", adapter=str(folder))
    assert_same_outputs(loaded, processor, expected)

    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "peft" and card.data.license == "apache-2.0"
    assert "sam3" in card.data.tags and "lora" in card.data.tags
    assert card.data.base_model is None  # the built-in tiny base is not a Hub model; the text names it
    assert "`tiny-random`" in card.text
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    logged = last_validation_from_csv(run / "metrics.csv")
    assert results == logged == json.loads((folder / "metrics.json").read_text())["metrics"]
    assert {"segm/AP", "bbox/AP", "cgF1"} <= set(results)
    assert {r.dataset_name for r in card.data.eval_results} == {"cells/train"}


def test_merged_variant_loads_with_sam3model_and_reports_a_metrics_json(trained, tmp_path):
    # The layout of `sam3-adapt evaluate`'s metrics.json (adapt/evaluation/run.py), cut down.
    evaluation = {
        "model": {"label": "tiny-random + adapter", "metrics": {"segm/AP": 0.25, "cgF1": 0.125}},
        "baseline": {"label": "tiny-random (base)", "metrics": {"segm/AP": 0.0, "cgF1": 0.0}},
        "data": {"images": 2, "phrases": ["red circle"]},
    }
    (tmp_path / "eval.json").write_text(json.dumps(evaluation))
    folder = publish(
        str(trained["run"] / "checkpoints" / "last.ckpt"),
        out=str(tmp_path / "merged"),
        kind="merged",
        metrics=str(tmp_path / "eval.json"),
        dataset="org/cells",
        num_samples=0,
    )
    assert not (folder / "adapter_config.json").exists()
    merged = Sam3Model.from_pretrained(folder)
    assert_same_outputs(merged, Sam3Processor.from_pretrained(folder), trained["expected"], tol=1e-4)

    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "transformers" and card.data.datasets == ["org/cells"]
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results == {"segm/AP": 0.25, "cgF1": 0.125}
    assert "`sam3-adapt evaluate` on 2 held-out images" in card.text
    assert {r.dataset_type for r in card.data.eval_results} == {"org/cells"}
    result = run_usage_snippet(card, trained["val_image"])
    assert result["masks"].shape[-2:] == (64, 64)


def test_a_run_that_logged_no_training_loss_publishes_without_curves(trained, tmp_path):
    # A run shorter than log_every_n_steps: its metrics.csv holds validation rows only.
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    with (trained["run"] / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if not r.get("train/loss")]
    with (run / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=[k for k in rows[0] if not k.startswith("train/")], extrasaction="ignore"
        )
        writer.writeheader()
        writer.writerows(rows)
    folder = publish(str(run), out=str(tmp_path / "published"), num_samples=0)
    assert not (folder / "figures" / "training_curves.png").exists()
    assert "Training curves" not in (folder / "README.md").read_text()
    assert json.loads((folder / "metrics.json").read_text())["metrics"] == last_validation_from_csv(
        run / "metrics.csv"
    )


def test_publish_uploaded_the_folder_and_it_loads_back_by_name(trained, tmp_path, monkeypatch, capsys):
    folder, hub = trained["folder"], trained["hub"]
    repo = hub.repos["org/cells-lora"]
    local = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    arrived = hub.files("org/cells-lora")
    assert repo.private and arrived.pop(".gitattributes")
    assert arrived == local
    assert repo.commits[repo.refs["main"]].message == "first cells adapter"
    assert all(authorized for method, _, _, authorized in hub.requests if method == "POST")
    assert "validate_yaml" in {route for _, route, _, _ in hub.requests}  # the card's metadata passed

    with fake_hub(monkeypatch, tmp_path, repos=hub.repos) as hub:
        # Anyone with access loads it by name through the same client (downloads go to HF_ENDPOINT).
        loaded, processor = load_sam3("tiny-random", adapter="org/cells-lora")
        assert_same_outputs(loaded, processor, trained["expected"])
        # The card's usage snippet, as a colleague would paste it, runs against the Hub copy.
        result = run_usage_snippet(ModelCard.load(folder / "README.md"), trained["val_image"])
        assert result["masks"].shape[-2:] == (64, 64)

        # A branch, and a pull request instead of a push.
        upload(str(folder), "org/cells-lora", revision="dev", commit_message="to dev")
        assert hub.files("org/cells-lora", "dev") == hub.files("org/cells-lora")
        assert repo.commits[repo.refs["dev"]].message == "to dev"
        update = shutil.copytree(folder, tmp_path / "update")
        (update / "README.md").write_text(local["README.md"].decode() + "\nUpdated.\n")
        sent = len(hub.requests)
        with pytest.raises(OutFolderError, match="README.md changed since it was written"):
            upload(str(update), "org/cells-lora", create_pr=True)  # edited: not what publish wrote
        with pytest.raises(OutFolderError, match="does not exist"):
            upload(str(tmp_path / "no-such-folder"), "org/cells-lora")
        assert len(hub.requests) == sent  # refused before anything was sent
        publish(str(trained["run"]), out=str(update), overwrite=True, num_samples=0)
        (update / "README.md").unlink()
        with pytest.raises(OutFolderError, match="README.md is listed in manifest.json but missing"):
            upload(str(update), "org/cells-lora", create_pr=True)
        url = upload(str(folder), "org/cells-lora", create_pr=True, commit_message="proposal")
        assert url.endswith("/org/cells-lora/discussions/1")
        assert hub.files("org/cells-lora", "refs/pr/1") == hub.files("org/cells-lora")

    printed = capsys.readouterr()
    for text in (trained["printed"], printed.out, printed.err):
        assert TOKEN not in text
    for root in (tmp_path, folder.parent):
        assert all(TOKEN.encode() not in p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_failed_upload_keeps_the_folder_and_its_retry_command_works(trained, tmp_path, monkeypatch):
    folder = trained["folder"]
    before = file_digests(folder)
    with fake_hub(monkeypatch, tmp_path) as hub:
        hub.failures["commit"] = (403, "storage quota exceeded")
        with pytest.raises(PublishError, match="storage quota exceeded") as failure:
            upload(str(folder), "org/retry", private=True, commit_message="retry me")
        assert file_digests(folder) == before
        retry = re.search(r"retry with:\n\s+(.+)$", str(failure.value)).group(1)
        assert shlex.split(retry)[:5] == ["hf", "upload", "org/retry", str(folder), "."]

        del hub.failures["commit"]
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        subprocess.run(shlex.split(retry), env=env, check=True, capture_output=True, timeout=120)
        arrived = hub.files("org/retry")
        assert hub.repos["org/retry"].private
        assert {name: hashlib.sha256(arrived[name]).hexdigest() for name in before} == before


def test_bad_input_gives_one_clear_message(trained, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="has no checkpoint"):
        publish(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        publish(str(tmp_path / "no-such-run"))
    with pytest.raises(ValueError, match="malformed Hub repo id 'org/cells lora'"):
        publish(str(trained["run"]), repo_id="org/cells lora", out=str(tmp_path / "a"))
    with pytest.raises(OutFolderError, match="not empty"):
        publish(str(trained["run"]), out=str(trained["folder"]))

    with fake_hub(monkeypatch, tmp_path, token=None) as hub:
        with pytest.raises(PublishError, match="hf auth login"):
            publish(str(trained["run"]), repo_id="org/cells-lora", out=str(tmp_path / "b"))
        assert hub.requests == []
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

    other_base = shutil.copytree(resolve_checkpoint("tiny-random"), tmp_path / "sam3-other")
    with pytest.raises(ValueError, match="trained on base model 'tiny-random'"):
        load_sam3(str(other_base), adapter=str(trained["folder"]))


def test_a_killed_publish_leaves_no_folder_and_upload_refuses_what_it_left(trained, tmp_path, monkeypatch):
    out = tmp_path / "pub"
    command = [sys.executable, "-m", "sam3_adapt.cli", "publish", "--run", str(trained["run"])]
    kill_when_writing([*command, "--out", str(out), "--num_samples", "1"], ".pub.partial-*", tmp_path)
    assert not out.exists()
    left = next(tmp_path.glob(".pub.partial-*"))  # what the killed run had written: no manifest
    with fake_hub(monkeypatch, tmp_path) as hub:
        with pytest.raises(OutFolderError, match="no readable manifest.json"):
            upload(str(left), "org/half")
        assert hub.requests == []
    done = subprocess.run([*command, "--out", str(out), "--num_samples", "0"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".pub.lock", "pub"]  # leftovers cleaned up
    assert check_complete(out, "publish")["inputs"]["kind"] == "adapter"
