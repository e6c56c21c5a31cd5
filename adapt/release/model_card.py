"""The model card (README.md with Hub metadata) of a published sam3-adapt model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from sam3_adapt.model.loading import TINY, TINY_RANDOM

#: Licences of base models the kit knows, in Hub metadata terms.
KNOWN_LICENSES: dict[str, dict[str, str]] = {
    "facebook/sam3": {
        "license": "other",
        "license_name": "sam-license",
        "license_link": "https://github.com/facebookresearch/sam3/blob/main/LICENSE",
    },
    # The built-in tiny models are made by this project (its Apache-2.0 licence), not derived from Meta's.
    TINY: {"license": "apache-2.0"},
    TINY_RANDOM: {"license": "apache-2.0"},
}
TAGS = ["sam3", "sam3-adapt", "image-segmentation", "promptable-concept-segmentation"]
#: Stands for the user's image in the usage snippet.
IMAGE_PLACEHOLDER = "your_image.jpg"


@dataclass
class CardFacts:
    """What the model card states about a published run.

    Attributes:
        name: Model name (the card's title and its ``model-index`` name).
        kind: ``adapter`` (PEFT LoRA weights) or ``merged`` (full Hugging Face weights).
        base: The base model as the run named it (hub id, folder, or a built-in short name).
        load_from: What users pass to load the model: the Hub repo id, or the local folder.
        phrases: Noun phrases (categories) the model was adapted to.
        shots: Training images of the few-shot split.
        dataset: Name of the data set, used in the evaluation results.
        metrics: Evaluation results ``{name: value}``.
        metrics_source: One sentence saying where the results come from.
        license: Hub licence metadata (``license``, and ``license_name``/``license_link`` for ``other``).
        dataset_id: Hub id of the data set, listed under ``datasets``; ``None`` for a private set.
        split: Split the metrics were computed on.
        training: Settings worth stating (adaptation, LoRA, learning rates, steps).
        figures: Paths of figures inside the published folder, with captions.
        files: Paths of the other published files, with what they are.
    """

    name: str
    kind: Literal["adapter", "merged"]
    base: str
    load_from: str
    phrases: list[str]
    shots: int
    dataset: str
    metrics: dict[str, float]
    metrics_source: str
    license: dict[str, str]
    dataset_id: str | None = None
    split: str = "validation"
    training: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


def base_license(base: str, license: str | None = None) -> dict[str, str]:
    """Hub licence metadata for a model derived from ``base``.

    Args:
        base: The base model as the run named it.
        license: An explicit Hub licence id (``apache-2.0``, ``other``...); wins over everything else.

    Returns:
        ``{"license": ...}``, plus ``license_name`` and ``license_link`` for a custom licence.

    Raises:
        ValueError: If no licence is given and the base's cannot be told (neither a known base, nor a
            folder with a model card, nor a readable Hub card).
    """
    if license is not None:
        return {"license": license}
    if base in KNOWN_LICENSES:
        return dict(KNOWN_LICENSES[base])
    readme = Path(base) / "README.md"
    try:
        data = ModelCard.load(readme if readme.is_file() else base).data
    except Exception as error:  # an unreadable or unreachable card: ask the user instead
        raise ValueError(
            f"cannot tell the licence of base model {base!r} ({error}); pass it with --license "
            "(the Hub licence id of the base model, e.g. apache-2.0)"
        ) from error
    if not data.license:
        raise ValueError(f"the model card of {base!r} states no licence; pass it with --license")
    keys = ("license", "license_name", "license_link")
    return {key: getattr(data, key) for key in keys if getattr(data, key, None)}


def hub_base_model(base: str) -> str | None:
    """``base`` if it names a model on the Hub, else ``None`` (a local folder or a built-in tiny model)."""
    if base in (TINY, TINY_RANDOM) or Path(base).expanduser().exists() or "/" not in base:
        return None
    try:
        validate_repo_id(base)
    except HFValidationError:
        return None
    return base


def usage_snippet(facts: CardFacts, phrase: str) -> str:
    """Python that loads the published model and segments ``phrase`` in an image.

    Adapters on a Hub base load with ``transformers`` and ``peft`` alone; adapters on a built-in
    tiny base need sam3-adapt's ``load_sam3``; merged weights are an ordinary ``Sam3Model``.
    """
    if facts.kind == "merged":
        load = (
            "from transformers import Sam3Model, Sam3Processor\n\n"
            f'model = Sam3Model.from_pretrained("{facts.load_from}").eval()\n'
            f'processor = Sam3Processor.from_pretrained("{facts.load_from}")\n'
        )
    elif hub_base_model(facts.base):
        load = (
            "from peft import PeftModel\n"
            "from transformers import Sam3Model, Sam3Processor\n\n"
            f'base = Sam3Model.from_pretrained("{facts.base}")\n'
            f'model = PeftModel.from_pretrained(base, "{facts.load_from}").eval()\n'
            f'processor = Sam3Processor.from_pretrained("{facts.base}")\n'
        )
    else:
        load = (
            "from sam3_adapt.model import load_sam3  # pip install sam3-adapt\n\n"
            f'model, processor = load_sam3("{facts.base}", adapter="{facts.load_from}")\n'
        )
    return (
        "import torch\nfrom PIL import Image\n"
        + load
        + f'\nimage = Image.open("{IMAGE_PLACEHOLDER}").convert("RGB")\n'
        f'inputs = processor(images=image, text="{phrase}", return_tensors="pt")\n'
        "with torch.no_grad():\n"
        "    outputs = model(**inputs)\n"
        "result = processor.post_process_instance_segmentation(\n"
        "    outputs, threshold=0.5, target_sizes=[image.size[::-1]]\n"
        ")[0]\n"
        'print(result["scores"], result["boxes"], result["masks"].shape)\n'
    )


def build_model_card(facts: CardFacts) -> ModelCard:
    """The model card: Hub metadata (base model, library, licence, tags, data set, ``model-index``) and text.

    Args:
        facts: What to state.

    Returns:
        The card; ``card.save(folder / "README.md")`` writes it.
    """
    eval_results = [
        EvalResult(
            task_type="image-segmentation",
            task_name="Promptable concept segmentation",
            dataset_type=facts.dataset_id or facts.dataset,
            dataset_name=facts.dataset,
            dataset_split=facts.split,
            metric_type=name.replace("/", "_").replace("@", "_"),
            metric_name=name,
            metric_value=value,
        )
        for name, value in facts.metrics.items()
    ]
    data = ModelCardData(
        base_model=hub_base_model(facts.base),
        library_name="peft" if facts.kind == "adapter" else "transformers",
        tags=TAGS + (["lora"] if facts.kind == "adapter" else []),
        datasets=[facts.dataset_id] if facts.dataset_id else None,
        model_name=facts.name if eval_results else None,
        eval_results=eval_results or None,
        **facts.license,
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_body(facts)}")


def _body(facts: CardFacts) -> str:
    what = "A LoRA adapter for" if facts.kind == "adapter" else "A fine-tuned"
    phrases = ", ".join(f"`{p}`" for p in facts.phrases) or "(none listed)"
    lines = [
        f"# {facts.name}",
        "",
        f"{what} SAM 3 (base model: `{facts.base}`), adapted with "
        f"sam3-adapt on {facts.shots} labelled images of *{facts.dataset}* "
        f"to segment every instance of these noun phrases: {phrases}.",
        "",
        "## Use it",
        "",
        "```python",
        usage_snippet(facts, facts.phrases[0] if facts.phrases else "object").rstrip(),
        "```",
        "",
    ]
    if facts.kind == "adapter":
        lines += [
            f'With sam3-adapt: `load_sam3("{facts.base}", adapter="{facts.load_from}")`, or '
            f"`sam3-adapt predict ... --model.checkpoint {facts.base} --model.adapter {facts.load_from}`.",
            "",
        ]
    lines += ["## Results", ""]
    if facts.metrics:
        lines += [facts.metrics_source, "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value:.4f} |" for name, value in facts.metrics.items()]
    else:
        lines += [facts.metrics_source]
    lines += [
        "",
        "## Training",
        "",
        "```yaml",
        yaml.safe_dump(facts.training, sort_keys=False).rstrip(),
        "```",
    ]
    for path, caption in facts.figures.items():
        lines += ["", f"### {caption}", "", f"![{caption}]({path})"]
    if facts.files:
        lines += ["", "## Files", ""] + [
            f"- `{path}`: {what_it_is}" for path, what_it_is in facts.files.items()
        ]
    licence = facts.license.get("license_name") or facts.license["license"]
    lines += [
        "",
        "## Licence",
        "",
        f"These weights derive from `{facts.base}` and are released under its licence ({licence}).",
        "",
    ]
    return "\n".join(lines)
