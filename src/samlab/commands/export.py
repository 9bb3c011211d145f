"""``samlab export``: a trained checkpoint in the format of its model's ecosystem."""

from __future__ import annotations

import argparse
from pathlib import Path

from samlab.commands import Tool, print_result

FORMATS = ("sam2", "segment_anything", "hf", "masa")  # samlab.export.FORMATS, kept here so --help imports nothing


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, type=Path, help="Lightning checkpoint (samlab fit, ckpt average)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="target ecosystem")
    parser.add_argument("--out", required=True, type=Path, help="file (sam2, segment_anything, masa) or folder (hf)")
    parser.add_argument("--json", action="store_true", help="print what was written as one JSON object")


def _export(args: argparse.Namespace) -> int:
    from samlab.export import export

    print_result(export(args.ckpt, args.format, args.out), args.json)
    return 0


TOOLS = [
    Tool(
        None,
        "export",
        "export a trained checkpoint for sam2, segment_anything, Hugging Face transformers or samlab track",
        "Rebuild the module of CKPT (a samlab fit or ckpt average checkpoint) and write its weights for the target "
        "library: sam2 ({'model': state_dict} with the official key names, LoRA merged; the config name and hydra "
        "overrides for build_sam2 / build_sam2_video_predictor are printed), segment_anything (the Sam state dict "
        "for sam_model_registry), hf (a save_pretrained folder: for SAM 2 one folder that Sam2Model and Sam2VideoModel "
        "both load, as the hub's; SamModel; or DirectSAM's SegFormer; each with its processor), masa (a standalone "
        "tracker checkpoint for `samlab track --checkpoint OUT` without a config). Prints the call that loads the "
        "result.",
        _export_arguments,
        _export,
    ),
]
