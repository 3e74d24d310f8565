"""One framework per process, in alternating order: the runner bench_engine.py and bench_charlm.py share.

Each measurement runs `script --one NAME ...` in a fresh Python process with one BLAS/OpenMP thread
(PyTorch's and NumPy's thread pools slow whoever shares their process), which prints its result as
JSON; the order of the names is reversed every other round, so a slow spell of a shared machine falls
on all of them alike.
"""
import json
import os
import subprocess
import sys


def alternating_rounds(script, names, rounds, args):
    """{name: [the result each round's process printed]}; args: the options passed to every process."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    results = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            out = subprocess.run([sys.executable, script, "--one", name, *map(str, args)],
                                 capture_output=True, text=True, env=env, check=True)
            results[name].append(json.loads(out.stdout))
    return results
