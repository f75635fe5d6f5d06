import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import APPLE, ORANGE, V5_COLUMNS, v5_row, write_csv

from oidyolo.data.boxes import BOX_SCHEMA, build_index, scan_boxes
from oidyolo.data.select import extract_class, normalize_filters, read_selection, select_class, select_images
from oidyolo.errors import ConfigError, DataFormatError

IDS = [f"{i:016x}" for i in range(100, 400)]


def boxes_table(rows: list[str], tmp_path, name="b.csv") -> pa.Table:
    return scan_boxes(write_csv(tmp_path / name, V5_COLUMNS, rows), [APPLE, ORANGE])[0]


def test_filters_select_whole_images_never_half_labelled(tmp_path):
    rows = [
        v5_row(IDS[0], APPLE, attrs=(0, 0, 0, 0, 0)),
        v5_row(IDS[0], APPLE, attrs=(1, 0, 0, 0, 0)),  # occluded apple: the whole image is out
        v5_row(IDS[1], APPLE, attrs=(0, 0, 0, 0, 0)),
        v5_row(IDS[2], APPLE, attrs=(-1, 0, 0, 0, 0)),  # unknown
    ]
    table = boxes_table(rows, tmp_path)
    chosen, stats = select_images(table, name="Apple", filters=normalize_filters({"IsOccluded": 0}), limit=None, seed=1)
    assert sorted(set(chosen["ImageID"].to_pylist())) == [IDS[1]]
    assert stats.eligible == 1 and stats.images == 3
    chosen, _ = select_images(
        table, name="Apple", filters=normalize_filters({"IsOccluded": [0, -1]}), limit=None, seed=1
    )
    assert sorted(set(chosen["ImageID"].to_pylist())) == [IDS[1], IDS[2]]
    assert set(chosen["Class"].to_pylist()) == {"Apple"}


def test_limit_is_seeded_stable_and_grows_as_a_superset(tmp_path):
    rows = [v5_row(i, APPLE) for i in IDS[:200]]
    table = boxes_table(rows, tmp_path)
    reversed_table = boxes_table(rows[::-1], tmp_path, "r.csv")

    def pick(t, limit, seed):
        return set(select_images(t, name="Apple", filters={}, limit=limit, seed=seed)[0]["ImageID"].to_pylist())

    a = pick(table, 50, 7)
    assert len(a) == 50
    assert a == pick(reversed_table, 50, 7)  # independent of row order
    assert a != pick(table, 50, 8)  # the seed matters
    assert a < pick(table, 80, 7)  # raising the limit keeps every earlier image


def test_limit_counts_images_and_keeps_all_their_boxes(tmp_path):
    rows = [v5_row(IDS[i // 3], APPLE, (0.1 * (i % 3), 0.1 * (i % 3) + 0.05, 0.1, 0.2)) for i in range(30)]
    chosen, stats = select_images(boxes_table(rows, tmp_path), name="Apple", filters={}, limit=4, seed=0)
    assert len(set(chosen["ImageID"].to_pylist())) == 4 and chosen.num_rows == 12
    assert stats.selected_boxes == 12


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"IsOcluded": 0}, "unknown filter attribute 'IsOcluded'"),
        ({"IsOccluded": 2}, "values must be"),
        ({"IsOccluded": []}, "values must be"),
        ({"IsOccluded": [True]}, "values must be"),
    ],
)
def test_bad_filters_are_refused(filters, message):
    with pytest.raises(ConfigError, match=message):
        normalize_filters(filters)


@pytest.mark.parametrize("limit", [0, -3])
def test_non_positive_limit_is_refused(tmp_path, limit):
    table = boxes_table([v5_row(IDS[0], APPLE)], tmp_path)
    with pytest.raises(ConfigError, match="limit must be a positive"):
        select_images(table, name="Apple", filters={}, limit=limit, seed=0)


def test_class_csv_round_trips(tmp_path):
    table = boxes_table([v5_row(IDS[0], APPLE), v5_row(IDS[1], APPLE)], tmp_path)
    select_class(table, tmp_path / "Apple.csv", name="Apple", filters=None, limit=None, seed=0)
    back = read_selection(tmp_path / "Apple.csv")
    assert back["ImageID"].to_pylist() == IDS[:2]
    assert back.column_names[:2] == ["ImageID", "Class"]
    assert back["XMax"].to_pylist() == pytest.approx([0.5, 0.5])


