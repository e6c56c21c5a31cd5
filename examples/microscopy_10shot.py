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
# # Adapt SAM 3 to microscopy from 10 labelled images
#
# SAM 3 finds every instance of a noun phrase ("round cell") in an image. On a domain it has not
# seen, a few labelled images and a LoRA adapter go a long way. This notebook looks at the data,
# evaluates the base model, adapts it with LoRA on 10 images mixed with "anchor" data (so it
# keeps what it knew), evaluates again, saves the adapter and shows how to publish it.
#
# **As written** it runs anywhere in a minute or two on a CPU, with a built-in tiny SAM 3 and a
# synthetic microscopy-like set (the *concept world*) standing in for your data.
#
# **Your own data.** Skip the concept-world cell and set `TRAIN_JSON` / `IMAGES` to your COCO file
# and image folder (boxes with polygon or RLE masks; category names are the noun phrases; every
# category absent from an image becomes a negative phrase for it), `VAL_JSON` / `VAL_IMAGES` to
# held-out images, and `ANCHOR_JSON` / `ANCHOR_IMAGES` to general data the model should keep
# knowing (the SAM 3 paper mixes 1:1; the tiny recipe 2:1), or `None` for no mixing.
#
# **The real SAM 3 on a GPU.** Set `BASE = "facebook/sam3"` (gated: accept its licence on the Hub
# and run `hf auth login`; or a local folder with the weights), `RECIPE = "lora-10shot"` and
# `OVERRIDES = {"trainer.devices": 1}` to train with the recipe as it is (40 epochs at 1008 px in
# bf16) on one GPU; a notebook cannot start a multi-GPU run (`sam3-adapt fit` can).

# %%
from pathlib import Path

from IPython.display import Image, display

import sam3_adapt
from sam3_adapt.data_mix import read_coco
from sam3_adapt.data_mix.synthetic.concept_world import write_demo_worlds
from sam3_adapt.inference.overlay import truth_figure

# %%
BASE = "tiny"  # "tiny": the pretrained tiny SAM 3 (CPU) | "facebook/sam3" (GPU) | a local folder
RECIPE = "tiny-10shot"  # "lora-10shot" for facebook/sam3; any recipes/*.yaml name or a YAML path
OVERRIDES = {  # recipe keys set for this run; {} trains with the recipe as it is
    "trainer.max_epochs": 3,  # a quick CPU run; the recipe trains longer
}
WORK = Path("runs/microscopy_10shot")

# %% [markdown]
# ## The data
#
# The concept world writes ordinary COCO files and PNG images: 10 labelled microscopy images to
# train on, held-out ones to evaluate on, and anchor images (coloured shapes, what the tiny base
# model knows) to mix in.

# %%
world = write_demo_worlds(WORK / "world", anchor_train=20, anchor_val=4, target_shots=10, target_val=6)
TRAIN_JSON, IMAGES = world["microscopy/train"]
VAL_JSON, VAL_IMAGES = world["microscopy/val"]
ANCHOR_JSON, ANCHOR_IMAGES = world["anchor/train"]

# %% [markdown]
# A few training images with their masks. Labels are exhaustive, so every phrase of the set that is
# not in an image is a negative for that image ("not: ..."): that is what teaches the model to say
# "not here".

# %%
samples = read_coco(TRAIN_JSON, IMAGES)
truth_figure(samples[:3])

# %%
for sample in samples[:3]:
    present = {q.phrase: len(q.instances) for q in sample.queries if not q.is_negative}
    absent = [q.phrase for q in sample.queries if q.is_negative]
    print(f"{sample.image_path.name}: {present}, negatives: {absent}")

# %% [markdown]
# ## The base model on held-out images
#
# `evaluate` measures COCO AP and SAM 3's cgF1 over every (image, phrase) pair and writes a report
# (`report.html`) with pictures.

# %%
base = sam3_adapt.load(BASE)
before = base.evaluate(
    VAL_JSON, VAL_IMAGES, out=WORK / "eval-base", pictures=2, progress=False, overwrite=True
)

# %% [markdown]
# ## Adapt with LoRA, mixed with anchor data
#
# One call: the recipe gives every setting, the arguments and `OVERRIDES` change some, exactly as
# `sam3-adapt fit --config recipes/<RECIPE>.yaml --key=value` would.

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
    out=WORK / "fit",
    overrides=OVERRIDES,
)
print({name: round(value, 4) for name, value in result.metrics.items()})

# %% [markdown]
# ## Evaluate again, with pictures

# %%
after = result.evaluate(
    VAL_JSON, VAL_IMAGES, out=WORK / "eval-adapted", pictures=2, progress=False, overwrite=True
)
print(f"{'metric':<10}{'before':>10}{'after':>10}")
for name in ("segm/AP", "bbox/AP", "cgF1", "IL_MCC"):
    print(f"{name:<10}{before['model']['metrics'][name]:>10.3f}{after['model']['metrics'][name]:>10.3f}")

# %%
for kind in ("best", "worst"):  # the report's pictures of the best and worst (image, phrase) pairs
    display(Image(filename=WORK / "eval-adapted" / "figures" / f"model_{kind}.png"))

# %% [markdown]
# ## Predict on an image
#
# `predict` takes a PIL image or a path and one or more phrases, and returns masks, boxes and scores
# in the image's pixels (see `sam3_adapt.Prediction`); `show` draws them.

# %%
image = sorted(Path(VAL_IMAGES).glob("*.png"))[0]
prediction = result.predict(image, ["round cell", "dividing cell"])
print(len(prediction), "detections", prediction.boxes.shape, prediction.scores.round(2), prediction.presence)
prediction.to_coco(image_id=1)[:1]

# %%
result.show(image, ["round cell", "dividing cell"], threshold=0.3)

# %%
try:  # supervision (pip install supervision) draws, tracks and counts detections
    print(prediction.to_supervision())
except ImportError as error:
    print(error)

# %% [markdown]
# ## The adapter
#
# A few MB in the PEFT layout, next to the run's recipe, logs and checkpoint. Load it on top of the
# base model anywhere with `sam3_adapt.load(BASE, adapter=...)` (or `sam3_adapt.model.load_sam3`, or plain
# `peft.PeftModel.from_pretrained`).

# %%
print(result.run_dir)
print(sorted(p.name for p in result.adapter.iterdir()))
reloaded = sam3_adapt.load(BASE, adapter=result.adapter)

# %% [markdown]
# ## Publish
#
# `publish` writes a Hub-ready folder: the adapter, a model card with the evaluation results, the
# recipe, the few-shot split and figures. With `repo_id` it also uploads it (after `hf auth login`):
#
# ```python
# result.publish("my-org/sam3-cells-lora", private=True, metrics=str(WORK / "eval-adapted/metrics.json"))
# ```
#
# Here only the folder is written.

# %%
folder = result.publish(metrics=str(WORK / "eval-adapted" / "metrics.json"), num_samples=2)
print(sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()))
print((folder / "README.md").read_text()[:600])
