"""Reading lists: each format, column detection, skipped rows, broken input, limits and streaming."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from bouncer_queue.errors import InputError
from bouncer_queue.lists import MAX_SKIPPED_KEPT, ListReader, SkippedRow, read_list
from bouncer_queue.storage.records import EmailRow

Write = Callable[[str, str], Path]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8", newline="")
        return path

    return _write


def emails(reader: ListReader) -> list[str]:
    return [row.email for row in reader]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_delimiter_is_sniffed(write: Write, delimiter: str) -> None:
    lines = ["email,name,city", "a@example.com,Ann,Paris", "b@example.com,Bob,Rome"]
    path = write("list.csv", "\n".join(line.replace(",", delimiter) for line in lines) + "\n")

    rows = list(read_list(path))

    assert [(r.email, r.name, r.extra) for r in rows] == [
        ("a@example.com", "Ann", {"email": "a@example.com", "name": "Ann", "city": "Paris"}),
        ("b@example.com", "Bob", {"email": "b@example.com", "name": "Bob", "city": "Rome"}),
    ]


def test_csv_quoted_delimiters_do_not_confuse_the_sniffer(write: Write) -> None:
    path = write("list.csv", '"Full; Name";Email\n"Doe; John";john@example.com\n')

    assert [(r.email, r.name) for r in read_list(path)] == [("john@example.com", "Doe; John")]


@pytest.mark.parametrize("header", ["Email", "E-Mail", "email_address", "Email Address", "MAIL", "emailAddress"])
def test_csv_email_column_found_by_header_name(write: Write, header: str) -> None:
    path = write("list.csv", f"id,{header},notes\n1,x@example.com,hello\n")
    reader = read_list(path)

    rows = list(reader)

    assert [r.email for r in rows] == ["x@example.com"]
    assert rows[0].extra == {"id": "1", header: "x@example.com", "notes": "hello"}
    assert reader.email_column == header


def test_csv_email_column_found_by_content(write: Write) -> None:
    path = write("list.csv", "who,contact,score\nAnn,ann@example.com,3\nBob,bob@example.org,4\nCy,n/a,5\n")
    reader = read_list(path)

    assert emails(reader) == ["ann@example.com", "bob@example.org", "n/a"]
    assert reader.email_column == "contact"


def test_csv_column_option_overrides_detection(write: Write) -> None:
    path = write("list.csv", "email,backup\nold@example.com,new@example.com\n")

    assert emails(read_list(path, column="BACKUP")) == ["new@example.com"]
    assert emails(read_list(path, column="2")) == ["new@example.com"]


def test_csv_unknown_column_option_lists_the_columns(write: Write) -> None:
    path = write("list.csv", "email,name\na@example.com,A\n")

    with pytest.raises(
        InputError,
        match=r"no column 'mail_addr'; give --column a header or a number from 1 to 2 \(the columns are 'email'",
    ):
        list(read_list(path, column="mail_addr"))


def test_csv_without_email_column_is_an_input_error(write: Write) -> None:
    path = write("list.csv", "name,city\nAnn,Paris\n")

    with pytest.raises(InputError, match=r"no email column found among 'name', 'city'; name it with --column"):
        list(read_list(path))


def test_csv_header_is_required_when_several_columns(write: Write) -> None:
    path = write("list.csv", "a@example.com,Ann\nb@example.com,Bob\n")

    with pytest.raises(InputError, match="line 1 looks like data, not a header"):
        list(read_list(path))


def test_csv_single_column_of_bare_addresses_is_read_whole(write: Write) -> None:
    path = write("list.csv", "a@example.com\nb@example.com\n")

    assert emails(read_list(path)) == ["a@example.com", "b@example.com"]


def test_csv_first_and_last_name_are_joined_and_kept(write: Write) -> None:
    path = write("list.csv", "First Name,Last Name,Email\nAnn,Lee,ann@example.com\n,Solo,solo@example.com\n")

    rows = list(read_list(path))

    assert [r.name for r in rows] == ["Ann Lee", "Solo"]
    assert rows[0].extra == {"First Name": "Ann", "Last Name": "Lee", "Email": "ann@example.com"}


def test_csv_duplicate_and_blank_headers_get_distinct_names(write: Write) -> None:
    path = write("list.csv", "email,tag,tag,\na@example.com,x,y,z\n")

    assert next(iter(read_list(path))).extra == {"email": "a@example.com", "tag": "x", "tag_2": "y", "column_4": "z"}


def test_csv_rows_are_normalized_but_malformed_ones_still_yielded(write: Write) -> None:
    path = write("list.csv", "email\n  Ann@Example.COM \nno-at-sign.example.com\njohn.doe@\n")

    assert emails(read_list(path)) == ["Ann@example.com", "no-at-sign.example.com", "john.doe@"]


def test_csv_skipped_rows_are_reported_with_line_numbers(write: Write) -> None:
    text = (
        "name,email,city\nAnn,a@example.com,Paris\nNobody,,Rome\n\n"
        "Short\nBob,b@example.com\nLong,c@example.com,Oslo,extra\n"
    )
    reader = read_list(write("list.csv", text))

    rows = list(reader)

    assert [r.row_number for r in rows] == [2, 6, 7]
    assert reader.skipped == [
        SkippedRow(3, "no email", {"name": "Nobody", "email": "", "city": "Rome"}),
        SkippedRow(5, "row has 1 fields, the header 3: no email cell", {"name": "Short"}),
    ]
    assert (reader.rows_read, reader.rows_yielded, reader.skipped_total) == (5, 3, 2)
    assert rows[1].extra == {"name": "Bob", "email": "b@example.com"}  # a short row keeps the cells it has
    assert rows[2].extra == {"name": "Long", "email": "c@example.com", "city": "Oslo", "column_4": "extra"}
    assert reader.complete


def test_csv_multiline_quoted_cell_keeps_row_numbers_on_the_starting_line(write: Write) -> None:
    path = write("list.csv", 'email,notes\na@example.com,"line one\nline two"\nb@example.com,x\n')

    assert [(r.row_number, r.extra) for r in read_list(path)] == [
        (2, {"email": "a@example.com", "notes": "line one\nline two"}),
        (4, {"email": "b@example.com", "notes": "x"}),
    ]


def test_csv_unbalanced_quote_is_an_input_error_with_line(write: Write) -> None:
    rows = "".join(f"user{i}@example.com,ok\n" for i in range(300))
    path = write("list.csv", f'email,notes\na@example.com,"never closed\n{rows}')

    with pytest.raises(InputError, match=r"list\.csv: line 2: a quoted cell runs over \d+ lines"):
        list(read_list(path))


def test_csv_unbalanced_quote_in_email_cell_is_an_input_error(write: Write) -> None:
    path = write("list.csv", 'email,name\n"a@example.com,A\nb@example.com,B\n')

    with pytest.raises(InputError, match="line 2: the email cell spans several lines"):
        list(read_list(path))


def test_csv_oversize_field_is_an_input_error(write: Write) -> None:
    path = write("list.csv", 'email,notes\na@example.com,"' + ("x" * 2000 + "\n") * 90 + "\nend\n")

    with pytest.raises(InputError, match=r"line 2: broken CSV \(field larger than field limit"):
        list(read_list(path))


def test_tsv_extension_and_crlf_line_ends(write: Write) -> None:
    path = write("list.tsv", "email\tname\r\na@example.com\tA, B\r\n")

    assert [(r.email, r.name) for r in read_list(path)] == [("a@example.com", "A, B")]


def test_txt_ignores_blank_lines_and_comments(write: Write) -> None:
    reader = read_list(write("list.txt", "# exported 2024\n\na@example.com\n   \n  b@example.com  \n#c@example.com\n"))

    assert [(r.email, r.row_number) for r in reader] == [("a@example.com", 3), ("b@example.com", 5)]
    assert reader.rows_read == 2


def test_txt_takes_only_column_one(write: Write) -> None:
    path = write("list.txt", "a@example.com\n")

    assert emails(read_list(path, column="1")) == ["a@example.com"]
    with pytest.raises(InputError, match="so --column can only be 1"):
        read_list(path, column="2")


def test_json_array_of_strings_and_objects(write: Write) -> None:
    data = ["a@example.com", {"Email": "b@example.com", "name": "Bee", "age": 3, "tags": ["x"], "n": None}, 7, {}]
    reader = read_list(write("list.json", json.dumps(data, indent=2)))

    rows = list(reader)

    assert rows == [
        EmailRow("a@example.com", None, 1, {"email": "a@example.com"}),
        EmailRow("b@example.com", "Bee", 2, data[1]),  # the object as given, values untouched
    ]
    assert reader.skipped == [
        SkippedRow(3, "expected an address or an object, got int", {"email": 7}),
        SkippedRow(4, "no email", {}),
    ]


def test_json_column_names_the_key(write: Write) -> None:
    path = write("list.json", json.dumps([{"email": "old@example.com", "work": "new@example.com"}]))

    assert emails(read_list(path, column="work")) == ["new@example.com"]


def test_json_empty_array_yields_nothing(write: Write) -> None:
    reader = read_list(write("list.json", " [ ] \n"))

    assert emails(reader) == []
    assert reader.complete


@pytest.mark.parametrize("name", ["list.jsonl", "list.ndjson", "list.json"])
def test_json_lines(write: Write, name: str) -> None:
    text = '{"email": "a@example.com", "name": "A"}\n\n"b@example.com"\n{"name": "none"}\n'
    reader = read_list(write(name, text))

    assert [(r.email, r.row_number) for r in reader] == [("a@example.com", 1), ("b@example.com", 3)]
    assert reader.skipped == [SkippedRow(4, "no email", {"name": "none"})]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('[\n"a@example.com",\n"b@example.com"\n"c@example.com"\n]', 4),
        ('[\n"a@example.com",\n{"email": "b@example.com",}\n]', 3),
        ('["a@example.com",\n"b@example.com"', 2),
        ('["a@example.com"]\n\n{"extra": 1}', 3),
    ],
)
def test_json_syntax_errors_name_the_line(write: Write, text: str, line: int) -> None:
    with pytest.raises(InputError, match=rf"list\.json: line {line}: "):
        list(read_list(write("list.json", text)))


def test_ndjson_syntax_error_names_the_line(write: Write) -> None:
    with pytest.raises(InputError, match=r"line 2: JSON syntax error"):
        list(read_list(write("list.jsonl", '"a@example.com"\n{"email": oops}\n')))


def test_format_from_option_and_unknown_extension(write: Write) -> None:
    path = write("list.dat", "a@example.com\n")

    assert emails(read_list(path, fmt="txt")) == ["a@example.com"]
    with pytest.raises(InputError, match="cannot tell the list format"):
        read_list(path)
    with pytest.raises(InputError, match="unknown list format 'xls'"):
        read_list(path, fmt="xls")


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_list(tmp_path / "nope.csv")


def test_empty_file_is_an_input_error(write: Write) -> None:
    with pytest.raises(InputError, match="the file is empty"):
        list(read_list(write("list.csv", "")))


def test_max_rows_exceeded_is_an_input_error(write: Write) -> None:
    path = write("list.txt", "".join(f"u{i}@example.com\n" for i in range(11)))

    assert len(list(read_list(path, max_rows=11))) == 11
    reader = read_list(path, max_rows=10)
    with pytest.raises(InputError, match="the list has more than 10 rows; split it or raise --max-rows"):
        list(reader)
    assert not reader.complete


def test_skipped_rows_kept_are_capped_but_all_counted(write: Write) -> None:
    reader = read_list(write("list.csv", "email,name\n" + ",nobody\n" * (MAX_SKIPPED_KEPT + 5)))

    assert emails(reader) == []
    assert len(reader.skipped) == MAX_SKIPPED_KEPT
    assert reader.skipped_total == MAX_SKIPPED_KEPT + 5


def test_reader_can_be_iterated_again_with_fresh_counts(write: Write) -> None:
    reader = read_list(write("list.txt", "a@example.com\nb@example.com\n"))

    assert emails(reader) == emails(reader)
    assert reader.rows_yielded == 2


def test_reading_is_streamed_not_buffered(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write("email,name,company\n")
        out.writelines(f"user{i}@example{i % 97}.com,User Number {i},Company {i % 13}\n" for i in range(200_000))
    size = path.stat().st_size
    reader = read_list(path)

    tracemalloc.start()
    try:
        count = sum(1 for _ in reader)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert count == 200_000
    assert peak < size / 10, f"peak {peak} bytes for a {size}-byte file"


def test_minified_json_array_is_streamed(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps([f"user{i}@example.com" for i in range(100_000)]), encoding="utf-8")
    size = path.stat().st_size
    reader = read_list(path)

    tracemalloc.start()
    try:
        count = sum(1 for _ in reader)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert count == 100_000  # one line far longer than any CSV/TXT line limit
    assert peak < size / 4, f"peak {peak} bytes for a {size}-byte file"


@pytest.mark.parametrize(("name", "delimiter"), [("list.csv", ","), ("list.tsv", "\t")])
def test_headerless_list_finds_the_address_column_by_content(write: Write, name: str, delimiter: str) -> None:
    path = write(name, f"Ann{delimiter}ann@example.com{delimiter}Paris\nBob{delimiter}bob@example.org{delimiter}\n")
    reader = read_list(path, header=False)

    rows = list(reader)

    assert [(r.email, r.row_number) for r in rows] == [("ann@example.com", 1), ("bob@example.org", 2)]
    assert rows[0].extra == {"column_1": "Ann", "column_2": "ann@example.com", "column_3": "Paris"}
    assert reader.email_column == "column_2"


@pytest.mark.parametrize("column", ["1", "column_1"])
def test_headerless_list_with_column_by_number_or_name(write: Write, column: str) -> None:
    path = write("list.tsv", "first@example.com\tsecond@example.com\n")

    assert emails(read_list(path, header=False, column=column)) == ["first@example.com"]


def test_header_that_looks_like_data_points_to_no_header(write: Write) -> None:
    path = write("list.csv", "Ann,ann@example.com\nBob,bob@example.com\n")

    with pytest.raises(InputError, match="looks like data, not a header; pass --no-header"):
        list(read_list(path))


def test_column_zero_says_columns_count_from_one(write: Write) -> None:
    path = write("list.csv", "name,email\nAnn,a@example.com\n")

    with pytest.raises(InputError, match="a number from 1 to 2"):
        list(read_list(path, column="0"))


def test_kept_skipped_rows_come_in_input_order(write: Write) -> None:
    path = write("list.csv", "email,city\na@example.com,Paris\n,Rome\nb@example.com,Oslo\n")

    rows = list(read_list(path, keep_skipped=True))

    assert [(r.email, r.skipped, r.extra) for r in rows] == [
        ("a@example.com", None, {"email": "a@example.com", "city": "Paris"}),
        ("", "no email", {"email": "", "city": "Rome"}),
        ("b@example.com", None, {"email": "b@example.com", "city": "Oslo"}),
    ]


def test_skipped_summary_lists_the_first_twenty_rows_and_counts_the_rest(write: Write) -> None:
    path = write("list.csv", "email,n\n" + "".join(f",{i}\n" for i in range(25)))
    reader = read_list(path)
    list(reader)

    assert reader.skipped_summary == (
        "25 rows skipped (no address): rows " + ", ".join(str(n) for n in range(2, 22)) + " and 5 more"
    )
