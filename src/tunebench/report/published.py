"""Published ROUGE figures (F1 x 100) to show beside measured rows, clearly labelled as published.

Sources: the papers named in each row. "R-L" in papers is usually ROUGE-Lsum.
"""

from __future__ import annotations

# dataset key -> rows of (system, R-1, R-2, R-Lsum, source)
PUBLISHED: dict[str, list[tuple[str, float, float, float, str]]] = {
    "cnn_dailymail": [
        ("GPT-2 1.5B zero-shot, TL;DR:", 29.34, 8.27, 26.58, "Radford et al. 2019, Table 4"),
        ("GPT-2 small, decoder-only, full FT (512/128)", 37.26, 15.83, 34.47, "Rothe et al., TACL 2020, Table 5"),
        ("Lead-3", 40.34, 17.70, 36.57, "See et al. 2017"),
        ("BART-large", 44.16, 21.28, 40.90, "Lewis et al. 2020"),
    ],
    "xsum": [
        ("Lead-1", 16.30, 1.60, 11.95, "Narayan et al. 2018, Table 4"),
        ("BART-large", 45.14, 22.27, 37.25, "Lewis et al. 2020"),
    ],
}


def dataset_key(source: str) -> str | None:
    """Which published table applies to a data source, if any (matched by name)."""
    lowered = source.lower()
    if "cnn" in lowered or "dailymail" in lowered:
        return "cnn_dailymail"
    if "xsum" in lowered:
        return "xsum"
    return None
