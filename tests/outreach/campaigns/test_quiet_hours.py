from __future__ import annotations

import csv
from datetime import UTC, datetime, time, timedelta
from importlib import resources
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.campaigns.quiet_hours import (
    DEFAULT_WINDOW,
    STATE_WINDOWS,
    EmptyWindowError,
    NoCommonWindow,
    Window,
    intersect,
    is_allowed,
    next_allowed,
    state_for_zip,
    window_closes_at,
    window_for,
    zone_for_zip,
    zones_for,
)

NY = ZoneInfo("America/New_York")
CHI = ZoneInfo("America/Chicago")
DEN = ZoneInfo("America/Denver")
LA = ZoneInfo("America/Los_Angeles")
BOISE = ZoneInfo("America/Boise")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def local(zone: ZoneInfo, wall: datetime) -> datetime:
    """The UTC instant of a (naive) wall-clock time in ``zone``."""
    return wall.replace(tzinfo=zone).astimezone(UTC)


# --- the basic window ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hour", "minute", "allowed"),
    [(7, 59, False), (8, 0, True), (12, 0, True), (20, 59, True), (21, 0, False), (23, 0, False)],
)
def test_new_york_default_window_edges(hour: int, minute: int, allowed: bool) -> None:
    for day in (15, 16, 17, 18, 19):  # a whole week-ish in winter, Wednesday..Sunday
        now = local(NY, datetime(2025, 1, day, hour, minute))
        assert is_allowed(now, (NY,), DEFAULT_WINDOW) is allowed
    summer = local(NY, datetime(2025, 7, 15, hour, minute))
    assert is_allowed(summer, (NY,), DEFAULT_WINDOW) is allowed


def test_campaign_at_13_utc_reaches_new_york_but_not_los_angeles() -> None:
    now = utc(2025, 1, 15, 13)  # 08:00 EST, 05:00 PST
    assert is_allowed(now, (NY,), DEFAULT_WINDOW)
    assert not is_allowed(now, (LA,), DEFAULT_WINDOW)
    assert next_allowed(now, (NY,), DEFAULT_WINDOW) == now
    assert next_allowed(now, (LA,), DEFAULT_WINDOW) == utc(2025, 1, 15, 16)


def test_next_allowed_after_the_window_is_next_morning() -> None:
    now = local(NY, datetime(2025, 1, 15, 21, 0))
    assert next_allowed(now, (NY,), DEFAULT_WINDOW) == local(NY, datetime(2025, 1, 16, 8, 0))


def test_next_allowed_returns_now_itself_when_allowed() -> None:
    now = datetime(2025, 1, 15, 15, 7, 33, 123456, tzinfo=UTC)
    assert next_allowed(now, (NY,), DEFAULT_WINDOW) == now


def test_next_allowed_accepts_any_aware_datetime_and_answers_in_utc() -> None:
    now = datetime(2025, 1, 15, 6, 0, tzinfo=NY)
    result = next_allowed(now, (NY,), DEFAULT_WINDOW)
    assert result == utc(2025, 1, 15, 13)
    assert result.utcoffset() == timedelta(0)


def test_naive_datetimes_and_empty_zones_are_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        is_allowed(datetime(2025, 1, 15, 13), (NY,), DEFAULT_WINDOW)
    with pytest.raises(ValueError, match="zone"):
        next_allowed(utc(2025, 1, 15, 13), (), DEFAULT_WINDOW)


# --- several zones ------------------------------------------------------------------------------


def test_eastern_and_central_zones_both_need_the_window() -> None:
    zones = (NY, CHI)
    assert not is_allowed(utc(2025, 1, 15, 13, 30), zones, DEFAULT_WINDOW)  # Chicago 07:30
    assert next_allowed(utc(2025, 1, 15, 13, 30), zones, DEFAULT_WINDOW) == utc(2025, 1, 15, 14)
    assert is_allowed(utc(2025, 1, 16, 1, 30), zones, DEFAULT_WINDOW)  # NY 20:30, CHI 19:30
    assert not is_allowed(utc(2025, 1, 16, 2), zones, DEFAULT_WINDOW)  # NY 21:00
    # the evening closes with New York, the earliest end
    assert window_closes_at(utc(2025, 1, 16, 1, 30), zones, DEFAULT_WINDOW) == utc(2025, 1, 16, 2)


