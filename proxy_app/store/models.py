"""The store's models: `model_list` entries added through /model/new, kept across restarts.

Mixed into `SQLStore`. Every change moves row 2 of `state_version`, which workers poll to pick
up changes made by other workers and instances.
"""

from __future__ import annotations

import time

import orjson

MODELS_VERSION_ROW = 2


class ModelStore:
    def stored_models(self) -> list[dict]:
        """Every stored model, oldest first: {model_id, model_name, params, model_info}."""
        with self._transaction() as cur:
            cur.execute("SELECT model_id, model_name, params, model_info, created_at FROM models "
                        "ORDER BY created_at, model_id")
            return [{"model_id": i, "model_name": n, "params": orjson.loads(p), "model_info": orjson.loads(m),
                     "created_at": c} for i, n, p, m, c in cur.fetchall()]

    def models_version(self) -> int:
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT version FROM state_version WHERE id = ?"), (MODELS_VERSION_ROW,))
            found = cur.fetchone()
            return found[0] if found else 0

    def save_model(self, model_id: str, model_name: str, params: dict, model_info: dict) -> bool:
        """Insert or replace one model; True if it was new."""
        now = time.time()
        with self._transaction(write=True) as cur:
            cur.execute(self._sql("SELECT created_at FROM models WHERE model_id = ?"), (model_id,))
            found = cur.fetchone()
            values = (model_name, orjson.dumps(params).decode(), orjson.dumps(model_info).decode())
            if found:
                cur.execute(self._sql("UPDATE models SET model_name = ?, params = ?, model_info = ?, updated_at = ? "
                                      "WHERE model_id = ?"), (*values, now, model_id))
            else:
                cur.execute(self._sql("INSERT INTO models (model_id, model_name, params, model_info, created_at, "
                                      "updated_at) VALUES (?, ?, ?, ?, ?, ?)"), (model_id, *values, now, now))
            self._bump_models(cur)
            return not found

    def delete_model(self, model_id: str) -> bool:
        with self._transaction(write=True) as cur:
            cur.execute(self._sql("DELETE FROM models WHERE model_id = ?"), (model_id,))
            deleted = cur.rowcount > 0
            if deleted:
                self._bump_models(cur)
            return deleted

    def _bump_models(self, cur) -> None:
        cur.execute(self._sql("UPDATE state_version SET version = version + 1 WHERE id = ?"), (MODELS_VERSION_ROW,))
