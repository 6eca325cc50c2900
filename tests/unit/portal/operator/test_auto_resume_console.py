"""The package form's "Sambungkan lagi otomatis" (issue #13 item 2, ``auto_resume``): the
admin switches it per package (audited); a kasir cannot; the file's packages carry theirs."""

from __future__ import annotations

from sqlalchemy import select

from hotspot.model import Package
from hotspot.vouchers.packages import all_packages, get_package, sync_packages
from tests.unit.portal.operator.conftest import text
from tests.unit.portal.operator.test_console import GOOD_PACKAGE


def _pkg(db, name="malam"):
    return next(p for p in all_packages(db) if p.name == name)


def test_admin_switches_auto_resume_per_package(admin, db):
    page = admin.get("/operator/packages/new").get_data(as_text=True)
    assert 'name="auto_resume" value="1"' in page and "Sambungkan lagi otomatis" in page
    assert 'name="auto_resume" value="1" aria-describedby="auto_resume-hint" checked' in page
    assert (
        admin.form("/operator/packages/new", dict(GOOD_PACKAGE, auto_resume="1")).status_code == 303
    )
    pkg = _pkg(db)
    assert pkg.auto_resume is True
    # Unticked on the edit form: off (a checkbox sends nothing when unticked).
    assert admin.form(f"/operator/packages/{pkg.id}", GOOD_PACKAGE).status_code == 303
    assert get_package(db, pkg.id).auto_resume is False
    log = text(admin.get("/operator/audit"))
    assert "package.update" in log and "auto_resume" in log


def test_kasir_cannot_change_it(kasir, admin, db):
    admin.form("/operator/packages/new", dict(GOOD_PACKAGE, auto_resume="1"))
    pkg = _pkg(db)
    r = kasir.form(f"/operator/packages/{pkg.id}", GOOD_PACKAGE, page="/operator/")
    assert r.status_code in (403, 404)
    assert get_package(db, pkg.id).auto_resume is True


def test_file_packages_carry_their_setting(db, cfg):
    from hotspot.config import PackageConfig

    off = PackageConfig("sekali", "Sekali", 3000, "premium", 24, 0, 1, 0, auto_resume=False)
    sync_packages(db, [off])
    with db.connect() as conn:
        assert (
            conn.execute(select(Package.auto_resume).where(Package.name == "sekali")).scalar()
            is False
        )