def test_number_with_two_zones_needs_both() -> None:
    # +1 208 (Idaho) is Mountain (Boise) and Pacific (Lewiston, Coeur d'Alene) for phonenumbers
    zones = zones_for(
        zip_code=None, stored_zone=None, phone_e164="+12085550123", fallback_zone="America/New_York"
    )
    assert set(zones) == {BOISE, LA}
    now = utc(2025, 1, 15, 15, 30)  # Boise 08:30, Los Angeles 07:30
    assert is_allowed(now, (BOISE,), DEFAULT_WINDOW)
    assert not is_allowed(now, zones, DEFAULT_WINDOW)
    assert next_allowed(now, zones, DEFAULT_WINDOW) == utc(2025, 1, 15, 16)


def test_zones_twelve_hours_apart_with_a_twelve_hour_window_never_meet() -> None:
    window = STATE_WINDOWS["FL"]  # 08:00-20:00
    zones = (NY, ZoneInfo("Asia/Bangkok"))  # UTC-5 in winter, UTC+7 all year
    with pytest.raises(NoCommonWindow):
        next_allowed(utc(2025, 1, 15), zones, window)


def test_zones_eleven_hours_apart_share_one_hour() -> None:
    window = STATE_WINDOWS["FL"]
    zones = (NY, ZoneInfo("Asia/Bangkok"))  # UTC-4 in summer: NY 08:00-09:00 = Bangkok 19:00-20:00
    start = next_allowed(utc(2025, 7, 15), zones, window)
    assert start == utc(2025, 7, 15, 12)
    assert window_closes_at(start, zones, window) == utc(2025, 7, 15, 13)


# --- DST ----------------------------------------------------------------------------------------


def test_spring_forward_day() -> None:
    # 2025-03-09: New York clocks go 02:00 EST -> 03:00 EDT; 08:00 EDT is 12:00 UTC
    assert next_allowed(utc(2025, 3, 9, 5), (NY,), DEFAULT_WINDOW) == utc(2025, 3, 9, 12)
    assert not is_allowed(utc(2025, 3, 9, 11, 59), (NY,), DEFAULT_WINDOW)
    # the day before, 12:00 UTC was still 07:00 EST
    assert not is_allowed(utc(2025, 3, 8, 12), (NY,), DEFAULT_WINDOW)
    assert window_closes_at(utc(2025, 3, 9, 12), (NY,), DEFAULT_WINDOW) == utc(2025, 3, 10, 1)


def test_fall_back_day() -> None:
    # 2025-11-02: New York clocks go 02:00 EDT -> 01:00 EST; 08:00 EST is 13:00 UTC
    assert next_allowed(utc(2025, 11, 2, 5), (NY,), DEFAULT_WINDOW) == utc(2025, 11, 2, 13)
    assert not is_allowed(utc(2025, 11, 2, 12, 30), (NY,), DEFAULT_WINDOW)  # 07:30 EST
    assert window_closes_at(utc(2025, 11, 2, 13), (NY,), DEFAULT_WINDOW) == utc(2025, 11, 3, 2)


def test_window_opening_inside_the_spring_gap_opens_at_the_jump() -> None:
    window = Window(time(2, 30), time(21))  # 02:30 does not exist on 2025-03-09 in New York
    assert not is_allowed(utc(2025, 3, 9, 6, 59), (NY,), window)  # 01:59 EST
    assert next_allowed(utc(2025, 3, 9, 5), (NY,), window) == utc(2025, 3, 9, 7)  # 03:00 EDT


def test_window_closing_inside_the_spring_gap_closes_at_the_jump() -> None:
    window = Window(time(0, 30), time(2, 30))
    assert window_closes_at(utc(2025, 3, 9, 6, 30), (NY,), window) == utc(2025, 3, 9, 7)


def test_window_in_the_repeated_hour_opens_twice() -> None:
    window = Window(time(0, 30), time(1, 30))
    # 01:00-01:30 happens in EDT (05:00-05:30 UTC) and again in EST (06:00-06:30 UTC)
    assert window_closes_at(utc(2025, 11, 2, 5), (NY,), window) == utc(2025, 11, 2, 5, 30)
    assert not is_allowed(utc(2025, 11, 2, 5, 45), (NY,), window)  # 01:45 EDT
    assert next_allowed(utc(2025, 11, 2, 5, 45), (NY,), window) == utc(2025, 11, 2, 6)
    assert window_closes_at(utc(2025, 11, 2, 6), (NY,), window) == utc(2025, 11, 2, 6, 30)


def test_window_opening_in_the_repeated_hour_opens_at_the_first_occurrence() -> None:
    window = Window(time(1, 30), time(21))
    assert next_allowed(utc(2025, 11, 2, 4), (NY,), window) == utc(2025, 11, 2, 5, 30)


