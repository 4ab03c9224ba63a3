"""``framematch export``: an index's frame hashes as lists a partner can match against.

    framematch export --index DIR --out DIR [--format vpdq|pdq|csv]

Writes the live index's whole-frame PDQ rows, never the footage: ``vpdq`` one vPDQ file
per video (``<video id>-<basename>.txt``, ``frame_number,quality,hash,timestamp``) plus
``videos.csv`` mapping each file to its video's URI and metadata; ``pdq`` one
``hashes.txt`` of ``pdq <hex> <quality> <uri>`` lines; ``csv`` one ``hashes.csv`` of
``hash,quality,label,ts``. ``framematch import`` reads all three back.
"""

from __future__ import annotations

import argparse
import sys

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.options import CommandParser
from transforms.index.store import live_frames, live_videos, load_manifest
from transforms.results import hash_formats
from transforms.results.hash_lists import export_files


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="framematch export", description=__doc__.split("\n")[0])
    parser.add_argument("--index", required=True, help="Index directory (local or gs://).")
    parser.add_argument("--out", required=True, help="Output directory (local or gs://).")
    parser.add_argument("--format", choices=hash_formats.FORMATS, default="vpdq")
    return parser


def run(argv: list[str] | None = None) -> dict[str, str]:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    manifest = load_manifest(args.index)
    if manifest is None:
        raise SystemExit(f"framematch export: no index at {args.index} (no manifest.json)")
    videos = live_videos(args.index, manifest)
    files, skipped = export_files(videos, live_frames(args.index, manifest, videos),
                                  args.format)
    written = {}
    for name, text in files.items():
        path = FileSystems.join(args.out, name)
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            f.write(text.encode("utf-8"))
        written[name] = path
    note = f"; {skipped} rows without a quality left out" if skipped else ""
    print(f"export {args.index}: {videos.num_rows} videos -> {len(files)} {args.format} "
          f"file(s) in {args.out}{note}")
    return written
