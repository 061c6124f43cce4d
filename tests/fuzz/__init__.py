"""The hostile-pillar fuzz tier (issue 11): ``python -m tests.fuzz [--formula F]``."""
