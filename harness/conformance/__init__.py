"""Conformance checks of deployments the harness did not build, as pytest test modules.

Run them three ways: `harness verify inference|embeddings|files|s3 ...` (which runs these modules
through pytest and prints one line per failed check), `pytest --pyargs harness.conformance
--verify-...` from any project with the package installed (the `pytest11` plugin in
`harness.conformance.plugin` adds the options), or this repository's integration tier, which points
them at real servers, correct and deliberately faulty.
"""
