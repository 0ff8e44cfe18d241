"""Shoppers' privacy choices, honoured by ingestion, serving and training; erasure that leaves
no byte of the shopper in any file the service wrote; models served only when private."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from serve_helpers import ADMIN, export, recommend
from serve_helpers import event as make_event

from shoprec.errors import ConfigError
from shoprec.serve.training import ModelChoice, train_from_store


def _choose(client, shopper: str, choice: str, headers=ADMIN) -> dict:
    r = client.put("/v1/shoppers/privacy", json={"shopper_id": shopper, "choice": choice}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def _shop(client, shoppers=("ann", "bea", "cat", "dan")) -> None:
    """Each shopper views two items and buys a third."""
    events = [make_event(f"e{k}-{j}", s, f"i{(k + j) % 8 + 1}", kind="purchase" if j == 2 else "view")
              for k, s in enumerate(shoppers) for j in range(3)]
    assert client.post("/v1/events/batch", json={"events": events}, headers=ADMIN).status_code == 200


def _service(client):
    return client.app.state.service


# ---- the choice itself ---------------------------------------------------------------------------
def test_the_default_is_personalised_and_a_choice_is_stored_and_exported(client):
    assert export(client, "ann")["privacy_choice"] == "personalised"
    assert _choose(client, "ann", "private") == {"choice": "private", "events_deleted": 0}
    assert export(client, "ann")["privacy_choice"] == "private"


def test_a_shopper_sets_their_own_choice_with_their_token(client):
    token = client.post("/v1/tokens", json={"shopper_id": "ann"}, headers=ADMIN).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/me/privacy", headers=headers).json()["choice"] == "personalised"
    assert client.put("/v1/me/privacy", json={"choice": "none"}, headers=headers).json()["choice"] == "none"
    assert client.get("/v1/me/privacy", headers=headers).json()["choice"] == "none"
    assert client.put("/v1/me/privacy", json={"choice": "everything"}, headers=headers).status_code == 422


def test_erasure_removes_the_choice_too(client):
    _choose(client, "ann", "private")
    client.post("/v1/shoppers/erase", json={"shopper_id": "ann"}, headers=ADMIN)
    assert export(client, "ann")["privacy_choice"] == "personalised"


# ---- "none": nothing stored, nothing logged --------------------------------------------------------
def test_choosing_none_deletes_what_is_stored_and_stores_nothing_later(client):
    _shop(client)
    assert _choose(client, "ann", "none")["events_deleted"] == 3
    r = client.post("/v1/events", json=make_event("e-late", "ann", "i5"), headers=ADMIN).json()
    assert r["accepted"] == 0 and r["not_stored"] == 1
    body = recommend(client, shopper_id="ann")
    assert body["recent"] == [] and all(i["explanation"]["code"] == "popular" for i in body["items"])
    data = export(client, "ann")
    assert data["events"] == [] and data["impressions"] == [] and data["exploration_states"] == []


def test_a_batch_mixing_shoppers_stores_only_those_who_allow_it(client):
    _choose(client, "ann", "none")
    batch = {"events": [make_event("m1", "ann", "i1"), make_event("m2", "bea", "i1")]}
    assert client.post("/v1/events/batch", json=batch, headers=ADMIN).json()["not_stored"] == 1
    assert len(export(client, "bea")["events"]) == 1 and export(client, "ann")["events"] == []


# ---- "private": only differentially private training --------------------------------------------------
def test_a_private_shopper_trains_only_private_models(client, tmp_path):
    _shop(client)
    _choose(client, "bea", "private")
    store, bea = _service(client).store, _service(client).pseudonymizer.pseudonymize("bea")
    from shoprec.models.base import Recommender

    plain = Recommender.load(train_from_store(store, tmp_path / "knn.npz", ModelChoice("item-knn"), evaluate=False))
    private = Recommender.load(train_from_store(store, tmp_path / "pop.npz", ModelChoice("dp-pop", {"epsilon": 1.0}),
                                                evaluate=False))
    assert bea not in plain.users_.ids.tolist() and len(plain.users_) == 3
    assert bea in private.users_.ids.tolist() and len(private.users_) == 4
    # Her own slate still uses her history at request time (it teaches no shared model).
    assert recommend(client, shopper_id="bea")["recent"] != []


def test_online_fine_tuning_leaves_private_shoppers_out(make_client, tiny_shop, tmp_path):
    from shoprec.models.transformer import TransformerRecommender

    path = TransformerRecommender(d=8, n_layers=1, max_len=8, epochs=1, batch_size=4, device="cpu",
                                  seed=0).fit(tiny_shop).save(tmp_path / "models" / "transformer.npz")
    client = make_client(model=None, model_path=str(path), retrain_min_events=5)
    _choose(client, "bea", "private")
    _shop(client)  # 12 events, 3 of them bea's
    assert client.post("/v1/model/retrain", headers=ADMIN).status_code == 202
    _service(client).learner.wait_idle()
    [run] = client.get("/v1/model/retrains", headers=ADMIN).json()
    assert run["status"] in ("swapped", "kept") and run["n_events"] == 9  # the fine-tune never saw bea's


def test_a_service_for_private_models_only_refuses_a_plain_one(make_client, knn):
    with pytest.raises(ConfigError, match="only differentially private models"):
        make_client(private_models_only=True, model=knn)


# ---- erasure, complete -----------------------------------------------------------------------------
RAW = "jane.doe@example.com"


def _files_holding(root: Path, needles: list[bytes]) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and any(n in p.read_bytes() for n in needles)]


def test_after_erasure_no_file_the_service_wrote_holds_the_shopper(make_client, settings, tmp_path, caplog):
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("the file-level check reads the SQLite file and its WAL; PostgreSQL is checked by rows below")
    caplog.set_level(logging.DEBUG)
    models = tmp_path / "models"
    client = make_client(model_dir=str(models))
    _shop(client, shoppers=(RAW, "bea", "cat", "dan"))
    service = _service(client)
    pseudonym = service.pseudonymizer.pseudonymize(RAW)
    path = train_from_store(service.store, models / "item-knn.npz", ModelChoice("item-knn"), evaluate=False)
    assert client.post("/v1/model/reload", json={"path": "item-knn.npz"}, headers=ADMIN).status_code == 200
    recommend(client, shopper_id=RAW)
    needles = [RAW.encode(), pseudonym.encode()]
    assert _files_holding(tmp_path, [pseudonym.encode()])  # the shopper is there before

    r = client.post("/v1/shoppers/erase", json={"shopper_id": RAW}, headers=ADMIN).json()
    assert r == {"events_deleted": 3, "impressions_deleted": 3, "model_files_changed": 1}
    recommend(client, shopper_id=RAW)  # a read right after: the tombstone logs nothing
    assert pseudonym not in service.engine.model_view.model.users_.ids.tolist()  # the served model
    service.store.checkpoint()
    assert _files_holding(tmp_path, needles) == []  # database, -wal, -shm, model files, sidecars
    assert not any(RAW in m or pseudonym in m for m in caplog.messages)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_after_erasure_no_row_names_the_shopper_and_a_returning_shopper_is_stored_again(client):
    _shop(client, shoppers=(RAW, "bea"))
    recommend(client, shopper_id=RAW)
    client.post("/v1/shoppers/erase", json={"shopper_id": RAW}, headers=ADMIN)
    recommend(client, shopper_id=RAW)
    data = export(client, RAW)
    assert data["events"] == [] and data["impressions"] == [] and data["exploration_states"] == []
    # They come back and act: stored, and logged again from then on.
    assert client.post("/v1/events", json=make_event("back-1", RAW, "i2"), headers=ADMIN).json()["accepted"] == 1
    recommend(client, shopper_id=RAW)
    assert len(export(client, RAW)["impressions"]) == 3


def test_the_database_file_is_readable_by_its_owner_only(settings):
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's files belong to its server")
    from shoprec.serve.storage import Store

    store = Store(settings.database_url)
    store.migrate()
    db = Path(settings.database_url.split(":///", 1)[1])
    assert {stat.S_IMODE(p.stat().st_mode) for p in db.parent.glob(db.name + "*")} == {0o600}
    store.dispose()


@pytest.mark.parametrize("name", ["dp-ease", "dp-als"])
def test_a_service_for_private_models_only_serves_a_private_release_model(make_client, tiny_shop, name):
    from shoprec.models.registry import make_model

    model = make_model(name, target_epsilon=8.0, target_delta=1e-3).fit(tiny_shop)
    client = make_client(private_models_only=True, model=model)
    status = client.get("/v1/model", headers=ADMIN).json()
    assert status["name"] == name and "differential privacy" in status["summary"]
    assert recommend(client, shopper_id="u1")["items"]
    assert recommend(client, session=[{"item_id": "i2", "event": "view"}])["items"]  # a new session too


def test_erasure_removes_the_shopper_from_a_model_served_from_memory(make_client, tiny_shop, pseudonymizer):
    from shoprec.models.knn import ItemKNN

    model = ItemKNN(neighbors=10).fit(tiny_shop.with_user_ids(pseudonymizer.pseudonymize))
    client = make_client(model=model)
    gone = pseudonymizer.pseudonymize("u1")
    assert gone in _service(client).engine.model_view.model.users_.ids.tolist()
    client.post("/v1/shoppers/erase", json={"shopper_id": "u1"}, headers=ADMIN)
    served = _service(client).engine.model_view.model
    assert gone not in served.users_.ids.tolist() and len(served.users_) == 5
    assert recommend(client, shopper_id="u2")["items"]  # the edited model serves the others
