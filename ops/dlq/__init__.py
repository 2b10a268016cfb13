"""Dead letters for operators: list, show, replay."""
