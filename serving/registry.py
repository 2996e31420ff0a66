"""The model registry: BentoML's model store under VANTA_HOME, and `ai_model_metadata` rows.

Two models, each one joblib file in its store directory:

| name | file | object | input | output |
|---|---|---|---|---|
| `vanta_analyzer` | `analyzer.joblib` | `research.analyzer.Analyzer` | `research.features.trader_features` frame (one row per trader, `metadata["features"]` columns) | `research.analyzer.score_frame(features, analyzer)` rows |
| `vanta_regime` | `regime.joblib` | `research.regime.RegimeModel` or `research.regime.QuantileRegime` (the family chosen on validation; `metadata["object"]`) | `research.regime.hourly_observations(candles)` | `.classify(obs)`: color, confidence, trend, signal per hour |

Only a model that beat its baselines walk-forward is saved; the store's latest version of a name
is the one to serve (`load_latest`). Every candidate, winner or not, gets an `ai_model_metadata`
row with its metrics and its baselines', so the reason a model was not registered is on record.

BENTOML_HOME must be set before bentoml is imported: `configure` does it (VANTA_HOME/bentoml),
with BENTOML_DO_NOT_TRACK=true.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FILES = {"vanta_analyzer": "analyzer.joblib", "vanta_regime": "regime.joblib"}


def configure(vanta_home: Path) -> Path:
    """Point BentoML at VANTA_HOME/bentoml (unless BENTOML_HOME is set) and turn tracking off."""
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    home = Path(os.environ.setdefault("BENTOML_HOME", str((vanta_home / "bentoml").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    return home


@dataclass(frozen=True)
class Registered:
    name: str
    tag: str
    obj: Any
    metadata: dict[str, Any]


def save(name: str, obj: object, metadata: dict[str, Any]) -> str:
    """Store `obj` as a new version of `name`; returns the tag ("name:version")."""
    import bentoml
    import joblib

    clean = json.loads(json.dumps(metadata, default=str))  # BentoML metadata: plain JSON values only
    with bentoml.models.create(name, metadata=clean, labels={"owner": "vanta"}) as model:
        joblib.dump(obj, Path(model.path) / FILES[name])
    return str(model.tag)


def load_latest(name: str) -> Registered | None:
    """The newest stored version of `name`, or None when none was ever registered."""
    import bentoml
    import joblib

    try:
        model = bentoml.models.get(f"{name}:latest")
    except bentoml.exceptions.NotFound:
        return None
    obj = joblib.load(Path(model.path) / FILES[name])
    return Registered(name, str(model.tag), obj, dict(model.info.metadata))


def load(tag: str) -> Registered:
    """One exact version ("vanta_analyzer:abc123")."""
    import bentoml
    import joblib

    model = bentoml.models.get(tag)
    name = model.tag.name
    return Registered(
        name, str(model.tag), joblib.load(Path(model.path) / FILES[name]), dict(model.info.metadata)
    )


def _ts(epoch: int | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


async def record(
    conn: Any,
    *,
    name: str,
    version: str,
    bento_tag: str | None,
    train_start: int | None,
    train_end: int | None,
    metrics: dict[str, Any],
    baseline_metrics: dict[str, Any],
    beats_baseline: bool,
) -> None:
    """One `ai_model_metadata` row per candidate; a registered winner becomes the active version."""
    async with conn.transaction():
        if bento_tag is not None:
            await conn.execute("UPDATE ai_model_metadata SET is_active = false WHERE name = $1", name)
        await conn.execute(
            """INSERT INTO ai_model_metadata (name, version, bento_tag, train_start, train_end, metrics,
                   baseline_metrics, beats_baseline, is_active)
               VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9)
               ON CONFLICT (name, version) DO UPDATE SET bento_tag = EXCLUDED.bento_tag,
                   metrics = EXCLUDED.metrics, baseline_metrics = EXCLUDED.baseline_metrics,
                   beats_baseline = EXCLUDED.beats_baseline, is_active = EXCLUDED.is_active""",
            name,
            version,
            bento_tag,
            _ts(train_start),
            _ts(train_end),
            json.dumps(metrics, default=str),
            json.dumps(baseline_metrics, default=str),
            beats_baseline,
            bento_tag is not None,
        )
