"""The studio in the browser (gradio only; the engine does the work).

Importing this package first keeps gradio and huggingface_hub off the network: the studio
promises an artist's laptop that nothing phones home.
"""
import os

for _name, _value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"),
                      ("HF_HUB_DISABLE_TELEMETRY", "1")):
    os.environ.setdefault(_name, _value)
