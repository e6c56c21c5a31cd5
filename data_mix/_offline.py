"""Keep imports from phoning home: imported by ``data_mix`` before anything that pulls in albumentations.

albumentations asks PyPI for a newer release each time it is imported (a request of up to 2 s, and a
warning on an offline machine). A data pipeline should not do that, so the check is off unless the
user sets ``NO_ALBUMENTATIONS_UPDATE=0``.
"""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