def test_zones_with_different_dst_dates() -> None:
    # 2025-03-10: the US has sprung forward, London has not. NY 08:00 EDT = 12:00 UTC = London 12:00
    zones = (NY, ZoneInfo("Europe/London"))
    assert next_allowed(utc(2025, 3, 10, 0), zones, DEFAULT_WINDOW) == utc(2025, 3, 10, 12)
    assert window_closes_at(utc(2025, 3, 10, 12), zones, DEFAULT_WINDOW) == utc(2025, 3, 10, 21)


# --- state and campaign windows -----------------------------------------------------------------


def test_florida_20_30_is_blocked() -> None:
    window = window_for(state="FL", campaign_window=None)
    assert window == Window(time(8), time(20))
    assert is_allowed(local(NY, datetime(2025, 1, 15, 19, 59)), (NY,), window)
    assert not is_allowed(local(NY, datetime(2025, 1, 15, 20, 30)), (NY,), window)
    assert is_allowed(local(NY, datetime(2025, 1, 15, 20, 30)), (NY,), DEFAULT_WINDOW)


def test_texas_sunday_starts_at_noon() -> None:
    window = window_for(state="tx", campaign_window=None)
    sunday, saturday = 19, 18  # January 2025
    assert not is_allowed(local(CHI, datetime(2025, 1, sunday, 11, 0)), (CHI,), window)
    assert is_allowed(local(CHI, datetime(2025, 1, sunday, 12, 0)), (CHI,), window)
    assert is_allowed(local(CHI, datetime(2025, 1, saturday, 11, 0)), (CHI,), window)
    assert not is_allowed(local(CHI, datetime(2025, 1, saturday, 8, 30)), (CHI,), window)
    assert next_allowed(local(CHI, datetime(2025, 1, sunday, 9, 0)), (CHI,), window) == local(
        CHI, datetime(2025, 1, sunday, 12, 0)
    )
    # Saturday evening -> Sunday noon, not Sunday 09:00
    assert next_allowed(local(CHI, datetime(2025, 1, saturday, 22, 0)), (CHI,), window) == local(
        CHI, datetime(2025, 1, sunday, 12, 0)
    )


@pytest.mark.parametrize("state", ["FL", "OK", "MD", "MS", "NJ"])
def test_eight_to_eight_states(state: str) -> None:
    assert window_for(state=state, campaign_window=None) == Window(time(8), time(20))


def test_connecticut_and_unknown_states() -> None:
    assert window_for(state="CT", campaign_window=None) == Window(time(9), time(20))
    assert window_for(state="NY", campaign_window=None) == DEFAULT_WINDOW
    assert window_for(state=None, campaign_window=None) == DEFAULT_WINDOW
    assert window_for(state="ZZ", campaign_window=None) == DEFAULT_WINDOW


def test_campaign_window_narrows_but_never_widens() -> None:
    wide = Window(time(6), time(23))
    assert window_for(state=None, campaign_window=wide) == DEFAULT_WINDOW
    assert window_for(state="FL", campaign_window=wide) == Window(time(8), time(20))
    narrow = Window(time(10), time(18))
    assert window_for(state="FL", campaign_window=narrow) == narrow
    partial = Window(time(7), time(19))
    assert window_for(state="CT", campaign_window=partial) == Window(time(9), time(19))


def test_campaign_window_in_texas_keeps_the_sunday_rule() -> None:
    window = window_for(state="TX", campaign_window=Window(time(10), time(20)))
    assert window == Window(time(10), time(20), sunday_start=time(12))


def test_campaign_morning_window_in_texas_means_no_sunday_texts() -> None:
    window = window_for(state="TX", campaign_window=Window(time(9), time(11)))
    sunday_9am = local(CHI, datetime(2025, 1, 19, 9, 0))
    assert not is_allowed(sunday_9am, (CHI,), window)
    assert next_allowed(sunday_9am, (CHI,), window) == local(CHI, datetime(2025, 1, 20, 9, 0))


def test_campaign_window_outside_legal_hours_is_an_error() -> None:
    with pytest.raises(EmptyWindowError):
        window_for(state=None, campaign_window=Window(time(6), time(8)))
    with pytest.raises(EmptyWindowError):
        window_for(state="FL", campaign_window=Window(time(20), time(21)))


