"""The review server: only the round's images, a token off the loopback, one decision per pair state."""

import threading

import pytest
from fastapi.testclient import TestClient

from sam3_adapt.engine.export import engine_pairs
from sam3_adapt.engine.journal import Journal
from sam3_adapt.engine.store import read_proposals
from sam3_adapt.review_page.server import access, create_app
from sam3_adapt.review_page.session import ReviewSession, read_round

LOCAL = "http://127.0.0.1"


def human(journal, undone=False):
    return [(d.kind, d.instance) for d in journal.decisions(undone=undone) if d.actor_kind == "human"]


def test_image_routes_serve_the_rounds_images_and_nothing_else(round_copy):
    folder, _ = round_copy
    session = ReviewSession(read_round(folder))
    client = TestClient(create_app(session), base_url=LOCAL)
    name = session.files.queue[0].file_name
    assert client.get(f"/image/{name}").status_code == 200
    outside = folder / "journal.sqlite"
    for path in (
        "/image/%2e%2e/journal.sqlite",
        "/image/..%2f..%2fjournal.sqlite",
        f"/image/{outside}",
        f"/image/%2F{str(outside).lstrip('/')}",
        "/image/../../../../etc/passwd",
        "/image/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        f"/image/{name}/..",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"SQLite" not in response.content and b"root:" not in response.content


def test_a_non_loopback_server_refuses_requests_without_its_token(round_copy):
    folder, _ = round_copy
    token, local = access("0.0.0.0", None)
    assert token and len(token) >= 20 and not local
    assert access("127.0.0.1", None) == (None, True)
    session = ReviewSession(read_round(folder))
    client = TestClient(create_app(session, token, loopback=False), base_url="http://192.168.1.20:8765")
    name = session.files.queue[0].file_name
    for path in ("/", "/api/state", f"/image/{name}"):
        assert client.get(path).status_code == 403
        assert client.get(path, params={"token": "wrong"}).status_code == 403
    assert client.get("/", params={"token": token}).status_code == 200
    assert client.get("/api/state", headers={"X-Review-Token": token}).status_code == 200
    # A loopback server answers only requests addressed to a loopback name (no DNS rebinding).
    local_client = TestClient(create_app(session), base_url="http://attacker.example")
    assert local_client.get("/api/state").status_code == 403
    assert TestClient(create_app(session), base_url=LOCAL).get("/api/state").status_code == 200


def test_two_tabs_deciding_one_pair_at_once_keep_exactly_one_decision(round_copy):
    folder, _ = round_copy
    app = create_app(ReviewSession(read_round(folder), "tester"))
    tabs = [TestClient(app, base_url=LOCAL) for _ in range(2)]
    for index in range(3):
        version = tabs[0].get(f"/api/pair/{index}").json()["version"]
        start, answers = threading.Barrier(2), [None, None]

        def decide(tab, action, slot, index=index, version=version, start=start, answers=answers):
            start.wait()
            body = {"index": index, "action": action, "version": version}
            answers[slot] = tab.post("/api/act", json=body).status_code

        threads = [
            threading.Thread(target=decide, args=(tabs[k], action, k))
            for k, action in enumerate(("absent", "accept"))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(answers) == [200, 409]
    journal = Journal(folder / "journal.sqlite", read_round(folder).run["run_id"])
    closing = [d for d in journal.decisions() if d.kind in ("absent", "exhaustive")]
    assert len(closing) == 3 and len({(d.file_name, d.phrase) for d in closing}) == 3


def test_undo_takes_back_a_whole_action_for_every_reader_of_the_journal(round_copy):
    folder, _ = round_copy
    session = ReviewSession(read_round(folder), "tester")
    journal = session.journal
    pair = session.pair(0)
    assert pair["instances"]
    session.act(0, "absent", pair["version"])
    key = (pair["file_name"], pair["phrase"])
    records = read_proposals(folder / "proposals")
    exported = {(p.file_name, p.phrase): p for p in engine_pairs(records, journal.decisions(), "verified")}
    assert exported[key].instances == [] and exported[key].exhaustive  # a confirmed negative
    session.act(0, "undo", 0)
    assert human(journal) == [] and journal.reviewed_pairs() == set()
    assert human(journal, undone=True) == [("absent", None), ("undo", None)]
    assert key not in {
        (p.file_name, p.phrase) for p in engine_pairs(records, journal.decisions(), "verified")
    }
    # An accept writes one decision per open instance and closes the pair: one undo takes all back.
    pair = session.pair(0)
    assert session.act(0, "accept", pair["version"])["index"] == 1
    assert len(human(journal)) == len(pair["instances"]) + 1
    assert session.act(1, "undo", 0)["index"] == 0
    assert human(journal) == [] and session.next_index() == 0
    with pytest.raises(ValueError, match="nothing to undo"):
        session.act(0, "undo", 0)


def test_the_verb_takes_the_round_folder_first_and_a_bare_open(tmp_path):
    from sam3_adapt.cli import run_verb

    with pytest.raises(ValueError, match=f"{tmp_path}: no review_queue.jsonl"):
        run_verb("review", [str(tmp_path), "--open", "--port", "9"])
