from datetime import UTC, datetime, timedelta

import pytest

from sinks.search import SearchQuery, Term, glob_to_like, parse_query, parse_time, where_clause
from trailhouse.errors import SearchSyntaxError

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("glob", "like"),
    [
        ("*123456789012*", "%123456789012%"),
        ("Delete?", "Delete_"),
        ("50%_off", "50\\%\\_off"),
        ("back\\slash", "back\\\\slash"),
        ("it's", "it's"),
    ],
)
def test_globs_become_like_patterns_with_like_syntax_escaped(glob, like):
    assert glob_to_like(glob) == like


def test_free_terms_search_the_record_and_fields_search_their_column():
    assert parse_query("*1234* eventName:Delete* userIdentity.arn:*admin* source_ip:10.0.*") == (
        Term("record", "*1234*"),
        Term("event_name", "Delete*"),
        Term("user_arn", "*admin*"),
        Term("source_ip", "10.0.*"),
    )


def test_quotes_keep_spaces_and_colons_inside_one_term():
    assert parse_query("\"Access Denied\" 'eventName:x'") == (
        Term("record", "Access Denied"),
        Term("record", "eventName:x"),
    )


def test_backslashes_are_searched_for_not_escapes():
    assert parse_query(r"C:\Users\x") == (Term("record", r"C:\Users\x"),)


def test_a_term_whose_prefix_is_not_a_field_is_text_so_arns_need_no_quotes():
    assert parse_query("arn:aws:iam::123:user/x nosuchfield:y") == (
        Term("record", "arn:aws:iam::123:user/x"),
        Term("record", "nosuchfield:y"),
    )


def test_a_field_takes_a_quoted_pattern():
    assert parse_query('errorMessage:"*not authorized*"') == (Term("error_message", "*not authorized*"),)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('"unclosed', "close the quote"),
        ("eventName:'unclosed", "close the quote"),
        ("eventName:", "no pattern"),
        ("x" * 70_000, "limit"),
    ],
)
def test_bad_queries_say_what_is_wrong(query, message):
    with pytest.raises(SearchSyntaxError, match=message):
        parse_query(query)


def test_user_text_only_travels_as_parameters():
    hostile = "'; DROP TABLE events; --"
    where, params = where_clause(SearchQuery((Term("record", hostile), Term("event_name", "x"))))
    assert hostile not in where
    assert where == "record LIKE {p0:String} AND event_name LIKE {p1:String}"
    assert params == {"p0": f"%{hostile}%", "p1": "x"}


def test_case_insensitive_and_time_bounds():
    query = SearchQuery((Term("record", "a"),), since=NOW - timedelta(days=7), until=NOW, case_insensitive=True)
    where, params = where_clause(query)
    assert "record ILIKE" in where and "event_time >= {since:" in where and "event_time < {until:" in where
    assert params["since"] == NOW - timedelta(days=7)


def test_no_terms_match_everything():
    assert where_clause(SearchQuery(())) == ("1", {})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", NOW - timedelta(days=7)),
        ("24h", NOW - timedelta(hours=24)),
        ("30m", NOW - timedelta(minutes=30)),
        ("2w", NOW - timedelta(weeks=2)),
        ("2026-01-31", datetime(2026, 1, 31, tzinfo=UTC)),
        ("2026-01-31T12:30:00+01:00", datetime(2026, 1, 31, 11, 30, tzinfo=UTC)),
    ],
)
def test_times_are_relative_or_iso(text, expected):
    assert parse_time(text, NOW) == expected


def test_bad_times_explain_the_forms():
    with pytest.raises(SearchSyntaxError, match="30m, 24h, 7d"):
        parse_time("last tuesday", NOW)


def test_not_negates_the_next_term_only():
    assert parse_query("*Delete* NOT eventName:Get* NOT x y") == (
        Term("record", "*Delete*"),
        Term("event_name", "Get*", negated=True),
        Term("record", "x", negated=True),
        Term("record", "y"),
    )
    assert parse_query('"NOT" not') == (Term("record", "NOT"), Term("record", "not"))


@pytest.mark.parametrize(("query", "message"), [("x NOT", "needs a term after it"), ("NOT NOT x", "NOT NOT")])
def test_a_dangling_not_says_what_to_write(query, message):
    with pytest.raises(SearchSyntaxError, match=message):
        parse_query(query)


def test_a_negated_term_is_wrapped_and_a_null_field_counts_as_not_matching():
    where, _ = where_clause(SearchQuery((Term("record", "a", negated=True), Term("read_only", "true", negated=True))))
    assert where == "NOT (record LIKE {p0:String}) AND NOT (ifNull(toString(read_only), '') LIKE {p1:String})"


@pytest.mark.parametrize(
    ("pattern", "where", "windows"),
    [
        ("*123456789012*", "has(search_numbers, {p0_0:String})", ["123456789012"]),
        ("123456789012", "has(search_numbers, {p0_0:String})", ["123456789012"]),
        (
            "*1234567890123*",
            "has(search_numbers, {p0_0:String}) AND has(search_numbers, {p0_1:String}) AND record LIKE {p0:String}",
            ["123456789012", "234567890123"],
        ),
        (
            "arn:aws:iam::123456789012:*",
            "has(search_numbers, {p0_0:String}) AND record LIKE {p0:String}",
            ["123456789012"],
        ),
        ("*12345?789012*", "record LIKE {p0:String}", []),
        ("*12345678901*", "record LIKE {p0:String}", []),
    ],
)
def test_long_digit_runs_use_the_number_index(pattern, where, windows):
    clause, params = where_clause(SearchQuery((Term("record", pattern),)))
    assert clause == where
    assert [v for k, v in sorted(params.items()) if k.startswith("p0_")] == windows


def test_the_number_index_is_not_used_where_it_cannot_answer():
    for term in (Term("record", "*123456789012*", negated=True), Term("user_arn", "*123456789012*")):
        assert "search_numbers" not in where_clause(SearchQuery((term,)))[0]
    plain, _ = where_clause(SearchQuery((Term("record", "*123456789012*"),)), number_index=False)
    assert plain == "record LIKE {p0:String}"


def test_account_region_and_source_filters_are_parameters():
    where, params = where_clause(SearchQuery((), accounts=("123456789012",), regions=("us-east-1", "eu-west-1")))
    assert where == "recipient_account_id IN {accounts:Array(String)} AND aws_region IN {regions:Array(String)}"
    assert params == {"accounts": ["123456789012"], "regions": ["us-east-1", "eu-west-1"]}
