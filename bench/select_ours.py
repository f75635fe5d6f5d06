"""Driver for select_bench.py: our class extraction, as the workflow's ``extract_class`` rule runs it.

    python bench/select_ours.py CSV OUT.parquet MID [MID ...]

Calls :func:`oidyolo.data.select.extract_class` (streaming byte scan, pyarrow parse and validation, parquet write)
in this fresh interpreter, so the measured time includes start-up and imports.
"""

import sys

from oidyolo.data.select import extract_class

if __name__ == "__main__":
    csv_path, out, *mids = sys.argv[1:]
    table = extract_class(csv_path, mids, out, label="bench")
    print(table.num_rows)
