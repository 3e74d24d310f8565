"""Forward + backward time of a recurrent layer: numba backend, graph backend, PyTorch (if installed).

The benchmark lives in the package so that `minigrad bench` runs it too; see
minigrad_cli/bench.py for the options (--quick, --cells, --sizes, --dtypes, --startup).

    .venv/bin/python benchmarks/bench_rnn.py
"""
from minigrad_cli.bench import main

if __name__ == "__main__":
    main()
