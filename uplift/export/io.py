"""Reading customer chunks and writing the delivered file (CSV or parquet) for the export.

Reading: the needed columns of a CSV (as text, by Arrow; a ragged row is an error) or
parquet file, a chunk at a time. Writing: the scored chunks spill to a scratch
parquet file between the two passes, then leave in input order through one writer
whose bytes depend only on the rows (parquet row groups of ``OUTPUT_BLOCK`` rows).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..drift import DriftMonitor
from ..errors import DataError, Problem, first_line
from ..models import uplift_column
from ..policy import picked
from ..tables import table_format
from .scoring import ScoringPlan, cost_column, net_column

OUTPUT_BLOCK = 65_536  # rows per parquet row group, whatever the chunk size


def resolve_out(out: str | os.PathLike[str], today: dt.date | None = None) -> Path:
    """``out`` with ``{date}`` replaced by today's date (YYYY-MM-DD)."""
    day = (today or dt.date.today()).isoformat()
    return Path(str(out).replace("{date}", day))


def read_chunks(path: Path, columns: Sequence[str], chunk_size: int) -> Iterator[pd.DataFrame]:
    """The needed columns of a CSV (as text) or parquet file, ``chunk_size`` rows at a time."""
    if table_format(path) == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as handle:
            for batch in handle.iter_batches(batch_size=chunk_size, columns=list(columns)):
                yield batch.to_pandas()
        return
    import pyarrow as pa
    import pyarrow.csv as pacsv

    # Arrow's reader: every field as text, a ragged row is an error (pandas would
    # silently drop the extra fields of a row when only some columns are read).
    reader = pacsv.open_csv(
        pa.input_stream(str(path)),  # .csv.gz decompressed by its extension
        read_options=pacsv.ReadOptions(block_size=min(1 << 24, max(1 << 16, 200 * chunk_size))),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            include_columns=list(columns), column_types=dict.fromkeys(columns, pa.string()),
            strings_can_be_null=True, null_values=[""]))
    pending: list[Any] = []
    rows = 0
    for batch in reader:
        pending.append(batch)
        rows += batch.num_rows
        if rows >= chunk_size:
            yield pa.Table.from_batches(pending).to_pandas()
            pending, rows = [], 0
    if pending:
        yield pa.Table.from_batches(pending).to_pandas()


def readable(chunks: Iterator[pd.DataFrame], source: str) -> Iterator[pd.DataFrame]:
    """The chunks, with a malformed or unreadable table reported as bad input."""
    import pyarrow as pa

    try:
        yield from chunks
    except (ValueError, OSError, UnicodeDecodeError, pa.ArrowException) as exc:
        raise DataError(Problem(source, "", f"cannot read the table ({first_line(exc)})")
                        ) from None


def score_pandas(path: Path, plan: ScoringPlan, chunk_size: int, monitor: DriftMonitor,
                 advance: Callable[[int], None]) -> Iterator[pd.DataFrame]:
    """Scored chunks in input order (pandas engine), counting features for the drift guard."""
    first = 0
    for chunk in readable(read_chunks(path, plan.needed_columns(), chunk_size), plan.source):
        scored = plan.score(chunk, first, monitor)
        first += len(chunk)
        advance(len(chunk))
        yield scored


def output_schema(plan: ScoringPlan, id_type: Any) -> Any:
    """The export's arrow schema in SPEC column order (the id keeps its input type)."""
    import pyarrow as pa

    return pa.schema([pa.field(plan.id_column, id_type), ("offer", pa.string()),
                      ("holdout", pa.bool_()), ("churn_risk", pa.float64()),
                      *((uplift_column(a), pa.float64()) for a in plan.arms),
                      ("net_value", pa.float64()), ("rank", pa.int64())])


