"""Spreadsheets: export (BOM, formula neutralisation, typed XLSX), parse with row-level rejections, diff."""

from __future__ import annotations

import datetime as dt
import io

import openpyxl
import pandas as pd
import pytest

from twin.access.roles import make_role
from twin.errors import PermissionDenied, ValidationError
from twin.live.sheets import (
    BUSINESSES,
    RESIDENTS,
    community_records,
    diff_sheets,
    export_sheet,
    frame_to_csv,
    neutralise,
    parse_csv,
    parse_sheet,
    parse_xlsx,
    to_sheet_frame,
)

COMMUNITY = "440604012001"
HEADER = "person_id,household_id,dwelling_id,building_id,sex,birth_date,disabled,low_income,pregnant"


@pytest.fixture(scope="module")
def residents(small_twin):
    from twin.live.sheets import located_records

    return community_records(located_records(small_twin, "persons"), COMMUNITY, t=small_twin)


@pytest.fixture(scope="module")
def businesses(small_twin):
    from twin.live.sheets import located_records

    return community_records(located_records(small_twin, "businesses"), COMMUNITY, t=small_twin)


def _csv(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _rules(parsed) -> list[tuple[int | None, str]]:
    return [(i.row, i.rule) for i in parsed.issues]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@pytest.mark.parametrize("kind", ["residents", "businesses"])
def test_round_trip_gives_the_same_frame(fmt, kind, residents, businesses):
    frame, schema = (residents, RESIDENTS) if kind == "residents" else (businesses, BUSINESSES)
    assert len(frame) > 50
    parsed = parse_sheet(export_sheet(frame, schema, fmt), schema)
    assert parsed.ok, parsed.issues[:3]
    pd.testing.assert_frame_equal(parsed.frame.reset_index(drop=True), to_sheet_frame(frame, schema))
    assert parsed.frame.index[0] == 2 and parsed.frame.index[-1] == len(frame) + 1  # Excel row numbers
    assert diff_sheets(frame, parsed).empty


def test_csv_has_a_bom_and_xlsx_typed_cells(residents):
    data = export_sheet(residents, RESIDENTS, "csv")
    assert data.startswith(b"\xef\xbb\xbf" + HEADER.encode())
    ws = openpyxl.load_workbook(io.BytesIO(export_sheet(residents, RESIDENTS, "xlsx")))["residents"]
    assert isinstance(ws["A2"].value, int) and isinstance(ws["F2"].value, dt.datetime)
    assert isinstance(ws["G2"].value, bool) and ws["F2"].number_format == "yyyy-mm-dd"


def test_formula_injection_is_neutralised_and_restored(businesses):
    evil = ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd", "plain", "a=b"]
    frame = businesses.head(len(evil)).copy()
    frame["industry"] = evil
    assert [neutralise(v) for v in evil] == ["'" + v for v in evil[:6]] + ["plain", "a=b"]
    assert neutralise(-5) == -5 and neutralise(3.5) == 3.5
    csv_bytes = export_sheet(frame, BUSINESSES, "csv")
    assert b"'=HYPERLINK" in csv_bytes and b"'+1+1" in csv_bytes and b",plain," in csv_bytes
    ws = openpyxl.load_workbook(io.BytesIO(export_sheet(frame, BUSINESSES, "xlsx")))["businesses"]
    cells = [ws.cell(row=r, column=4) for r in range(2, 2 + len(evil))]
    assert all(c.data_type == "s" for c in cells) and cells[0].value.startswith("'=")
    assert isinstance(ws["A2"].value, int)  # numbers stay numbers
    for fmt in ("csv", "xlsx"):
        parsed = parse_sheet(export_sheet(frame, BUSINESSES, fmt), BUSINESSES)
        back = evil if fmt == "csv" else [v.replace("\r", "\n") for v in evil]  # XML turns CR into LF
        assert parsed.ok and parsed.frame["industry"].tolist() == back
    neg = frame_to_csv(pd.DataFrame({"n": [-5], "s": ["-5"]}))
    assert neg.splitlines()[1] == b"-5,'-5"


def test_unneutralised_csv_formula_is_rejected_with_its_row(residents):
    lines = export_sheet(residents.head(3), RESIDENTS, "csv").decode("utf-8-sig").splitlines()
    cells = lines[2].split(",")
    cells[4] = "=1+1"
    lines[2] = ",".join(cells)
    parsed = parse_csv("\r\n".join(lines).encode(), RESIDENTS)
    assert ("formula" in {i.rule for i in parsed.issues}) and parsed.issues[0].row == 3
    assert "cell E3 is a formula" in parsed.issues[0].message
    assert parsed.frame.index.tolist() == [2, 4]  # the other rows are kept


def test_xlsx_formula_cell_is_rejected_with_its_row(residents):
    wb = openpyxl.load_workbook(io.BytesIO(export_sheet(residents.head(3), RESIDENTS, "xlsx")))
    wb["residents"]["B4"] = "=A4+1"
    buf = io.BytesIO()
    wb.save(buf)
    parsed = parse_xlsx(buf.getvalue(), RESIDENTS)
    assert _rules(parsed) == [(4, "formula")] and parsed.issues[0].column == "household_id"
    assert "B4 holds a formula" in parsed.issues[0].message
    assert parsed.frame.index.tolist() == [2, 3]


def test_gbk_bytes_are_rejected_with_the_row():
    text = f"{HEADER}\r\n1,1,1,1,M,1956-12-01,否,FALSE,FALSE\r\n2,1,1,1,F,1956-12-02,FALSE,是,FALSE\r\n"
    parsed = parse_csv(text.encode("gbk"), RESIDENTS)
    assert _rules(parsed) == [(2, "encoding")] and "the file is GBK-encoded" in parsed.issues[0].message
    assert "save it as 'CSV UTF-8" in parsed.issues[0].message and parsed.frame.empty
    ok = parse_csv(text.encode("utf-8-sig"), RESIDENTS)  # the same text in UTF-8 parses (是/否 are booleans)
    assert ok.ok and ok.frame["disabled"].tolist() == [False, False] and ok.frame["low_income"].tolist() == [
        False, True]
    latin = parse_csv(HEADER.encode() + b"\r\n\xff\xfe\r\n", RESIDENTS)
    assert latin.issues[0].rule == "encoding" and "not UTF-8" in latin.issues[0].message


def test_merged_header_is_rejected(residents):
    wb = openpyxl.load_workbook(io.BytesIO(export_sheet(residents.head(3), RESIDENTS, "xlsx")))
    ws = wb["residents"]
    ws.insert_rows(1)
    ws["A1"] = "禅城区居民表"
    ws.merge_cells("A1:I1")
    buf = io.BytesIO()
    wb.save(buf)
    parsed = parse_xlsx(buf.getvalue(), RESIDENTS)
    assert _rules(parsed) == [(1, "merged_header")] and "A1:I1" in parsed.issues[0].message
    with pytest.raises(ValidationError, match=r"row 1: merged cells A1:I1 in the header"):
        parsed.raise_for_issues()


def test_unknown_missing_and_blank_columns():
    parsed = parse_csv(_csv("person_id,household_id,dwelling_id,building_id,sex,phone,disabled,low_income,"
                            "pregnant,", "1,1,1,1,M,123,FALSE,FALSE,FALSE,"), RESIDENTS)
    assert sorted(_rules(parsed)) == [(1, "missing_column"), (1, "unknown_column")]
    assert {i.column for i in parsed.issues} == {"phone", "birth_date"}
    assert "unknown column 'phone' in F1" in str(parsed.issues[0]) + str(parsed.issues[1])
    title = parse_csv(_csv("社区居民表,,,", HEADER, "1,1,1,1,M,1956-12-01,FALSE,FALSE,FALSE"), RESIDENTS)
    assert _rules(title)[:2] == [(1, "title_row"), (1, "unknown_column")] and title.frame.empty
    blank = parse_csv(_csv(HEADER.replace(",sex,", ",,"), "1,1,1,1,M,1956-12-01,FALSE,FALSE,FALSE"), RESIDENTS)
    assert sorted(_rules(blank)) == [(1, "empty_header"), (1, "missing_column")]
    assert "column E has no name" in str(blank.issues)


def test_bad_dates_ids_values_and_duplicates_are_row_level():
    parsed = parse_csv(_csv(
        HEADER,
        "1,1,1,1,M,1956-12-01,FALSE,FALSE,FALSE",  # row 2 fine
        "2,1,1,1,F,1956-02-30,FALSE,FALSE,FALSE",  # row 3 not a date
        "3,1,1,1,F,31/12/1956,FALSE,FALSE,FALSE",  # row 4 day-first: refused as ambiguous
        "4a,1,1,1,F,1956-12-01,FALSE,FALSE,FALSE",  # row 5 bad id
        "5,-1,1,1,F,1956-12-01,FALSE,FALSE,FALSE",  # row 6 negative id
        "6,1,,1,F,1956-12-01,FALSE,FALSE,FALSE",  # row 7 empty id
        "7,1,1,1,X,1956-12-01,maybe,FALSE,FALSE",  # row 8 bad sex and bool
        "1,1,1,1,M,1956-12-01,FALSE,FALSE,FALSE",  # row 9 duplicate of row 2
        ",1,1,1,F,1956/12/3,TRUE,FALSE,FALSE",  # row 10 blank id: a new record; Excel's 1956/12/3 is fine
        "8,1,1,1,F,1956-12-01,FALSE,FALSE,FALSE,extra",  # row 11 a value past the last column
    ), RESIDENTS)
    assert _rules(parsed) == [(2, "duplicate_id"), (3, "bad_date"), (4, "bad_date"), (5, "bad_id"), (6, "bad_id"),
                              (7, "bad_id"), (8, "bad_value"), (8, "bad_value"), (9, "duplicate_id"),
                              (11, "extra_cells")]
    by_row = {i.row: str(i) for i in parsed.issues}
    assert by_row[3] == "row 3, birth_date: birth_date '1956-02-30': not a date like 1956-12-31 [bad_date]"
    assert "person_id 1 is also on row 2" in by_row[9] and "not a whole number" in by_row[5]
    assert parsed.frame.index.tolist() == [10] and parsed.rejected_rows == [2, 3, 4, 5, 6, 7, 8, 9, 11]
    assert parsed.frame["person_id"].isna().all() and parsed.frame["birth_date"].iloc[0] == pd.Timestamp(
        "1956-12-03")


def test_not_an_xlsx_and_empty_files():
    assert _rules(parse_sheet(b"PK\x03\x04garbage", RESIDENTS)) == [(None, "not_xlsx")]
    assert _rules(parse_csv(b"", RESIDENTS)) == [(1, "missing_column")]
    assert parse_csv(b"\xef\xbb\xbf" + HEADER.encode() + b"\r\n", RESIDENTS).ok  # header only: no rows, fine


def test_diff_field_by_field(residents):
    current = residents.head(5).reset_index(drop=True)
    edited = to_sheet_frame(current, RESIDENTS)
    edited.loc[1, "disabled"] = not bool(edited.loc[1, "disabled"])
    edited.loc[3, "dwelling_id"] = 999_999
    edited = edited.drop(index=4)
    new = edited.iloc[[0]].assign(person_id=pd.array([pd.NA], dtype="Int64"), sex="F")
    edited = pd.concat([edited, new], ignore_index=True)
    parsed = parse_csv(export_sheet(edited, RESIDENTS, "csv"), RESIDENTS)
    assert parsed.ok
    d = diff_sheets(current, parsed)
    assert len(d.added) == 1 and d.added.index.tolist() == [6]
    assert d.removed["person_id"].tolist() == [int(current.loc[4, "person_id"])]
    assert d.changed[["row", "field"]].values.tolist() == [[3, "disabled"], [5, "dwelling_id"]]
    rows = d.to_rows()
    assert [r["change"] for r in rows] == ["added", "removed", "changed", "changed"]
    ch = rows[3]
    assert (ch["id"], ch["field"], ch["old"], ch["new"]) == (int(current.loc[3, "person_id"]), "dwelling_id",
                                                            int(current.loc[3, "dwelling_id"]), 999_999)
    assert rows[0]["new"]["sex"] == "F" and rows[0]["id"] is None


def test_community_export_is_scoped(small_twin):
    from twin.live.sheets import located_records

    located = located_records(small_twin, "persons")
    mine = community_records(located, COMMUNITY, t=small_twin, role=make_role("community", [COMMUNITY]))
    assert len(mine) and set(mine["community_code"]) == {COMMUNITY}
    with pytest.raises(PermissionDenied, match="may not export the records of community 440604012002"):
        community_records(located, "440604012002", t=small_twin, role=make_role("community", [COMMUNITY]))
    with pytest.raises(ValidationError, match="unknown community"):
        community_records(located, "999", t=small_twin)


def test_diff_to_changes_applies_on_the_live_twin(live):
    from twin.live.sheets import diff_to_changes, located_records

    D = dt.date(2026, 12, 1)
    current = community_records(located_records(live.t, "persons"), COMMUNITY, t=live.t).head(6)
    sheet = to_sheet_frame(current, RESIDENTS)
    a, b, c, gone = (int(x) for x in sheet["person_id"].iloc[:4])
    sheet.loc[0, "low_income"] = not bool(sheet.loc[0, "low_income"])
    other_dwelling = int(sheet.loc[5, "dwelling_id"])
    sheet.loc[1, ["dwelling_id", "building_id"]] = [other_dwelling, int(sheet.loc[5, "building_id"])]
    sheet.loc[2, "birth_date"] = pd.Timestamp("1930-01-01")  # a correction: no change kind
    sheet = sheet.drop(index=3)
    newcomer = sheet.iloc[[0]].assign(person_id=pd.array([pd.NA], dtype="Int64"), sex="F", disabled=False,
                                      low_income=False, pregnant=False, birth_date=pd.Timestamp("1956-12-20"))
    sheet = pd.concat([sheet, newcomer], ignore_index=True)
    parsed = parse_csv(export_sheet(sheet, RESIDENTS, "csv"), RESIDENTS)
    diff = diff_sheets(current, parsed)
    changes, unsupported = diff_to_changes(diff, author="李敏", reason="community sheet", effective_date=D)
    assert [x.kind for x in changes] == ["person.moves_in", "person.moves_out", "person.flag", "person.moves"]
    assert [(i.row, i.column, i.rule) for i in unsupported] == [(4, "birth_date", "unsupported")]
    live.apply(changes)
    now = live.persons_on(D).set_index("person_id")
    assert gone not in now.index and bool(now.loc[a, "low_income"]) != bool(current.iloc[0]["low_income"])
    assert int(now.loc[b, "dwelling_id"]) == other_dwelling
    assert len(now) == len(live.t.persons)  # one moved out, one moved in
    with pytest.raises(ValidationError, match="removed_as"):
        diff_to_changes(diff, author="x", reason="y", effective_date=D, removed_as="vanished")
    assert c in now.index
