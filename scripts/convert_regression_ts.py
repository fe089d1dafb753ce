"""Convert a regression problem's ``.ts`` files (``@targetLabel true``) into an embedded ``.npz``.

By default it builds the package's ``tecator.npz`` from ``Tecator_TRAIN.ts`` and
``Tecator_TEST.ts`` as shipped in the ``sktime`` 1.2.0 wheel on PyPI (BSD-3-Clause) under
``sktime/datasets/data/Tecator/``::

    pip download --no-deps sktime==1.2.0 -d /tmp/wheels
    unzip -q /tmp/wheels/sktime-1.2.0-py3-none-any.whl 'sktime/datasets/data/Tecator/*' -d /tmp/sktime
    python scripts/convert_regression_ts.py /tmp/sktime/sktime/datasets/data/Tecator/Tecator_TRAIN.ts \\
        /tmp/sktime/sktime/datasets/data/Tecator/Tecator_TEST.ts

The Tecator data (fat content of meat from a 100-channel near-infrared absorbance spectrum,
850-1050 nm; Borggaard and Thodberg, Analytical Chemistry 64, 1992) come from StatLib and
OpenML (data set 505), in the split of the Monash/UEA/UCR time-series extrinsic regression
archive (Tan, Bergmeir, Petitjean and Webb, 2021). Tecator's permission note, which must travel
with the data, is stored in the archive as ``permission`` (see ``TECATOR_PERMISSION``).

The archive holds, for ``train`` and ``test``: ``<split>_values`` (float32, all time steps of all
series concatenated, shape ``(sum(lengths), num_features)``), ``<split>_lengths`` (int64) and
``<split>_targets`` (float32), plus ``problem_name``, ``source`` and ``permission`` (str).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lstm_plugins.data._ts import TsData, read_ts

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "lstm_plugins" / "data" / "tecator.npz"

TECATOR_SOURCE = (
    "Tecator (StatLib; OpenML data set 505), train/test split of the Monash/UEA/UCR time-series "
    "extrinsic regression archive, from the .ts files in the sktime 1.2.0 wheel. Borggaard and "
    "Thodberg, 'Optimal minimal neural interpretation of spectra', Analytical Chemistry 64 (1992) "
    "545-551."
)
TECATOR_PERMISSION = (
    "Statement of permission from Tecator (the original data source): These data are recorded on a "
    "Tecator Infratec Food and Feed Analyzer working in the wavelength range 850 - 1050 nm by the "
    "Near Infrared Transmission (NIT) principle. If results from these data are used in a "
    "publication we want you to mention the instrument and company name (Tecator) in the "
    "publication. The data are available in the public domain with no responsibility from the "
    "original data source. The data can be redistributed as long as this permission note is "
    "attached."
)


def _arrays(prefix: str, data: TsData) -> dict[str, np.ndarray]:
    return {
        f"{prefix}_values": np.concatenate(data.sequences, axis=0).astype(np.float32),
        f"{prefix}_lengths": data.lengths.astype(np.int64),
        f"{prefix}_targets": data.labels.astype(np.float32),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train", type=Path, help="<Problem>_TRAIN.ts with @targetLabel true")
    parser.add_argument("test", type=Path, help="<Problem>_TEST.ts with @targetLabel true")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="destination .npz")
    parser.add_argument("--source", default=TECATOR_SOURCE, help="where the data come from")
    parser.add_argument("--permission", default=TECATOR_PERMISSION, help="the licence or permission note")
    args = parser.parse_args(argv)

    train = read_ts(args.train)
    test = read_ts(args.test)
    for name, data in (("train", train), ("test", test)):
        if data.task != "regression":
            raise SystemExit(f"{name} file is a {data.task} problem; expected `@targetLabel true`")
    if train.num_features != test.num_features:
        raise SystemExit(f"feature counts differ: {train.num_features} vs {test.num_features}")
    np.savez_compressed(
        args.output,
        problem_name=np.asarray(train.problem_name or args.train.stem.split("_")[0], dtype=np.str_),
        source=np.asarray(args.source, dtype=np.str_),
        permission=np.asarray(args.permission, dtype=np.str_),
        **_arrays("train", train),
        **_arrays("test", test),
    )
    for name, data in (("train", train), ("test", test)):
        lengths, targets = data.lengths, data.labels
        print(
            f"{name}: {len(data)} series, {data.num_features} features, lengths {lengths.min()}-"
            f"{lengths.max()}, targets {targets.min():.3g}..{targets.max():.3g} "
            f"(mean {targets.mean():.3g}, sd {targets.std():.3g})"
        )
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
