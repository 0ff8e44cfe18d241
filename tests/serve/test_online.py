"""Online learning in the service: fine-tune on new events, validate, swap only when not worse;
new catalogue items placed from their text; every run recorded, failures keep the old model."""

from __future__ import annotations

import numpy as np
import pytest
from serve_helpers import ADMIN, event, recommend

from shoprec.models.transformer import TransformerRecommender


@pytest.fixture
def transformer_file(tiny_shop, tmp_path, hashed_text):
    model = TransformerRecommender(d=8, n_layers=1, max_len=8, epochs=3, batch_size=4, device="cpu", seed=0,
                                   text_init=True)
    return model.fit(tiny_shop).save(tmp_path / "models" / "transformer.npz")


def _serve(make_client, path, **changes):
    return make_client(model=None, model_path=str(path), retrain_min_events=5, exploration=None, **changes)


def _ingest(client, n: int, prefix: str = "n") -> None:
    rng = np.random.default_rng(0)
    events = [event(f"{prefix}{j}", f"shopper{j % 4}", f"i{1 + int(rng.integers(0, 8))}",
                    timestamp=1_800_000_000 + j) for j in range(n)]
    assert client.post("/v1/events/batch", json={"events": events}, headers=ADMIN).status_code == 200


def test_a_retrain_fine_tunes_on_new_events_and_records_how_it_scored(make_client, transformer_file):
    client = _serve(make_client, transformer_file)
    version = client.get("/v1/model", headers=ADMIN).json()["version"]
    _ingest(client, 40)
    assert client.post("/v1/model/retrain", headers=ADMIN).status_code == 202
    client.app.state.service.learner.wait_idle()
    runs = client.get("/v1/model/retrains", headers=ADMIN).json()
    assert len(runs) == 1 and runs[0]["trigger"] == "api" and runs[0]["n_events"] == 40
    assert runs[0]["status"] in ("swapped", "kept") and runs[0]["metric_before"] is not None
    status = client.get("/v1/model", headers=ADMIN).json()
    if runs[0]["status"] == "swapped":
        assert runs[0]["metric_after"] >= runs[0]["metric_before"]
        assert status["version"] != version and status["data_window"]["last_event_id"] == 40
        assert status["path"].startswith("transformer-")
    else:
        assert runs[0]["metric_after"] < runs[0]["metric_before"] and status["version"] == version
    assert status["online_learning"]["last"]["status"] == runs[0]["status"]
    recommend(client, shopper_id="shopper1", k=3)  # the served model answers throughout


def test_too_few_new_events_keep_the_model_and_say_why(make_client, transformer_file):
    client = _serve(make_client, transformer_file)
    _ingest(client, 3)
    client.post("/v1/model/retrain", headers=ADMIN)
    client.app.state.service.learner.wait_idle()
    run = client.get("/v1/model/retrains", headers=ADMIN).json()[0]
    assert run["status"] == "kept" and "waiting for 5" in run["message"]


def test_a_failed_retrain_keeps_the_served_model_and_is_reported(make_client, transformer_file, monkeypatch):
    client = _serve(make_client, transformer_file)
    version = client.get("/v1/model", headers=ADMIN).json()["version"]
    _ingest(client, 20)
    from shoprec.serve import online

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(online, "retrain_once", broken)
    client.post("/v1/model/retrain", headers=ADMIN)
    client.app.state.service.learner.wait_idle()
    run = client.get("/v1/model/retrains", headers=ADMIN).json()[0]
    assert run["status"] == "failed" and "disk full" in run["message"]
    assert client.get("/v1/model", headers=ADMIN).json()["version"] == version
    assert recommend(client, shopper_id="shopper1", k=3)["items"]


def test_a_new_catalogue_item_is_recommendable_from_its_text_alone(make_client, transformer_file):
    client = _serve(make_client, transformer_file)
    service = client.app.state.service
    assert "i9" not in service.engine.model_view.position
    item = {"item_id": "i9", "title": "green tea pot", "category": "kitchen", "price": 9.0}
    assert client.post("/v1/items/batch", json={"items": [item]}, headers=ADMIN).status_code == 200
    service.learner.wait_idle()
    view = service.engine.model_view
    assert "i9" in view.position and np.abs(view.vectors[view.position["i9"]]).sum() > 0
    scores = view.model.score_history(["i1", "i2"])
    assert np.isfinite(scores[view.position["i9"]])


def _record_swap(store, path):
    from shoprec.serve.online import RetrainOutcome, record_outcome
    from shoprec.serve.views import file_version

    run_id = store.start_retrain("cli")
    record_outcome(store, run_id, RetrainOutcome("swapped", 40, 0.1, 0.2, "fine-tuned", str(path),
                                                 file_version(path)))


def test_every_worker_follows_the_model_a_retrain_elsewhere_swapped_in(make_client, transformer_file, tiny_shop):
    worker = _serve(make_client, transformer_file)
    service = worker.app.state.service
    assert not service.learner.follow()  # no retrain run yet: keep serving
    newer = TransformerRecommender(d=8, n_layers=1, max_len=8, epochs=1, batch_size=4, device="cpu", seed=1)
    newer_path = newer.fit(tiny_shop).save(transformer_file.parent / "transformer-later.npz")
    _record_swap(service.store, newer_path)  # what `shoprec retrain` from cron records
    assert service.learner.follow()
    status = worker.get("/v1/model", headers=ADMIN).json()
    assert status["path"] == "transformer-later.npz"
    assert not service.learner.follow()  # already serving it
    assert recommend(worker, shopper_id="shopper1", k=3)["items"]


def test_a_worker_never_follows_a_model_file_outside_its_model_directory(make_client, transformer_file, tiny_shop,
                                                                         tmp_path):
    worker = _serve(make_client, transformer_file)
    service = worker.app.state.service
    version = worker.get("/v1/model", headers=ADMIN).json()["version"]
    elsewhere = TransformerRecommender(d=8, n_layers=1, max_len=8, epochs=1, batch_size=4, device="cpu", seed=2)
    _record_swap(service.store, elsewhere.fit(tiny_shop).save(tmp_path / "elsewhere" / "transformer.npz"))
    assert not service.learner.follow()
    assert worker.get("/v1/model", headers=ADMIN).json()["version"] == version


def test_every_worker_sees_catalogue_writes_another_worker_made(make_client):
    first, second = make_client(), make_client(with_catalogue=False)  # two processes, one database
    learner = second.app.state.service.learner
    assert not learner.follow_catalogue()  # the first look only notes what is there
    r = first.put("/v1/items/i9", json={"title": "milk jug", "category": "kitchen", "price": 7.0}, headers=ADMIN)
    assert r.status_code == 200
    assert second.get("/v1/items/i9", headers=ADMIN).status_code == 200  # stored, so readable at once
    assert "i9" not in second.app.state.service.engine.catalogue.row  # but not yet in the serving view
    assert learner.follow_catalogue()
    assert "i9" in second.app.state.service.engine.catalogue.row and not learner.follow_catalogue()
