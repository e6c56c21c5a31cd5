# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Adapt SAM 3 to industrial inspection from boxes only
#
# Many inspection data sets have boxes and no masks. SAM 3 adapts from them too: switch the mask
# losses off (`model.mask_loss: false`, which the `box-only` recipe does) and the detector, the
# presence head and the scores still learn; evaluation reports box AP. Hard negatives matter even
# more here: a phrase that is absent from an image ("rust spot" on a clean bolt) teaches the model
# to say "not here" instead of firing on the nearest look-alike.
#
# **As written** it runs anywhere in a minute or two on a CPU, with a built-in tiny SAM 3 and a
# synthetic industrial set (the *concept world*) whose masks are stripped to stand in for your
# box-only COCO export.
#
# **Your own data.** Skip the two data cells and set `TRAIN_JSON` / `IMAGES` to your COCO file and
# image folder (boxes only is fine; category names are the noun phrases), `VAL_JSON` / `VAL_IMAGES`
# to held-out images, and `ANCHOR_JSON` / `ANCHOR_IMAGES` to general data to mix in, or `None`.
# Labels should be exhaustive: every category absent from an image becomes a negative for it.
#
# **The real SAM 3 on a GPU.** Set `BASE = "facebook/sam3"` (gated: accept its licence on the Hub
# and run `hf auth login`; or a local folder with the weights), `RECIPE = "box-only"` (mask loss
# already off) and `OVERRIDES = {"trainer.devices": 1}`: one GPU, as a notebook cannot start a
# multi-GPU run (`sam3-adapt fit` can).

# %%
import json
from pathlib import Path

import sam3_adapt
from sam3_adapt.data_mix import read_coco
from sam3_adapt.data_mix.synthetic.concept_world import write_demo_worlds
from sam3_adapt.inference.overlay import truth_figure

# %%
BASE = "tiny"  # "tiny": the pretrained tiny SAM 3 (CPU) | "facebook/sam3" (GPU) | a local folder
RECIPE = "tiny-10shot"  # "box-only" for facebook/sam3; any recipes/*.yaml name or a YAML path
OVERRIDES = {  # recipe keys set for this run; {} trains with the recipe as it is
    "model.mask_loss": False,  # the box-only switch (the box-only recipe sets it already)
    "trainer.max_epochs": 3,  # a quick CPU run; the recipe trains longer
}
WORK = Path("runs/industrial_box_only")

# %% [markdown]
# ## The data: a box-only COCO set
#
# The concept world's industrial domain ("scratch", "rust spot", "hex bolt", "washer" on metal) is
# written with masks; dropping every annotation's `segmentation` leaves what a detection export
# holds.

# %%
world = write_demo_worlds(WORK / "world", anchor_train=20, anchor_val=4, target_shots=10, target_val=6)


def strip_masks(json_path: Path, out: Path) -> Path:
    """Write a copy of a COCO file without segmentations: boxes only."""
    coco = json.loads(Path(json_path).read_text())
    for annotation in coco["annotations"]:
        annotation.pop("segmentation", None)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(coco))
    return out


TRAIN_JSON = strip_masks(world["industrial/train"][0], WORK / "boxes/train.json")
IMAGES = world["industrial/train"][1]
VAL_JSON = strip_masks(world["industrial/val"][0], WORK / "boxes/val.json")
VAL_IMAGES = world["industrial/val"][1]
ANCHOR_JSON, ANCHOR_IMAGES = world["anchor/train"]  # masked and box-only sources mix in one batch

# %% [markdown]
# Boxes and negatives of a few training images. With exhaustive labels every category absent from
# an image is a negative of it: the other parts and defects of the same metal surfaces, often
# look-alikes of what is there.

# %%
samples = read_coco(TRAIN_JSON, IMAGES)
truth_figure(samples[:3])

# %%
queries = [q for sample in samples for q in sample.queries]
positives = sum(not q.is_negative for q in queries)
print(f"{len(samples)} images, {positives} positive and {len(queries) - positives} negative pairs")
print("instances with a mask:", sum(inst.has_mask for q in queries for inst in q.instances))

