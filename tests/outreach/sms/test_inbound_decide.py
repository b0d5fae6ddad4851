"""decide() on its own: a snapshot and a classification in, a decision out, no database.

Scoped STOP ("STOP LOGAN") and the how-to-stop hint for a maybe-STOP. The classifications are
built by hand, as the classifier's contract says it returns them (a scoped STOP names the huddle
by its keyword, exactly as passed to ``classify``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from outreach.consent import SubscriptionState
from outreach.models import Huddle, messaging
from outreach.models import consent as c
from outreach.models import members as m
from outreach.sms.inbound.classify import Classification, Intent
from outreach.sms.inbound.decide import HINT_INTERVAL, Decision, Snapshot, decide
from outreach.sms.inbound.directory import NumberHuddles
from outreach.sms.inbound.message import InboundSms

NUMBER = "+16175550100"  # the number texted, shared by LOGAN and PROVO
SERVICE = "MG" + "1" * 32
MARIA = "+16175550111"
LOGAN, PROVO = 1, 2
NOW = datetime(2027, 1, 12, 15, 0, tzinfo=UTC)
STOP_LOGAN = Classification(Intent.OPT_OUT, keyword="LOGAN", normalized="stop logan")
STOP = Classification(Intent.OPT_OUT, normalized="stop")
MAYBE = Classification(Intent.MAYBE_OPT_OUT, normalized="not interested")


def huddle(huddle_id: int, slug: str, **sender: str | None) -> Huddle:
    return Huddle(id=huddle_id, slug=slug, name=f"{slug.title()} Huddle", **sender)


def shared_number(*, provo_sender: dict[str, str | None] | None = None) -> NumberHuddles:
    """LOGAN and PROVO on one number (PROVO elsewhere in the service when ``provo_sender``)."""
    return NumberHuddles(
        1,
        {
            LOGAN: (huddle(LOGAN, "logan", sender_number=NUMBER), ["EASTIE", "LOGAN"]),
            PROVO: (
                huddle(PROVO, "provo", **(provo_sender or {"sender_number": NUMBER})),
                ["PROVO"],
            ),
        },
    )


def snapshot(huddles: NumberHuddles, *states: tuple[int, str]) -> Snapshot:
    """MARIA with SMS subscriptions (huddle, state), latest change first; none: a stranger."""
    subscriptions = [
        SubscriptionState(100 + huddle_id, 7, huddle_id, m.SMS, state, None)
        for huddle_id, state in states
    ]
    return Snapshot(huddles, 7 if states else None, "Maria", subscriptions)


def run(
    snap: Snapshot,
    result: Classification,
    *,
    opt_out_type: str | None = None,
    hinted: Sequence[str] = (),
    service: str | None = None,
) -> Decision:
    """decide() at NOW; ``hinted``: the hint kinds (intents) this number got within a day."""
    asked: list[tuple[str, datetime]] = []

    def hinted_since(intent: str, since: datetime) -> bool:
        asked.append((intent, since))
        assert since == NOW - HINT_INTERVAL
        return intent in hinted

    sms = InboundSms("SM" + "0" * 32, MARIA, NUMBER, result.normalized, service, opt_out_type)
    return decide(snap, result, sms, NUMBER, received_at=NOW, hinted_since=hinted_since)


def moved(decision: Decision) -> dict[int, tuple[str, str | None]]:
    return {move.huddle_id: (move.state, move.action) for move in decision.writes.moves}


# -- Scoped STOP ---------------------------------------------------------------------------


def test_a_scoped_stop_opts_out_of_that_huddle_only() -> None:
    snap = snapshot(shared_number(), (PROVO, m.ACTIVE), (LOGAN, m.ACTIVE))
    decision = run(snap, STOP_LOGAN)
    assert moved(decision) == {LOGAN: (m.OPTED_OUT, c.OPT_OUT)}
    assert decision.result.intent == Intent.OPT_OUT.value
    assert decision.result.reply == (
        "Logan Huddle: You're unsubscribed and will get no more messages. "
        "Reply START to resubscribe."
    )
    assert decision.huddle_id == LOGAN
    # The number is PROVO's sender too: suppressing it would stop PROVO's texts.
    assert decision.writes.suppress == []
    assert not decision.writes.revocation_only
    assert not decision.flagged


def test_any_keyword_of_the_huddle_scopes_the_stop() -> None:
    snap = snapshot(shared_number(), (PROVO, m.ACTIVE), (LOGAN, m.PENDING))
    decision = run(snap, Classification(Intent.OPT_OUT, keyword="EASTIE"))
    assert moved(decision) == {LOGAN: (m.OPTED_OUT, c.OPT_OUT)}
    assert decision.huddle_id == LOGAN


def test_an_unscoped_stop_still_opts_out_of_every_huddle_on_the_number() -> None:
    snap = snapshot(shared_number(), (PROVO, m.ACTIVE), (LOGAN, m.ACTIVE))
    decision = run(snap, STOP)
    assert moved(decision) == {LOGAN: (m.OPTED_OUT, c.OPT_OUT), PROVO: (m.OPTED_OUT, c.OPT_OUT)}
    assert decision.writes.suppress == [NUMBER]
    assert decision.result.reply is not None
    assert decision.result.reply.startswith("Provo Huddle: You're unsubscribed")  # latest


def test_a_scoped_stop_suppresses_the_scopes_no_other_huddle_sends_under() -> None:
    """LOGAN sends from the number, PROVO from another number of the same Messaging Service:
    the number texted is LOGAN's alone, so it is suppressed, and PROVO's sender is not."""
    huddles = shared_number(
        provo_sender={"sender_number": "+16175550199", "messaging_service_sid": SERVICE}
    )
    snap = snapshot(huddles, (PROVO, m.ACTIVE), (LOGAN, m.ACTIVE))
    decision = run(snap, STOP_LOGAN, service=SERVICE)
    assert moved(decision) == {LOGAN: (m.OPTED_OUT, c.OPT_OUT)}
    assert decision.writes.suppress == [NUMBER]
    unscoped = run(snap, STOP, service=SERVICE)
    assert unscoped.writes.suppress == [NUMBER, "+16175550199"]


def test_a_scoped_stop_on_a_number_with_one_huddle_suppresses_as_stop_does() -> None:
    only_logan = NumberHuddles(
        1, {LOGAN: (huddle(LOGAN, "logan", sender_number=NUMBER), ["LOGAN"])}
    )
    decision = run(snapshot(only_logan, (LOGAN, m.ACTIVE)), STOP_LOGAN)
    assert moved(decision) == {LOGAN: (m.OPTED_OUT, c.OPT_OUT)}
    assert decision.writes.suppress == [NUMBER]


def test_a_scoped_stop_without_a_subscription_there_records_the_revocation() -> None:
    decision = run(snapshot(shared_number(), (PROVO, m.ACTIVE)), STOP_LOGAN)
    assert moved(decision) == {}
    assert decision.writes.revocation_only
    assert decision.writes.revoked_huddle_id == LOGAN
    assert decision.writes.suppress == []
    assert decision.huddle_id == LOGAN
    assert decision.result.reply is not None
    assert decision.result.reply.startswith("Logan Huddle: You're unsubscribed")


def test_a_scoped_stop_from_a_stranger_records_the_revocation_and_replies() -> None:
    decision = run(snapshot(shared_number()), STOP_LOGAN)
    assert decision.writes.revocation_only
    assert decision.writes.revoked_huddle_id == LOGAN
    assert decision.result.reply is not None
    assert decision.result.reply.startswith("Logan Huddle: You're unsubscribed")


def test_a_scoped_stop_already_applied_records_the_revocation_again() -> None:
    snap = snapshot(shared_number(), (LOGAN, m.OPTED_OUT), (PROVO, m.ACTIVE))
    decision = run(snap, STOP_LOGAN)
    assert moved(decision) == {}
    assert (decision.writes.revocation_only, decision.writes.revoked_huddle_id) == (True, LOGAN)


def test_an_unscoped_revocation_names_no_huddle() -> None:
    decision = run(snapshot(shared_number()), STOP)
    assert (decision.writes.revocation_only, decision.writes.revoked_huddle_id) == (True, None)


def test_a_keyword_of_no_huddle_on_the_number_is_an_unscoped_stop() -> None:
    snap = snapshot(shared_number(), (PROVO, m.ACTIVE), (LOGAN, m.ACTIVE))
    decision = run(snap, Classification(Intent.OPT_OUT, keyword="BOSTON"))
    assert set(moved(decision)) == {LOGAN, PROVO}
    assert decision.writes.suppress == [NUMBER]


@pytest.mark.parametrize("opt_out_type", ["STOP", " stop "])
def test_twilios_advanced_opt_out_makes_any_stop_unscoped(opt_out_type: str) -> None:
    """Twilio blocked the whole number itself: every huddle on it is opted out, no reply."""
    snap = snapshot(shared_number(), (PROVO, m.ACTIVE), (LOGAN, m.ACTIVE))
    decision = run(snap, STOP_LOGAN, opt_out_type=opt_out_type)
    assert set(moved(decision)) == {LOGAN, PROVO}
    assert decision.writes.suppress == [NUMBER]
    assert decision.result.reply is None


def test_stopall_with_a_keyword_is_still_every_sender() -> None:
    snap = snapshot(shared_number(), (PROVO, m.ACTIVE), (LOGAN, m.ACTIVE))
    decision = run(snap, Classification(Intent.OPT_OUT_ALL, keyword="LOGAN"))
    assert set(moved(decision)) == {LOGAN, PROVO}
    assert decision.writes.suppress == [c.ALL_SENDERS]


def test_start_after_a_scoped_stop_brings_back_that_huddle() -> None:
    snap = snapshot(shared_number(), (LOGAN, m.OPTED_OUT), (PROVO, m.ACTIVE))
    decision = run(snap, Classification(Intent.OPT_IN, normalized="start"))
    assert moved(decision) == {LOGAN: (m.ACTIVE, c.RESUBSCRIBE)}
    assert decision.result.reply is not None
    assert decision.result.reply.startswith("Logan Huddle: You're resubscribed")


# -- The how-to-stop hint ---------------------------------------------------------------------


def test_a_members_maybe_stop_is_flagged_and_told_how_to_stop() -> None:
    decision = run(snapshot(shared_number(), (LOGAN, m.ACTIVE)), MAYBE)
    assert decision.flagged
    assert decision.result.intent == messaging.MAYBE_OPT_OUT == Intent.MAYBE_OPT_OUT.value
    assert decision.result.reply == "Reply STOP to stop texts from Logan Huddle."
    assert decision.huddle_id == LOGAN
    assert decision.writes.moves == []
    assert decision.writes.suppress == []
    assert decision.writes.member_replied


def test_a_pending_member_is_told_how_to_stop_too() -> None:
    decision = run(snapshot(shared_number(), (LOGAN, m.PENDING)), MAYBE)
    assert decision.result.reply == "Reply STOP to stop texts from Logan Huddle."


def test_a_member_of_two_huddles_on_the_number_is_told_both_ways() -> None:
    decision = run(snapshot(shared_number(), (PROVO, m.ACTIVE), (LOGAN, m.ACTIVE)), MAYBE)
    assert decision.result.reply == (
        "Reply STOP PROVO to stop texts from Provo Huddle, or STOP to stop all texts from "
        "this number."
    )


def test_the_how_to_stop_hint_goes_once_a_day_and_has_its_own_budget() -> None:
    snap = snapshot(shared_number(), (LOGAN, m.ACTIVE))
    told = run(snap, MAYBE, hinted=[messaging.MAYBE_OPT_OUT])
    assert (told.flagged, told.result.reply) == (True, None)
    # A how-to-join hint today (before they joined) does not spend the how-to-stop one.
    fresh = run(snap, MAYBE, hinted=[messaging.UNKNOWN_SENDER])
    assert fresh.result.reply == "Reply STOP to stop texts from Logan Huddle."


def test_the_join_hint_has_its_own_budget() -> None:
    stranger = snapshot(shared_number())
    other = Classification(Intent.OTHER, normalized="hi")
    assert run(stranger, other, hinted=[messaging.MAYBE_OPT_OUT]).result.reply is not None
    assert run(stranger, other, hinted=[messaging.UNKNOWN_SENDER]).result.reply is None


def test_no_how_to_stop_hint_for_someone_opted_out_everywhere_here_or_a_stranger() -> None:
    for snap in (
        snapshot(shared_number(), (LOGAN, m.OPTED_OUT), (PROVO, m.OPTED_OUT)),
        snapshot(shared_number()),
    ):
        decision = run(snap, MAYBE)
        assert (decision.flagged, decision.result.reply) == (True, None)
        assert decision.result.intent == Intent.MAYBE_OPT_OUT.value


def test_a_member_opted_out_of_one_huddle_is_told_about_the_one_still_texting() -> None:
    snap = snapshot(shared_number(), (LOGAN, m.OPTED_OUT), (PROVO, m.ACTIVE))
    assert run(snap, MAYBE).result.reply == "Reply STOP to stop texts from Provo Huddle."


def test_an_ordinary_reply_from_a_member_gets_no_hint() -> None:
    decision = run(snapshot(shared_number(), (LOGAN, m.ACTIVE)), Classification(Intent.OTHER))
    assert (decision.flagged, decision.result.reply) == (False, None)
