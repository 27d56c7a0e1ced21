"""Stop training when the monitored metric has not improved for `patience` validations."""

from typing import Any

from project.checkpoint.policy import improves


class EarlyStopping:
    def __init__(self, mode: str, patience: int, min_delta: float = 0.0):
        self.mode = mode
        self.patience = patience  # 0 = never stop early
        self.min_delta = min_delta
        self.best: float | None = None
        self.bad_validations = 0

    def update(self, score: float) -> bool:
        """Record one validation's score; True when training should stop."""
        if improves(score, self.best, self.mode, self.min_delta):
            self.best, self.bad_validations = score, 0
        else:
            self.bad_validations += 1
        return self.patience > 0 and self.bad_validations >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_validations": self.bad_validations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_validations = state["best"], state["bad_validations"]
