"""Peak memory of ``evaluate`` on one image of 1 and of 12 megapixels (tiny model, masks decoded).

Issue 17 asked that a 12 Mpx image's evaluation peak stay within 1.5x of a 1 Mpx image's; before
masks were pasted one window at a time (`sam3_adapt.model.detections.paste_masks`), up to 100
full-size masks per phrase were resized at once, and the evaluator read the shape of a query's masks
by making them one dense array. Measured on the 2-core CPU machine (December 2026): process peak
RSS 920 MiB at 1 Mpx, 1061 MiB at 12 Mpx (1.15x; 1.50x before the evaluator fix); heap growth of the
call 52 and 158 MiB (3.0x), the rest being the decoded 12 Mpx image itself. Run from the repository root:

    python -m benchmarks.large_images            # the growth of the CPU heap per size, one process
    python -m benchmarks.large_images --rss      # each size in a fresh process: its peak resident set

The process's peak resident set counts the ~1.2 GB of imported libraries and the model as well; the
heap growth is that of the ``evaluate`` call alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
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
    for width, height in SIZES:
        folder = Path(tempfile.mkdtemp())
        json_path = write_image_set(folder, width, height)
        with PeakMemory(torch.device("cpu")) as peak:
            evaluate(str(json_path), str(folder), out=str(folder / "out"), pictures=0, progress=False)
        growth[f"{width * height / 1e6:g} Mpx"] = peak.growth_mb
    for size, mb in growth.items():
        print(f"{size}: evaluate peak heap growth {mb:.0f} MiB")
    small, large = growth.values()
    print(f"ratio 12 Mpx / 1 Mpx: {large / small:.2f}")


SIZES = ((1000, 1000), (4000, 3000))


def peak_rss_mb(width: int, height: int) -> float:
    """Peak resident set (MiB) of a fresh process that evaluates one image of ``width x height``."""
    code = (
        "import resource, sys, tempfile, torch; from pathlib import Path;"
        "from benchmarks.large_images import write_image_set; from sam3_adapt.evaluation.run import evaluate;"
        "torch.set_num_threads(2); folder = Path(tempfile.mkdtemp());"
        f"evaluate(str(write_image_set(folder, {width}, {height})), str(folder), out=str(folder / 'out'),"
        " pictures=0, progress=False);"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stderr.strip().splitlines()[-1]) / 1024  # Linux reports KiB


def main_rss() -> None:
    """Evaluate each size in a fresh process and print its peak resident set."""
    peaks = {f"{w * h / 1e6:g} Mpx": peak_rss_mb(w, h) for w, h in SIZES}
    for size, mb in peaks.items():
        print(f"{size}: evaluate process peak RSS {mb:.0f} MiB")
    small, large = peaks.values()
    print(f"ratio 12 Mpx / 1 Mpx: {large / small:.2f}")


if __name__ == "__main__":
    main_rss() if "--rss" in sys.argv[1:] else main()