def test_state_windows_are_a_setting() -> None:
    custom = {"NY": Window(time(10), time(19))}
    assert window_for(state="NY", campaign_window=None, state_windows=custom) == custom["NY"]
    # a wider state setting cannot widen the federal default
    wider = {"NY": Window(time(7), time(22))}
    assert window_for(state="NY", campaign_window=None, state_windows=wider) == DEFAULT_WINDOW


def test_intersect_is_symmetric() -> None:
    a, b = STATE_WINDOWS["TX"], Window(time(8), time(20))
    assert intersect(a, b) == intersect(b, a) == Window(time(9), time(20), sunday_start=time(12))


@pytest.mark.parametrize(
    ("start", "end"), [(time(9), time(9)), (time(21), time(8)), (time(8, tzinfo=UTC), time(21))]
)
def test_invalid_windows_are_rejected(start: time, end: time) -> None:
    with pytest.raises(ValueError, match="window"):
        Window(start, end)


def test_window_closes_at_requires_an_open_window() -> None:
    with pytest.raises(ValueError, match="next_allowed"):
        window_closes_at(utc(2025, 1, 15, 3), (NY,), DEFAULT_WINDOW)


# --- zone resolution ----------------------------------------------------------------------------


def test_toll_free_number_falls_back_to_the_huddle_zone() -> None:
    for number in ("+18005551234", "+18885551234"):
        zones = zones_for(
            zip_code=None, stored_zone=None, phone_e164=number, fallback_zone="America/Denver"
        )
        assert zones == (DEN,)


def test_geographic_number_gives_its_zone() -> None:
    zones = zones_for(
        zip_code=None, stored_zone=None, phone_e164="+12125550123", fallback_zone="America/Denver"
    )
    assert zones == (NY,)


def test_resolution_order_stored_then_zip_then_phone_then_fallback() -> None:
    args = {"phone_e164": "+12125550123", "fallback_zone": "America/Denver"}
    assert zones_for(zip_code="94103", stored_zone="America/Chicago", **args) == (CHI,)
    assert zones_for(zip_code="94103", stored_zone=None, **args) == (LA,)
    assert zones_for(zip_code=None, stored_zone=None, **args) == (NY,)
    assert zones_for(
        zip_code=None, stored_zone=None, phone_e164=None, fallback_zone="America/Denver"
    ) == (DEN,)


def test_unusable_inputs_fall_through() -> None:
    zones = zones_for(
        zip_code="ABCDE",
        stored_zone="Mars/Olympus_Mons",
        phone_e164="12345",
        fallback_zone="America/Chicago",
    )
    assert zones == (CHI,)
    assert zones_for(
        zip_code="00000", stored_zone="", phone_e164="+1 555", fallback_zone="America/Chicago"
    ) == (CHI,)


def test_bad_fallback_zone_is_a_configuration_error() -> None:
    with pytest.raises(Exception, match="Nowhere"):
        zones_for(zip_code=None, stored_zone=None, phone_e164=None, fallback_zone="Nowhere/Land")


@pytest.mark.parametrize(
    ("zip_code", "state", "zone"),
    [
        ("10001", "NY", "America/New_York"),
        ("60601", "IL", "America/Chicago"),
        ("80202", "CO", "America/Denver"),
        ("94103", "CA", "America/Los_Angeles"),
        ("99501", "AK", "America/Anchorage"),
        ("96813", "HI", "Pacific/Honolulu"),
        ("33101", "FL", "America/New_York"),
        ("32501", "FL", "America/Chicago"),
        ("79901", "TX", "America/Denver"),
        ("85001", "AZ", "America/Phoenix"),
        ("02134", "MA", "America/New_York"),
        ("20500", "DC", "America/New_York"),
        ("30303", "GA", "America/New_York"),
        ("73301", "TX", "America/Chicago"),
        ("77002", "TX", "America/Chicago"),
        ("00901", "PR", "America/Puerto_Rico"),
        ("83702", "ID", "America/Boise"),
        ("83501", "ID", "America/Los_Angeles"),
        ("97914", "OR", "America/Boise"),
        ("46204", "IN", "America/Indiana/Indianapolis"),
        ("46320", "IN", "America/Chicago"),
        ("37203", "TN", "America/Chicago"),
        ("37902", "TN", "America/New_York"),
        ("40202", "KY", "America/New_York"),
        ("42101", "KY", "America/Chicago"),
        ("48226", "MI", "America/Detroit"),
        ("57701", "SD", "America/Denver"),
        ("57104", "SD", "America/Chicago"),
        ("89101", "NV", "America/Los_Angeles"),
        ("98101", "WA", "America/Los_Angeles"),
        ("06103", "CT", "America/New_York"),
        ("07102", "NJ", "America/New_York"),
    ],
)
def test_zip_resolves_state_and_zone(zip_code: str, state: str, zone: str) -> None:
    assert state_for_zip(zip_code) == state
    assert zone_for_zip(zip_code) == ZoneInfo(zone)
    assert zones_for(zip_code=zip_code, stored_zone=None, phone_e164=None, fallback_zone="UTC") == (
        ZoneInfo(zone),
    )


