"""The device names a model runs on, stated once (torch-free, for the scenario validator too).

:func:`market_sim.lm.loading.resolve_device` turns them into torch devices.
"""

import re

DEVICES_DESCRIPTION = "auto, cpu, cuda, cuda:N (N >= 0), mps"
"""The accepted ``model.device`` / ``--device`` values, as error messages list them."""

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda|cuda:\d+|mps")
"""The accepted device names (:data:`DEVICES_DESCRIPTION`), matched whole."""