# %% [markdown]
# Hard negatives go further: phrases you know the model confuses with what is there ("nut" for a
# bolt seen from above, "crack" for a scratch), listed in a YAML or CSV file for every image or for
# single images. `sam3-adapt mine-negatives` finds more by running the model on your images.

# %%
CONFUSIONS = WORK / "confusions.yaml"
CONFUSIONS.write_text("dataset: [nut, crack, o-ring]   # negatives of every image\n")
print(CONFUSIONS.read_text())

# %% [markdown]
# ## The base model on held-out images
#
# With box-only data, evaluation reports box AP and cgF1 on boxes. `negatives_with_FP` is the share
# of negative pairs on which the model fires: the number hard negatives should bring down.


# %%
def headline(summary: dict) -> dict:
    """Box AP, cgF1 and the false-positive rate on negative pairs of an evaluation."""
    metrics = summary["model"]["metrics"]
    negative = summary["model"]["breakdowns"]["pair kind"]["negative"]
    return {
        "bbox/AP": metrics["bbox/AP"],
        "cgF1": metrics["cgF1"],
        "negatives_with_FP": negative["negatives_with_FP"],
    }


base = sam3_adapt.load(BASE, masks=False)
before = headline(
    base.evaluate(VAL_JSON, VAL_IMAGES, out=WORK / "eval-base", pictures=2, progress=False, overwrite=True)
)

# %% [markdown]
# ## Adapt with LoRA on boxes, with hard negatives and anchor data
#
# `negatives` adds the confusions to every training image's negative phrases (the recipe key
# `data.hard_negatives`), on top of the absent categories.

# %%
result = sam3_adapt.finetune(
    base=BASE,
    train=TRAIN_JSON,
    images=IMAGES,
    recipe=RECIPE,
    val=VAL_JSON,
    val_images=VAL_IMAGES,
    anchor=ANCHOR_JSON,
    anchor_images=ANCHOR_IMAGES,
    negatives=CONFUSIONS,
    out=WORK / "fit",
    overrides=OVERRIDES,
)
print({name: round(value, 4) for name, value in result.metrics.items()})

# %%
after = headline(result.evaluate(out=WORK / "eval-adapted", pictures=2, progress=False, overwrite=True))
print(f"{'metric':<18}{'before':>10}{'after':>10}")
for name in before:
    print(f"{name:<18}{before[name]:>10.3f}{after[name]:>10.3f}")

# %% [markdown]
# How sure is each model that a phrase is in an image with bolts? Training on "nut" as a negative
# should push its presence down while "hex bolt" stays up.

# %%
bolts = next(
    s.image_path for s in read_coco(VAL_JSON, VAL_IMAGES) if "hex bolt" in [q.phrase for q in s.positives]
)
for name, model in (("before", base), ("after", result)):
    presence = model.predict(bolts, ["hex bolt", "nut", "crack"]).presence
    print(name, {phrase: round(p, 3) for phrase, p in presence.items()})

# %% [markdown]
# ## Predict: boxes and scores
#
# A box-only model returns no masks (`prediction.masks is None`); `show` draws the boxes.

# %%
image = sorted(Path(VAL_IMAGES).glob("*.png"))[0]
prediction = result.predict(image, ["hex bolt", "washer", "rust spot"])
print(len(prediction), "detections", prediction.labels, prediction.scores.round(2), prediction.masks)
prediction.to_coco(image_id=1)[:2]

# %%
result.show(image, ["hex bolt", "washer", "rust spot"], threshold=0.3)

# %% [markdown]
# ## Save and publish
#
# The adapter is in `result.adapter`; `sam3_adapt.load(BASE, adapter=..., masks=False)` loads it. To
# upload (after `hf auth login`):
#
# ```python
# result.publish(repo_id="my-org/sam3-inspection-boxes", private=True)
# ```
#
# Here only the Hub-ready folder is written.

# %%
folder = result.publish(num_samples=2)
print(result.adapter)
print(sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()))
