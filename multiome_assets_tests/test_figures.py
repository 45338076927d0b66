"""The figures on the asset pages: they render, fit the UI's metadata dialog (<= 1,000 px wide) and
show what their asset holds."""
import numpy as np
import pandas as pd
from PIL import Image

from multiome_assets.figures import method_bars
from multiome_assets.links.figures import enrichment_dotplot, specific_cres_heatmap


def _width(path) -> int:
    with Image.open(path) as image:
        return image.size[0]


def test_method_bars_draw_every_panel_within_the_dialog(tmp_path):
    panels = {f"AUROC, {s} split": pd.Series({"epiawarenet_bce": 0.61, "pearson": 0.55, "degree_product": 0.66})
              for s in ("random", "tf_heldout")}
    kinds = {"epiawarenet_bce": "transformer", "pearson": "baseline", "degree_product": "degree_baseline"}
    method_bars(panels, kinds, tmp_path / "bars.png", ylabel="AUROC")
    assert 0 < _width(tmp_path / "bars.png") <= 1000


def test_enrichment_dotplot_and_specific_cre_heatmap(tmp_path):
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"kind": "regulon", "links": np.repeat(["top 3 per gene", "all in-window pairs"], 12),
                          "cell_type": np.tile(np.repeat(["B", "T", "NK"], 4), 2), "term": np.tile([f"TF{i}" for i in range(4)], 6),
                          "n_hits": rng.integers(1, 20, 24), "fdr": rng.random(24)})
    assert enrichment_dotplot(table, tmp_path / "dots.png")
    assert 0 < _width(tmp_path / "dots.png") <= 1000
    assert not enrichment_dotplot(table.iloc[:0], tmp_path / "none.png") and not (tmp_path / "none.png").exists()
    specific = pd.DataFrame({"cre": np.repeat([f"c{i}" for i in range(6)], 3), "cell_type": np.tile(["B", "T", "NK"], 6),
                             "scaled_score": rng.uniform(-1, 1, 18), "rank": 3, "specific": np.arange(18) % 4 == 0})
    assert specific_cres_heatmap(specific, tmp_path / "heat.png")
    assert 0 < _width(tmp_path / "heat.png") <= 1000
