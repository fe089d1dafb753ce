"""Convert the Japanese Vowels ``.ts`` files into the package's embedded ``japanese_vowels.npz``.

The inputs are ``JapaneseVowels_TRAIN.ts`` and ``JapaneseVowels_TEST.ts`` as shipped in the
``aeon`` wheel on PyPI under ``aeon/datasets/data/JapaneseVowels/``. The data originate from
the UCI Machine Learning Repository ("Japanese Vowels", M. Kudo, J. Toyama and M. Shimbo,
1999) and are licensed CC BY 4.0.

Usage (from the repository root, with the package importable)::

    python scripts/convert_japanese_vowels.py JapaneseVowels_TRAIN.ts JapaneseVowels_TEST.ts

The archive holds, for ``train`` and ``test``: ``<split>_values`` (float32, all time steps of
all series concatenated, shape ``(sum(lengths), 12)``), ``<split>_lengths`` (int64) and
``<split>_labels`` (int64 indices into ``class_names``), plus ``class_names`` (str).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lstm_plugins.data._ts import TsData, read_ts

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "lstm_plugins" / "data" / "japanese_vowels.npz"


def _arrays(prefix: str, data: TsData) -> dict[str, np.ndarray]:
    return {
        f"{prefix}_values": np.concatenate(data.sequences, axis=0).astype(np.float32),
        f"{prefix}_lengths": data.lengths.astype(np.int64),
        f"{prefix}_labels": data.labels.astype(np.int64),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train", type=Path, help="JapaneseVowels_TRAIN.ts")
    parser.add_argument("test", type=Path, help="JapaneseVowels_TEST.ts")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="destination .npz")
    args = parser.parse_args(argv)

    train = read_ts(args.train)
    test = read_ts(args.test)
    if train.class_names != test.class_names:
        raise SystemExit(f"class labels differ: {train.class_names} vs {test.class_names}")
    if train.num_features != test.num_features:
        raise SystemExit(f"feature counts differ: {train.num_features} vs {test.num_features}")
    np.savez_compressed(
        args.output,
        class_names=np.asarray(train.class_names, dtype=np.str_),
        **_arrays("train", train),
        **_arrays("test", test),
    )
    for name, data in (("train", train), ("test", test)):
        lengths = data.lengths
        print(
            f"{name}: {len(data)} series, {data.num_features} features, lengths "
            f"{lengths.min()}-{lengths.max()}, class counts {np.bincount(data.labels).tolist()}"
        )
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
