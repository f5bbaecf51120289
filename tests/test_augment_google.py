"""Derived rows (sheetsync augment) through the Google backend: the Sheets API stand-in over HTTP."""

from __future__ import annotations

from test_google_loop import api, collaborator, edit, header_index, project  # noqa: F401 (fixtures)

from sheetsync._words import describe
from sheetsync.project import Project


def test_derived_rows_round_trip_and_follow_their_source_in_google_sheets(
        api, project: Project) -> None:  # noqa: F811
    project.augment(budget=9, families=["hflip", "rotate"])
    project.push()
    m = project.versions.load("latest").set_index("id")
    d = m[m["source_id"] != ""]
    ws = collaborator(api, project)
    head = header_index(ws.get_all_values()) + 1  # below sheetsync's info line
    rows = {r["id"]: r for r in ws.get_all_records(head=head, value_render_option="UNFORMATTED_VALUE")}
    for id_, row in d.iterrows():
        assert (rows[id_]["source_id"], rows[id_]["transform"]) == (row["source_id"], row["transform"])
    assert describe(project.pull())[0].startswith("nothing to pull")
    source = str(d["source_id"].iloc[0])
    vetoed = str(d.index[-1])
    edit(ws, {source: {"label": "iii"}, vetoed: {"action": "drop"}})
    report = project.pull()
    after = project.versions.load("latest").set_index("id")
    for id_ in d.index[d["source_id"] == source]:
        if id_ != vetoed:
            assert after.at[id_, "label"] == "iii", describe(report)  # hflip and rotate keep iii
            assert after.at[id_, "path"].startswith("train/iii/")
    assert after.at[vetoed, "action"] == "drop"
    project.augment(budget=30, families=["hflip", "rotate"])
    again = project.versions.load("latest")
    key = (d.at[vetoed, "source_id"], d.at[vetoed, "transform"])
    assert ((again["source_id"] == key[0]) & (again["transform"] == key[1])).sum() == 1
