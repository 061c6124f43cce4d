"""The opskit test lab: real systemd minions in systemd-nspawn containers on one host.

See ``lab.py`` for the orchestration, ``__main__.py`` for the command line and
``tests/integration/conftest.py`` for the pytest fixtures.
"""
