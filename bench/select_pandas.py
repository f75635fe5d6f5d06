"""Driver for select_bench.py: the class selection of OIDv4_ToolKit / oidv6 / FiftyOne.

    python bench/select_pandas.py CSV OUTDIR MID [MID ...] [--object-strings]

``pandas.read_csv`` of the whole bbox CSV, then one boolean filter per class (``df[df.LabelName == mid]``), each
class's rows written to ``OUTDIR/{n}.csv``. With ``--object-strings`` string columns are Python objects, as in the
pandas 1.x/2.x those tools run on (pandas 3 stores them as Arrow strings by default, which needs less memory).
"""

import sys
import warnings
from pathlib import Path

import pandas as pd

if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--object-strings" in sys.argv:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pd.options.future.infer_string = False
    csv_path, outdir, *mids = args
    df = pd.read_csv(csv_path)
    total = 0
    for n, mid in enumerate(mids):
        part = df[df.LabelName == mid]
        part.to_csv(Path(outdir) / f"{n}.csv", index=False)
        total += len(part)
    print(total)
