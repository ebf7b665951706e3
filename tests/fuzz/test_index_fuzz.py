"""Fuzzing of the kernels that index with arrays a user can hand in (max-pool switches, unpooling,
sparse t-SNE affinities), in a child process: a regression there is a crash, not a failure.

The default example count keeps CI short; run longer with
``MINIVIS_FUZZ_EXAMPLES=20000 python -m pytest tests/fuzz`` (or ``python tests/fuzz/index_fuzz.py 20000``).
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = int(os.environ.get("MINIVIS_FUZZ_EXAMPLES", "200"))


def test_index_arrays_from_users_never_crash_or_reach_out_of_bounds():
    script = Path(__file__).with_name("index_fuzz.py")
    result = subprocess.run([sys.executable, str(script), str(EXAMPLES)], capture_output=True, text=True,
                            timeout=900, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    counts = ast.literal_eval(result.stdout.strip().splitlines()[-1].removeprefix("examples "))
    assert all(count >= EXAMPLES for count in counts.values()), counts  # every property really ran
    print(f"fuzzed: {counts}")
