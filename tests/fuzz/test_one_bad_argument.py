"""The one-bad-argument sweep (``one_bad_argument.py``) in a child process: every call, with one
argument made hostile at a time, returns or refuses by name; none crashes, hangs or fails inside.

On the code before the sweep's fixes it found a segfault (``max_pool2d(stride=2**63)``) and
Numba typing errors from conv2d and conv_transpose2d strides past an int64. Widened to tensor
arguments' shape variants, more ops and the methods' string options, it found an IndexError from
``interpolate`` on an empty map and ``flatten`` failing on an empty batch; widened again to 29
more methods, the figures, data, models and layers (12,798 calls), NumPy's "truth value" errors
from string options given arrays at 24 sites, unchecked ``InstanceNorm2d`` and ``forward_to``
arguments, a model called on ``None``, and (through ``forward_to``) an empty batch failing in the
Winograd path, and unchecked ``crop_patches``, ``interpolate_styles`` and ``train.accuracy``/``permuted``
arguments.
"""

import json
import re
import subprocess
import sys
from pathlib import Path


def test_one_bad_argument_at_a_time_is_returned_or_refused_by_name():
    script = Path(__file__).with_name("one_bad_argument.py")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900,
                            cwd=Path(__file__).parents[2])
    assert result.returncode == 0, (f"exit {result.returncode} (a crash)\n{result.stdout[-3000:]}\n"
                                    f"{result.stderr[-3000:]}")
    lines = result.stdout.strip().splitlines()
    findings = [json.loads(line) for line in lines if line.startswith("{")]
    summary = re.fullmatch(r"calls (\d+) returned (\d+) refused (\d+) findings (\d+)", lines[-1])
    assert summary, lines[-1]
    calls, returned, refused, found = map(int, summary.groups())
    assert calls > 4500 and returned + refused + found == calls  # the sweep really ran, and counted everything
    assert not findings and found == 0, "\n".join(json.dumps(f) for f in findings)
