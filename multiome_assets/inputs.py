"""The content version of each input a dataset's assets read: the bytes of its files and the
`dataset.yaml` settings that say how to read them. Equal content, equal version: copying or
touching a file changes nothing, editing one changes exactly the inputs it is part of."""
from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from multiome_assets.dataset import DatasetSpec
from multiome_assets.files import sha256
from multiome_assets.warehouse import find_artifact


@dataclass(frozen=True)
class InputVersion:
    version: str  # a digest of the files' SHA-256 and the settings below
    files: dict[str, Path]
    settings: dict

    def describe(self) -> dict:
        return {"files": {role: f"{path} (sha256 {file_sha256(path)[:12]})" for role, path in self.files.items()},
                "settings": self.settings}


def input_versions(spec: DatasetSpec, warehouse_root: Path) -> dict[str, InputVersion]:
    """One entry per input, split so that an edit reruns only what reads it: a new prior reruns the
    heads, not the backbones; a new window reruns candidates and the full backbone, not the RNA-only one."""
    parts = {
        "cells": (spec.files, {"format": spec.format, "rna_values": spec.rna_values,
                               "rna_counts_layer": spec.rna_counts_layer, "batch_column": spec.batch_column,
                               "qc": asdict(spec.qc)}),
        "annotation": ({"annotation": spec.annotation}, {}),
        "prior": ({"prior": spec.prior}, {}),
        "tf_list": ({"tf_list": spec.tf_list}, {}),
        "candidate_window": ({}, {"candidate_window": spec.candidate_window}),
        "cell_type_column": ({}, {"cell_type_column": spec.cell_type_column}),
        "ccre_vocabulary": ({"ccre_vocabulary": spec.reference("ccre_hg38")}, {}),
        "gene_vocabulary": ({"gene_vocabulary": spec.reference("gene_vocab_38244")}, {}),
        "translator_from": (_translators_of(spec.translator_from, warehouse_root), {"translator_from": spec.translator_from}),
        "link_window": ({}, {"link_window": spec.link_window}),
        "enrichment_files": ({**{f"bed:{k}": v for k, v in spec.enrichment_beds.items()},
                              **({"fine_mapped_variants": spec.fine_mapped_variants} if spec.fine_mapped_variants else {}),
                              **({"genome_fasta": spec.genome_fasta} if spec.genome_fasta else {}),
                              "motifs": spec.reference("jaspar2024")}, {}),
    }
    return {name: InputVersion(_digest(files, settings), dict(files), settings) for name, (files, settings) in parts.items()}


def _translators_of(source: str | None, warehouse_root: Path) -> dict[str, Path]:
    """The source dataset's trained translators, where materialized: retrained, they are new input."""
    found = {}
    for asset in ("translator_rna2atac", "translator_atac2rna") if source else ():
        try:
            found[asset] = find_artifact(asset, source, warehouse_root)
        except FileNotFoundError:
            pass
    return found


def _digest(files: dict[str, Path], settings: dict) -> str:
    # by role and content, not path: a clone elsewhere, or a variant folder naming the same files, agrees
    content = {"files": {role: file_sha256(path) for role, path in files.items()}, "settings": settings}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    stat = os.stat(path)
    return _cached_sha256(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    # the sensor looks every 30 s: a file read again only when its size or mtime moved
    return sha256(Path(path))
