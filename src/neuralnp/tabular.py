"""Tables from CSV files, and the encoders that turn their raw cells into network inputs.

This is what the ``neuralnp`` command saves inside a model, so that ``predict`` takes rows exactly
like the training file. :class:`TableEncoder` types each feature column and remembers how to
encode it:

- a column whose cells are mostly numbers is numeric (``45,123`` and, in ``;``-separated files,
  ``1,5`` included); the few cells that are not numbers count as missing, with a notice naming
  them. Numbers are standardised, ``(x - mean) / std``; missing numbers get the training median;
- text is one-hot encoded; categories seen fewer than ``min_frequency`` times share one
  ``other`` column, and missing text gets the most frequent category;
- identifiers are dropped: text with a different value in every row (names, ticket codes), and
  numbers only when their name and values say so (``id``, ``customer_id``, ``PassengerId``, a
  1, 2, 3, ... counter). Empty and constant columns are dropped too.

:class:`TargetEncoder` decides the task from the target column: text or at most 20 distinct
whole numbers make a classification (binary with two classes; ``1`` and ``1.0`` are one class),
anything else a regression. Every decision is reported as a notice, a plain sentence for the user.

Files are read by pyarrow's multi-threaded CSV reader when it is installed (the ``cli`` extra)
and by the standard library's ``csv`` module otherwise. pyarrow parses the columns whose first
rows hold only plain numbers (``12``, ``-0.5``, ``1e3``, or missing) straight into float64, 8
bytes a cell; a :class:`Column` keeps every other column as text, in Arrow's compact buffers or a
NumPy array, and works out numbers and categories when asked. So a 128 MB file is held once, about
its own size, not as millions of Python strings.
"""

import csv
import math
import os
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from ._files import atomic_write

MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}
MAX_CLASSES_FOR_NUMBERS = 20
# A column is numeric when at least this share of its non-missing cells are numbers: one typo or
# 'unknown' must not turn ages into a one-hot block, while a ticket column where three codes in
# four happen to be numbers stays text.
MOSTLY_NUMBERS = 0.9
# Files at least this large get a "reading ..." line first: reading them takes long enough that
# a silent terminal looks stuck.
ANNOUNCE_BYTES = 16 * 2**20
DELIMITERS = (",", "\t", ";", "|")
SAMPLE_BYTES = 1 << 16
SHOWN = 3  # cells named in a notice

_COMMA_GROUPS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")        # 45,123   1,234.5
_POINT_GROUPS = re.compile(r"[+-]?\d{1,3}([. ]\d{3})+(,\d+)?")      # 45.123   45.123,50
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+")                         # 1,5      ,25
_ID_SUFFIX = re.compile(r"(^|[\s_.\-#])(id|uuid|guid)$")
_CAMEL_ID = re.compile(r"[a-z0-9](Id|ID)$")


def is_missing(cell):
    return cell.strip().lower() in MISSING


def _to_float(cell):
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _number(text, decimal_comma):
    """The number a stripped cell holds as people write it, or None. Not-finite values (inf) are
    returned as such; the caller decides what they mean."""
    if decimal_comma and (_POINT_GROUPS.fullmatch(text) or _DECIMAL_COMMA.fullmatch(text)):
        return float(text.replace(".", "").replace(" ", "").replace(",", "."))
    if decimal_comma and "," in text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    if _COMMA_GROUPS.fullmatch(text):
        return float(text.replace(",", ""))
    return None


def _decimal_comma(levels, delimiter):
    """Whether a column's commas are decimal marks. In a ``;``-separated file they are (that is
    why such files use ``;``); in a ``,``-separated one a comma can only group thousands; in
    tab- or ``|``-separated files the cells decide: ``1,5`` is a decimal, ``45,123`` a group."""
    if delimiter == ",":
        return False
    commas = [level for level in levels if "," in level]
    if not commas:
        return False
    if delimiter == ";":
        return True
    return not all(_COMMA_GROUPS.fullmatch(level) for level in commas)


def _plural(k, one, many):
    return f"{k} {one if k == 1 else many}"


def _listing(rows, cells, total):
    shown = ", ".join(f"row {r}: {c!r}" for r, c in zip(rows, cells))
    return shown + (", ..." if total > len(rows) else "")


