"""What a user is told about the model that answers them: its name, the recipe that trained it,
and whether its probabilities are calibrated (and by which temperature).

    card = model_card("results/robust/model_calibrated.keras", model)
    # {"name": "reference_calibrated", "recipe": "robust", "calibrated": True,
    #  "temperature": 1.7, ...}

`mnist-bench predict` prints it above its answers; the server returns it from ``GET /healthz``
and with every prediction, and the draw-a-digit page shows it. The temperature is read from
the model itself (`evaluation.model_temperature`: the ``temperature`` layer that
`evaluation.with_temperature` adds), so it travels with the ``.keras`` file; exported files
(SavedModel, LiteRT) compute the same calibrated probabilities (the layer is in their graph)
but do not say so, and are described as calibration unknown. The recipe is recognised from
the ``config.json`` that `mnist-bench train` writes beside the model; a fine-tuned model's
folder holds ``finetune.json`` instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._io import read_json
from .config import RECIPES
from .evaluation import model_temperature

CONFIG_NAME = "config.json"
FINETUNE_NAME = "finetune.json"  # transfer.RECORD_NAME


def _recipe(folder: Path) -> str | None:
    """The published recipe whose every setting the folder's config.json holds, else None."""
    if (folder / FINETUNE_NAME).is_file():
        return "fine-tuned"
    try:
        config = read_json(folder / CONFIG_NAME)
    except ValueError:  # missing or malformed: the recipe is unknown, not an error
        return None
    for name, recipe in RECIPES.items():
        wanted = json.loads(json.dumps(recipe))  # tuples as JSON lists, as in the file
        if all(config.get(key) == value for key, value in wanted.items()):
            return name
    return None


def model_card(path: str | Path, model: Any) -> dict[str, Any]:
    """Describe the model loaded from `path`.

    Parameters
    ----------
    path : path
        The file the model came from (a folder holding it also works for the recipe).
    model : keras.Model or exported predictor
        What `export.load_predictor` returned for `path`.

    Returns
    -------
    dict
        ``name`` (the Keras model's name, else the file's stem), ``recipe`` (a name of
        `config.RECIPES`, ``"fine-tuned"``, or None), ``calibrated`` (True, False, or None
        for an exported file) and ``temperature`` (float or None), JSON-serialisable.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    is_keras = hasattr(model, "layers") and not hasattr(model, "predict_proba")
    temperature = model_temperature(model) if is_keras else None
    return {
        "name": model.name if is_keras else path.stem,
        "recipe": _recipe(folder),
        "calibrated": (temperature is not None) if is_keras else None,
        "temperature": None if temperature is None else round(temperature, 4),
    }


def card_line(card: dict[str, Any]) -> str:
    """One line for people, e.g. "reference_calibrated (robust recipe), calibrated:
    temperature 1.7"."""
    recipe = f" ({card['recipe']} recipe)" if card.get("recipe") else ""
    if card.get("calibrated"):
        calibration = f"calibrated: temperature {card['temperature']:.4g}"
    elif card.get("calibrated") is False:
        calibration = "not calibrated: raw softmax probabilities"
    else:
        calibration = "calibration unknown (exported file)"
    return f"{card['name']}{recipe}, {calibration}"
