"""Driver for select_bench.py / select_index_bench.py: our class extraction, as the workflow's rules run it.

    python bench/select_ours.py CSV OUT.parquet MID [MID ...]                 # byte scan of the CSV
    python bench/select_ours.py --index DIR CSV OUT.parquet MID [MID ...]     # extraction via the index
    python bench/select_ours.py --select OUT.csv --index DIR CSV OUT.parquet MID [MID ...]  # the select_class job
    python bench/select_ours.py --limit N --select OUT.csv ...                # the same with a limit of N images
    python bench/select_ours.py --build-index DIR CSV                         # the index_boxes job

Calls :func:`oidyolo.data.select.extract_class` (then, with ``--select``, :func:`~oidyolo.data.select.select_class`
with no filter and no limit or ``--limit``'s; or :func:`oidyolo.data.boxes.build_index`) in this fresh interpreter,
so the measured time includes start-up and imports.
"""

import os
import sys

if __name__ == "__main__":
    from oidyolo.data.boxes import block_pandas

    block_pandas()  # as the workflow's adapters do
    args = sys.argv[1:]
    if args[0] == "--build-index":
        from oidyolo.data.boxes import build_index

        print(sum(build_index(args[2], args[1]).values()))
        sys.exit(0)
    index = selection = limit = None
    if args[0] == "--limit":
        limit, args = int(args[1]), args[2:]
    if args[0] == "--select":
        selection, args = args[1], args[2:]
    if args[0] == "--index":
        index, args = args[1], args[2:]
    import pyarrow as pa
    import pyarrow.parquet as pq

    from oidyolo.data import select
    from oidyolo.data.select import extract_class, select_class

    keep = {}  # the parsed boxes a job keeps to select from (default: KEEP_BYTES; older trees have no such limit)
    if "OIDYOLO_KEEP_MIB" in os.environ and hasattr(select, "KEEP_BYTES"):
        keep = {"keep_bytes": int(os.environ["OIDYOLO_KEEP_MIB"]) << 20}

    csv_path, out, *mids = args
    boxes = extract_class(csv_path, mids, out, label="bench", index=index, **keep)
    if selection:
        select_class(boxes, selection, name="bench", filters=None, limit=limit, seed=0)
    print(boxes.num_rows if isinstance(boxes, pa.Table) else pq.ParquetFile(boxes).metadata.num_rows)