def _arrow():
    """pyarrow's CSV reader and compute functions, or None when pyarrow is not installed."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pcsv
    except ImportError:
        return None
    return pa, pc, pcsv


def _missing_spellings():
    # Exact spellings for Arrow's vectorised lookup; any other spelling (' NA', 'nULL') still
    # counts as missing through the slower per-distinct-value path.
    words = set()
    for word in MISSING:
        words |= {word, word.upper(), word.title(), word.capitalize()}
    return sorted(words | {"NaN"})


_MISSING_EXACT = frozenset(_missing_spellings())


# pyarrow imports pandas, when it is installed, the first time an array is made from Python
# objects or turned into NumPy with to_numpy: 45 MB and a quarter of a second that reading a CSV
# file does not need. These helpers go through the arrays' buffers instead.

def _bits(buffer, offset, n):
    return np.unpackbits(np.frombuffer(buffer, dtype=np.uint8),
                         bitorder="little")[offset:offset + n].astype(bool)


def _to_numpy(array):
    """A new NumPy array from an Arrow float64, integer or boolean (chunked) array; a null is
    NaN in floats (the only arrays here that hold nulls)."""
    pa = _arrow()[0]
    kind = array.type
    dtype = bool if pa.types.is_boolean(kind) else \
        np.float64 if pa.types.is_floating(kind) else np.dtype(f"int{kind.bit_width}")
    out = np.empty(len(array), dtype=dtype)
    start = 0
    for chunk in getattr(array, "chunks", [array]):
        n, offset = len(chunk), chunk.offset
        if not n:
            continue
        validity, data = chunk.buffers()[:2]
        part = out[start:start + n]
        part[:] = _bits(data, offset, n) if dtype is bool else \
            np.frombuffer(data, dtype=dtype, count=offset + n)[offset:]
        if chunk.null_count:
            part[~_bits(validity, offset, n)] = np.nan
        start += n
    return out


def _arrow_strings(strings):
    """A list of str as an Arrow string array (the value set of a look-up)."""
    pa = _arrow()[0]
    data = [s.encode() for s in strings]
    offsets = np.cumsum([0] + [len(b) for b in data], dtype=np.int32)
    return pa.StringArray.from_buffers(len(data), pa.py_buffer(offsets),
                                       pa.py_buffer(b"".join(data)))


def _arrow_indices(positions):
    pa = _arrow()[0]
    positions = np.ascontiguousarray(positions, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(positions), [None, pa.py_buffer(positions)])


class Column:
    """One column's cells, with the questions the encoders ask of it.

    The cells live as text in an Arrow string array (pyarrow reader) or a NumPy object array of
    str (``csv`` reader, or a list given by hand), or as numbers in an Arrow float64 array (a
    column the pyarrow reader parsed; null where a cell is missing). The answers are NumPy arrays
    either way; a column of numbers gives its cells back as the numbers they hold (``1.50`` as
    ``1.5``, ``7.0`` as ``7``, a missing cell as ``''``). A column taken from another (the
    training part of a file) keeps only the positions it covers: the cells are gathered when a
    question is asked, so a split costs index arrays, not a copy of the file.
    """

    def __init__(self, cells, delimiter=",", positions=None):
        if isinstance(cells, (list, tuple)):
            cells = np.array(cells, dtype=object)
        self.store, self.delimiter, self.positions = cells, delimiter, positions
        self._is_arrow = not isinstance(cells, np.ndarray)
        self._is_numbers = self._is_arrow and _arrow()[0].types.is_floating(cells.type)

    def __len__(self):
        return len(self.store) if self.positions is None else len(self.positions)

    def take(self, positions):
        positions = np.asarray(positions, dtype=np.int64)
        if self.positions is not None:
            positions = self.positions[positions]
        return Column(self.store, self.delimiter, positions)

    def _data(self):
        if self.positions is None:
            return self.store
        if self._is_arrow:
            return self.store.take(_arrow_indices(self.positions))
        return self.store[self.positions]

    def _values(self):
        """A column of numbers' float64 values, NaN where a cell is missing: a new NumPy array,
        made from the chunks' buffers, so that asking allocates nothing in Arrow's memory pool
        (which keeps what it frees)."""
        values = _to_numpy(self.store)
        return values if self.positions is None else values[self.positions]

    def cells(self, positions=None):
        """The cells as a list of str (all of them, or those at ``positions``)."""
        if self._is_numbers:
            column = self if positions is None else self.take(positions)
            return [_cell(v) for v in column._values().tolist()]
        data = (self if positions is None else self.take(positions))._data()
        return data.to_pylist() if self._is_arrow else list(data)

    def codes(self):
        """``(codes, levels)``: ``levels`` the distinct stripped non-missing cells, ``codes``
        (int64, one per row) the position of each cell's level, -1 where it is missing."""
        if self._is_numbers:
            values = self._values()
            codes = np.full(len(values), -1, dtype=np.int64)
            present = ~np.isnan(values)
            distinct, codes[present] = np.unique(values[present], return_inverse=True)
            return codes, [_cell(v) for v in distinct.tolist()]
        if self._is_arrow:
            return self._arrow_codes()
        index = {}
        codes = np.fromiter((index.setdefault(c, len(index)) for c in self._data()),
                            dtype=np.int64, count=len(self))
        # Stripping and missing spellings can merge raw values: ' paris' and 'paris', '' and 'NA'.
        levels, merged, remap = [], {}, np.empty(len(index) + 1, dtype=np.int64)
        for i, cell in enumerate(index):
            text = cell.strip()
            if text.lower() in MISSING:
                remap[i] = -1
                continue
            remap[i] = merged.setdefault(text, len(levels))
            if remap[i] == len(levels):
                levels.append(text)
        remap[-1] = -1
        return remap[codes], levels

    def _arrow_codes(self):
        pa, pc, _ = _arrow()
        data = self._data()
        if isinstance(data, pa.ChunkedArray):
            data = data.combine_chunks()
        encoded = pc.dictionary_encode(pc.utf8_trim_whitespace(data))
        dictionary = encoded.dictionary
        missing = _to_numpy(pc.is_in(pc.utf8_lower(dictionary),
                                     value_set=_arrow_strings(sorted(MISSING))))
        remap = np.append(np.cumsum(~missing) - 1, -1)
        remap[:-1][missing] = -1
        levels = _Levels(dictionary.take(_arrow_indices(np.flatnonzero(~missing))))
        codes = remap[_to_numpy(encoded.indices)]
        del encoded, dictionary, data
        # Encoding a column of names builds a hash table of ~200 bytes per distinct cell, which
        # the allocator would keep for good (57 MB for 300,000 names).
        pa.default_memory_pool().release_unused()
        return codes, levels

    def numbers(self, decimal_comma=None, codes=None, mostly=None):
        """``(values, missing, bad, decimal_comma)``: float64 values (NaN where a cell is missing
        or not a finite number), the missing cells, the present cells that are not finite
        numbers, and whether commas were read as decimal marks.

        ``codes``: this column's :meth:`codes`, when the caller has them. ``mostly``: a share of
        the present cells; when fewer of them are numbers the answer is None, found without
        reading every distinct value of a text column (names, addresses).
        """
        if codes is None:
            fast = self.fast_numbers()
            if fast is not None:
                return fast
        codes, levels = self.codes() if codes is None else codes
        if decimal_comma is None:
            decimal_comma = _decimal_comma(levels, self.delimiter)
        counts = np.bincount(codes[codes >= 0], minlength=len(levels))
        allowed = np.inf if mostly is None else (1.0 - mostly) * counts.sum()
        level_values = np.empty(len(levels) + 1)
        level_values[-1] = np.nan  # code -1 (missing) reads this last entry
        not_numbers = 0
        for i, level in enumerate(levels):
            value = _number(level, decimal_comma)
            level_values[i] = np.nan if value is None else value
            if value is None or not math.isfinite(value):
                not_numbers += counts[i]
                if not_numbers > allowed:
                    return None
        values = level_values[codes]
        missing = codes < 0
        bad = ~missing & ~np.isfinite(values)
        values[bad] = np.nan
        return values, missing, bad, decimal_comma

    def fast_numbers(self):
        """:meth:`numbers` when the answer needs no look at the distinct cells (a column of
        numbers, or Arrow text whose present cells are all plain numbers); else None."""
        if self._is_numbers:
            values = self._values()
            missing, bad = np.isnan(values), np.isinf(values)
            values[bad] = np.nan
            return values, missing, bad, False
        return self._arrow_numbers() if self._is_arrow else None

    def _arrow_numbers(self):
        """Arrow's vectorised parse, when every present cell is a plain number; else None."""
        pa, pc, _ = _arrow()
        data = self._data()
        try:
            values = pc.cast(data, pa.float64())
            missing = None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            missing = pc.is_in(data, value_set=_arrow_strings(_missing_spellings()))
            try:
                values = pc.cast(pc.if_else(missing, pa.nulls(1, pa.string())[0], data),
                                 pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None
        values = _to_numpy(values)
        # 'nan' and 'NaN' are missing spellings; a cast reads them as NaN
        missing = np.isnan(values) if missing is None else _to_numpy(missing) | np.isnan(values)
        bad = ~missing & ~np.isfinite(values)
        values[bad] = np.nan
        return values, missing, bad, False

    def missing(self):
        if self._is_numbers:
            return np.isnan(self._values())
        return self.codes()[0] < 0


class _Levels(Sequence):
    """The distinct cells of an Arrow text column, as a sequence of str made when read: a
    column of names has as many levels as rows, and most questions (how many? which are
    frequent?) need only a few of them as Python strings."""

    CHUNK = 4096

    def __init__(self, array):
        self.array = array

    def __len__(self):
        return len(self.array)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return list(self)[i]
        return self.array[i].as_py()

    def __iter__(self):
        for start in range(0, len(self.array), self.CHUNK):
            yield from self.array.slice(start, self.CHUNK).to_pylist()

    def __add__(self, other):
        return list(self) + list(other)

    def __eq__(self, other):
        return list(self) == list(other)


def _cell(value):
    """A number as a cell: ``7`` for 7.0, ``0.1`` for 0.1, ``''`` for a missing one (NaN)."""
    if value != value:
        return ""
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


class Table:
    """Named columns of text cells, read from ``source``; column names are ``"0"``, ``"1"``, ...
    for a file without header. ``row_numbers[i]`` is row i's row in the file, counting the header
    as row 1, so that notices point at lines a user can find."""

    def __init__(self, names, columns, source="table", has_header=True, delimiter=",",
                 row_numbers=None):
        self.names, self.source, self.has_header = list(names), source, has_header
        self.delimiter = delimiter
        self.columns = [c if isinstance(c, Column) else Column(c, delimiter) for c in columns]
        n = len(self.columns[0]) if self.columns else 0
        self.row_numbers = (np.arange(n) + (2 if has_header else 1) if row_numbers is None
                            else np.asarray(row_numbers))

    @classmethod
    def from_rows(cls, names, rows, **kwargs):
        """A table from a list of rows of str (every row as long as ``names``)."""
        columns = [np.array([row[i] for row in rows], dtype=object) for i in range(len(names))]
        return cls(names, columns, **kwargs)

    def __len__(self):
        return len(self.row_numbers)

    def take(self, positions):
        """The table of the rows at ``positions`` (an index array or a boolean mask)."""
        positions = np.asarray(positions)
        if positions.dtype == bool:
            positions = np.flatnonzero(positions)
        return Table(self.names, [c.take(positions) for c in self.columns], source=self.source,
                     has_header=self.has_header, delimiter=self.delimiter,
                     row_numbers=self.row_numbers[positions])

    def select(self, names):
        """The table of the columns ``names`` only (the others' cells can then be freed)."""
        columns = [self.columns[self.names.index(name)] for name in names]
        return Table(names, columns, source=self.source, has_header=self.has_header,
                     delimiter=self.delimiter, row_numbers=self.row_numbers)

    def column_data(self, index):
        """The :class:`Column` at position ``index``."""
        return self.columns[index]

    def column(self, index):
        """The cells of column ``index``, as a list of str."""
        return self.columns[index].cells()

    @property
    def rows(self):
        """The table as a list of rows of str (slow for a large file: one str object a cell)."""
        return [list(row) for row in zip(*(c.cells() for c in self.columns))]

    def index(self, spec, what="column"):
        """The position of a column given by name, or by number (counting from 0)."""
        spec = str(spec)
        if spec in self.names:
            return self.names.index(spec)
        if spec.lstrip("-").isdigit() and -len(self.names) <= int(spec) < len(self.names):
            return int(spec) % len(self.names)
        shown = ", ".join(self.names[:12]) + (", ..." if len(self.names) > 12 else "")
        raise ValueError(f"{self.source} has no {what} {spec!r}; its columns are: {shown} "
                         f"(or give a number from 0 to {len(self.names) - 1})")


def release_memory():
    """Hand back to the system the memory of the tables that are gone. Arrow's allocator keeps
    what it frees for its next arrays; a command that has encoded its file needs it elsewhere."""
    arrow = _arrow()
    if arrow is not None:
        arrow[0].default_memory_pool().release_unused()


def _size(n_bytes):
    return f"{n_bytes / 2**20:.0f} MB" if n_bytes >= 2**20 else f"{n_bytes / 2**10:.0f} KB"


def read_csv(path, header="auto", delimiter=None, notify=None, numbers=True, text=()):
    """Read a CSV file into a :class:`Table`, with one clear error per kind of bad file.

    ``header``: ``"auto"`` (a first row without any number, whose cells do not recur below, is a
    header), ``True`` or ``False``. ``delimiter``: one of ``, ; tab |``, or None to detect it
    from the first rows. ``notify(text)``, when given, hears a line before a large file is read.
    ``numbers``: let the pyarrow reader parse columns of plain numbers as numbers (8 bytes a
    cell, parsed once); False keeps every cell as written, for writing it back. ``text``:
    columns (names, or numbers counting from 0) kept as written all the same (identifiers that
    are copied into an output: ``007`` must stay ``007``). ``;``-separated files are read as
    text, since there ``1.234`` may be a thousand and more.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist; check the path")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, not a CSV file")
    size = os.path.getsize(path)
    if notify is not None and size >= ANNOUNCE_BYTES:
        notify(f"reading {os.path.basename(path)} ({_size(size)})...")
    sample = _sample(path, size)
    if delimiter is not None and len(delimiter) != 1:
        raise ValueError(f"--delimiter must be one character such as , ; | or a tab, got "
                         f"{delimiter!r}")
    delimiter = delimiter or _sniff(sample)
    first = [row for row in csv.reader(sample.splitlines(), delimiter=delimiter)
             if any(c.strip() for c in row)]
    if size > SAMPLE_BYTES:
        first = first[:-1]  # the sample may end inside a row
    if not first:
        raise ValueError(f"{path} is empty; a CSV file with one row per sample is needed")
    has_header = _looks_like_header(first) if header == "auto" else bool(header)
    width = len(first[0])
    names = _unique_names([c.strip() for c in first[0]]) if has_header else \
        [str(i) for i in range(width)]
    arrow = _arrow()
    columns = None
    if arrow is not None:
        numeric = set()
        if numbers and delimiter != ";":
            numeric = _plain_number_columns(first[1:] if has_header else first, width)
        for spec in map(str, text):
            if spec in names:
                numeric.discard(names.index(spec))
            elif spec.lstrip("-").isdigit() and -width <= int(spec) < width:
                numeric.discard(int(spec) % width)
        columns = _read_arrow(arrow, path, delimiter, has_header, width, numeric)
    if columns is None:  # no pyarrow, or a file it refuses: the csv module says what is wrong
        columns = _read_rows(path, delimiter, has_header, width)
    if not len(columns[0]):
        raise ValueError(f"{path} has a header but no data rows")
    return Table(names, columns, source=path, has_header=has_header, delimiter=delimiter)


def _sample(path, size):
    with open(path, "rb") as f:
        raw = f.read(SAMPLE_BYTES)
    if size > SAMPLE_BYTES:  # a multi-byte character may be cut at the end
        raw = raw[:raw.rfind(b"\n") + 1] or raw
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not a readable CSV file ({exc}); save it as UTF-8") from None


def _sniff(sample):
    """The delimiter that splits most of the first rows into the same number (2 or more) of
    cells, most of them clean (a number, or text without another delimiter in it); ``,`` when
    none does."""
    lines = [line for line in sample.splitlines() if line.strip()][:50]
    best, best_score = ",", 0.0
    for delimiter in DELIMITERS:
        rows = list(csv.reader(lines, delimiter=delimiter))
        width, count = Counter(map(len, rows)).most_common(1)[0] if rows else (1, 0)
        if width < 2:
            continue
        others = [d for d in DELIMITERS if d != delimiter]
        cells = [c.strip() for row in rows for c in row]
        clean = sum(_number(c, delimiter == ";") is not None or not any(d in c for d in others)
                    for c in cells)
        score = count / len(rows) + clean / len(cells)
        if score > best_score:
            best, best_score = delimiter, score
    return best


_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_ARROW_TEXT = re.compile(r"In CSV column #(\d+): CSV conversion error")
RETRIES = 4  # columns found to hold text below the sample before every column is read as text


def _plain_number_columns(rows, width):
    """The positions of the columns whose cells in ``rows`` (the file's first rows) are all plain
    numbers or missing, with at least one number: the columns worth parsing as numbers."""
    found = set()
    for i in range(width):
        cells = [row[i] for row in rows if i < len(row)]
        if any(_PLAIN_NUMBER.fullmatch(c) for c in cells) and \
                all(_PLAIN_NUMBER.fullmatch(c) or c in _MISSING_EXACT for c in cells):
            found.add(i)
    return found


def _read_arrow(arrow, path, delimiter, has_header, width, numeric=()):
    """The columns as Arrow arrays, or None when the file has rows of another width or is not
    valid UTF-8 (the ``csv`` reader then finds the row to name).

    The columns at positions ``numeric`` are parsed as float64 (a missing spelling is null), the
    others kept as text. A numeric column with text further down than the first rows (``unknown``
    in row 200,000) is read again as text, so that Column counts it as it counts any other."""
    pa, _, pcsv = arrow
    keys = [f"c{i}" for i in range(width)]
    numeric = set(numeric)
    for attempt in range(RETRIES + 1):
        if attempt == RETRIES:
            numeric = set()
        ragged = []

        def on_ragged(row):
            ragged.append(row)
            return "skip"

        types = {k: pa.float64() if i in numeric else pa.string() for i, k in enumerate(keys)}
        try:
            table = pcsv.read_csv(
                path,
                read_options=pcsv.ReadOptions(column_names=keys,
                                              skip_rows=1 if has_header else 0),
                parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True,
                                                invalid_row_handler=on_ragged),
                # Text cells stay as written: Column decides what is a number, the same way for
                # every reader, and the original text survives for `split`. Null values apply
                # to the float64 columns only.
                convert_options=pcsv.ConvertOptions(column_types=types,
                                                    strings_can_be_null=False,
                                                    null_values=_missing_spellings(),
                                                    quoted_strings_can_be_null=True))
        except pa.ArrowInvalid as exc:
            text = _ARROW_TEXT.match(str(exc))
            if text and int(text.group(1)) in numeric:
                numeric.discard(int(text.group(1)))
                continue
            return None
        except UnicodeDecodeError:
            return None
        break
    if ragged:
        return None
    # What the parse freed stays with Arrow's allocator (mimalloc) unless it is told: 20 MB or
    # so of a 120 MB file.
    pa.default_memory_pool().release_unused()
    return [table.column(k) for k in keys]


def _read_rows(path, delimiter, has_header, width):
    with open(path, newline="", encoding="utf-8-sig") as f:
        try:
            rows = [row for row in csv.reader(f, delimiter=delimiter)
                    if any(c.strip() for c in row)]
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not a readable CSV file ({exc})") from None
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise ValueError(f"{path}: row {number} has {len(row)} fields but the first row has "
                             f"{width}; every row needs the same columns")
    rows = rows[1:] if has_header else rows
    return [np.array([row[i] for row in rows], dtype=object) for i in range(width)]


def _looks_like_header(rows):
    first = [c.strip() for c in rows[0]]
    if any(_to_float(cell) is not None for cell in first):
        return False
    if len(rows) == 1:
        return True
    below = [set(row[i].strip() for row in rows[1:200] if i < len(row))
             for i in range(len(first))]
    return not any(cell in seen for cell, seen in zip(first, below) if cell)


def _unique_names(cells):
    names, seen = [], Counter()
    for i, cell in enumerate(cells):
        name = cell or str(i)
        seen[name] += 1
        names.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return names


def write_csv(path, names, rows, delimiter=","):
    """Write rows atomically (see :func:`neuralnp._files.atomic_write`), with a header row of
    ``names`` unless ``names`` is None."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        if names is not None:
            writer.writerow(names)
        writer.writerows(rows)


# -- features -------------------------------------------------------------------------------------

def _bad_cells_notice(name, column, bad, row_numbers):
    """'age: 2 cells are not numbers (row 6: 'unknown', row 9: 'x'); they count as missing'."""
    positions = np.flatnonzero(bad)
    k = len(positions)
    shown = _listing(row_numbers[positions[:SHOWN]], column.cells(positions[:SHOWN]), k)
    what = "1 cell is not a number" if k == 1 else f"{k} cells are not numbers"
    it = "it counts" if k == 1 else "they count"
    return (f"{name}: {what} ({shown}); {it} as missing (correct the file if "
            f"{'it is a typo' if k == 1 else 'they are typos'})")


def _identifier(name, values, position, has_header):
    """Why a numeric column is an identifier, or None: its name and values must say so, since a
    different value in every row is just what a measurement like income has."""
    n = len(values)
    if n < 2 or np.isnan(values).any() or not np.all(values == np.round(values)):
        return None
    if np.unique(values).size != n:
        return None
    if _CAMEL_ID.search(name) or _ID_SUFFIX.search(name.lower()):
        return "its name says so and it holds a different whole number in every row"
    steps = np.diff(values)
    if ((steps > 0).all() or (steps < 0).all()) and abs(values[-1] - values[0]) < 2 * n:
        return "it counts the rows: 1, 2, 3, ..."
    if not has_header and position == 0:
        # Files without a header (UCI's wdbc.data) put the record number first.
        return "the first column of a file without header, with a different whole number in " \
               "every row: a record number"
    return None


class TableEncoder:
    """Fit on the training table's feature columns; then turn any table with those columns into
    a float32 matrix ``(rows, features)``. ``notices`` says what was decided and why."""

    def __init__(self, min_frequency=None):
        self.min_frequency = min_frequency
        self.columns = []  # one spec per used or dropped column
        self.notices = []

    def fit(self, table, indices, drop=(), keep=()):
        """``drop``, ``keep``: column names to leave out, and names to use even when they look
        like identifiers (the ``--drop`` and ``--keep`` of ``neuralnp train``)."""
        n = len(table)
        min_freq = self.min_frequency or max(2, math.ceil(0.01 * n))
        self.columns, self.notices = [], []
        for i in indices:
            name, column = table.names[i], table.column_data(i)
            if name in drop:
                self._drop(name, "as asked (--drop)")
                continue
            parsed = column.fast_numbers()
            codes = None
            if parsed is None or parsed[1].all():
                codes = column.codes()
                parsed = column.numbers(codes=codes, mostly=MOSTLY_NUMBERS)
            if parsed is not None and not parsed[1].all():
                values, _, bad, decimal_comma = parsed
                self._fit_number(table, i, name in keep, min_freq, values, bad, decimal_comma)
            else:
                self._fit_text(name, codes, name in keep, min_freq)
        if not any(c["kind"] != "drop" for c in self.columns):
            raise ValueError("no usable feature columns are left; the data needs at least one "
                             "column besides the target that is not an identifier (--keep COL "
                             "uses a column that looks like one)")
        return self

    def _fit_number(self, table, i, keep, min_freq, values, bad, decimal_comma):
        name = table.names[i]
        if bad.any():
            self.notices.append(_bad_cells_notice(name, table.column_data(i), bad,
                                                  table.row_numbers))
        known = values[~np.isnan(values)]
        missing = len(values) - len(known)
        distinct = np.unique(known)
        if len(distinct) == 1 and not missing:
            self._drop(name, f"it holds the same value ({distinct[0]:g}) in every row")
            return
        why = None if keep else _identifier(name, values, i, table.has_header)
        if why:
            self._drop(name, f"it looks like an identifier ({why}); --keep {name} uses it")
            return
        median = float(np.median(known))
        filled = np.where(np.isnan(values), median, values)
        std = float(filled.std())
        spec = {"name": name, "kind": "number", "fill": median, "mean": float(filled.mean()),
                "scale": std or 1.0, "indicator": missing >= min_freq}
        if decimal_comma:
            spec["decimal_comma"] = True
        self.columns.append(spec)
        if missing:
            self.notices.append(f"{name}: {missing} missing values filled with the median "
                                f"{median:g}" + self._flagged(missing, min_freq))

    def _fit_text(self, name, codes, keep, min_freq):
        codes, levels = codes
        n = len(codes)
        missing = int((codes < 0).sum())
        counts = np.bincount(codes[codes >= 0], minlength=len(levels))
        if not levels:
            self._drop(name, "it is empty")
            return
        if len(levels) == 1 and not missing:
            self._drop(name, f"it holds the same value ({levels[0]}) in every row")
            return
        if len(levels) == n and not keep:
            self._drop(name, "it looks like an identifier (a different value in every row); "
                             f"--keep {name} uses it")
            return
        kept = sorted(level for level, k in zip(levels, counts) if k >= min_freq)
        rare = len(levels) - len(kept)
        indicator = missing >= min_freq
        if not kept and not indicator:
            self._drop(name, f"none of its {len(levels)} values occurs {min_freq} times")
            return
        most = levels[int(np.argmax(counts))]
        self.columns.append({"name": name, "kind": "text", "fill": most, "categories": kept,
                             "other": rare > 0 and bool(kept), "indicator": indicator})
        if missing and kept:
            self.notices.append(f"{name}: {missing} missing values filled with the most "
                                f"frequent value {most!r}" + self._flagged(missing, min_freq))
        if rare and kept:
            self.notices.append(f"{name}: {rare} values seen fewer than {min_freq} times "
                                "share one 'other' column")
        elif rare:
            self.notices.append(f"{name}: none of its {rare} values occurs {min_freq} "
                                f"times; only whether it is missing ({missing} rows) is kept")

    @staticmethod
    def _flagged(missing, min_freq):
        # Whether a value was missing often says something (a passenger without a cabin):
        # a 0/1 column keeps it, as scikit-learn's SimpleImputer(add_indicator=True) does.
        return ", plus a column marking them" if missing >= min_freq else ""

    def _drop(self, name, why):
        self.columns.append({"name": name, "kind": "drop"})
        self.notices.append(f"{name}: dropped, {why}")

    @property
    def feature_names(self):
        names = []
        for c in self.columns:
            if c["kind"] == "number":
                names.append(c["name"])
            elif c["kind"] == "text":
                names += [f"{c['name']}={v}" for v in c["categories"]]
                names += [f"{c['name']}=other"] if c["other"] else []
            if c.get("indicator"):
                names.append(f"{c['name']} missing")
        return names

    @staticmethod
    def _width(spec):
        width = 1 if spec["kind"] == "number" else len(spec["categories"]) + bool(spec["other"])
        return width + bool(spec.get("indicator"))

    def transform(self, table, notify=None):
        """The encoded float32 matrix, written column block by column block into one array.

        Raises ValueError naming any training column the table lacks. Cells of a numeric column
        that are not numbers count as missing; ``notify(text)``, when given, hears which.
        """
        used = [spec for spec in self.columns if spec["kind"] != "drop"]
        for spec in used:
            if spec["name"] not in table.names:
                raise ValueError(f"{table.source} lacks the column {spec['name']!r} that the "
                                 "model was trained with; give it the training file's columns")
        out = np.empty((len(table), sum(map(self._width, used))), dtype=np.float32)
        start = 0
        for spec in used:
            column = table.column_data(table.names.index(spec["name"]))
            block = out[:, start:start + self._width(spec)]
            start += block.shape[1]
            if spec["kind"] == "number":
                values, _, bad, _ = column.numbers(spec.get("decimal_comma", False))
                if bad.any() and notify is not None:
                    notify(_bad_cells_notice(spec["name"], column, bad, table.row_numbers))
                absent = np.isnan(values)
                values[absent] = spec["fill"]
                block[:, 0] = (values - spec["mean"]) / spec["scale"]
            else:
                codes, levels = column.codes()
                absent = codes < 0
                self._one_hot(spec, codes, levels, block)
            if spec.get("indicator"):
                block[:, -1] = absent
        return out

    @staticmethod
    def _one_hot(spec, codes, levels, block):
        categories = spec["categories"]
        position = {c: i for i, c in enumerate(categories)}
        other = len(categories) if spec["other"] else -1
        # One look-up per distinct value, not per row; the last entry serves missing cells
        # (code -1), which get the most frequent value. An unseen value with no 'other' column
        # is -1: a row of zeros.
        where = np.array([position.get(v, other) for v in levels + [spec["fill"]]],
                         dtype=np.int64)[codes]
        end = len(categories) + (1 if spec["other"] else 0)
        block[:, :end] = 0.0
        rows = np.flatnonzero(where >= 0)
        block[rows, where[rows]] = 1.0

    def get_config(self):
        return {"min_frequency": self.min_frequency, "columns": self.columns}

    @classmethod
    def from_config(cls, config):
        encoder = cls(config.get("min_frequency"))
        encoder.columns = list(config["columns"])
        return encoder


# -- target ---------------------------------------------------------------------------------------

def _as_column(cells):
    return cells if isinstance(cells, Column) else Column(list(cells))


def _class_name(value):
    return str(int(value)) if value.is_integer() else repr(float(value))


def usable_target_rows(column, row_numbers=None):
    """``(mask, why)``: the rows whose target can be learned from, and a note on the others.

    A missing cell leaves its row out; so does, in a column of numbers, a cell that is not a
    finite number (``inf``, ``1e999``, a typo), which would otherwise turn a regression target
    into text with hundreds of classes.
    """
    column = _as_column(column)
    values, missing, bad, _ = column.numbers()
    present = len(values) - int(missing.sum())
    numeric = present and present - int(bad.sum()) >= MOSTLY_NUMBERS * present
    unusable = missing | bad if numeric else missing
    why = ""
    if numeric and bad.any():
        positions = np.flatnonzero(bad)
        rows = (positions + 1 if row_numbers is None else np.asarray(row_numbers)[positions])
        shown = _listing(rows[:SHOWN], column.cells(positions[:SHOWN]), len(positions))
        why = (f"; in this column of numbers {_plural(len(positions), 'cell is', 'cells are')} "
               f"not a finite number ({shown})")
    return ~unusable, why


class TargetEncoder:
    """The task a target column asks for, and the mapping between its cells and ``y``.

    Classification targets become integer labels ``0..K-1`` (classes sorted, so the positive
    class of a binary task is the larger one: ``1`` of 0/1, ``M`` of B/M); classes of numbers
    are the values, so ``1`` and ``1.0`` are one class. Regression targets are standardised, and
    predictions are mapped back.
    """

    def __init__(self, task=None):
        if task not in (None, "binary", "multiclass", "regression"):
            raise ValueError(f"task must be binary, multiclass or regression, got {task!r}")
        self.task = task
        self.classes = []
        self.mean, self.scale = 0.0, 1.0

    def fit(self, name, cells):
        """``cells``: a :class:`Column` or a list of str, without missing values (see
        :func:`usable_target_rows`)."""
        column = _as_column(cells)
        auto = self.task is None
        values, missing, bad, _ = column.numbers()
        numeric = bool(len(values)) and not (missing | bad).any()
        if numeric:
            distinct = np.unique(values)
            if self.task is None:
                few_whole = np.all(distinct == np.round(distinct)) and \
                    len(distinct) <= MAX_CLASSES_FOR_NUMBERS
                self.task = "multiclass" if few_whole else "regression"
            classes = [_class_name(v) for v in distinct]
        else:
            codes, levels = column.codes()
            classes = sorted(levels)
            self.task = self.task or "multiclass"
        if self.task == "regression":
            if not numeric:
                bad_cell = column.cells(np.flatnonzero(missing | bad)[:1])[0]
                raise ValueError(f"target {name!r} holds {bad_cell!r}; a regression needs "
                                 "numbers")
            if len(distinct) < 2:
                raise ValueError(f"target {name!r} holds the same value ({distinct[0]:g}) in "
                                 "every row; there is nothing to learn")
            self.mean, self.scale = float(values.mean()), float(values.std()) or 1.0
            return self
        if len(classes) < 2:
            raise ValueError(f"target {name!r} has a single class "
                             f"({classes[0] if classes else 'none'}); a classifier needs at "
                             "least two")
        if auto and len(classes) == 2:
            self.task = "binary"
        if self.task == "binary" and len(classes) != 2:
            raise ValueError(f"target {name!r} has {len(classes)} classes, not 2; use the "
                             "multi-class task")
        self.classes = classes
        return self

    @property
    def n_outputs(self):
        return 1 if self.task in ("binary", "regression") else len(self.classes)

    def transform(self, cells, source="data"):
        column = _as_column(cells)
        if self.task == "regression":
            values, missing, bad, _ = column.numbers()
            if (missing | bad).any():
                raise ValueError(f"{source}: the target holds text; the model predicts numbers")
            return ((values - self.mean) / self.scale).astype(np.float32)
        by_value = [_number(c, False) for c in self.classes]
        if all(v is not None for v in by_value):
            # Classes of numbers match by value ('1.0' is class '1'). Models saved before that
            # may hold '1' and '1.0' as two classes: the first takes the value.
            values = column.numbers()[0]
            known = {}
            for i, v in enumerate(by_value):
                known.setdefault(v, i)
            distinct, inverse = np.unique(values, return_inverse=True)
            lookup = np.array([known.get(v, -1) for v in distinct.tolist()], dtype=np.int64)
            labels = lookup[inverse.reshape(-1)]
        else:
            codes, levels = column.codes()
            position = {c: i for i, c in enumerate(self.classes)}
            labels = np.array([position.get(v, -1) for v in levels] + [-1],
                              dtype=np.int64)[codes]
        if (labels < 0).any():
            unknown = sorted(set(column.cells(np.flatnonzero(labels < 0)[:200])))
            raise ValueError(f"{source}: the target holds {', '.join(map(repr, unknown[:5]))}, "
                             f"which the model never saw; its classes are {self.classes}")
        return labels

    def decode(self, outputs):
        """``(predicted cells, class probabilities or None)`` from the model's outputs."""
        outputs = np.asarray(outputs, dtype=np.float64)
        if self.task == "regression":
            return [f"{v:.6g}" for v in outputs[:, 0] * self.scale + self.mean], None
        if self.task == "binary":
            p = outputs[:, :1]
            probs = np.concatenate([1 - p, p], axis=1) if outputs.shape[1] == 1 else outputs
        else:
            probs = outputs
        return [self.classes[i] for i in np.argmax(probs, axis=1)], probs

    def get_config(self):
        return {"task": self.task, "classes": self.classes, "mean": self.mean,
                "scale": self.scale}

    @classmethod
    def from_config(cls, config):
        encoder = cls(config["task"])
        encoder.classes = list(config["classes"])
        encoder.mean, encoder.scale = config["mean"], config["scale"]
        return encoder
