import os
import subprocess
import sys

# A fresh interpreter in which every network connection fails, as on an offline machine.
PROBE = """
import os, socket, warnings
os.environ.pop("NO_ALBUMENTATIONS_UPDATE", None)
def refuse(*args, **kwargs):
    raise OSError("network is off in this test")
socket.socket.connect = refuse
socket.getaddrinfo = refuse
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import sam3_adapt.data_mix.transforms  # imports albumentations
print([str(w.message) for w in caught if "version" in str(w.message).lower()])
print(os.environ.get("NO_ALBUMENTATIONS_UPDATE"))
"""


def test_importing_the_data_pipeline_makes_no_network_call_for_albumentations_updates():
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    warned, setting = out.stdout.strip().splitlines()[-2:]
    assert warned == "[]", warned  # albumentations warns "Error fetching version info" when it tries
    assert setting == "1"
