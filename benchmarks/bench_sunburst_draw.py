"""How long headless Chromium takes to draw the Taxonomy tab's sunburst of the 10k-leaf tree.

Draws the figure `taxonomy_sunburst(..., max_sectors=1500)` sends (1,443 sectors, the top
five rings) three times each with every sent ring drawn (`maxdepth=-1`, as before) and
with the rings `rings_drawn` picks (about 400 sectors), through the plotly.js that the
plotly package ships; prints the milliseconds of `Plotly.newPlot`. The first draw in the
page includes compiling plotly.js.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_sunburst_draw [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import os

import plotly

from benchmarks.bench_scale_browser import ARGS
from benchmarks.scale_project import inat_like_taxonomy
from hiercore.figures import taxonomy_sunburst

DRAW = """(spec) => { const f = JSON.parse(spec); Plotly.purge('plot');
  const t0 = performance.now();
  return Plotly.newPlot('plot', f.data, f.layout).then(() => performance.now() - t0); }"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--chromium", default=os.environ.get("HIERTUNE_CHROMIUM", "/usr/bin/chromium")
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    tax = inat_like_taxonomy()
    js = os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")
    with open(js) as f:
        script = f.read()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_content(
            f"<div id=plot style='width:1000px;height:700px'></div><script>{script}</script>"
        )
        for what, maxdepth in (("every sent ring", -1), ("rings_drawn", None)):
            fig = taxonomy_sunburst(tax, None, max_sectors=1500, maxdepth=maxdepth)
            trace = fig.data[0]
            times = [page.evaluate(DRAW, fig.to_json()) for _ in range(3)]
            print(
                f"{what:16s} maxdepth {trace.maxdepth:2d}, {len(trace.ids):,} sectors sent: "
                + ", ".join(f"{t:.0f}" for t in times)
                + " ms"
            )
        browser.close()


if __name__ == "__main__":
    main()