@pytest.mark.parametrize("indexed", [False, True])
def test_extract_class_streams_every_box_and_a_strict_refusal_keeps_the_old_file(tmp_path, indexed):
    rows = [v5_row(IDS[i], APPLE if i % 3 else ORANGE) for i in range(200)]
    path = write_csv(tmp_path / "b.csv", V5_COLUMNS, rows)
    index = tmp_path / "idx"
    if indexed:
        build_index(path, index)
    out = tmp_path / "apple.parquet"
    returned = extract_class(path, [APPLE], out, index=index if indexed else None)
    written = pq.read_table(out, schema=BOX_SCHEMA)
    assert returned.equals(written) and written.num_rows == sum(1 for i in range(200) if i % 3)
    files = sorted(tmp_path.iterdir())
    assert extract_class(path, [APPLE], None, index=index if indexed else None).equals(written)  # no file: the CLI
    assert sorted(tmp_path.iterdir()) == files
    assert written.equals(scan_boxes(path, [APPLE])[0])
    write_csv(path, V5_COLUMNS, [*rows, v5_row(IDS[250], APPLE, (0.7, 0.2, 0.1, 0.5))])  # XMin > XMax
    if indexed:
        build_index(path, index)
    with pytest.raises(DataFormatError, match="XMin >= XMax"):
        extract_class(path, [APPLE], out, strict=True, index=index if indexed else None)
    assert pq.read_table(out, schema=BOX_SCHEMA).equals(written)  # the refused run replaced nothing
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("indexed", [False, True])
def test_a_class_past_the_memory_budget_is_selected_from_its_parquet_with_the_same_csv(tmp_path, indexed):
    """A class whose parsed boxes outgrow ``keep_bytes`` is returned as its parquet's path and selected a row group
    at a time; its class CSV and counts are those of the class kept in memory, with a filter and a limit."""
    boxes = [(0.1, 0.5 + i % 3 / 10, 0.2, 0.6) for i in range(600)]  # 3 boxes an image, one of 7 occluded
    rows = [v5_row(IDS[i // 3], APPLE, boxes[i], attrs=(int(i % 7 == 0), 0, 0, 0, 0)) for i in range(600)]
    path = write_csv(tmp_path / "b.csv", V5_COLUMNS, rows)
    index = tmp_path / "idx"
    if indexed:
        build_index(path, index)
    kept = extract_class(path, [APPLE], tmp_path / "kept.parquet", index=index if indexed else None)
    spilled = extract_class(path, [APPLE], tmp_path / "spilled.parquet", index=index if indexed else None, keep_bytes=1)
    assert isinstance(kept, pa.Table) and spilled == tmp_path / "spilled.parquet"
    assert pq.read_table(spilled).equals(kept)
    # with no parquet asked for (the command line), the file is opened where the caller says once it is needed
    (tmp_path / "spill").mkdir()
    late = extract_class(
        path, [APPLE], None, index=index if indexed else None, keep_bytes=30_000, spill_dir=tmp_path / "spill",
    )  # fmt: skip
    assert late == tmp_path / "spill" / "boxes.parquet" and pq.read_table(late).equals(kept)
    assert isinstance(extract_class(path, [APPLE], None, index=index if indexed else None, keep_bytes=1), pa.Table)
    for filters, limit in (({}, None), ({"IsOccluded": 0}, None), ({"IsOccluded": 0}, 50), ({}, 150)):
        args = {"name": "Apple", "filters": filters, "limit": limit, "seed": 3}
        assert select_class(spilled, tmp_path / "s.csv", **args) == select_class(kept, tmp_path / "k.csv", **args)
        assert (tmp_path / "s.csv").read_bytes() == (tmp_path / "k.csv").read_bytes()
    assert read_selection(tmp_path / "s.csv").num_rows == 150 * 3
    with pytest.raises(ConfigError, match="positive number of images"):
        select_class(spilled, tmp_path / "s.csv", name="Apple", filters={}, limit=0, seed=0)


def test_a_parquet_opened_late_holds_the_chunks_kept_before_it(tmp_path):
    """70,000 boxes parse as two chunks (64k lines each); a budget the second one crosses opens the spill file then,
    and it must hold the first chunk as well, once, in order."""
    rows = [v5_row(f"{i:016x}", APPLE) for i in range(70_000)]
    path = write_csv(tmp_path / "b.csv", V5_COLUMNS, rows)
    whole = extract_class(path, [APPLE], None)
    assert isinstance(whole, pa.Table) and whole.num_rows == 70_000
    (tmp_path / "spill").mkdir()
    late = extract_class(path, [APPLE], None, keep_bytes=int(whole.nbytes * 0.97), spill_dir=tmp_path / "spill")
    assert late == tmp_path / "spill" / "boxes.parquet"
    assert pq.ParquetFile(late).num_row_groups == 2 and pq.read_table(late).equals(whole)


@pytest.mark.parametrize("rows", [0, 1, 7, 8, 9, 40])
def test_the_class_csv_written_in_slices_is_the_csv_written_whole(tmp_path, monkeypatch, rows):
    import pyarrow.csv as pacsv

    from oidyolo.data import select

    table = boxes_table([v5_row(IDS[i], APPLE if i % 2 else ORANGE) for i in range(rows)], tmp_path)
    chosen = table.add_column(1, "Class", pa.array(['Apple, "green"'] * rows, pa.string()))  # quoted where needed
    monkeypatch.setattr(select, "_CSV_SLICE", 8)  # slices of 8 rows on 2 threads, so 40 rows are 5 of them
    select.write_csv_atomic(chosen, tmp_path / "sliced.csv")
    pacsv.write_csv(chosen, tmp_path / "whole.csv", write_options=pacsv.WriteOptions(quoting_style="needed"))
    assert (tmp_path / "sliced.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert read_selection(tmp_path / "sliced.csv").num_rows == rows


def test_rank_keys_are_blake2b_of_seed_and_id_across_slices_and_offsets():
    """More IDs than one hashing slice (64k), from a sliced column (its buffer starts before its first ID), and
    IDs that are not 16 characters or hold a NUL: each key is the big-endian blake2b digest of ``seed:ImageID``."""
    import hashlib

    from oidyolo.data.select import rank_keys

    ids = [f"{i * 7919:016x}" for i in range(70_003)]
    column = pa.chunked_array([pa.array(ids[:3]), pa.array(ids[3:])]).combine_chunks().slice(2)
    odd = pa.array(["a", "bb", "0123456789abcdef0"])
    nul = pa.array(["0123456789abcde\0", "0123456789abcdef"])  # 16 bytes, but numpy's S16 would drop the NUL
    for seed, values in ((5, column), (0, odd), (1, nul)):
        want = [hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest() for i in values.to_pylist()]
        assert rank_keys(values, seed).tobytes() == b"".join(want)
