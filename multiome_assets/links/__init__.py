"""CRE–gene links: from the translators' cross-attention (Cisformer) and by metacell correlation,
their validation, cell-type-specific cCREs, and the enrichment tables (regulons, BED sets,
fine-mapped variants, motifs).

- ``extract``: candidate pairs in a window, attention and correlation links, per-gene attention.
- ``analysis``: per-cCRE scores, cell-type specificity, validation against distance-matched pairs.
- ``enrichment`` and ``motifs``: what is over-represented among a cell type's specific cCREs.
- ``pipeline``: one function per link asset.
"""
