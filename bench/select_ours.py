"""Driver for select_bench.py / select_index_bench.py: our class extraction, as the workflow's rules run it.

    python bench/select_ours.py CSV OUT.parquet MID [MID ...]                 # byte scan of the CSV
    python bench/select_ours.py --index DIR CSV OUT.parquet MID [MID ...]     # the extract_class job: via the index
    python bench/select_ours.py --build-index DIR CSV                         # the index_boxes job

Calls :func:`oidyolo.data.select.extract_class` (or :func:`oidyolo.data.boxes.build_index`) in this fresh
interpreter, so the measured time includes start-up and imports.
"""

import sys

if __name__ == "__main__":
    from oidyolo.data.boxes import block_pandas

    block_pandas()  # as the workflow's adapters do
    args = sys.argv[1:]
    if args[0] == "--build-index":
        from oidyolo.data.boxes import build_index

        print(sum(build_index(args[2], args[1]).values()))
        sys.exit(0)
    index = None
    if args[0] == "--index":
        index, args = args[1], args[2:]
    from oidyolo.data.select import extract_class

    csv_path, out, *mids = args
    print(extract_class(csv_path, mids, out, label="bench", index=index))
