"""An admin uploads an inventory file: the upload shows its progress and the outcome appears in place,
a summary for a good file, every bad row for a bad one. Ref: #3 item 6."""

import pytest
from playwright.sync_api import expect

from governance.models import Identity
from tests.factories.governance import PersonFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HEADER = "external_id,name,kind,status,owner_external_id"


def people_file(tmp_path, rows: int, bad_line: int | None = None):
    lines = [HEADER, "p-boss,Boss,human,active,"]
    for n in range(rows):
        owner = "nobody" if bad_line == n + 3 else "p-boss"
        lines.append(f"svc-{n},service {n} {'x' * 60},service_account,active,{owner}")
    path = tmp_path / "identities.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_admin_uploads_a_file_and_sees_progress_then_the_summary_in_place(page, login, tmp_path):
    PersonFactory(name="Ida Admin", user__username="ida", user__roles=["admin"])
    login("ida")
    page.goto("/inventory/import/")
    page.evaluate(
        """window.stillTheSamePage = true; window.progressShown = [];
        document.addEventListener("htmx:xhr:progress", () => {
          const box = document.getElementById("import-progress");
          if (box && !box.hidden) window.progressShown.push(box.textContent.trim());
        });"""
    )
    page.locator("#id_file").set_input_files(str(people_file(tmp_path, 3000)))
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("heading", name="Imported identities.csv")).to_be_visible(timeout=30_000)
    assert page.evaluate("window.stillTheSamePage") is True  # swapped in place, not a new page
    assert "Uploaded. Checking every row" in page.evaluate("window.progressShown.at(-1)")
    assert Identity.objects.filter(external_id__startswith="svc-").count() == 3000


def test_a_bad_row_is_reported_in_place_and_nothing_is_written(page, login, tmp_path):
    PersonFactory(name="Ida Admin", user__username="ida", user__roles=["admin"])
    login("ida")
    page.goto("/inventory/import/")
    page.locator("#id_file").set_input_files(str(people_file(tmp_path, 10, bad_line=7)))
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("heading", name="Nothing was imported")).to_be_visible()
    expect(page.get_by_role("region", name="Nothing was imported")).to_contain_text(
        "unknown owner external id 'nobody'"
    )
    assert not Identity.objects.filter(external_id__startswith="svc-").exists()


def test_a_big_file_goes_to_a_worker_and_the_page_follows_it_to_the_summary(page, login, tmp_path, settings):
    from unittest import mock

    from governance.models import ImportJob
    from governance.services.import_jobs import import_job_run

    settings.IMPORT_INLINE_MAX_BYTES = 1024  # anything bigger is a job
    PersonFactory(name="Ida Admin", user__username="ida", user__roles=["admin"])
    login("ida")
    page.goto("/inventory/import/")
    page.evaluate("window.stillTheSamePage = true")
    page.locator("#id_file").set_input_files(str(people_file(tmp_path, 500)))
    with mock.patch("governance.tasks.import_job_run_task.delay"):  # the worker is this test
        page.get_by_role("button", name="Import").click()
        expect(page.get_by_text("Waiting for a worker")).to_be_visible()
    import_job_run(job_id=ImportJob.objects.get().pk)
    expect(page.get_by_role("heading", name="Imported identities.csv")).to_be_visible(timeout=10_000)
    assert page.evaluate("window.stillTheSamePage") is True
    assert Identity.objects.filter(external_id__startswith="svc-").count() == 500
