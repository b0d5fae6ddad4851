"""Members in a real browser: lee imports a CSV with a bad row (a real worker runs it), watches it
finish, reads the row-error report, finds a member, reads their consent timeline and opts them
out; mo, of another huddle, sees none of it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from playwright.sync_api import Dialog, Page, expect

from tests.browser.conftest import sign_in

MEMBERS_CSV = """phone,email,first_name,last_name,zip,tags
(617) 555-0101,ann.lu@example.org,Ann,Lu,84321,volunteer;host
617-555-0102,,Bo,Diaz,84321,volunteer
6175550103,cy@example.org,Cy,Park,84322,donor
not a number,di@example.org,Di,Moss,84321,
6175550105,,<script>alert(1)</script>,Evans,84341,volunteer
6175550106,fay@example.org,Fay,Ortiz,84335,host
"""


def test_lee_imports_members_reads_the_errors_and_a_members_timeline(
    page: Page,
    phone_page: Page,
    people: None,
    worker: object,
    screenshot,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    dialogs: list[str] = []

    def answer(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    sign_in(page, "lee@example.org")
    page.goto("/h/logan/members/")
    expect(page.get_by_text("No members yet")).to_be_visible()
    page.get_by_role("link", name="Import a CSV file").click()

    upload = tmp_path / "members.csv"
    upload.write_text(MEMBERS_CSV)
    page.get_by_label("CSV file").set_input_files(str(upload))
    page.get_by_label("Everyone in this file agreed to get texts from Logan").check()
    page.get_by_role("button", name="Import").click()

    expect(page.get_by_role("heading", name="Importing members.csv")).to_be_visible()
    expect(page.get_by_text("Finished", exact=True)).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Done: 5 of 6 rows imported.")).to_be_visible()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the 1 row error (CSV)").click()
    report = Path(download_info.value.path()).read_text()
    rows = list(csv.reader(io.StringIO(report)))
    assert rows[0] == ["line", "column", "error"]
    assert rows[1][:2] == ["5", "phone"]
    assert "not a number" in rows[1][2]

    page.get_by_role("link", name="See the members").click()
    table = page.get_by_role("table")
    expect(table.get_by_role("link", name="Ann Lu")).to_be_visible()
    expect(table.get_by_text("+16175550101")).to_be_visible()
    expect(table.get_by_role("link", name="<script>alert(1)</script> Evans")).to_be_visible()
    expect(table.get_by_text("Moss")).to_have_count(0)
    page.get_by_label("Search").fill("ann")
    expect(table.get_by_role("link", name="Bo Diaz")).to_have_count(0)
    expect(table.get_by_role("link", name="Ann Lu")).to_be_visible()
    page.get_by_label("Search").fill("")
    page.get_by_label("Filter").fill("tag:volunteer zip:8432*")
    expect(page.get_by_role("link", name="Cy Park")).to_have_count(0)
    expect(page.get_by_role("link", name="Bo Diaz")).to_be_visible()
    page.get_by_label("Filter").fill("")
    expect(page.get_by_role("link", name="Fay Ortiz")).to_be_visible()
    screenshot(page, "members")

    page.get_by_role("link", name="Ann Lu").click()
    expect(page.get_by_role("heading", name="Ann Lu")).to_be_visible()
    timeline = page.locator(".timeline")
    expect(timeline).to_contain_text(
        "Imported from members.csv (line 2) by Lee (organizer), who said they agreed to texts"
    )
    page.get_by_label("Stop").select_option("sms")
    page.get_by_role("button", name="Opt out").click()
    expect(page.get_by_text("Opted out of texts. Only the member can start again.")).to_be_visible()
    expect(timeline).to_contain_text("Opted out of texts by Lee (organizer), on their behalf")
    assert dialogs == [
        "Opt Ann Lu out? Only they can start again (by texting START or joining again)."
    ]
    page.get_by_label("Tags").fill("volunteer, host, captain")
    page.get_by_label("Fields").fill("language = es")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    expect(page.get_by_text("captain", exact=True)).to_be_visible()
    screenshot(page, "member-profile")
    member_url = page.url

    sign_in(phone_page, "mo@example.org")
    for path in (member_url, "/h/logan/members/", "/h/logan/members/export.csv"):
        answered = phone_page.request.get(path)
        assert answered.status == 404, path
