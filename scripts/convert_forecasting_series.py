"""Copy the two forecasting series out of the aeon 1.6.0 wheel into ``lstm_plugins/data/``.

The wheel (BSD-3-Clause) is fetched once with ``pip download --no-deps aeon==1.6.0 -d /tmp/wheels``;
nothing is downloaded at run time. The series:

* ``aeon/datasets/data/Airline/Airline.csv`` -> ``forecasting_airline.csv``: monthly international
  airline passengers (thousands), 1949-1960; Box & Jenkins (1976), series G.
* ``aeon/datasets/data/solar/solar.csv`` -> ``forecasting_solar.csv``: half-hourly GB national
  solar generation estimates (share of capacity), 2021-05-01 to 2021-05-07, from Sheffield
  Solar's PV_Live (https://www.solar.sheffield.ac.uk/pvlive/).

Each file is checked while it is copied: the header, one value per line, every value a finite
number (through :func:`lstm_plugins.data._forecasting.read_series_csv`), and the expected length;
line endings are normalised to ``\\n``.

Usage (from the repository root, with the package importable)::

    python scripts/convert_forecasting_series.py /tmp/wheels/aeon-1.6.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import tempfile
import zipfile
from pathlib import Path

from lstm_plugins.data._forecasting import read_series_csv

OUTPUT = Path(__file__).resolve().parents[1] / "lstm_plugins" / "data"
SERIES = {
    # wheel member -> (output file, time column, expected length)
    "aeon/datasets/data/Airline/Airline.csv": ("forecasting_airline.csv", "Date", 144),
    "aeon/datasets/data/solar/solar.csv": ("forecasting_solar.csv", "datetime_gmt", 289),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="aeon-1.6.0-py3-none-any.whl")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="destination folder")
    args = parser.parse_args(argv)
    with zipfile.ZipFile(args.wheel) as wheel, tempfile.TemporaryDirectory() as scratch:
        for member, (name, time_column, length) in SERIES.items():
            text = wheel.read(member).decode("utf-8")
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            staged = Path(scratch) / name
            staged.write_text("\n".join(lines) + "\n", encoding="utf-8")
            table = read_series_csv(staged, time_column=time_column)
            if table.values.shape != (length, 1):
                raise SystemExit(f"{member}: expected {length} values, but got shape {table.values.shape}")
            (args.output / name).write_text(staged.read_text(encoding="utf-8"), encoding="utf-8")
            print(f"{name}: {length} values of `{table.names[0]}`, {table.time_labels[0]} to "
                  f"{table.time_labels[-1]}, range {table.values.min():g}..{table.values.max():g}")


if __name__ == "__main__":
    main()
