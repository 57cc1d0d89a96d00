"""A sample third-party reconcile provider: Postbox, a tiny email-audience REST API.

`plugin.py` is what reconcile loads (entry point `reconcile.providers` -> `postbox`);
`emulator.py` defines the API and serves it for `--sandbox`; `client.py` speaks it;
`records.py` maps its records to reconcile's model; `payloads.py` reads planned changes;
`provider.py` reads and applies.
"""
