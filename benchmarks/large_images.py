"""Peak memory of ``evaluate`` on one image of 1 and of 12 megapixels (tiny model, masks decoded).

Issue 17 asked that a 12 Mpx image's evaluation peak stay within 1.5x of a 1 Mpx image's; before
masks were pasted one window at a time (`sam3_adapt.model.detections.paste_masks`), up to 100
full-size masks per phrase were resized at once. Run from the repository root:

    python -m benchmarks.large_images            # prints the growth of the CPU heap per size

The process's maximum resident set (``/usr/bin/time -v``) counts the ~1.2 GB of imported libraries
as well; this script reports the heap growth of the ``evaluate`` call alone.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from benchmarks.peak_memory import PeakMemory
from sam3_adapt.evaluation.run import evaluate


def write_image_set(folder: Path, width: int, height: int) -> Path:
    """One image with a red circle and a blue square, labelled under four phrases with polygon masks."""
    side = min(width, height) // 4
    image = Image.new("RGB", (width, height), (90, 90, 90))
    draw = ImageDraw.Draw(image)
    draw.ellipse([side // 2, side // 2, side // 2 + side, side // 2 + side], fill=(220, 30, 30))
    draw.rectangle([2 * side, 2 * side, 3 * side, 3 * side], fill=(30, 30, 220))
    image.save(folder / "a.png")
    names = ["red circle", "circle", "blue square", "square"]
    corners = [side // 2, side // 2, side // 2, side // 2, 2 * side, 2 * side, 2 * side, 2 * side]
    annotations = []
    for k in range(4):
        x, y = corners[2 * k], corners[2 * k + 1]
        polygon = [x, y, x + side, y, x + side, y + side, x, y + side]
        annotations.append(
            {
                "id": k + 1,
                "image_id": 1,
                "category_id": k + 1,
                "bbox": [x, y, side, side],
                "segmentation": [polygon],
            }
        )
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": width, "height": height}],
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": name} for k, name in enumerate(names)],
    }
    (folder / "a.json").write_text(json.dumps(coco))
    return folder / "a.json"


def main() -> None:
    """Evaluate the tiny model on each size once and print the peak heap growth of each."""
    torch.set_num_threads(2)
    growth = {}
    for width, height in ((1000, 1000), (4000, 3000)):
        folder = Path(tempfile.mkdtemp())
        json_path = write_image_set(folder, width, height)
        with PeakMemory(torch.device("cpu")) as peak:
            evaluate(str(json_path), str(folder), out=str(folder / "out"), pictures=0, progress=False)
        growth[f"{width * height / 1e6:g} Mpx"] = peak.growth_mb
    for size, mb in growth.items():
        print(f"{size}: evaluate peak heap growth {mb:.0f} MiB")
    small, large = growth.values()
    print(f"ratio 12 Mpx / 1 Mpx: {large / small:.2f}")


if __name__ == "__main__":
    main()
