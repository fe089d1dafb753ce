"""Convert UCR archive classification problems from ``.ts`` files into the package's embedded
``archive_<name>.npz`` files (``lstm_plugins.data.load_archive``).

The inputs are the ``<Problem>_TRAIN.ts`` and ``<Problem>_TEST.ts`` files shipped in the
``sktime`` 1.2.0 wheel on PyPI (BSD-3-Clause) under ``sktime/datasets/data/<Problem>/``::

    pip download --no-deps sktime==1.2.0 -d /tmp/wheels
    unzip -q /tmp/wheels/sktime-1.2.0-py3-none-any.whl 'sktime/datasets/data/*' -d /tmp/sktime
    python scripts/convert_archive.py /tmp/sktime/sktime/datasets/data GunPoint ArrowHead PLAID

The problems come from the UCR Time Series Classification Archive (Dau, Keogh, Kamgar, Yeh, Zhu,
Gharghabi, Ratanamahatana, Chen, Hu, Begum, Bagnall, Mueen and Batista, 2018); see the README's
data credit for each problem's original source.

Each archive holds, for ``train`` and ``test``: ``<split>_values`` (float32, all time steps of
all series concatenated, shape ``(sum(lengths), num_features)``), ``<split>_lengths`` (int64)
and ``<split>_labels`` (int64 indices into ``class_names``), plus ``class_names`` and
``problem_name`` (str).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from lstm_plugins.data._ts import TsData, read_ts

DATA_FOLDER = Path(__file__).resolve().parents[1] / "lstm_plugins" / "data"


def snake_case(problem: str) -> str:
    """``GunPoint`` -> ``gun_point``, ``PLAID`` -> ``plaid``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", problem).lower()


def _arrays(prefix: str, data: TsData) -> dict[str, np.ndarray]:
    return {
        f"{prefix}_values": np.concatenate(data.sequences, axis=0).astype(np.float32),
        f"{prefix}_lengths": data.lengths.astype(np.int64),
        f"{prefix}_labels": data.labels.astype(np.int64),
    }


def convert(folder: Path, problem: str, output_folder: Path = DATA_FOLDER) -> Path:
    train = read_ts(folder / problem / f"{problem}_TRAIN.ts")
    test = read_ts(folder / problem / f"{problem}_TEST.ts")
    if train.class_names != test.class_names:
        raise SystemExit(f"{problem}: class labels differ: {train.class_names} vs {test.class_names}")
    output = output_folder / f"archive_{snake_case(problem)}.npz"
    np.savez_compressed(
        output,
        class_names=np.asarray(train.class_names, dtype=np.str_),
        problem_name=np.asarray(problem),
        **_arrays("train", train),
        **_arrays("test", test),
    )
    for name, data in (("train", train), ("test", test)):
        print(f"{problem} {name}: {len(data)} series, {data.num_features} features, lengths "
              f"{data.lengths.min()}-{data.lengths.max()}, class counts {np.bincount(data.labels).tolist()}")
    print(f"wrote {output} ({output.stat().st_size} bytes)")
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="sktime/datasets/data")
    parser.add_argument("problems", nargs="+", help="problem names, e.g. GunPoint ArrowHead PLAID")
    parser.add_argument("--output-folder", type=Path, default=DATA_FOLDER)
    args = parser.parse_args(argv)
    for problem in args.problems:
        convert(args.folder, problem, args.output_folder)


if __name__ == "__main__":
    main()