@pytest.mark.parametrize("zip_code", ["10001-1234", "100011234", " 10001 ", "10001 1234"])
def test_zip_plus_four_forms(zip_code: str) -> None:
    assert state_for_zip(zip_code) == "NY"


@pytest.mark.parametrize(
    "zip_code", [None, "", "1000", "2134", "100", "1000A", "ABCDE", "00100", "09001", "１０００１"]
)
def test_unknown_or_malformed_zips(zip_code: str | None) -> None:
    # 001 is unassigned, 090 is an APO/FPO (military) prefix, the last one uses fullwidth digits
    assert state_for_zip(zip_code) is None
    assert zone_for_zip(zip_code) is None


def test_zip3_table_is_well_formed() -> None:
    text = resources.files("outreach").joinpath("data", "zip3.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    assert rows
    prefixes = [row["zip3"] for row in rows]
    assert len(prefixes) == len(set(prefixes))
    assert prefixes == sorted(prefixes)
    states = {row["state"] for row in rows}
    assert len(states) >= 51  # 50 states + DC (+ territories)
    for row in rows:
        assert len(row["zip3"]) == 3
        assert row["zip3"].isdigit()
        ZoneInfo(row["zone"])


# --- properties ---------------------------------------------------------------------------------

US_ZONES = [
    "America/New_York",
    "America/Detroit",
    "America/Indiana/Indianapolis",
    "America/Chicago",
    "America/Denver",
    "America/Boise",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "America/Puerto_Rico",
]
WINDOWS = [DEFAULT_WINDOW, *STATE_WINDOWS.values(), Window(time(10), time(12))]
STEP = timedelta(minutes=15)

any_instant = st.datetimes(
    min_value=datetime(2020, 1, 1),  # hypothesis wants naive bounds
    max_value=datetime(2035, 12, 31),
    timezones=st.just(UTC),
)
# the weeks around US and EU DST changes, where the interesting cases are
dst_instant = st.builds(
    lambda year, month, day, minutes: (
        datetime(year, month, day, tzinfo=UTC) + timedelta(minutes=minutes)
    ),
    st.integers(2020, 2035),
    st.sampled_from([3, 10, 11]),
    st.integers(1, 28),
    st.integers(0, 24 * 60 - 1),
)
instants = st.one_of(any_instant, dst_instant)
zone_sets = st.lists(st.sampled_from(US_ZONES), min_size=1, max_size=3, unique=True).map(
    lambda names: tuple(ZoneInfo(n) for n in names)
)


@settings(max_examples=150, deadline=None)
@given(now=instants, zones=zone_sets, window=st.sampled_from(WINDOWS))
def test_next_allowed_is_the_earliest_allowed_instant(
    now: datetime, zones: tuple[ZoneInfo, ...], window: Window
) -> None:
    try:
        result = next_allowed(now, zones, window)
    except NoCommonWindow:
        # then nothing in the next 8 days is allowed
        assert not any(is_allowed(now + STEP * i, zones, window) for i in range(8 * 96))
        return
    assert result >= now
    assert is_allowed(result, zones, window)
    probe = now
    while probe < result:
        assert not is_allowed(probe, zones, window)
        probe += STEP
    # and just before it (if after now), it was still blocked
    if result > now:
        assert not is_allowed(max(now, result - timedelta(seconds=1)), zones, window)


@settings(max_examples=100, deadline=None)
@given(now=instants, zones=zone_sets, window=st.sampled_from(WINDOWS))
def test_window_closes_at_ends_the_allowed_period(
    now: datetime, zones: tuple[ZoneInfo, ...], window: Window
) -> None:
    try:
        start = next_allowed(now, zones, window)
    except NoCommonWindow:
        return
    closes = window_closes_at(start, zones, window)
    assert closes > start
    assert closes - start <= timedelta(hours=24)
    assert not is_allowed(closes, zones, window)
    assert is_allowed(closes - timedelta(microseconds=1), zones, window)
    probe = start
    while probe < closes:
        assert is_allowed(probe, zones, window)
        probe += STEP
