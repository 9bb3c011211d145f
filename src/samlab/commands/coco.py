"""``samlab data rle2polygon|merge|extract-objects|browse``: COCO instance-segmentation data tools."""

from __future__ import annotations

import argparse
from pathlib import Path

from samlab.commands import Tool, print_result


def _strict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out (and count) bad annotations and image entries instead of stopping at the first one",
    )
    parser.add_argument("--json", action="store_true", help="print the counts as one JSON object")


def _rle2polygon_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, metavar="IN.json", help="COCO instances JSON")
    parser.add_argument("output", type=Path, metavar="OUT.json", help="converted JSON")
    parser.add_argument("--min-area", type=float, default=0.0, help="drop parts smaller than this many pixels")
    parser.add_argument(
        "--tolerance", type=float, default=0.0, help="polygon simplification in pixels (0: exact polygons)"
    )
    parser.add_argument("--include-crowd", action="store_true", help="convert crowd (iscrowd=1) RLEs too")
    _strict_arguments(parser)


def _rle2polygon(args: argparse.Namespace) -> int:
    from samlab.tools.coco_polygons import rle_to_polygons

    result = rle_to_polygons(
        args.input,
        args.output,
        min_area=args.min_area,
        tolerance=args.tolerance,
        include_crowd=args.include_crowd,
        strict=not args.skip_bad,
    )
    print_result(result, args.json)
    return 0


def _merge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", type=Path, nargs="+", metavar="IN.json", help="COCO instances JSONs to merge")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.json")
    parser.add_argument(
        "--prefix",
        nargs="+",
        metavar="PREFIX",
        help="one prefix per input prepended to its file_name values (e.g. train2017/ val2017/); without it, a "
        "file_name in two inputs is an error",
    )
    _strict_arguments(parser)


def _merge(args: argparse.Namespace) -> int:
    from samlab.tools.coco_merge import merge_coco

    result = merge_coco(args.inputs, args.output, prefixes=args.prefix, strict=not args.skip_bad)
    print_result(result, args.json)
    return 0


def _extract_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ann_file", type=Path, metavar="ANN.json", help="COCO instances JSON")
    parser.add_argument("image_root", type=Path, metavar="IMAGES", help="folder that file_name is relative to")
    parser.add_argument("out", type=Path, metavar="OUT", help="bank folder: <ann_id>.png cut-outs + objects.json")
    parser.add_argument("--min-area", type=float, default=64.0, help="skip instances smaller than this (pixels)")
    parser.add_argument("--margin", type=int, default=2, help="pixels of context around each instance's box")
    _strict_arguments(parser)


def _extract(args: argparse.Namespace) -> int:
    from samlab.tools.object_bank import extract_objects

    result = extract_objects(
        args.ann_file, args.image_root, args.out, min_area=args.min_area, margin=args.margin, strict=not args.skip_bad
    )
    print_result(result, args.json)
    return 0


def _browse_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, action="append", help="recipe YAML (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument("-n", type=int, default=16, help="training samples to draw")
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the mask overlays")
    parser.add_argument("--no-model", action="store_true", help="do not build the model (no prompts drawn)")


def _browse(args: argparse.Namespace) -> int:
    from samlab.tools.browse import browse

    written = browse(
        args.config, args.out, n=args.n, overrides=args.overrides, alpha=args.alpha, with_model=not args.no_model
    )
    print(f"wrote {len(written)} PNG(s) to {args.out}")
    return 0


TOOLS = [
    Tool(
        "data",
        "rle2polygon",
        "rewrite COCO RLE segmentations as polygons (holes, several parts); prints the mean re-rasterised IoU",
        "Rewrite the RLE segmentations (compressed or not) of a COCO instances JSON as polygons: one polygon per "
        "connected part, holes joined to their outer boundary by zero-width cuts so that pycocotools re-creates them, "
        "parts under --min-area pixels dropped, area and bbox recomputed. Polygons traced on pixel corners "
        "re-rasterise exactly (--tolerance 0). Prints counts and the mean IoU of the re-rasterised polygons against "
        "the original masks.",
        _rle2polygon_arguments,
        _rle2polygon,
    ),
    Tool(
        "data",
        "merge",
        "merge COCO instances JSONs (e.g. train + val) with new image and annotation ids",
        "Merge COCO instances JSONs into one: image and annotation ids renumbered 1, 2, ... in input order, "
        "categories checked to agree across inputs (same id, same name), info and licenses kept from the inputs. "
        "A file_name found in two inputs is an error unless --prefix gives each input its own folder prefix.",
        _merge_arguments,
        _merge,
    ),
    Tool(
        "data",
        "extract-objects",
        "cut every instance out of a COCO set into a bank of RGBA PNGs (for copy-paste)",
        "Write every non-crowd instance of a COCO set with at least --min-area pixels as OUT/<ann_id>.png, the crop "
        "of its box (plus --margin pixels) with the mask as alpha, and OUT/objects.json listing each object (file, "
        "annotation, image, category, source image, box, area). samlab.data.copy_paste.CopyPaste pastes from it.",
        _extract_arguments,
        _extract,
    ),
    Tool(
        "data",
        "browse",
        "write PNGs of augmented training samples (masks, boxes, prompts) of a recipe, to check it by eye",
        "Build a recipe's data module (and model, for its prompts) as `samlab fit --config FILE.yaml` would, take -n "
        "augmented training samples and write one PNG each under --out: a strip of its frames with one colour per "
        "object (mask overlay and box), positive clicks in green, negative clicks in red and box prompts in white "
        "when the model has preview_prompts(batch). Extra --section.key=value arguments override the config.",
        _browse_arguments,
        _browse,
        pass_extra=True,
    ),
]