class Writer:
    """Writes output blocks to CSV (arrow's writer: strings quoted, true/false) or parquet.

    Parquet row groups hold ``OUTPUT_BLOCK`` rows whatever the chunk size, so the bytes
    depend only on the rows.
    """

    def __init__(self, path: Path, kind: str, schema: Any):
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        self.schema, self.kind = schema, kind
        self.pending: list[Any] = []
        self.pending_rows = 0
        if kind == "csv":
            self.writer = pacsv.CSVWriter(str(path), schema, write_options=pacsv.WriteOptions(
                quoting_style="needed"))
        else:
            self.writer = pq.ParquetWriter(str(path), schema, compression="snappy")

    def write(self, block: pd.DataFrame) -> None:
        """Append a block of output rows (columns in schema order)."""
        import pyarrow as pa

        table = pa.table([pa.array(block[f.name].to_numpy(), type=f.type) for f in self.schema],
                         schema=self.schema)
        if self.kind == "csv":
            self.writer.write_table(table)
            return
        self.pending.append(table)
        self.pending_rows += table.num_rows
        while self.pending_rows >= OUTPUT_BLOCK:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        table = pa.concat_tables(self.pending)
        # One contiguous piece per column: page and dictionary choices then depend on
        # the rows alone, not on where the chunks happened to end.
        head = table.slice(0, OUTPUT_BLOCK).combine_chunks()
        self.writer.write_table(head, row_group_size=OUTPUT_BLOCK)
        rest = table.slice(head.num_rows)
        self.pending = [rest] if rest.num_rows else []
        self.pending_rows = rest.num_rows

    def close(self) -> None:
        """Flush the last row groups and close the file."""
        while self.pending_rows:
            self._flush()
        self.writer.close()


class Spill:
    """The scored chunks kept on disk between the two passes (parquet, lz4)."""

    def __init__(self, path: Path):
        self.path = path
        self.writer: Any = None
        self.rows = 0

    def write(self, scored: pd.DataFrame, arms: Sequence[str]) -> None:
        """Keep what the writing pass needs of a scored chunk."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        keep = [scored.columns[0], "holdout", "churn_risk",
                *(uplift_column(a) for a in arms), *(net_column(a) for a in arms),
                *(cost_column(a) for a in arms)]
        table = pa.Table.from_pandas(scored[keep], preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema, compression="lz4")
        self.writer.write_table(table)
        self.rows += len(scored)

    def close(self) -> None:
        """Finish the scratch file."""
        if self.writer is not None:
            self.writer.close()

    def id_type(self) -> Any:
        """The arrow type of the id column (text when nothing was scored)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:
            return pa.string()
        kind = pq.ParquetFile(self.path).schema_arrow.field(0).type
        return pa.string() if pa.types.is_large_string(kind) else kind

    def read(self, chunk_size: int) -> Iterator[pd.DataFrame]:
        """The spilled rows in input order, ``chunk_size`` at a time."""
        import pyarrow.parquet as pq

        if self.writer is None:
            return
        with pq.ParquetFile(self.path) as handle:
            for batch in handle.iter_batches(batch_size=chunk_size):
                yield batch.to_pandas()


def output_block(spilled: pd.DataFrame, plan: ScoringPlan, choice: np.ndarray,
                 rank: np.ndarray) -> pd.DataFrame:
    """Output rows of the SPEC's columns for spilled rows, their offer indices and ranks."""
    arms = plan.arms
    offer = np.asarray([*arms, plan.cfg.control], dtype=object)[
        np.where(choice >= 0, choice, len(arms))]
    net = spilled[[net_column(a) for a in arms]].to_numpy(dtype=float)
    block = pd.DataFrame({
        plan.id_column: spilled[plan.id_column].to_numpy(),
        "offer": offer,
        "holdout": spilled["holdout"].to_numpy(dtype=bool),
        "churn_risk": spilled["churn_risk"].to_numpy(dtype=float),
        **{uplift_column(a): spilled[uplift_column(a)].to_numpy(dtype=float) for a in arms},
        "net_value": picked(net, choice),
        "rank": rank,
    })
    block["offer"] = block["offer"].astype(object)
    return block
